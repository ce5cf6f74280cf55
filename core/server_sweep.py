"""Delete the servers the autoscaler created for one pool, then their Nodes; every wait bounded.

The autoscaler's servers are no Pulumi resources: Hetzner refuses to delete a subnet that
servers are attached to, and deleting the network detaches them, so they would keep running,
billed, outside any network. So before the network goes, this deletes the servers labelled
``hcloud/node-group=<pool>`` that are attached to this stack's network — never by name,
never a server on another network — in three bounded steps:

1. wait until no autoscaler pod in the cluster still manages the pool (``--nodes=…:<pool>``):
   an autoscaler that still runs would create new servers (``enforce-node-group-min-size``).
   When the cluster cannot be asked (an ``exec`` kubeconfig, no permission) this is skipped,
   and step 2 waits longer for late creations;
2. list, delete, wait for the delete actions, list again — until two listings ``settle``
   seconds apart find nothing, so a creation still in flight when the autoscaler stopped is
   caught too;
3. delete the Node objects of the deleted servers (``spec.providerID`` = ``hcloud://<id>``, or
   no providerID and the server's name and address, as the providerID setter matches them).

A Hetzner failure raises ``SweepError`` naming every server left and the commands to remove
it by hand; Nodes that cannot be deleted are reported with the ``kubectl`` command, without
failing (they cost nothing). Plain Python: ``provider.py`` wires it to Pulumi.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import requests
from hcloud import APIException, Client
from hcloud.actions import BoundAction
from hcloud.servers import BoundServer

from core.autoscaler.values import DEPLOYMENT_NAME
from core.hetzner.api import describe, is_transient
from core.hetzner.facts import NODE_GROUP_LABEL
from core.kubernetes.client import (
    PROVIDER_ID_PREFIX,
    ApiError,
    KubernetesApi,
    Server,
    in_pool,
    match,
    parse_server,
)
from core.waits import WaitTimeout, until

Log = Callable[[str], None]
Clock = Callable[[], float]
Sleep = Callable[[float], None]
#: What a Hetzner call may raise: an API error, or no answer (after the client's retries).
HetznerFailure = (APIException, requests.exceptions.RequestException)


@dataclass(frozen=True)
class PoolTarget:
    """One pool's servers in one network, and the namespace its autoscaler runs in."""

    pool: str
    network_id: int
    namespace: str

    @property
    def selector(self) -> str:
        return f"{NODE_GROUP_LABEL}={self.pool}"


@dataclass(frozen=True)
class SweepLimits:
    """Seconds; each wait ends with an error naming what is left, never a hang."""

    #: For the autoscaler's pods to go (Cozystack uninstalls a deleted Package later).
    autoscaler_timeout: float = 300.0
    #: For every server of the pool to be gone.
    delete_timeout: float = 600.0
    #: Between the two empty listings that end the sweep (the cluster showed no autoscaler).
    settle: float = 5.0
    #: The same when the cluster could not be asked whether the autoscaler still runs: longer
    #: than its 10 s loop, so a server it was still creating shows up.
    unchecked_settle: float = 60.0
    poll: float = 2.0


@dataclass(frozen=True)
class LeftServer:
    id: int
    name: str
    status: str
    error: str = ""

    def __str__(self) -> str:
        detail = f"{self.status}, {self.error}" if self.error else self.status
        return f"{self.name} ({self.id}, {detail})"


@dataclass
class SweepReport:
    """What a sweep did and left, in the words the ``pulumi`` output shows."""

    target: PoolTarget
    deleted: list[Server] = field(default_factory=list)
    nodes_deleted: list[str] = field(default_factory=list)
    nodes_left: list[str] = field(default_factory=list)
    #: Why Nodes were left (the cluster could not be reached, or refused).
    nodes_problem: str = ""
    #: Why the autoscaler's pods were not checked ("" when they were).
    unchecked: str = ""
    #: Pool-labelled servers attached to no network at all: never deleted, only reported.
    unattached: list[LeftServer] = field(default_factory=list)

    def lines(self) -> list[str]:
        pool = f"pool {self.target.pool}"
        lines: list[str] = []
        if self.unchecked:
            lines.append(
                f"{pool}: could not check that the autoscaler stopped ({self.unchecked}); "
                "waited for late server creations instead"
            )
        servers = ", ".join(f"{server.name} ({server.id})" for server in self.deleted)
        lines.append(
            f"{pool}: deleted {len(self.deleted)} server(s) attached to network "
            f"{self.target.network_id}{': ' + servers if servers else ''}"
        )
        if self.nodes_deleted:
            lines.append(f"{pool}: deleted Node(s) {', '.join(self.nodes_deleted)}")
        if self.nodes_left:
            lines.append(
                f"{pool}: Node(s) not deleted ({self.nodes_problem}): remove them with "
                f"`kubectl delete node --ignore-not-found {' '.join(self.nodes_left)}`"
            )
        if self.unattached:
            left = ", ".join(str(server) for server in self.unattached)
            ids = " ".join(str(server.id) for server in self.unattached)
            lines.append(
                f"{pool}: left alone {len(self.unattached)} server(s) labelled "
                f"{self.target.selector} attached to no network (an autoscaler stopped while "
                f"creating them, or another project's): {left}; if they are this stack's, "
                f"`hcloud server delete {ids}`"
            )
        return lines


class SweepError(RuntimeError):
    """A step of the sweep failed or timed out; names every server left and how to remove it."""

    def __init__(self, step: str, detail: str, left: list[LeftServer], report: SweepReport) -> None:
        super().__init__(step, detail)
        self.step = step
        self.detail = detail
        self.left = left
        self.report = report

    def __str__(self) -> str:
        # Built when shown: the Nodes of the servers that did go are deleted after the raise.
        target = self.report.target
        message = f"sweep of pool {target.pool} failed at step {self.step!r}: {self.detail}"
        if self.left:
            ids = " ".join(str(server.id) for server in self.left)
            message += (
                f"; {len(self.left)} server(s) left in network {target.network_id} (billed "
                f"until removed): {', '.join(str(server) for server in self.left)}. Remove "
                f"them with `hcloud server delete {ids}` (see them with `hcloud server list -l "
                f"{target.selector}`), then run `pulumi destroy` again"
            )
        elif self.step != "wait for the autoscaler to stop":
            message += (
                f"; look for servers left with `hcloud server list -l {target.selector}`, "
                "then run `pulumi destroy` again"
            )
        if self.report.deleted:
            message += "; meanwhile: " + "; ".join(self.report.lines())
        return message


def sweep_pool(
    client: Client,
    target: PoolTarget,
    kubernetes: KubernetesApi | None,
    *,
    kubernetes_problem: str = "",
    limits: SweepLimits | None = None,
    log: Log = lambda _: None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> SweepReport:
    """Steps 1-3 above; ``kubernetes`` is None (with why) when the cluster is out of reach."""
    limits = limits or SweepLimits()
    report = SweepReport(target)
    if kubernetes is None:
        report.unchecked = kubernetes_problem
    else:
        report.unchecked = _wait_for_autoscaler(
            kubernetes, target, limits, report, log, clock, sleep
        )
    settle = limits.unchecked_settle if report.unchecked else limits.settle
    try:
        _delete_servers(client, target, limits, settle, report, log, clock, sleep)
    except SweepError:
        # The Nodes of the servers that did go are deleted too, also when others were left.
        _delete_nodes(kubernetes, kubernetes_problem, report, log)
        raise
    _delete_nodes(kubernetes, kubernetes_problem, report, log)
    return report


def autoscaler_pods(kubernetes: KubernetesApi, target: PoolTarget) -> list[str]:
    """Pods in the autoscaler's namespace still running with ``--nodes=…:<pool>``."""
    namespace = urllib.parse.quote(target.namespace)
    return sorted(
        str(pod["metadata"]["name"])
        for pod in kubernetes.list_all(f"/api/v1/namespaces/{namespace}/pods")
        if (pod.get("status") or {}).get("phase") not in {"Succeeded", "Failed"}
        and _manages(pod, target.pool)
    )


def _manages(pod: dict[str, Any], pool: str) -> bool:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for argument in [*(container.get("command") or []), *(container.get("args") or [])]:
            text = str(argument)
            if text.startswith("--nodes=") and text.rsplit(":", 1)[-1] == pool:
                return True
    return False


def _wait_for_autoscaler(
    kubernetes: KubernetesApi,
    target: PoolTarget,
    limits: SweepLimits,
    report: SweepReport,
    log: Log,
    clock: Clock,
    sleep: Sleep,
) -> str:
    """Empty once no pod manages the pool; the reason when the cluster could not be asked."""
    running: list[str] = []
    waiting_logged = False

    def stopped() -> bool | None:
        nonlocal waiting_logged
        running[:] = autoscaler_pods(kubernetes, target)
        if running and not waiting_logged:
            log(f"pool {target.pool}: waiting for the autoscaler to stop ({', '.join(running)})")
            waiting_logged = True
        return None if running else True

    try:
        until(
            "the autoscaler to stop",
            limits.autoscaler_timeout,
            stopped,
            lambda _: limits.poll,
            clock=clock,
            sleep=sleep,
        )
    except ApiError as error:
        return str(error)
    except WaitTimeout:
        raise SweepError(
            "wait for the autoscaler to stop",
            f"after {limits.autoscaler_timeout:.0f}s pod(s) {', '.join(running)} in namespace "
            f"{target.namespace} still run the autoscaler for this pool, which would create "
            "new servers; no server was deleted. Stop it with `kubectl -n "
            f"{target.namespace} scale deployment/{DEPLOYMENT_NAME} --replicas=0`, then run "
            "`pulumi destroy` again",
            [],
            report,
        ) from None
    return ""


def _pool_servers(
    client: Client, target: PoolTarget
) -> tuple[list[BoundServer], list[BoundServer]]:
    """The pool's servers in the target network, and those attached to no network at all."""
    ours: list[BoundServer] = []
    unattached: list[BoundServer] = []
    for server in client.servers.get_all(label_selector=target.selector):
        if in_pool(_as_server(server), target.pool, target.network_id):
            ours.append(server)
        elif not server.private_net:
            unattached.append(server)
    return ours, unattached


def _delete_servers(
    client: Client,
    target: PoolTarget,
    limits: SweepLimits,
    settle: float,
    report: SweepReport,
    log: Log,
    clock: Clock,
    sleep: Sleep,
) -> None:
    """List, delete, wait, list again, until two listings ``settle`` apart find nothing."""
    deadline = clock() + limits.delete_timeout
    seen: dict[int, Server] = {}
    errors: dict[int, str] = {}
    left: list[LeftServer] = []
    list_error = ""
    empty_since: float | None = None

    def fail(step: str, detail: str) -> NoReturn:
        still_there = {server.id for server in left}
        report.deleted = [server for key, server in seen.items() if key not in still_there]
        raise SweepError(step, detail, left, report)

    while True:
        try:
            found, unattached = _pool_servers(client, target)
        except HetznerFailure as error:
            if not is_transient(error):  # a wrong or read-only token: no retry mends it
                fail("list servers", describe(error))
            list_error = describe(error)
        else:
            list_error = ""
            report.unattached = [_left(server) for server in unattached]
            left = [_left(server, errors.get(_id(server))) for server in found]
            now = clock()
            if not found:
                empty_since = now if empty_since is None else empty_since
                if now - empty_since >= settle or now >= deadline:
                    report.deleted = list(seen.values())
                    return
                sleep(min(settle - (now - empty_since), deadline - now))
                continue
            empty_since = None
            seen.update((_id(server), _as_server(server)) for server in found)
            if now < deadline:
                permanent = _delete_round(
                    client, found, deadline, errors, log, clock, sleep, limits
                )
                if permanent:
                    left = [
                        _left(server, errors.get(_id(server)))
                        for server in found
                        if _id(server) in errors or server.status == BoundServer.STATUS_DELETING
                    ]
                    fail("delete servers", permanent)
                sleep(limits.poll)
                continue  # list again: what is gone, what is left, what came meanwhile
        if clock() >= deadline:
            fail(
                "delete servers",
                f"the server list could not be read ({list_error})"
                if list_error
                else f"still there after {limits.delete_timeout:.0f}s",
            )
        sleep(limits.poll)


def _delete_round(
    client: Client,
    servers: list[BoundServer],
    deadline: float,
    errors: dict[int, str],
    log: Log,
    clock: Clock,
    sleep: Sleep,
    limits: SweepLimits,
) -> str:
    """Delete each server and wait for the actions; "" or the error no retry will mend."""
    actions: dict[int, BoundAction] = {}
    permanent = ""
    for server in servers:
        server_id = _id(server)
        if server.status == BoundServer.STATUS_DELETING:
            continue  # an earlier round's (or someone's) delete is under way
        try:
            actions[server_id] = client.servers.delete(server)
            log(f"deleting server {server.name} ({server_id})")
        except HetznerFailure as error:
            if isinstance(error, APIException) and error.code == "not_found":
                continue  # gone meanwhile
            errors[server_id] = describe(error)
            log(f"deleting server {server.name} ({server_id}) failed: {errors[server_id]}")
            if not is_transient(error):  # protected from deletion, a read-only token
                permanent = errors[server_id]

    def finished() -> bool | None:
        for server_id, action in list(actions.items()):
            try:
                action.reload()
            except HetznerFailure as error:
                errors[server_id] = f"its delete action could not be read: {describe(error)}"
                del actions[server_id]
                continue
            if action.status == "success":
                errors.pop(server_id, None)
                del actions[server_id]
            elif action.status == "error":
                failure = action.error
                reason = f"{failure['code']}: {failure['message']}" if failure else "no reason"
                errors[server_id] = f"delete action failed ({reason})"
                del actions[server_id]
        return None if actions else True

    if actions:
        try:
            until(
                "the delete actions",
                max(0.0, deadline - clock()),
                finished,
                lambda _: limits.poll,
                clock=clock,
                sleep=sleep,
            )
        except WaitTimeout:
            for server_id in actions:
                errors[server_id] = "its delete action was still running"
    return permanent


def _delete_nodes(
    kubernetes: KubernetesApi | None, problem: str, report: SweepReport, log: Log
) -> None:
    """Delete the Nodes of the deleted servers; what cannot be deleted is reported."""
    if not report.deleted:
        return
    names = sorted(server.name for server in report.deleted)
    if kubernetes is None:
        report.nodes_left, report.nodes_problem = names, problem
        return
    try:
        nodes = kubernetes.nodes()
    except ApiError as error:
        report.nodes_left, report.nodes_problem = names, f"the Nodes could not be listed: {error}"
        return
    by_id = {f"{PROVIDER_ID_PREFIX}{server.id}": server for server in report.deleted}
    by_name = {server.name: server for server in report.deleted}
    failures: list[str] = []
    for node in nodes:
        ours = node.provider_id in by_id if node.provider_id else match(node, by_name) is not None
        if not ours:
            continue
        try:
            kubernetes.delete_node(node.name)
        except ApiError as error:
            if error.status != 404:
                report.nodes_left.append(node.name)
                failures.append(str(error))
                continue
        report.nodes_deleted.append(node.name)
        log(f"deleted Node {node.name}")
    if failures:
        report.nodes_problem = "; ".join(failures)


def _as_server(server: BoundServer) -> Server:
    """The providerID setter's view of a server: id, name, pool, networks and every address."""
    public = server.public_net
    return parse_server(
        {
            "id": _id(server),
            "name": server.name,
            "labels": server.labels or {},
            "private_net": [
                {"network": private.network.id, "ip": private.ip, "alias_ips": private.alias_ips}
                for private in server.private_net or []
            ],
            "public_net": {
                "ipv4": {"ip": public.ipv4.ip} if public and public.ipv4 else None,
                "ipv6": {"ip": public.ipv6.ip} if public and public.ipv6 else None,
            },
        }
    )


def _left(server: BoundServer, error: str | None = None) -> LeftServer:
    return LeftServer(_id(server), str(server.name), str(server.status), error or "")


def _id(server: BoundServer) -> int:
    if server.id is None:
        raise RuntimeError("the Hetzner API answered a server without an id")
    return int(server.id)


@dataclass
class SweepPreview:
    """What ``sweep_pool`` would delete now for one pool, and why each matched; read only."""

    target: PoolTarget
    #: (server, why it matches) for the servers the sweep would delete.
    servers: list[tuple[str, str]] = field(default_factory=list)
    #: (Node, why it matches) for the Nodes of those servers.
    nodes: list[tuple[str, str]] = field(default_factory=list)
    #: (server, why it stays) for pool-labelled servers the sweep leaves alone.
    kept: list[tuple[str, str]] = field(default_factory=list)
    #: Why the Nodes could not be looked at ("" when they were).
    nodes_problem: str = ""

    def lines(self) -> list[str]:
        pool = f"pool {self.target.pool}"
        lines = [
            f"{pool}: would delete {len(self.servers)} server(s) and {len(self.nodes)} Node(s)"
        ]
        lines += [f"  server {server}: {why}" for server, why in self.servers]
        lines += [f"  Node {node}: {why}" for node, why in self.nodes]
        if self.nodes_problem:
            lines.append(f"  Nodes not looked at: {self.nodes_problem}")
        lines += [f"  left alone: server {server}: {why}" for server, why in self.kept]
        return lines


def preview_pool(
    client: Client,
    target: PoolTarget,
    kubernetes: KubernetesApi | None,
    kubernetes_problem: str = "",
) -> SweepPreview:
    """The servers and Nodes ``sweep_pool`` would delete for ``target`` now: the same matching
    (label, network; providerID, or name and address), without deleting anything."""
    preview = SweepPreview(target)
    ours: list[Server] = []
    for server in client.servers.get_all(label_selector=target.selector):
        networks = sorted(int(private.network.id or 0) for private in server.private_net or [])
        shown = f"{server.name} ({_id(server)}, {server.status})"
        if target.network_id in networks:
            ours.append(_as_server(server))
            preview.servers.append(
                (shown, f"labelled {target.selector} and attached to network {target.network_id}")
            )
        elif networks:
            where = ", ".join(map(str, networks))
            preview.kept.append((shown, f"attached to other network(s) {where}"))
        else:
            preview.kept.append((shown, "attached to no network (reported, never deleted)"))
    if not ours:
        return preview
    if kubernetes is None:
        preview.nodes_problem = kubernetes_problem
        return preview
    try:
        nodes = kubernetes.nodes()
    except ApiError as error:
        preview.nodes_problem = f"the Nodes could not be listed: {error}"
        return preview
    by_id = {f"{PROVIDER_ID_PREFIX}{server.id}": server for server in ours}
    by_name = {server.name: server for server in ours}
    for node in nodes:
        if node.provider_id:
            if node.provider_id in by_id:
                preview.nodes.append((node.name, f"providerID {node.provider_id}"))
        elif (matched := match(node, by_name)) is not None:
            preview.nodes.append(
                (node.name, f"no providerID; name and address of server {matched.id}")
            )
    return preview
