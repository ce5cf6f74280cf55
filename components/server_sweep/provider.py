"""One pool's autoscaled servers as a Pulumi resource whose delete sweeps them.

Nothing is created: the resource records the pool, this stack's network and the
autoscaler's namespace. Its delete runs ``sweep.sweep_pool`` — on ``pulumi destroy``
after the autoscaler is gone and before the network (the program orders them by
dependencies), and at the end of a ``pulumi up`` that removed the pool from the stack,
after the autoscaler was updated. A record whose ``keep_servers`` is true
(``autoscaler.keepServersOnDestroy``) deletes nothing.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    UpdateResult,
)

from components.configured_provider import ConfiguredProvider, log_line
from core.hetzner.access import current_hetzner_access
from core.hetzner.api import ApiClient
from core.kubernetes.kubeconfig import KubeconfigError, kubernetes_access
from core.server_sweep import PoolTarget, SweepLimits, sweep_pool

#: Kept in state (as a secret) so that a destroy without the stack's token still works.
TOKEN = "hcloud_token"
#: Another network: the new record is created, and deleting the old one sweeps the old network.
REPLACE_ON = ("pool", "network_id")
UPDATE_IN_PLACE = ("namespace", "keep_servers", TOKEN)


class PoolServersProvider(ConfiguredProvider):
    """create and update record; delete sweeps the pool's servers and Nodes."""

    #: Class-level, so the limits of the code that runs apply, not those pickled in state.
    limits: ClassVar[SweepLimits] = SweepLimits()

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['network_id']}/{props['pool']}", outs=dict(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in REPLACE_ON if olds.get(key) != news.get(key)]
        updates = [key for key in UPDATE_IN_PLACE if olds.get(key) != news.get(key)]
        return DiffResult(
            changes=bool(replaces or updates), replaces=replaces, delete_before_replace=False
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=dict(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=props)  # a record: nothing to look up

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        target = PoolTarget(
            pool=props["pool"], network_id=int(props["network_id"]), namespace=props["namespace"]
        )
        if props.get("keep_servers"):
            log_line(
                f"pool {target.pool}: servers kept (autoscaler.keepServersOnDestroy); list them "
                f"with `hcloud server list -l {target.selector}`"
            )
            return
        access = current_hetzner_access(self.stack_config, props.get(TOKEN))
        try:
            kubernetes = kubernetes_access(self.stack_config, os.environ)
        except KubeconfigError as error:
            api, problem = None, f"the kubeconfig cannot be used: {error}"
        else:
            api, problem = kubernetes.api, ""
        report = sweep_pool(
            ApiClient(access.token, access.endpoint),
            target,
            api,
            kubernetes_problem=problem,
            limits=self.limits,
            log=log_line,
        )
        for line in report.lines():
            log_line(line)


class PoolServers(Resource, module="autoscaler", name="PoolServers"):
    """The record of one pool; deleting it deletes the pool's servers in the network."""

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        secret_token = pulumi.ResourceOptions(additional_secret_outputs=[TOKEN])
        super().__init__(
            PoolServersProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret_token)
        )
