"""Which labels a Talos node can give itself, and which keys belong in annotations.

Talos applies ``machine.nodeLabels`` with the kubelet's own credentials (Talos
``node_apply.go``), so the NodeRestriction admission plugin decides: a node may not set
labels in the ``kubernetes.io`` and ``k8s.io`` namespaces except the kubelet's own set
(kubernetes ``well_known_labels.go`` ``IsKubeletLabel``; ``noderestriction/admission.go``
``getForbiddenLabels``). One refused label fails the whole update, so the node ends up with
none of its labels, ``hcloud/node-group`` included.

Kilo reads a node's location from the annotation ``kilo.squat.ai/location`` and ignores
such a label (cozystack/kilo ``pkg/k8s/backend.go``), so ``kilo.squat.ai/*`` keys are
annotations.
"""

from __future__ import annotations

#: Labels the kubelet may set on its own Node (``IsKubeletLabel``).
KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "node.kubernetes.io/instance-type",
        "beta.kubernetes.io/instance-type",
    }
)
#: Label namespaces (and their subdomains) the kubelet may set on its own Node.
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
RESTRICTED_NAMESPACES = ("kubernetes.io", "k8s.io")
KILO_PREFIX = "kilo.squat.ai/"


def _namespace(key: str) -> str:
    prefix, slash, _ = key.partition("/")
    return prefix if slash else ""


def _in(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith(f".{domain}")


def is_kubelet_label(key: str) -> bool:
    """Whether NodeRestriction lets a node set ``key`` on itself."""
    namespace = _namespace(key)
    if not any(_in(namespace, domain) for domain in RESTRICTED_NAMESPACES):
        return True
    return key in KUBELET_LABELS or any(_in(namespace, ns) for ns in KUBELET_LABEL_NAMESPACES)


def label_problem(key: str) -> str | None:
    """Why a node could not carry label ``key`` as the user means it (None when it can)."""
    if key.startswith(KILO_PREFIX):
        return (
            f"{key!r} is a Kilo annotation, not a label: Kilo reads kilo.squat.ai/location and "
            "kilo.squat.ai/persistent-keepalive from node annotations and ignores labels; "
            "move it to talos.nodeAnnotations (or the pool's nodeAnnotations)"
        )
    if not is_kubelet_label(key):
        return (
            f"{key!r} is refused by the NodeRestriction admission plugin: a node may not set "
            "kubernetes.io or k8s.io labels outside the kubelet's own (kubernetes.io/hostname, "
            "kubernetes.io/os|arch, topology.kubernetes.io/zone|region, "
            "node.kubernetes.io/instance-type, node.kubernetes.io/*, kubelet.kubernetes.io/*), "
            "and Talos sets node labels with the kubelet's credentials, so the node would "
            "lose all its labels, hcloud/node-group included; use a key of your own (e.g. "
            "node.kubernetes.io/role or example.com/role)"
        )
    return None


def label_problems(labels: dict[str, str]) -> list[str]:
    """Every problem of a label map, one message per key."""
    return [problem for key in labels if (problem := label_problem(key)) is not None]
