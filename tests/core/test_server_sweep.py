"""Destroy that empties the project: the sweep of a pool's servers and Nodes, against the stand-ins.

The Hetzner API emulator holds more than a page of unrelated servers; the Kubernetes stand-in
holds the cluster's Nodes and the autoscaler's pods. Time is simulated (``FakeTime``) so that
timeouts of minutes run in milliseconds; the API calls are real HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hcloud import Client

from core.kubernetes.provider_id_setter import KubernetesApi
from core.server_sweep import (
    PoolTarget,
    SweepError,
    SweepLimits,
    SweepReport,
    sweep_pool,
)

from tests.stand_ins.hetzner_api import HetznerEmulator
from tests.stand_ins.kubernetes_api import KubernetesApiStandIn
from tests.support.image_build import fast_client
from tests.support.pool_servers import (
    AUTOSCALER_COMMAND,
    LABEL,
    NAMESPACE,
    NETWORK,
    POOL,
    autoscaled,
)

#: The emulator's deletes finish at once while the sweep's clock here is simulated.
pytestmark = pytest.mark.usefixtures("deletes_in_fake_time")

OTHER_NETWORK = 4712
TARGET = PoolTarget(pool=POOL, network_id=NETWORK, namespace=NAMESPACE)
LIMITS = SweepLimits()


@dataclass
class FakeTime:
    """A clock that only moves when the sweep sleeps; hooks run after every sleep."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)
    hooks: list[Callable[[FakeTime], None]] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        self.now += seconds
        for hook in self.hooks:
            hook(self)


def client(hetzner_api: HetznerEmulator) -> Client:
    return fast_client(hetzner_api.endpoint)


def kubernetes(kubernetes_api: KubernetesApiStandIn) -> KubernetesApi:
    return KubernetesApi.in_cluster(kubernetes_api.url, kubernetes_api.service_account_dir)


def sweep(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn | None,
    time: FakeTime,
    *,
    problem: str = "",
    lines: list[str] | None = None,
) -> SweepReport:
    return sweep_pool(
        client(hetzner_api),
        TARGET,
        kubernetes(kubernetes_api) if kubernetes_api else None,
        kubernetes_problem=problem,
        limits=LIMITS,
        log=(lines if lines is not None else []).append,
        clock=time.clock,
        sleep=time.sleep,
    )


def server_deletes(hetzner_api: HetznerEmulator) -> list[str]:
    return [path for method, path in hetzner_api.state.requests if method == "DELETE"]


def test_the_pools_servers_in_this_network_and_their_nodes_go_nothing_else(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    seeded = hetzner_api.seed_unrelated(60)
    registered = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-1a2b", "10.100.0.3")
    # A node that never got its providerID: matched by name and address, like the setter.
    unregistered = autoscaled(
        hetzner_api, kubernetes_api, f"{POOL}-3c4d", "10.100.0.4", provider_id=False
    )
    without_node = hetzner_api.add_server(
        f"{POOL}-5e6f", LABEL, private_ips={NETWORK: "10.100.0.5"}
    )
    # Must survive: the same pool label on another network (another stack), another pool in
    # this network, an unlabelled server in this network, a pool server on no network.
    other_network = autoscaled(
        hetzner_api, kubernetes_api, f"{POOL}-0707", "10.200.0.7", network=OTHER_NETWORK
    )
    other_pool = hetzner_api.add_server(
        "arm-fsn1-1", {"hcloud/node-group": "arm-fsn1"}, private_ips={NETWORK: "10.100.0.8"}
    )
    unlabelled = hetzner_api.add_server("bastion", {}, private_ips={NETWORK: "10.100.0.9"})
    half_created = hetzner_api.add_server(f"{POOL}-9999", LABEL)
    survivors = {other_network, other_pool, unlabelled, half_created}
    # Nodes that are not the swept servers': a name twin registered to another server,
    # bare metal, a control plane.
    kubernetes_api.add_node(f"{POOL}-5e6f", internal_ip="10.100.0.5", provider_id="hcloud://1")
    kubernetes_api.add_node("metal-1", internal_ip="192.168.1.20")
    kubernetes_api.add_node("cp-1", internal_ip="10.0.0.1")
    time = FakeTime()
    lines: list[str] = []

    report = sweep(hetzner_api, kubernetes_api, time, lines=lines)

    unrelated = {item for kind, item in seeded if kind == "server"}
    assert set(hetzner_api.state.servers) == survivors | unrelated
    assert hetzner_api.surviving(seeded) == seeded
    assert sorted(server.id for server in report.deleted) == sorted(
        [registered, unregistered, without_node]
    )
    assert sorted(kubernetes_api.state.nodes) == sorted(
        [f"{POOL}-0707", f"{POOL}-5e6f", "metal-1", "cp-1"]
    )
    assert kubernetes_api.provider_id(f"{POOL}-5e6f") == "hcloud://1"
    assert sorted(report.nodes_deleted) == [f"{POOL}-1a2b", f"{POOL}-3c4d"]
    assert report.nodes_left == [] and report.unchecked == ""
    assert sorted(server_deletes(hetzner_api)) == sorted(
        f"/v1/servers/{server}" for server in (registered, unregistered, without_node)
    )
    text = "\n".join(report.lines())
    assert f"pool {POOL}: deleted 3 server(s) attached to network {NETWORK}" in text
    assert (
        f"left alone 1 server(s) labelled hcloud/node-group={POOL} attached to no network" in text
    )
    assert f"`hcloud server delete {half_created}`" in text
    assert f"deleting server {POOL}-1a2b ({registered})" in lines
    # Nothing new within the settle time after the last deletion: done, with a bounded wait.
    assert LIMITS.settle <= time.now < 60


def test_a_server_whose_creation_was_in_flight_is_caught_by_listing_again(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    """The autoscaler's last POST /servers lands after the first empty listing."""
    first = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    listings: list[int] = []
    late: list[int] = []
    original = hetzner_api._get_servers

    def get_servers(parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        answer = original(parts, params, body)
        if not parts and params.get("page", "1") == "1":
            listings.append(len(answer[1]["servers"]))
            if listings[-2:] == [1, 0] and not late:  # the first empty listing
                late.append(
                    hetzner_api.add_server(
                        f"{POOL}-late", LABEL, private_ips={NETWORK: "10.100.0.4"}
                    )
                )
        return answer

    hetzner_api._get_servers = get_servers  # type: ignore[method-assign]
    report = sweep(hetzner_api, kubernetes_api, FakeTime())

    assert listings == [1, 0, 1, 0, 0]
    assert sorted(server.id for server in report.deleted) == sorted([first, *late])
    assert not any(server["labels"] == LABEL for server in hetzner_api.state.servers.values())


def test_servers_are_deleted_only_after_the_autoscaler_stopped(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    kubernetes_api.add_pod(NAMESPACE, "autoscaler-7d9f-x2", AUTOSCALER_COMMAND)
    # Another pool's autoscaler (after a pool was removed, the new pod runs without it).
    kubernetes_api.add_pod(
        NAMESPACE, "autoscaler-new", [*AUTOSCALER_COMMAND[:3], "--nodes=0:3:cax21:fsn1:arm"]
    )
    kubernetes_api.add_pod(NAMESPACE, "autoscaler-done", AUTOSCALER_COMMAND, phase="Succeeded")
    kubernetes_api.add_pod("elsewhere", "autoscaler-other-stack", AUTOSCALER_COMMAND)
    time = FakeTime()

    def uninstalled_after_30s(now: FakeTime) -> None:
        assert server in hetzner_api.state.servers or now.now >= 30
        if now.now >= 30:
            kubernetes_api.state.pods.pop((NAMESPACE, "autoscaler-7d9f-x2"), None)

    time.hooks.append(uninstalled_after_30s)
    lines: list[str] = []
    report = sweep(hetzner_api, kubernetes_api, time, lines=lines)

    assert server not in hetzner_api.state.servers
    assert report.unchecked == ""
    assert lines[0] == f"pool {POOL}: waiting for the autoscaler to stop (autoscaler-7d9f-x2)"


def test_an_autoscaler_that_keeps_running_fails_before_any_server_is_deleted(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    kubernetes_api.add_pod(NAMESPACE, "autoscaler-7d9f-x2", AUTOSCALER_COMMAND)
    time = FakeTime()

    with pytest.raises(SweepError) as caught:
        sweep(hetzner_api, kubernetes_api, time)

    assert caught.value.step == "wait for the autoscaler to stop"
    message = str(caught.value)
    assert "pod(s) autoscaler-7d9f-x2 in namespace cozy-cluster-autoscaler-hetzner" in message
    assert (
        f"`kubectl -n {NAMESPACE} scale deployment/cluster-autoscaler-hetzner-hetzner-cluster-"
        "autoscaler --replicas=0`" in message
    )
    assert "no server was deleted" in message
    assert server in hetzner_api.state.servers and server_deletes(hetzner_api) == []
    assert LIMITS.autoscaler_timeout <= time.now < LIMITS.autoscaler_timeout + 2 * LIMITS.poll


def test_failed_deletes_are_retried(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    hetzner_api.faults.server_delete_failures = 2
    report = sweep(hetzner_api, kubernetes_api, FakeTime())
    assert server not in hetzner_api.state.servers
    assert [each.id for each in report.deleted] == [server]
    assert len(server_deletes(hetzner_api)) == 3


def test_a_server_that_cannot_be_deleted_times_out_naming_it_and_the_command(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    stuck = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-stuck", "10.100.0.3")
    gone = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-gone", "10.100.0.4")
    original = hetzner_api._delete_servers

    def delete_servers(parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        if int(parts[0]) == stuck:
            return 500, {
                "error": {"code": "server_error", "message": "internal error", "details": {}}
            }
        return original(parts, params, body)

    hetzner_api._delete_servers = delete_servers  # type: ignore[method-assign]
    time = FakeTime()
    with pytest.raises(SweepError) as caught:
        sweep(hetzner_api, kubernetes_api, time)

    error = caught.value
    assert error.step == "delete servers"
    assert [server.id for server in error.left] == [stuck]
    message = str(error)
    assert f"still there after {LIMITS.delete_timeout:.0f}s" in message
    assert f"1 server(s) left in network {NETWORK} (billed until removed)" in message
    assert (
        f"{POOL}-stuck ({stuck}, running, Hetzner API error server_error: internal error)"
        in message
    )
    assert f"`hcloud server delete {stuck}`" in message
    assert f"`hcloud server list -l hcloud/node-group={POOL}`" in message
    # The server that went is reported, and its Node is deleted; the stuck one's Node stays.
    assert f"deleted 1 server(s) attached to network {NETWORK}: {POOL}-gone ({gone})" in message
    assert sorted(kubernetes_api.state.nodes) == [f"{POOL}-stuck"]
    assert gone not in hetzner_api.state.servers
    assert LIMITS.delete_timeout <= time.now < LIMITS.delete_timeout + 2 * LIMITS.poll
    # Bounded retries, not a hot loop: one delete per poll interval at most.
    assert len(server_deletes(hetzner_api)) <= LIMITS.delete_timeout / LIMITS.poll + 2


def test_a_delete_that_never_finishes_times_out(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    hetzner_api.action_seconds["delete_server"] = 10**9  # accepted, never done
    with pytest.raises(SweepError) as caught:
        sweep(hetzner_api, kubernetes_api, FakeTime())
    assert f"{POOL}-aaaa ({server}, deleting" in str(caught.value)
    assert len(server_deletes(hetzner_api)) == 1  # a delete under way is not sent again
    assert f"{POOL}-aaaa" in kubernetes_api.state.nodes


def test_a_server_already_deleted_answers_404_and_counts_as_gone(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    original = hetzner_api._delete_servers
    answers: list[int] = []

    def deleted_meanwhile(parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        hetzner_api.state.servers.pop(int(parts[0]), None)  # someone was faster
        status, payload = original(parts, params, body)
        answers.append(status)
        return status, payload

    hetzner_api._delete_servers = deleted_meanwhile  # type: ignore[method-assign]
    report = sweep(hetzner_api, kubernetes_api, FakeTime())
    assert answers == [404]
    assert [each.id for each in report.deleted] == [server]
    assert report.nodes_deleted == [f"{POOL}-aaaa"]


@pytest.mark.parametrize(
    ("status", "code"), [(403, "protected"), (403, "forbidden")], ids=["protected", "read-only"]
)
def test_an_error_no_retry_mends_fails_at_once(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn, status: int, code: str
) -> None:
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    hetzner_api._delete_servers = lambda *_: (  # type: ignore[method-assign]
        status,
        {"error": {"code": code, "message": "refused", "details": {}}},
    )
    time = FakeTime()
    with pytest.raises(SweepError) as caught:
        sweep(hetzner_api, kubernetes_api, time)
    assert f"Hetzner API error {code}: refused" in str(caught.value)
    assert [each.id for each in caught.value.left] == [server]
    assert time.now == 0  # no waiting for a timeout


def test_a_revoked_token_fails_at_once_naming_the_step(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    hetzner_api.valid_tokens = {"rotated"}
    with pytest.raises(
        SweepError, match="failed at step 'list servers': Hetzner API error unauthorized"
    ):
        sweep(hetzner_api, kubernetes_api, FakeTime())


def test_an_api_that_keeps_failing_to_list_times_out(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    hetzner_api._get_servers = lambda *_: (  # type: ignore[method-assign]
        503,
        {"error": {"code": "unavailable", "message": "service unavailable", "details": {}}},
    )
    time = FakeTime()
    with pytest.raises(SweepError) as caught:
        sweep(hetzner_api, kubernetes_api, time)
    assert (
        "failed at step 'delete servers': the server list could not be read (Hetzner API error "
        "unavailable: service unavailable); look for servers left with `hcloud server list -l "
        f"hcloud/node-group={POOL}`, then run `pulumi destroy` again"
    ) in str(caught.value)
    assert server in hetzner_api.state.servers
    assert LIMITS.delete_timeout <= time.now < LIMITS.delete_timeout + 2 * LIMITS.poll


def test_without_the_cluster_servers_go_and_nodes_are_reported_with_the_command(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    time = FakeTime()
    problem = (
        "the kubeconfig cannot be used: context 'oidc' logs in with an exec plugin (kubelogin)"
    )
    report = sweep(hetzner_api, None, time, problem=problem)

    assert server not in hetzner_api.state.servers
    assert report.nodes_left == [f"{POOL}-aaaa"]
    text = "\n".join(report.lines())
    assert f"could not check that the autoscaler stopped ({problem})" in text
    assert (
        f"Node(s) not deleted ({problem}): remove them with `kubectl delete node --ignore-not-found {POOL}-aaaa`"
        in text
    )
    # The autoscaler could not be seen to stop: late creations are waited for longer.
    assert time.now >= LIMITS.unchecked_settle


def test_a_node_that_cannot_be_deleted_is_reported_not_raised(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    api = kubernetes(kubernetes_api)
    delete_node = api.delete_node

    def refused(name: str) -> None:
        kubernetes_api.state.failures = [403]  # e.g. a kubeconfig user without that right
        delete_node(name)

    api.delete_node = refused  # type: ignore[method-assign]
    time = FakeTime()
    report = sweep_pool(
        client(hetzner_api), TARGET, api, limits=LIMITS, clock=time.clock, sleep=time.sleep
    )
    assert report.nodes_left == [f"{POOL}-aaaa"] and report.nodes_deleted == []
    assert ": 403 " in report.nodes_problem
    assert f"`kubectl delete node --ignore-not-found {POOL}-aaaa`" in "\n".join(report.lines())


def test_nothing_to_delete_is_quick_and_reads_no_nodes(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    hetzner_api.seed_unrelated(10)
    time = FakeTime()
    report = sweep(hetzner_api, kubernetes_api, time)
    assert report.deleted == [] and server_deletes(hetzner_api) == []
    assert kubernetes_api.count("GET") == 1  # the autoscaler's pods, no Node list
    assert time.now == LIMITS.settle
