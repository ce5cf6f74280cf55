"""The pure core of hcloud-talos-autoscaler: every decision, no Pulumi engine inside.

The stack configuration (``config``), the plan of what a stack creates (``plan``), the
Talos worker config, the autoscaler's values, the Hetzner and version facts, the image
build and the destroy sweep are plain Python: the offline ``render``, the command lines
and the tests use them without Pulumi, and ``components`` only wires them to resources.
``tests/project/test_core_is_pure.py`` imports every module here with ``pulumi`` blocked.
"""
