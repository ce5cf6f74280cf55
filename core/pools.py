"""Each autoscaled pool as the plan decides it, once: the record everything after the plan
reads (the worker configs, the autoscaler's values and cluster config, render, the
components, the outputs) instead of the config's ``autoscaler.nodeGroups``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from core import resources
from core.config.model import NodeGroup, StackConfig, Taint
from core.hetzner.facts import NODE_GROUP_LABEL, Architecture
from core.resources import MANAGED_LABELS, Child
from core.talos.spec import WorkerConfigSpec

#: Names a node's server type, like the autoscaler's own node templates do.
#: The autoscaler's scale-from-zero template carries it (FACTS §1.5): real nodes must too.
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
#: ``expander: priority``: what a pool without ``priority`` gets (the lowest).
LOWEST_PRIORITY = 0


@dataclass(frozen=True)
class PlacementGroupPlan:
    """A pool's spread placement group (``placementGroup: spread``)."""

    pool: str
    #: Its Hetzner name (unique in the project, like the pool's name the servers carry).
    name: str
    labels: dict[str, str]
    type: str = "spread"

    @property
    def resource(self) -> Child:
        """The ``hcloud.PlacementGroup`` of ``PlacementGroups``."""
        return resources.placement_group(self.pool)


@dataclass(frozen=True)
class PoolPlan:
    """One pool of ``autoscaler.nodeGroups``, with what the plan derives from it."""

    name: str
    min_size: int
    max_size: int
    instance_type: str
    region: str
    architecture: Architecture
    #: Labels its nodes carry beyond ``talos.nodeLabels``: the pool, its region and server
    #: type (pods select on them), and its own ``labels``. The Talos config gives them to real
    #: nodes, the autoscaler's template to the node it simulates (scale from zero).
    node_labels: dict[str, str]
    #: Its own ``nodeAnnotations`` (over ``talos.nodeAnnotations`` in its worker config).
    node_annotations: dict[str, str]
    taints: tuple[Taint, ...]
    #: Hetzner labels of its servers (``serverLabels``).
    server_labels: dict[str, str]
    #: Its own cloud subnet; None: the stack's ``network.subnet``.
    subnet: str | None
    #: Its place in ``expander: priority`` (``LOWEST_PRIORITY`` when not set).
    priority: int
    placement_group: PlacementGroupPlan | None
    #: What its servers boot (Talos version, schematic, architecture): with its worker
    #: config, its generation.
    boot_image: str
    #: What its Talos worker config is built from, for nodes in ``network.subnet``.
    worker_spec: WorkerConfigSpec
    #: Its nodes' generation in ``network.subnet``; None while the base config is encrypted.
    generation: str | None = None

    @property
    def servers_record(self) -> Child:
        """Its ``PoolServers`` record (``AutoscaledServers``)."""
        return resources.pool_record(self.name)

    def worker_spec_in(self, subnet: str) -> WorkerConfigSpec:
        """Its spec once the stack's subnet is the network's output ``subnet``."""
        return replace(self.worker_spec, subnet=self.subnet or subnet)


def plan_pools(
    stack: StackConfig, boot_image_by_architecture: Mapping[Architecture, str]
) -> tuple[PoolPlan, ...]:
    """Every pool's record; its boot image is its architecture's snapshot. In the legacy
    format every pool boots one config (which carries no pool labels or taints), so each
    names every snapshot."""
    legacy = stack.autoscaler.config_format == "legacy"
    every = "; ".join(
        boot_image_by_architecture[arch] for arch in sorted(boot_image_by_architecture)
    )
    return tuple(
        _pool(stack, group, every if legacy else boot_image_by_architecture[group.architecture])
        for group in stack.autoscaler.node_groups
    )


def _pool(stack: StackConfig, group: NodeGroup, boot_image: str) -> PoolPlan:
    legacy = stack.autoscaler.config_format == "legacy"
    node_labels = {
        NODE_GROUP_LABEL: group.name,
        "topology.kubernetes.io/region": group.region,
        INSTANCE_TYPE_LABEL: group.instance_type,
        **group.labels,
    }
    talos = stack.talos
    spec = WorkerConfigSpec(
        talos=talos.version,
        kubernetes=talos.kubernetes_version,
        subnet=group.subnet or stack.network.subnet,
        network_ip_range=stack.network.ip_range,
        node_labels=dict(talos.node_labels) if legacy else {**talos.node_labels, **node_labels},
        node_annotations={**talos.node_annotations, **group.node_annotations},
        taints=[] if legacy else list(group.taints),
        registry_mirrors=talos.registry_mirrors,
        boot_image=boot_image,
    )
    return PoolPlan(
        name=group.name,
        min_size=group.min_size,
        max_size=group.max_size,
        instance_type=group.instance_type,
        region=group.region,
        architecture=group.architecture,
        node_labels=node_labels,
        node_annotations=dict(group.node_annotations),
        taints=tuple(group.taints),
        server_labels=dict(group.server_labels),
        subnet=group.subnet,
        priority=LOWEST_PRIORITY if group.priority is None else group.priority,
        placement_group=None
        if group.placement_group is None
        else PlacementGroupPlan(
            pool=group.name,
            name=f"{group.name}-{group.placement_group}",
            labels={**MANAGED_LABELS, NODE_GROUP_LABEL: group.name},
        ),
        boot_image=boot_image,
        worker_spec=spec,
    )
