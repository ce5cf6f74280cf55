"""Replaces autoscaled nodes that booted an outdated generation of their pool, one drain at a time.

Every pool's worker config labels its nodes ``hcloud-talos-autoscaler/generation=<hash>`` (a
short hash of what the node boots: the pool's worker config and the Talos image). When the
stack changes that (a new Talos or Kubernetes version, schematic, worker config), running nodes
keep the old one until they are replaced; this loop replaces them:

- only a node it can prove is one of this stack's pool's servers: a server labelled
  ``hcloud/node-group=<pool>`` of a configured pool, attached to this stack's network, with
  the node's name and one of its addresses (``provider_id_setter.in_pool`` and ``match``, the
  proof the destroy sweep and the providerID setter use), and the server's id when the node
  has a providerID. Bare metal, control planes and other stacks' nodes are never touched,
  nor nodes someone else cordoned;
- at most ``maxUnavailable`` nodes of the stack drained at once: cordon (annotated, so a
  restarted controller resumes), evict every pod through the Eviction API (policy/v1: the API
  server refuses with 429 while a PodDisruptionBudget allows no disruption; retried every
  pass), DaemonSet and mirror pods skipped; a pod no controller owns is never evicted (it
  would be lost; ``kubectl drain`` refuses it too): the drain is given up at once. When the
  node holds nothing more, delete its Hetzner server, then the Node. The autoscaler creates a
  replacement from the current config when the evicted pods need one;
- a drain that has not finished within ``drainTimeoutSeconds`` is given up: the node is
  uncordoned, annotated, reported (a log line and a Warning Event on the Node) and left for
  ``retryFailedSeconds`` while the others go on.

Deployed from a ConfigMap with ``client.py`` (the clients it shares with the providerID
setter) and ``rollout.py``, each at its path here, into an official ``python:alpine`` image
(``python -m core.kubernetes.node_controller`` in the mount): standard library only.
Its settings are a JSON file (the ConfigMap's ``config.json``: ``networkId``, ``pools``
(pool -> current generation), ``strategy`` (``replace`` or ``none``), ``maxUnavailable``,
``drainTimeoutSeconds``), read again every pass, so a new generation needs no restart.
``HCLOUD_TOKEN`` must be allowed to delete servers.

``GET /healthz`` (port 8080) answers 200 while the loop runs on time.

Request budget: one Node list per pass (every 60 s while nothing is to be done); the Hetzner
server list only when an outdated node is to be proven (again after 15 minutes at most while
it waits); while draining, one pass every 10 s: a pod list per drained node and one eviction
per pod still on it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.kubernetes.client import (
    LIVENESS_GRACE_SECONDS,
    NODE_GROUP_LABEL,
    PROVIDER_ID_PREFIX,
    SERVICE_ACCOUNT_DIR,
    ApiError,
    HetznerApi,
    KubernetesApi,
    PodAccess,
    Server,
    in_pool,
    match,
    parse_node,
    request_json,
    serve_health,
)
from core.kubernetes.rollout import (
    DRAIN_FAILED_ANNOTATION,
    DRAINING_ANNOTATION,
    GENERATION_LABEL,
    RolloutConfig,
)

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
COMPONENT = "hcloud-talos-autoscaler-node-controller"
DEFAULT_CONFIG_FILE = "/etc/node-controller/config.json"
IDLE_SECONDS = 60.0
DRAIN_LOOP_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 300.0
#: An outdated node that could not be proven to be the stack's is looked at again after this.
UNPROVEN_RECHECK_SECONDS = 900.0
#: A node whose drain was given up is tried again after this.
RETRY_FAILED_SECONDS = 3600.0
#: Where Node events go (``kubectl describe node`` shows them).
EVENT_NAMESPACE = "default"

log = logging.getLogger("node-controller")


@dataclass(frozen=True)
class PoolNode:
    """What the controller reads of a Node."""

    name: str
    uid: str
    provider_id: str
    pool: str
    generation: str
    unschedulable: bool
    draining_since: float | None
    drain_failed: str
    created: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> PoolNode:
        metadata = raw.get("metadata") or {}
        labels = metadata.get("labels") or {}
        annotations = metadata.get("annotations") or {}
        since = annotations.get(DRAINING_ANNOTATION)
        return cls(
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            provider_id=str((raw.get("spec") or {}).get("providerID") or ""),
            pool=str(labels.get(NODE_GROUP_LABEL, "")),
            generation=str(labels.get(GENERATION_LABEL, "")),
            unschedulable=bool((raw.get("spec") or {}).get("unschedulable")),
            draining_since=_parse_time(since) if since else None,
            drain_failed=str(annotations.get(DRAIN_FAILED_ANNOTATION, "")),
            created=str(metadata.get("creationTimestamp", "")),
            raw=raw,
        )

    @property
    def failed_at(self) -> float | None:
        """When its last drain was given up (known after a restart too); None if never."""
        stamp = self.drain_failed.split(": ", 1)[0]
        return _parse_time(stamp) if stamp else None


def _parse_time(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _timestamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def prove(node: PoolNode, servers: list[Server], config: RolloutConfig) -> Server | None:
    """The node's server when it is one of this stack's pools' (see the module), else None."""
    owned = {
        server.name: server
        for server in servers
        if server.pool in config.pools and in_pool(server, server.pool, config.network_id)
    }
    server = match(parse_node(node.raw), owned)
    if server is None:
        return None
    if node.pool and node.pool != server.pool:
        return None  # the node says another pool than its server: not ours to judge
    if node.provider_id and node.provider_id != f"{PROVIDER_ID_PREFIX}{server.id}":
        return None
    return server


def outdated(node: PoolNode, config: RolloutConfig) -> bool:
    """A node of a configured pool whose generation is not the pool's current one.

    Judged by the node's own pool label here; ``prove`` then checks the server.
    """
    current = config.pools.get(node.pool)
    return current is not None and node.generation != current


@dataclass(frozen=True)
class EvictablePod:
    namespace: str
    name: str
    terminating: bool
    #: A controller (ReplicaSet, StatefulSet, Job, ...) recreates it elsewhere.
    managed: bool = True


def pods_to_evict(pods: Sequence[Mapping[str, Any]]) -> list[EvictablePod]:
    """The node's pods a drain must move: not DaemonSet or mirror pods, not finished ones."""
    found: list[EvictablePod] = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if MIRROR_POD_ANNOTATION in (metadata.get("annotations") or {}):
            continue
        owners = metadata.get("ownerReferences") or []
        if any(owner.get("kind") == "DaemonSet" and owner.get("controller") for owner in owners):
            continue
        if (pod.get("status") or {}).get("phase") in {"Succeeded", "Failed"}:
            continue
        found.append(
            EvictablePod(
                str(metadata.get("namespace", "")),
                str(metadata.get("name", "")),
                bool(metadata.get("deletionTimestamp")),
                any(owner.get("controller") for owner in owners),
            )
        )
    return found


class ClusterApi:
    """The calls a drain makes, on the providerID setter's Kubernetes client."""

    def __init__(self, kubernetes: KubernetesApi) -> None:
        self.kubernetes = kubernetes

    def nodes(self) -> list[PoolNode]:
        return [PoolNode.parse(raw) for raw in self.kubernetes.list_all("/api/v1/nodes")]

    def patch_node(self, name: str, patch: dict[str, Any]) -> bool:
        """Merge-patch the Node; False when it is gone."""
        try:
            self.kubernetes.request(
                "PATCH",
                f"/api/v1/nodes/{urllib.parse.quote(name)}",
                body=patch,
                content_type="application/merge-patch+json",
            )
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def delete_node(self, name: str) -> None:
        try:
            self.kubernetes.delete_node(name)
        except ApiError as error:
            if error.status != 404:
                raise

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        selector = urllib.parse.quote(f"spec.nodeName={node}")
        return self.kubernetes.list_all(f"/api/v1/pods?fieldSelector={selector}")

    def evict(self, pod: EvictablePod) -> str:
        """``evicted``, ``gone``, or ``refused`` (429: a PodDisruptionBudget allows none now)."""
        namespace, name = urllib.parse.quote(pod.namespace), urllib.parse.quote(pod.name)
        try:
            self.kubernetes.request(
                "POST",
                f"/api/v1/namespaces/{namespace}/pods/{name}/eviction",
                body={
                    "apiVersion": "policy/v1",
                    "kind": "Eviction",
                    "metadata": {"name": pod.name, "namespace": pod.namespace},
                },
            )
        except ApiError as error:
            if error.status == 404:
                return "gone"
            if error.status == 429:
                return "refused"
            raise
        return "evicted"

    def event(self, node: PoolNode, kind: str, reason: str, message: str, now: float) -> None:
        """A core/v1 Event on the Node (``kubectl describe node`` and ``get events`` show it)."""
        stamp = _timestamp(now)
        self.kubernetes.request(
            "POST",
            f"/api/v1/namespaces/{EVENT_NAMESPACE}/events",
            body={
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{node.name}.", "namespace": EVENT_NAMESPACE},
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": node.name,
                    "uid": node.uid,
                },
                "reason": reason,
                "message": message,
                "type": kind,
                "source": {"component": COMPONENT},
                "reportingComponent": COMPONENT,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            },
        )


class ServerApi(HetznerApi):
    """The providerID setter's Hetzner client, and the one call that needs a read/write token."""

    def delete_server(self, server_id: int) -> None:
        try:
            request_json(
                "Hetzner API", "DELETE", f"{self.endpoint}/servers/{server_id}", self.token
            )
        except ApiError as error:
            if error.status != 404:  # gone already
                raise


@dataclass
class NodeController:
    """The loop's state; ``run_once`` does one pass and says how long to sleep."""

    hetzner: ServerApi
    cluster: ClusterApi
    read_config: Callable[[], RolloutConfig]
    #: Seconds between passes while a drain is under way, and while none is.
    drain_loop_seconds: float = DRAIN_LOOP_SECONDS
    idle_seconds: float = IDLE_SECONDS
    failures: int = 0
    #: /healthz fails after this (wall-clock) time: the loop is overdue.
    alive_until: float = 0.0
    #: Node uid -> when an unproven or given-up node is looked at again.
    _hold: dict[str, float] = field(default_factory=dict)
    #: Node uid -> its server, proven when its drain began.
    _servers: dict[str, Server] = field(default_factory=dict)

    def run_once(self, now: float) -> float:
        try:
            busy = self._pass(now)
        except (ApiError, OSError, ValueError, KeyError) as error:
            self.failures += 1
            delay = min(self.drain_loop_seconds * 2**self.failures, MAX_BACKOFF_SECONDS)
            log.error("%s; retrying in %.0f s", error, delay)
        else:
            self.failures = 0
            delay = self.drain_loop_seconds if busy else self.idle_seconds
        self.alive_until = now + delay + LIVENESS_GRACE_SECONDS
        return delay

    def _pass(self, now: float) -> bool:
        """One look at every node; True while a drain is under way."""
        config = self.read_config()
        nodes = self.cluster.nodes()
        present = {node.uid for node in nodes}
        for known in (self._hold, self._servers):
            for uid in [uid for uid in known if uid not in present]:
                del known[uid]  # the node went (scaled down, replaced, deleted by hand)
        draining = [node for node in nodes if node.draining_since is not None]
        if draining:
            servers = self._servers_for(draining)
            for node in draining:
                self._drain(node, servers, config, now)
        if config.strategy != "replace":
            if draining:
                log.info("strategy none: no new drain begins")
            return bool(draining)
        slots = config.max_unavailable - len(draining)
        waiting = sorted(
            (
                node
                for node in nodes
                if node.draining_since is None
                and outdated(node, config)
                and self._hold.get(node.uid, 0.0) <= now
                and (node.failed_at is None or node.failed_at + RETRY_FAILED_SECONDS <= now)
            ),
            key=lambda node: (node.created, node.name),
        )
        if slots <= 0 or not waiting:
            return bool(draining)
        servers = self.hetzner.autoscaler_servers()
        began = False
        for node in waiting:
            if slots <= 0:
                break
            if node.unschedulable:
                self._hold[node.uid] = now + UNPROVEN_RECHECK_SECONDS
                log.info(
                    "node %s (pool %s, generation %s, current %s): cordoned by someone else; "
                    "left alone",
                    node.name,
                    node.pool,
                    node.generation or "(none)",
                    config.pools[node.pool],
                )
                continue
            server = prove(node, servers, config)
            if server is None:
                self._hold[node.uid] = now + UNPROVEN_RECHECK_SECONDS
                log.info(
                    "node %s: labelled pool %s, generation %s (current %s), but no server of "
                    "this stack's pool in network %s has its name and address; left alone",
                    node.name,
                    node.pool,
                    node.generation or "(none)",
                    config.pools[node.pool],
                    config.network_id,
                )
                continue
            if self._begin(node, server, config, now):
                slots -= 1
                began = True
        return bool(draining) or began

    def _servers_for(self, draining: list[PoolNode]) -> list[Server]:
        if all(node.uid in self._servers for node in draining):
            return list(self._servers.values())
        return self.hetzner.autoscaler_servers()  # resumed after a restart

    def _begin(self, node: PoolNode, server: Server, config: RolloutConfig, now: float) -> bool:
        """Cordon the node and mark its drain; False when it went meanwhile."""
        current = config.pools[node.pool]
        cordoned = self.cluster.patch_node(
            node.name,
            {
                "metadata": {
                    "annotations": {
                        DRAINING_ANNOTATION: _timestamp(now),
                        DRAIN_FAILED_ANNOTATION: None,
                    }
                },
                "spec": {"unschedulable": True},
            },
        )
        if not cordoned:
            log.info("node %s: gone before its drain began", node.name)
            return False
        self._servers[node.uid] = server
        log.info(
            "node %s (pool %s, server %s): generation %s, current %s: cordoned, draining",
            node.name,
            node.pool,
            server.id,
            node.generation or "(none)",
            current,
        )
        self.cluster.event(
            node,
            "Normal",
            "RolloutDraining",
            f"generation {node.generation or '(none)'} is outdated (pool {node.pool} boots "
            f"{current}): draining, then deleting server {server.id}",
            now,
        )
        return True

    def _drain(
        self, node: PoolNode, servers: list[Server], config: RolloutConfig, now: float
    ) -> None:
        if not outdated(node, config):
            self._give_up(node, "its generation is its pool's current one again", now, config)
            return
        server = self._servers.get(node.uid) or prove(node, servers, config)
        if server is None:  # no longer provable (its server went): give the node back
            self._give_up(node, "its server is no longer this stack's pool's", now, config)
            return
        self._servers[node.uid] = server
        pods = pods_to_evict(self.cluster.pods_on(node.name))
        started = node.draining_since if node.draining_since is not None else now
        if not pods:
            try:
                self.hetzner.delete_server(server.id)
            except ApiError as error:
                # A read-only token or a delete protection is not mended by retrying.
                permanent = error.status in {401, 403}
                if permanent or now - started >= config.drain_timeout:
                    self._give_up(node, f"its server could not be deleted: {error}", now, config)
                    return
                raise
            self._replace(node, server, config)
            return
        unmanaged = [pod for pod in pods if not pod.managed and not pod.terminating]
        if unmanaged:  # as kubectl drain without --force: an evicted one would be lost
            names = ", ".join(f"{pod.namespace}/{pod.name}" for pod in unmanaged)
            self._give_up(node, f"pods no controller would recreate: {names}", now, config)
            return
        if now - started >= config.drain_timeout:
            refused = ", ".join(f"{pod.namespace}/{pod.name}" for pod in pods)
            self._give_up(
                node,
                f"drain did not finish within {config.drain_timeout:.0f} s; pods left: {refused}",
                now,
                config,
            )
            return
        for pod in pods:
            if pod.terminating:
                continue  # evicted; its grace period runs
            outcome = self.cluster.evict(pod)
            if outcome == "refused":
                log.info(
                    "node %s: eviction of %s/%s refused (a PodDisruptionBudget allows no "
                    "disruption now); retrying",
                    node.name,
                    pod.namespace,
                    pod.name,
                )
            elif outcome == "evicted":
                log.info("node %s: evicted %s/%s", node.name, pod.namespace, pod.name)

    def _replace(self, node: PoolNode, server: Server, config: RolloutConfig) -> None:
        """Drained and its server deleted: delete the Node (a failure is retried next pass,
        when the server's delete answers 404)."""
        log.info(
            "node %s (pool %s): drained; deleted server %s (generation %s, current %s)",
            node.name,
            node.pool,
            server.id,
            node.generation or "(none)",
            config.pools.get(node.pool, "(pool removed)"),
        )
        self.cluster.delete_node(node.name)
        self._servers.pop(node.uid, None)
        log.info("node %s: deleted; the autoscaler replaces it when pods need one", node.name)

    def _give_up(self, node: PoolNode, reason: str, now: float, config: RolloutConfig) -> None:
        present = self.cluster.patch_node(
            node.name,
            {
                "metadata": {
                    "annotations": {
                        DRAINING_ANNOTATION: None,
                        DRAIN_FAILED_ANNOTATION: f"{_timestamp(now)}: {reason}",
                    }
                },
                "spec": {"unschedulable": None},
            },
        )
        self._servers.pop(node.uid, None)
        if not present:
            return
        self._hold[node.uid] = now + RETRY_FAILED_SECONDS
        log.warning(
            "node %s (pool %s, generation %s, current %s): %s; uncordoned and left, tried again "
            "in %.0f min",
            node.name,
            node.pool,
            node.generation or "(none)",
            config.pools.get(node.pool, "(pool removed)"),
            reason,
            RETRY_FAILED_SECONDS / 60,
        )
        self.cluster.event(node, "Warning", "RolloutDrainFailed", f"{reason}; uncordoned", now)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    env = os.environ
    access = PodAccess.from_environment(env)
    config_file = Path(env.get("NODE_CONTROLLER_CONFIG", DEFAULT_CONFIG_FILE))
    controller = NodeController(
        ServerApi(access.hcloud_endpoint, access.hcloud_token),
        ClusterApi(
            KubernetesApi.in_cluster(
                access.kubernetes_url,
                Path(env.get("NODE_CONTROLLER_SERVICE_ACCOUNT_DIR", SERVICE_ACCOUNT_DIR)),
            )
        ),
        lambda: RolloutConfig.read(config_file),
    )
    if env.get("NODE_CONTROLLER_LOOP_SECONDS"):  # tests: both loops faster
        controller.drain_loop_seconds = controller.idle_seconds = float(
            env["NODE_CONTROLLER_LOOP_SECONDS"]
        )
    controller.alive_until = time.time() + LIVENESS_GRACE_SECONDS
    serve_health(controller, int(env.get("NODE_CONTROLLER_HEALTH_PORT", "8080")), time.time)
    log.info("replacing outdated autoscaled nodes as %s says", config_file)
    while True:
        time.sleep(controller.run_once(time.time()))


if __name__ == "__main__":
    sys.exit(main())
