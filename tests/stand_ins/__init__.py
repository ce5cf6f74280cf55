"""Local stand-ins, one module per thing stood in: what cannot run here (Hetzner Cloud's API,
the Talos Image Factory, Hetzner's rescue system, a kubelet), and small servers some tests need
in its place (a Kubernetes API, a chart repository), on 127.0.0.1 only."""
