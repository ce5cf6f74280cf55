"""The servers the autoscaler creates, deleted with the stack (``pulumi destroy``) or the pool.

They are no Pulumi resources, and a network's delete would only detach them (its subnet's
delete is refused while they are attached). So each pool gets a ``PoolServers`` record
(``server_sweep/provider.py``) whose delete removes that pool's servers in this stack's
network and their Nodes. The
program makes the autoscaler depend on this component and this component on the network:
destroy deletes the autoscaler first, then the servers, then the network and its subnets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

from components.server_sweep.provider import PoolServers
from core import resources
from core.plan import ServersPlan, StackPlan
from core.pools import PoolPlan


@dataclass(frozen=True)
class AutoscaledServersArgs:
    plan: ServersPlan
    #: A record per pool, named as the plan names it.
    pools: tuple[PoolPlan, ...]
    #: Wired from ``PrivateNetwork``: only servers attached to it are deleted.
    network_id: pulumi.Input[str]
    #: Where the autoscaler runs: the sweep waits until none of its pods manages the pool.
    namespace: pulumi.Input[str]
    #: ``hcloud:token``, stored as a secret for a destroy run without the stack's config.
    hcloud_token: pulumi.Input[str]
    #: Each spread pool's placement group: its record depends on it (deleted after the sweep).
    placement_groups: Mapping[str, pulumi.Resource] = field(default_factory=dict)

    @classmethod
    def from_plan(
        cls,
        plan: StackPlan,
        network_id: pulumi.Input[str],
        namespace: pulumi.Input[str],
        placement_groups: Mapping[str, pulumi.Resource] | None = None,
    ) -> AutoscaledServersArgs:
        return cls(
            plan.servers,
            plan.pools,
            network_id,
            namespace,
            plan.hcloud_token,
            placement_groups or {},
        )


class AutoscaledServers(pulumi.ComponentResource):
    """A ``PoolServers`` record per pool; pass the network in ``depends_on``."""

    def __init__(
        self, name: str, args: AutoscaledServersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(resources.AUTOSCALED_SERVERS.type, name, None, opts)
        token = pulumi.Output.secret(args.hcloud_token)
        for pool in args.pools:
            PoolServers(
                pool.servers_record.name(name),
                {
                    "pool": pool.name,
                    "network_id": args.network_id,
                    "namespace": args.namespace,
                    "keep_servers": args.plan.keep_servers,
                    "hcloud_token": token,
                },
                pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[args.placement_groups[pool.name]]
                    if pool.name in args.placement_groups
                    else None,
                ),
            )
        self.register_outputs({})
