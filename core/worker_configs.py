"""Every pool's Talos worker config, from the stack config: the stack-wide settings plus the
pool's labels, annotations and taints.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.config.model import NodeGroup, StackConfig
from core.hetzner.facts import NODE_GROUP_LABEL
from core.talos.spec import WorkerConfigSpec
from core.talos.worker_config import WorkerConfig, build_worker_config

#: Names a node's pool, like the autoscaler's own node templates do.
#: The autoscaler's scale-from-zero template carries it (FACTS §1.5): real nodes must too.
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


def pool_worker_spec(
    stack: StackConfig, group: NodeGroup, subnet: str, boot_image: str = ""
) -> WorkerConfigSpec:
    """One pool's spec: stack-wide Talos settings plus the pool's labels and taints.

    The legacy format hands one config to every pool, so it carries no pool labels.
    """
    legacy = stack.autoscaler.config_format == "legacy"
    return WorkerConfigSpec(
        talos_version=stack.talos.version,
        kubernetes_version=stack.talos.kubernetes_version,
        subnet=group.subnet or subnet,
        network_ip_range=stack.network.ip_range,
        node_labels=dict(stack.talos.node_labels)
        if legacy
        else {**stack.talos.node_labels, **pool_node_labels(group)},
        node_annotations={**stack.talos.node_annotations, **group.node_annotations},
        taints=[] if legacy else list(group.taints),
        registry_mirrors=stack.talos.registry_mirrors,
        boot_image=boot_image,
    )


def pool_node_labels(group: NodeGroup) -> dict[str, str]:
    """Labels a pool's nodes carry beyond ``talos.nodeLabels``.

    The same labels go into the Talos config (so real nodes have them) and into
    the autoscaler's node templates (so scale-from-zero simulation matches):
    the pool name, its region and server type (pods select on them), and the pool's own
    labels.
    """
    return {
        NODE_GROUP_LABEL: group.name,
        "topology.kubernetes.io/region": group.region,
        INSTANCE_TYPE_LABEL: group.instance_type,
        **group.labels,
    }


def render_worker_configs(
    stack: StackConfig, subnet: str, boot_images: Mapping[str, str] | None = None
) -> dict[str, WorkerConfig]:
    """The worker config of every pool (the base config must be readable); with each pool's
    boot image (``StackPlan.boot_images``) it carries the pool's generation label."""
    if stack.base_documents is None:
        raise ValueError("the base worker config is encrypted; it cannot be rendered offline")
    written: dict[str, str] = {}
    return {
        group.name: build_worker_config(
            stack.base_documents,
            pool_worker_spec(stack, group, subnet, (boot_images or {}).get(group.name, "")),
            source=f"of pool {group.name} (from {stack.worker_config_key})",
            written=written,
        )
        for group in stack.autoscaler.node_groups
    }
