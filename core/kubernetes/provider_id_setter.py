"""Sets ``spec.providerID`` on the Nodes of servers the cluster-autoscaler created in Hetzner Cloud.

The autoscaler counts a node as registered only when its providerID is
``hcloud://<server-id>`` and deletes unregistered servers after
``--max-node-provision-time`` (15 minutes). On a Cozystack cluster Local CCM removes
the ``uninitialized`` taint within seconds, so no cloud controller ever sets it.

A node with an empty providerID belongs to a server when the server carries the
``hcloud/node-group`` label (the autoscaler labels every server it creates), has the
node's name, and one of the node's addresses is among the server's private or public
IPs. The API server lets providerID only go from empty to a value, so a set one is
never overwritten; nodes that match no such server (bare metal, control planes) are
never touched.

Deployed from a ConfigMap into an official ``python:alpine`` image with ``client.py`` (the
clients it shares with the node controller), each at its path here, and run as
``python -m core.kubernetes.provider_id_setter`` in the mount: standard library only. In the
cluster it uses its ServiceAccount (token and CA at the standard paths,
``KUBERNETES_SERVICE_HOST``/``_PORT``) and ``HCLOUD_TOKEN`` (``HCLOUD_ENDPOINT``
overrides the API URL). ``PROVIDER_ID_SETTER_*`` variables exist for tests.

Request budget: one node list per loop (every 10 s); the Hetzner server list only
when a node without providerID is due, and a node that matched nothing is looked at
again after 30 s, then ever less often (at most every 15 min). API errors back off
exponentially up to 5 min. ``GET /healthz`` answers 200 while the loop runs on time.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.kubernetes.client import (
    LIVENESS_GRACE_SECONDS,
    PROVIDER_ID_PREFIX,
    SERVICE_ACCOUNT_DIR,
    ApiError,
    HetznerApi,
    KubernetesApi,
    Node,
    PodAccess,
    match,
    serve_health,
)

LOOP_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 300.0
FIRST_RECHECK_SECONDS = 30.0
MAX_RECHECK_SECONDS = 900.0

log = logging.getLogger("provider-id-setter")


@dataclass(frozen=True)
class Settings:
    hcloud_token: str
    hcloud_endpoint: str
    kubernetes_url: str
    service_account_dir: Path
    loop_seconds: float
    health_port: int

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Settings:
        access = PodAccess.from_environment(env)
        return cls(
            hcloud_token=access.hcloud_token,
            hcloud_endpoint=access.hcloud_endpoint,
            kubernetes_url=access.kubernetes_url,
            service_account_dir=Path(
                env.get("PROVIDER_ID_SETTER_SERVICE_ACCOUNT_DIR", SERVICE_ACCOUNT_DIR)
            ),
            loop_seconds=float(env.get("PROVIDER_ID_SETTER_LOOP_SECONDS", LOOP_SECONDS)),
            health_port=int(env.get("PROVIDER_ID_SETTER_HEALTH_PORT", "8080")),
        )


@dataclass
class _Pending:
    """A node without providerID that matched no server yet, and when to look again."""

    due: float
    delay: float


@dataclass
class ProviderIdSetter:
    """The loop's state; ``run_once`` does one pass and says how long to sleep."""

    hetzner: HetznerApi
    kubernetes: KubernetesApi
    loop_seconds: float = LOOP_SECONDS
    failures: int = 0
    #: /healthz fails after this (monotonic) time: the loop is overdue.
    alive_until: float = 0.0
    _pending: dict[str, _Pending] = field(default_factory=dict)

    def run_once(self, now: float) -> float:
        try:
            self._pass(now)
        except ApiError as error:
            self.failures += 1
            delay = min(self.loop_seconds * 2**self.failures, MAX_BACKOFF_SECONDS)
            log.error("%s; retrying in %.0f s", error, delay)
        else:
            self.failures = 0
            delay = self.loop_seconds
        self.alive_until = now + delay + LIVENESS_GRACE_SECONDS
        return delay

    def _pass(self, now: float) -> None:
        candidates = [node for node in self.kubernetes.nodes() if not node.provider_id]
        current = {node.uid for node in candidates}
        for uid in list(self._pending):
            if uid not in current:  # registered, or gone
                del self._pending[uid]
        due = [
            node
            for node in candidates
            if node.uid not in self._pending or self._pending[node.uid].due <= now
        ]
        if not due:
            return
        servers = {server.name: server for server in self.hetzner.autoscaler_servers()}
        failed: list[ApiError] = []
        for node in due:
            server = match(node, servers)
            if server is None:
                self._postpone(node, now)
                continue
            provider_id = f"{PROVIDER_ID_PREFIX}{server.id}"
            try:
                self.kubernetes.set_provider_id(node, provider_id)
            except ApiError as error:  # the other nodes still get theirs
                failed.append(error)
                continue
            self._pending.pop(node.uid, None)
            log.info("node %s: spec.providerID set to %s", node.name, provider_id)
        if failed:
            for later in failed[1:]:
                log.error("%s", later)
            raise failed[0]

    def _postpone(self, node: Node, now: float) -> None:
        previous = self._pending.get(node.uid)
        delay = FIRST_RECHECK_SECONDS if previous is None else previous.delay * 2
        delay = min(delay, MAX_RECHECK_SECONDS)
        self._pending[node.uid] = _Pending(due=now + delay, delay=delay)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )
    # PID 1 in a container ignores SIGTERM without a handler: exit promptly instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    settings = Settings.from_environment(os.environ)
    setter = ProviderIdSetter(
        HetznerApi(settings.hcloud_endpoint, settings.hcloud_token),
        KubernetesApi.in_cluster(settings.kubernetes_url, settings.service_account_dir),
        loop_seconds=settings.loop_seconds,
    )
    setter.alive_until = time.monotonic() + LIVENESS_GRACE_SECONDS
    serve_health(setter, settings.health_port, time.monotonic)
    log.info(
        "watching nodes without spec.providerID every %.0f s (Hetzner API %s)",
        settings.loop_seconds,
        settings.hcloud_endpoint,
    )
    while True:
        time.sleep(setter.run_once(time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
