"""Talos Linux worker configs, without the stack config: documents read and written
(``documents``), the keys and value types each minor accepts (``keys``), problems,
building one worker config (``worker_config``), its user data (``user_data``), system
extensions and the node labels a node may set."""
