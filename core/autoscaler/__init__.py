"""The cluster-autoscaler release: its chart values (``values``) and the Kubernetes
objects applied beside it (``manifests``: the in-cluster helpers and the smoke test)."""
