"""The cluster side: the standard-library client (``client``) and rollout contract
(``rollout``) the in-cluster helpers ship with their scripts (``provider_id_setter``,
``node_controller``, run from ConfigMaps at the paths they have here), the kubeconfig the
program and command lines reach the cluster with, and the ``nodes`` command's table.

The pods do not ship this file: ``core`` and ``core.kubernetes`` are namespace packages
there. Nothing else in ``core`` imports a script (``tests/project/test_core_layers.py``)."""
