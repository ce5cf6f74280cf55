"""Building blocks of the hcloud-talos-autoscaler Pulumi program.

Pure modules (no Pulumi engine inside) hold the logic: ``config`` (the stack
configuration model), ``hetzner`` and ``talos_versions`` (platform facts).
ComponentResources (``network``, ...) only wire that logic to resources.
"""
