"""The node controller against the Hetzner API emulator and the Kubernetes API stand-in."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.autoscaler.manifests import (
    CONTROLLER_CONFIG_FILE,
    CONTROLLER_DIR,
    node_controller_manifests,
)
from core.kubernetes.node_controller import (
    DRAIN_FAILED_ANNOTATION,
    DRAINING_ANNOTATION,
    GENERATION_LABEL,
    IDLE_SECONDS,
    UNPROVEN_RECHECK_SECONDS,
    ClusterApi,
    EvictablePod,
    NodeController,
    RolloutConfig,
    ServerApi,
)
from core.kubernetes.provider_id_setter import ApiError, KubernetesApi

from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator
from tests.stand_ins.kubernetes_api import KubernetesApiStandIn
from tests.support.pod_volume import lay_out_helper
from tests.support.setter_process import RunningHelper, free_port, run_helper

NETWORK = 4711
OTHER_NETWORK = 4712
POOL = "workers-fsn1"
OLD, NEW = "aaaaaaaaaa", "bbbbbbbbbb"


@dataclass
class Stack:
    """The settings the controller reads every pass; tests change them between passes."""

    config: RolloutConfig

    def read(self) -> RolloutConfig:
        return self.config


def rollout(**overrides: object) -> RolloutConfig:
    settings: dict[str, object] = {
        "network_id": NETWORK,
        "pools": {POOL: NEW},
        "drain_timeout": 600.0,
    }
    settings.update(overrides)
    return RolloutConfig(**settings)  # type: ignore[arg-type]


def controller(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn, stack: Stack
) -> NodeController:
    return NodeController(
        ServerApi(hetzner_api.endpoint, TEST_TOKEN),
        ClusterApi(
            KubernetesApi.in_cluster(kubernetes_api.url, kubernetes_api.service_account_dir)
        ),
        stack.read,
    )


def pool_node(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    name: str,
    address: str,
    generation: str = OLD,
    *,
    network: int = NETWORK,
    pool: str = POOL,
) -> int:
    """An autoscaled server and its registered Node (providerID set)."""
    server = hetzner_api.add_server(
        name, {"hcloud/node-group": pool}, private_ips={network: address}
    )
    kubernetes_api.add_node(
        name,
        internal_ip=address,
        provider_id=f"hcloud://{server}",
        labels={"hcloud/node-group": pool, GENERATION_LABEL: generation},
    )
    return server


def node_annotations(kubernetes_api: KubernetesApiStandIn, name: str) -> dict[str, str]:
    return kubernetes_api.state.nodes[name]["metadata"]["annotations"]


def cordoned(kubernetes_api: KubernetesApiStandIn) -> list[str]:
    return sorted(
        name for name, raw in kubernetes_api.state.nodes.items() if raw["spec"].get("unschedulable")
    )


def test_an_outdated_node_is_cordoned_drained_and_replaced(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-a", "10.100.0.3")
    kubernetes_api.add_pod(
        "shop", "web-1", ["nginx"], node="workers-fsn1-a", owner_kind="ReplicaSet"
    )
    kubernetes_api.add_pod(
        "kube-system", "kilo-x", ["kg"], node="workers-fsn1-a", owner_kind="DaemonSet"
    )
    kubernetes_api.add_pod(
        "kube-system",
        "static-x",
        ["etcd"],
        node="workers-fsn1-a",
        annotations={"kubernetes.io/config.mirror": "abc"},
    )
    kubernetes_api.add_pod("shop", "job-done", ["true"], node="workers-fsn1-a", phase="Succeeded")
    kubernetes_api.add_pod("shop", "web-2", ["nginx"], node="elsewhere", owner_kind="ReplicaSet")
    loop = controller(hetzner_api, kubernetes_api, Stack(rollout()))

    with caplog.at_level(logging.INFO, logger="node-controller"):
        loop.run_once(now=1000)  # cordon
        assert cordoned(kubernetes_api) == ["workers-fsn1-a"]
        assert DRAINING_ANNOTATION in node_annotations(kubernetes_api, "workers-fsn1-a")
        loop.run_once(now=1010)  # evict
        assert ("shop", "web-1") not in kubernetes_api.state.pods
        assert server in hetzner_api.state.servers  # not before the node holds nothing
        loop.run_once(now=1020)  # drained: server, then Node

    assert server not in hetzner_api.state.servers
    assert "workers-fsn1-a" not in kubernetes_api.state.nodes
    # DaemonSet, mirror and finished pods are never evicted; other nodes' pods are left.
    assert set(kubernetes_api.state.pods) == {
        ("kube-system", "kilo-x"),
        ("kube-system", "static-x"),
        ("shop", "job-done"),
        ("shop", "web-2"),
    }
    evictions = [
        path
        for method, path in kubernetes_api.state.requests
        if method == "POST" and path.endswith("/eviction")
    ]
    assert evictions == ["/api/v1/namespaces/shop/pods/web-1/eviction"]
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == (
        f"node workers-fsn1-a (pool {POOL}, server {server}): generation {OLD}, current {NEW}: "
        "cordoned, draining"
    )
    assert (
        f"node workers-fsn1-a (pool {POOL}): drained; deleted server {server} (generation {OLD}, current {NEW})"
        in messages
    )
    assert [event["reason"] for event in kubernetes_api.state.events] == ["RolloutDraining"]
    assert kubernetes_api.state.events[0]["involvedObject"]["name"] == "workers-fsn1-a"


def test_nodes_it_cannot_prove_are_the_stacks_are_never_touched(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    labels = {"hcloud/node-group": POOL, GENERATION_LABEL: OLD}
    # Bare metal with the pool's labels (copied by hand), no server at all.
    kubernetes_api.add_node("metal-1", internal_ip="192.168.1.20", labels=labels)
    # A control plane: a server without the pool label.
    hetzner_api.add_server("cp-1", {"role": "control-plane"}, private_ips={NETWORK: "10.100.0.2"})
    kubernetes_api.add_node("cp-1", internal_ip="10.100.0.2", labels=labels)
    # Another stack's pool of the same name, in its own network.
    pool_node(
        hetzner_api, kubernetes_api, "workers-fsn1-other", "10.200.0.3", network=OTHER_NETWORK
    )
    # A server of the pool whose address is not the node's.
    hetzner_api.add_server(
        "workers-fsn1-ip", {"hcloud/node-group": POOL}, private_ips={NETWORK: "10.100.0.9"}
    )
    kubernetes_api.add_node("workers-fsn1-ip", internal_ip="10.100.0.99", labels=labels)
    # A node whose providerID names another server than the one with its name.
    hetzner_api.add_server(
        "workers-fsn1-id", {"hcloud/node-group": POOL}, private_ips={NETWORK: "10.100.0.10"}
    )
    kubernetes_api.add_node(
        "workers-fsn1-id", internal_ip="10.100.0.10", provider_id="hcloud://1", labels=labels
    )
    # A server labelled with another pool than the node says.
    hetzner_api.add_server(
        "workers-fsn1-pool", {"hcloud/node-group": "gpu"}, private_ips={NETWORK: "10.100.0.11"}
    )
    kubernetes_api.add_node("workers-fsn1-pool", internal_ip="10.100.0.11", labels=labels)
    # A pool this stack does not have.
    pool_node(hetzner_api, kubernetes_api, "batch-1", "10.100.0.12", pool="batch")
    # The legacy format: the node carries no pool label, only the generation.
    hetzner_api.add_server(
        "workers-fsn1-legacy", {"hcloud/node-group": POOL}, private_ips={NETWORK: "10.100.0.14"}
    )
    kubernetes_api.add_node(
        "workers-fsn1-legacy", internal_ip="10.100.0.14", labels={GENERATION_LABEL: OLD}
    )
    # Someone else cordoned it (maintenance): not ours to uncordon.
    pool_node(hetzner_api, kubernetes_api, "workers-fsn1-held", "10.100.0.13")
    kubernetes_api.state.nodes["workers-fsn1-held"]["spec"]["unschedulable"] = True
    servers_before = set(hetzner_api.state.servers)
    loop = controller(hetzner_api, kubernetes_api, Stack(rollout(max_unavailable=10)))

    for second in range(0, 60, 10):
        loop.run_once(now=second)

    assert set(hetzner_api.state.servers) == servers_before
    assert [method for method, _ in kubernetes_api.state.requests if method != "GET"] == []
    assert cordoned(kubernetes_api) == ["workers-fsn1-held"]
    assert ("DELETE", "/v1/servers") not in {
        (method, path.rsplit("/", 1)[0]) for method, path in hetzner_api.state.requests
    }


def test_current_nodes_and_strategy_none_are_left_running(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    pool_node(hetzner_api, kubernetes_api, "workers-fsn1-new", "10.100.0.3", generation=NEW)
    pool_node(hetzner_api, kubernetes_api, "workers-fsn1-old", "10.100.0.4", generation=OLD)
    stack = Stack(rollout(strategy="none"))
    loop = controller(hetzner_api, kubernetes_api, stack)

    assert loop.run_once(now=0) == IDLE_SECONDS
    assert cordoned(kubernetes_api) == []
    assert hetzner_api.state.requests == []

    stack.config = rollout()  # the new config is read on the next pass: no restart
    loop.run_once(now=60)
    assert cordoned(kubernetes_api) == ["workers-fsn1-old"]


def test_at_most_max_unavailable_nodes_are_drained_at_once(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    for index in range(3):
        name = f"workers-fsn1-{index}"
        pool_node(hetzner_api, kubernetes_api, name, f"10.100.0.{10 + index}")
        kubernetes_api.add_pod(
            "shop", f"web-{index}", ["nginx"], node=name, owner_kind="ReplicaSet"
        )
        kubernetes_api.state.refused_evictions[("shop", f"web-{index}")] = 3
    stack = Stack(rollout())
    loop = controller(hetzner_api, kubernetes_api, stack)
    seen: list[list[str]] = []
    now = 0.0
    while kubernetes_api.state.nodes and now < 1000:
        loop.run_once(now)
        seen.append(cordoned(kubernetes_api))
        now += 10

    assert not kubernetes_api.state.nodes
    assert max(len(names) for names in seen) == 1
    # One at a time, oldest first (same age: by name).
    order = list(dict.fromkeys(names[0] for names in seen if names))
    assert order == ["workers-fsn1-0", "workers-fsn1-1", "workers-fsn1-2"]

    for index in range(4):
        name = f"workers-fsn1-b{index}"
        pool_node(hetzner_api, kubernetes_api, name, f"10.100.1.{index}")
        kubernetes_api.add_pod(
            "shop", f"api-{index}", ["nginx"], node=name, owner_kind="ReplicaSet"
        )
        kubernetes_api.state.refused_evictions[("shop", f"api-{index}")] = -1
    stack.config = rollout(max_unavailable=2)
    loop.run_once(now)
    loop.run_once(now + 10)
    assert len(cordoned(kubernetes_api)) == 2


def test_a_drain_a_pdb_never_allows_is_given_up_and_the_next_node_goes_on(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stuck = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-a", "10.100.0.3")
    kubernetes_api.add_pod(
        "db", "primary", ["postgres"], node="workers-fsn1-a", owner_kind="StatefulSet"
    )
    kubernetes_api.state.refused_evictions[("db", "primary")] = -1
    other = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-b", "10.100.0.4")
    kubernetes_api.state.nodes["workers-fsn1-b"]["metadata"]["creationTimestamp"] = (
        "2026-12-06T00:00:01Z"
    )
    kubernetes_api.state.nodes["workers-fsn1-a"]["metadata"]["creationTimestamp"] = (
        "2026-12-06T00:00:00Z"
    )
    loop = controller(hetzner_api, kubernetes_api, Stack(rollout(drain_timeout=60.0)))

    with caplog.at_level(logging.INFO, logger="node-controller"):
        for second in range(0, 60, 10):  # cordoned at 0, refused until 60
            loop.run_once(now=second)
            assert cordoned(kubernetes_api) == ["workers-fsn1-a"]
        loop.run_once(now=60)  # timed out: uncordoned, reported

    assert cordoned(kubernetes_api) == []
    assert stuck in hetzner_api.state.servers
    assert ("db", "primary") in kubernetes_api.state.pods
    failed = node_annotations(kubernetes_api, "workers-fsn1-a")
    assert DRAINING_ANNOTATION not in failed
    assert (
        "drain did not finish within 60 s; pods left: db/primary" in failed[DRAIN_FAILED_ANNOTATION]
    )
    warning = kubernetes_api.state.events[-1]
    assert (warning["type"], warning["reason"]) == ("Warning", "RolloutDrainFailed")
    assert warning["involvedObject"]["name"] == "workers-fsn1-a"
    assert any(
        record.levelno == logging.WARNING
        and "workers-fsn1-a" in record.getMessage()
        and f"generation {OLD}" in record.getMessage()
        for record in caplog.records
    )

    for second in range(70, 110, 10):  # moves on; the failed node is held back
        loop.run_once(now=second)
    assert other not in hetzner_api.state.servers
    assert "workers-fsn1-b" not in kubernetes_api.state.nodes
    assert "workers-fsn1-a" in kubernetes_api.state.nodes
    assert cordoned(kubernetes_api) == []

    # Held back for an hour, by its annotation too: a restarted controller waits as well.
    restarted = controller(hetzner_api, kubernetes_api, Stack(rollout(drain_timeout=60.0)))
    restarted.run_once(now=60 + 3599)
    assert cordoned(kubernetes_api) == []
    restarted.run_once(now=60 + 3600)
    assert cordoned(kubernetes_api) == ["workers-fsn1-a"]
    assert DRAIN_FAILED_ANNOTATION not in node_annotations(kubernetes_api, "workers-fsn1-a")


def test_a_pod_gone_before_its_eviction_counts_as_moved(
    kubernetes_api: KubernetesApiStandIn,
) -> None:
    cluster = ClusterApi(
        KubernetesApi.in_cluster(kubernetes_api.url, kubernetes_api.service_account_dir)
    )
    assert cluster.evict(EvictablePod("shop", "gone", terminating=False)) == "gone"


def test_a_node_gone_meanwhile_is_forgotten_and_its_server_left_to_the_autoscaler(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    first = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-a", "10.100.0.3")
    kubernetes_api.add_pod(
        "db", "primary", ["postgres"], node="workers-fsn1-a", owner_kind="StatefulSet"
    )
    kubernetes_api.state.refused_evictions[("db", "primary")] = -1
    second = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-b", "10.100.0.4")
    loop = controller(hetzner_api, kubernetes_api, Stack(rollout()))
    loop.run_once(now=0)
    assert cordoned(kubernetes_api) == ["workers-fsn1-a"]

    del kubernetes_api.state.nodes["workers-fsn1-a"]  # the autoscaler scaled it down
    loop.run_once(now=10)

    assert cordoned(kubernetes_api) == ["workers-fsn1-b"]  # its slot is free again
    assert loop.failures == 0
    loop.run_once(now=20)
    assert second not in hetzner_api.state.servers
    assert first in hetzner_api.state.servers  # no Node to prove it by: left alone


def test_a_failed_server_delete_keeps_the_node_cordoned_and_is_retried(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-a", "10.100.0.3")
    hetzner_api.faults.server_delete_failures = 1
    loop = controller(hetzner_api, kubernetes_api, Stack(rollout()))
    loop.run_once(now=0)

    with caplog.at_level(logging.ERROR, logger="node-controller"):
        delay = loop.run_once(now=10)

    assert delay == 20  # backs off
    assert "could not delete server" in caplog.records[-1].getMessage()
    assert server in hetzner_api.state.servers
    assert cordoned(kubernetes_api) == ["workers-fsn1-a"]  # the Node is not deleted first
    loop.run_once(now=30)
    assert server not in hetzner_api.state.servers
    assert "workers-fsn1-a" not in kubernetes_api.state.nodes


def test_a_restarted_controller_resumes_the_drain_it_began(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    server = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-a", "10.100.0.3")
    pool_node(hetzner_api, kubernetes_api, "workers-fsn1-b", "10.100.0.4")
    kubernetes_api.add_pod(
        "db", "primary", ["postgres"], node="workers-fsn1-a", owner_kind="StatefulSet"
    )
    kubernetes_api.state.refused_evictions[("db", "primary")] = 2
    stack = Stack(rollout(drain_timeout=600.0))
    controller(hetzner_api, kubernetes_api, stack).run_once(now=0)

    restarted = controller(hetzner_api, kubernetes_api, stack)
    restarted.run_once(now=10)  # counts the resumed drain: no second node cordoned
    assert cordoned(kubernetes_api) == ["workers-fsn1-a"]
    for second in (20, 30, 40):
        restarted.run_once(now=second)
    assert server not in hetzner_api.state.servers


def test_a_drain_whose_generation_is_current_again_gives_the_node_back(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    server = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-a", "10.100.0.3")
    kubernetes_api.add_pod(
        "db", "primary", ["postgres"], node="workers-fsn1-a", owner_kind="StatefulSet"
    )
    kubernetes_api.state.refused_evictions[("db", "primary")] = -1
    stack = Stack(rollout())
    loop = controller(hetzner_api, kubernetes_api, stack)
    loop.run_once(now=0)
    stack.config = rollout(pools={POOL: OLD})  # the change was reverted
    loop.run_once(now=10)

    assert cordoned(kubernetes_api) == []
    assert server in hetzner_api.state.servers


def test_request_budget_in_steady_state_and_during_a_rollout(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    """Steady state: one Node list a minute, no Hetzner request; an unprovable outdated node
    costs one server list per 15 minutes."""
    for index in range(20):
        pool_node(
            hetzner_api,
            kubernetes_api,
            f"workers-fsn1-{index}",
            f"10.100.0.{index + 10}",
            generation=NEW,
        )
    kubernetes_api.add_node(
        "metal-1",
        internal_ip="192.168.1.20",
        labels={"hcloud/node-group": POOL, GENERATION_LABEL: OLD},
    )
    loop = controller(hetzner_api, kubernetes_api, Stack(rollout()))
    now, passes = 0.0, 0
    while now < 3600:
        now += loop.run_once(now)
        passes += 1

    kubernetes_requests = len(kubernetes_api.state.requests)
    hetzner_requests = len(hetzner_api.state.requests)
    assert passes == 60
    assert kubernetes_requests == 60  # one Node list a pass (one page)
    assert hetzner_requests == 3600 // UNPROVEN_RECHECK_SECONDS  # 21 servers: one page


def test_request_budget_of_a_rollout(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    """Three outdated nodes with two pods each, one eviction refused three times by a PDB."""
    for index in range(3):
        name = f"workers-fsn1-{index}"
        pool_node(hetzner_api, kubernetes_api, name, f"10.100.0.{10 + index}")
        for replica in range(2):
            kubernetes_api.add_pod(
                "shop", f"web-{index}-{replica}", ["nginx"], node=name, owner_kind="ReplicaSet"
            )
    kubernetes_api.state.refused_evictions[("shop", "web-1-0")] = 3
    loop = controller(hetzner_api, kubernetes_api, Stack(rollout()))
    now = 0.0
    while kubernetes_api.state.nodes:
        now += loop.run_once(now)

    kubernetes_requests = len(kubernetes_api.state.requests)
    hetzner_requests = len(hetzner_api.state.requests)
    assert now == 120  # 12 passes 10 s apart: 3 x (cordon, evict, delete), 3 refusals
    # 12 Node lists; per node a cordon, an Event, 2 pod lists, 2 evictions and the delete;
    # per refusal a pod list and an eviction.
    assert kubernetes_requests == 12 + 3 * 7 + 3 * 2
    assert hetzner_requests == 6  # a server list to prove each node, a delete each


def test_a_bad_config_file_is_reported_and_retried(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> RolloutConfig:
        return RolloutConfig.from_json({"networkId": NETWORK, "pools": {}, "strategy": "rolling"})

    loop = NodeController(
        ServerApi(hetzner_api.endpoint, TEST_TOKEN),
        ClusterApi(
            KubernetesApi.in_cluster(kubernetes_api.url, kubernetes_api.service_account_dir)
        ),
        broken,
    )
    with caplog.at_level(logging.ERROR, logger="node-controller"):
        assert loop.run_once(now=0) == 20
    assert "strategy is 'rolling'; expected replace or none" in caplog.records[-1].getMessage()


def test_a_read_only_token_cannot_delete_and_says_so(hetzner_api: HetznerEmulator) -> None:
    with pytest.raises(ApiError, match="401"):
        ServerApi(hetzner_api.endpoint, "read-only").delete_server(1)


def test_a_pod_no_controller_recreates_is_never_evicted(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    server = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-a", "10.100.0.3")
    kubernetes_api.add_pod("debug", "shell", ["sh"], node="workers-fsn1-a")
    loop = controller(hetzner_api, kubernetes_api, Stack(rollout()))
    loop.run_once(now=0)
    loop.run_once(now=10)

    assert ("debug", "shell") in kubernetes_api.state.pods
    assert server in hetzner_api.state.servers
    assert cordoned(kubernetes_api) == []
    assert (
        "pods no controller would recreate: debug/shell"
        in (node_annotations(kubernetes_api, "workers-fsn1-a")[DRAIN_FAILED_ANNOTATION])
    )


def test_the_script_runs_from_the_config_map_folder(
    tmp_path: Path, hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    settings = json.dumps({"networkId": NETWORK, "pools": {POOL: NEW}, "drainTimeoutSeconds": 60})
    manifests = node_controller_manifests("ns", "creds", "token", settings)
    pod = lay_out_helper(manifests, tmp_path)
    server = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-a", "10.100.0.3")
    kubernetes_api.add_pod("shop", "web", ["nginx"], node="workers-fsn1-a", owner_kind="ReplicaSet")
    port = free_port()
    config = pod.local(f"{CONTROLLER_DIR}/{CONTROLLER_CONFIG_FILE}")
    process = run_helper(pod, hetzner_api, kubernetes_api, port, "NODE_CONTROLLER", CONFIG=config)
    with RunningHelper(process) as running:
        # A Python start on busy cores, then three passes; logged after the Node's delete.
        replaced = "node workers-fsn1-a: deleted; the autoscaler replaces it"
        assert running.wait_for(replaced, 60), "".join(running.lines)
        assert "workers-fsn1-a" not in kubernetes_api.state.nodes
        running.healthy_then_stopped(port)
    logged = running.text()
    assert server not in hetzner_api.state.servers
    assert "evicted shop/web" in logged
    assert f"drained; deleted server {server}" in logged


def test_a_server_that_cannot_be_deleted_gives_the_node_back(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    """A read-only token (403): no retry mends it; the drained node is uncordoned, reported."""
    server = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-a", "10.100.0.3")
    hetzner_api.faults.server_delete_forbidden = True
    loop = controller(hetzner_api, kubernetes_api, Stack(rollout()))
    loop.run_once(now=0)
    loop.run_once(now=10)

    assert server in hetzner_api.state.servers
    assert "workers-fsn1-a" in kubernetes_api.state.nodes
    assert cordoned(kubernetes_api) == []
    reason = node_annotations(kubernetes_api, "workers-fsn1-a")[DRAIN_FAILED_ANNOTATION]
    assert "its server could not be deleted" in reason and "403" in reason
    assert kubernetes_api.state.events[-1]["reason"] == "RolloutDrainFailed"


def test_a_server_delete_failing_past_the_drain_timeout_gives_the_node_back(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    server = pool_node(hetzner_api, kubernetes_api, "workers-fsn1-a", "10.100.0.3")
    hetzner_api.faults.server_delete_failures = 100
    loop = controller(hetzner_api, kubernetes_api, Stack(rollout(drain_timeout=60.0)))
    for second in range(0, 60, 10):
        loop.run_once(now=second)
        assert cordoned(kubernetes_api) == ["workers-fsn1-a"]
    loop.run_once(now=60)

    assert server in hetzner_api.state.servers
    assert cordoned(kubernetes_api) == []
    assert (
        "could not delete server"
        in (node_annotations(kubernetes_api, "workers-fsn1-a")[DRAIN_FAILED_ANNOTATION])
    )
