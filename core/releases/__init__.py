"""The upstream releases this project supports: Talos (and the Kubernetes each minor
runs) and the cluster-autoscaler chart and image per Kubernetes minor."""
