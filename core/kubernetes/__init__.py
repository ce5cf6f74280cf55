"""The cluster side: the standard-library client (``client``) and rollout contract
(``rollout``) the in-cluster helpers ship next to their scripts (``provider_id_setter``,
``node_controller``, run from ConfigMaps), the kubeconfig the program and command lines
reach the cluster with, and the ``nodes`` command's table.

Only the in-cluster scripts import each other's flat names; nothing else in ``core``
imports a script (``tests/project/test_core_layers.py``)."""
