"""The spread placement groups of the pools that ask for one (``placementGroup: spread``).

A spread group puts each of its servers on a different physical host; the autoscaler
creates a pool's servers in the group its cluster config names (``nodeConfigs.<pool>
.placementGroup``, the group's id from here). Each pool's ``PoolServers`` record depends
on its group, so destroy sweeps the pool's servers before it deletes the group.
"""

from __future__ import annotations

import pulumi
import pulumi_hcloud as hcloud

from core import resources
from core.pools import PlacementGroupPlan


class PlacementGroups(pulumi.ComponentResource):
    """An ``hcloud.PlacementGroup`` per planned group, labelled like the network."""

    #: Each group, by pool (for the pools' records to depend on).
    groups: dict[str, hcloud.PlacementGroup]
    #: The group id of each spread pool (the cluster config names it).
    ids: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        args: tuple[PlacementGroupPlan, ...],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(resources.PLACEMENT_GROUPS.type, name, None, opts)
        self.groups = {
            group.pool: hcloud.PlacementGroup(
                group.resource.name(name),
                name=group.name,
                type=group.type,
                labels=group.labels,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for group in args
        }
        self.ids = pulumi.Output.all(**{pool: group.id for pool, group in self.groups.items()})
        self.register_outputs({"placementGroupIds": self.ids})
