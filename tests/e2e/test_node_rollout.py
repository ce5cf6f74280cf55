"""The node controller's rollout against the real API server (kube-apiserver and
kube-controller-manager, whose disruption controller keeps PodDisruptionBudgets) and the
Hetzner API emulator.

Three nodes of an old generation run a Deployment with a PDB (``minAvailable: 2``); one also
runs a pod whose PDB never allows an eviction. A bare-metal node and another stack's node
carry the pool's labels and the old generation too. The controller runs as its Deployment
runs it (its command in its ConfigMap volume laid out as the pod has it, with its
ServiceAccount's token and its ClusterRole), first with the old generation (nothing to do), then with the new one, written into its
``config.json`` as ``pulumi up`` writes the ConfigMap. A thread stands in for the scheduler and
the kubelets of the pool's nodes; another samples the cluster all along: the PDB is never
violated, at most one node is cordoned at a time, foreign nodes are never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.autoscaler.manifests import (
    CONTROLLER_CONFIG_FILE,
    CONTROLLER_DIR,
    CONTROLLER_NAME,
    node_controller_manifests,
)
from core.config import parse_stack_config, sections_from_flat_config
from core.hetzner.facts import NODE_GROUP_LABEL
from core.kubernetes.node_controller import COMPONENT, DRAIN_FAILED_ANNOTATION, GENERATION_LABEL
from core.plan import plan_stack

from tests.conftest import REPO, shipped_config
from tests.e2e.helper_pod import service_account_dir
from tests.e2e.kube_cluster import KubeCluster, call, eventually, free_port
from tests.e2e.workload import (
    Background,
    Watcher,
    deployment,
    disruptions_allowed,
    pdb,
    ready_nodes,
)
from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator
from tests.stand_ins.kubelet import PoolStandIn, register_node
from tests.support.pod_volume import lay_out_helper

NAMESPACE = "rollout-e2e"
POOL = "workers-fsn1"
NETWORK_RANGE = "10.100.0"
#: The pool's nodes, oldest first: the one with the unevictable pod last.
OLD_NODES = ("workers-fsn1-a", "workers-fsn1-b", "workers-fsn1-c")
SPARE = "workers-fsn1-new"
BARE_METAL = "metal-1"
OTHER_STACK = "workers-fsn1-other"
DRAIN_TIMEOUT = 20


def generations() -> tuple[str, str]:
    """The dev pool's generation before and after a ``talos.version`` change."""
    plans = []
    for version in ("v1.11.5", None):
        flat = shipped_config("dev")
        if version:
            flat["hcloud-talos-autoscaler:talos"]["version"] = version
        plans.append(plan_stack(parse_stack_config(*sections_from_flat_config(flat), REPO)))
    old, new = plans
    old_generation = old.generations(old.network.subnet)[POOL]
    new_generation = new.generations(new.network.subnet)[POOL]
    assert old_generation != new_generation
    return old_generation, new_generation


@pytest.fixture
def threads() -> Iterator[Background]:
    with Background() as background:
        yield background


@pytest.fixture
def leaves_the_cluster_as_found(kube: KubeCluster) -> Iterator[None]:
    """The API server is shared with the program's stacks, which apply the controller's
    ClusterRole and ClusterRoleBinding under the same names: delete what this test made."""
    yield
    _, _, role, binding, _ = node_controller_manifests(
        NAMESPACE, "hetzner-credentials", "token", "{}"
    )
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    paths = [
        f"{rbac}/clusterrolebindings/{binding['metadata']['name']}",
        f"{rbac}/clusterroles/{role['metadata']['name']}",
        f"/api/v1/namespaces/{NAMESPACE}",
        *(f"/api/v1/nodes/{name}" for name in [*OLD_NODES, OTHER_STACK, BARE_METAL, SPARE]),
    ]
    for path in paths:
        status, answer = kube.request("DELETE", path)
        assert status < 300 or status == 404, f"DELETE {path}: {status} {answer}"


def drain_events(kube: KubeCluster, node: str) -> set[str]:
    """The reasons of the Events about ``node``."""
    path = f"/api/v1/namespaces/default/events?fieldSelector=involvedObject.name={node}"
    return {event["reason"] for event in (kube.get(path) or {}).get("items", [])}


def test_outdated_nodes_are_replaced_one_at_a_time_without_violating_a_pdb(
    kube: KubeCluster,
    hetzner_api: HetznerEmulator,
    tmp_path: Path,
    threads: Background,
    leaves_the_cluster_as_found: None,
) -> None:
    old, new = generations()
    network = hetzner_api.add_network("cozystack-vswitch", "10.100.0.0/16")
    other_network = hetzner_api.add_network("other-stack", "10.200.0.0/16")
    pool_labels = {NODE_GROUP_LABEL: POOL, GENERATION_LABEL: old}
    servers = {}
    for index, name in enumerate(OLD_NODES):
        address = f"{NETWORK_RANGE}.{11 + index}"
        servers[name] = hetzner_api.add_server(
            name, {NODE_GROUP_LABEL: POOL}, private_ips={network: address}
        )
        register_node(kube, name, address, pool_labels)
        time.sleep(1.1)  # distinct creation seconds: the controller takes the oldest first
    other = hetzner_api.add_server(
        OTHER_STACK, {NODE_GROUP_LABEL: POOL}, private_ips={other_network: "10.200.0.11"}
    )
    register_node(kube, OTHER_STACK, "10.200.0.11", pool_labels)
    register_node(kube, BARE_METAL, "192.168.1.20", pool_labels)

    call(
        kube,
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    pool = PoolStandIn(kube, NAMESPACE, list(OLD_NODES))
    threads.start(pool)
    budgets = f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets"
    call(kube, "POST", budgets, pdb(NAMESPACE, "web", 2))
    call(kube, "POST", budgets, pdb(NAMESPACE, "db", 1))
    deployments = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
    # Pinned to the pool (the kubelet stand-in of the program's tests leaves them alone).
    pinned = {NODE_GROUP_LABEL: POOL}
    call(kube, "POST", deployments, deployment(NAMESPACE, "web", 3, node_selector=pinned))
    call(kube, "POST", deployments, deployment(NAMESPACE, "db", 1, node_name=OLD_NODES[-1]))
    eventually(
        lambda: (
            ready_nodes(kube, NAMESPACE, "web") == list(OLD_NODES)
            and ready_nodes(kube, NAMESPACE, "db") == [OLD_NODES[-1]]
        ),
        "one web pod Ready on each old node, the db pod on the last",
        60,
    )
    eventually(
        lambda: disruptions_allowed(kube, NAMESPACE, "web") == 1,
        "the disruption controller allows one disruption of web",
        60,
    )
    settings = {
        "networkId": network,
        "pools": {POOL: old},
        "strategy": "replace",
        "maxUnavailable": 1,
        "drainTimeoutSeconds": DRAIN_TIMEOUT,
    }
    # The controller's own objects, as the program applies them (its RBAC is all it gets).
    manifests = node_controller_manifests(
        NAMESPACE, "hetzner-credentials", "token", json.dumps(settings)
    )
    _, account, role, binding, _ = manifests
    call(kube, "POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", account)
    call(kube, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", role)
    call(kube, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
    pod = lay_out_helper(manifests, tmp_path)
    config = Path(pod.local(f"{CONTROLLER_DIR}/{CONTROLLER_CONFIG_FILE}"))
    account_dir = service_account_dir(kube, tmp_path / "serviceaccount", NAMESPACE, CONTROLLER_NAME)

    watcher = Watcher(kube, NAMESPACE, "web")
    threads.start(watcher)
    log = tmp_path / "controller.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            pod.command,
            cwd=pod.cwd,
            env={
                "PATH": os.environ["PATH"],
                "HCLOUD_TOKEN": TEST_TOKEN,
                "HCLOUD_ENDPOINT": hetzner_api.endpoint,
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(kube.apiserver_port),
                "NODE_CONTROLLER_SERVICE_ACCOUNT_DIR": str(account_dir),
                "NODE_CONTROLLER_CONFIG": str(config),
                "NODE_CONTROLLER_LOOP_SECONDS": "1",
                "NODE_CONTROLLER_HEALTH_PORT": str(free_port()),
            },
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            eventually(lambda: "replacing outdated" in log.read_text(), "the controller starts", 30)
            time.sleep(3)  # a few passes with the old generation current: nothing to do
            assert all(not sample.cordoned for sample in watcher.samples), log.read_text()
            rollout_started = time.monotonic()
            settings["pools"] = {POOL: new}  # `pulumi up` writes the ConfigMap
            config.write_text(json.dumps(settings))
            # The autoscaler's replacement for the evicted pods: a node of the new generation
            # (a cordon comes a pass before the first eviction, so it is there in time).
            hetzner_api.add_server(
                SPARE, {NODE_GROUP_LABEL: POOL}, private_ips={network: f"{NETWORK_RANGE}.20"}
            )
            register_node(
                kube, SPARE, f"{NETWORK_RANGE}.20", {NODE_GROUP_LABEL: POOL, GENERATION_LABEL: new}
            )
            pool.nodes.append(SPARE)

            eventually(
                lambda: (
                    kube.get(f"/api/v1/nodes/{OLD_NODES[0]}") is None
                    and kube.get(f"/api/v1/nodes/{OLD_NODES[1]}") is None
                ),
                "the first two outdated nodes are replaced",
                240,
            )
            stuck = eventually(
                lambda: (
                    node
                    if (node := kube.get(f"/api/v1/nodes/{OLD_NODES[2]}"))
                    and DRAIN_FAILED_ANNOTATION in (node["metadata"].get("annotations") or {})
                    else None
                ),
                "the drain the db PDB never allows is given up",
                DRAIN_TIMEOUT + 120,
            )
            finished = time.monotonic() - rollout_started
            # The controller annotates the node, logs, then posts its Event: wait for the
            # last before stopping it (on a busy machine the three are seconds apart).
            eventually(
                lambda: "RolloutDrainFailed" in drain_events(kube, OLD_NODES[2]),
                "the Warning Event on the node whose drain was given up",
                60,
            )
        finally:
            process.terminate()
            process.wait(timeout=10)
    threads.stop()
    text = log.read_text()
    assert process.returncode in (0, -15), text
    assert "Forbidden" not in text and " 403" not in text, text
    assert not pool.errors, pool.errors

    # Replaced: servers and Nodes gone; the stuck node uncordoned, reported, kept.
    for name in OLD_NODES[:2]:
        assert servers[name] not in hetzner_api.state.servers
    assert servers[OLD_NODES[2]] in hetzner_api.state.servers
    assert not stuck["spec"].get("unschedulable")
    reason = stuck["metadata"]["annotations"][DRAIN_FAILED_ANNOTATION]
    assert (
        f"drain did not finish within {DRAIN_TIMEOUT} s" in reason and f"{NAMESPACE}/db-" in reason
    )
    assert "RolloutDrainFailed" in drain_events(kube, OLD_NODES[2])
    assert f"node {OLD_NODES[2]} (pool {POOL}, generation {old}, current {new})" in text
    # The API server refused the db pod's eviction (its PDB): the controller retried, then gave up.
    refusals = text.count(f"eviction of {NAMESPACE}/db-")
    assert refusals >= 2, text

    # Foreign nodes: never cordoned, still there, their servers too.
    samples = watcher.samples
    assert samples
    for sample in samples:
        assert BARE_METAL not in sample.cordoned and OTHER_STACK not in sample.cordoned
        assert {BARE_METAL, OTHER_STACK} <= sample.nodes
        # One node at a time; the PDB never violated.
        assert len(sample.cordoned) <= 1, sample
        assert sample.ready >= 2, sample
        assert sample.disruptions_allowed is None or sample.disruptions_allowed >= 0, sample
    assert other in hetzner_api.state.servers
    assert kube.get(f"/api/v1/nodes/{SPARE}") is not None  # current: left running
    assert {
        e["reason"]
        for e in (kube.get("/api/v1/namespaces/default/events") or {}).get("items", [])
        if e["involvedObject"]["name"] in (BARE_METAL, OTHER_STACK)
        and (e.get("source") or {}).get("component") == COMPONENT
    } == set()

    # The timeline of the rollout, for the record.
    timeline = watcher.timeline(OLD_NODES)
    switched = rollout_started - watcher.started
    timeline.insert(0, f"{switched:6.1f}s the new generation is in config.json")
    given_up = switched + finished
    timeline.append(f"{given_up:6.1f}s {OLD_NODES[2]} given up (drain timeout {DRAIN_TIMEOUT} s)")
    print(
        f"\nrollout of {len(OLD_NODES)} nodes, finished {finished:.1f} s after the new "
        f"generation ({refusals} refused evictions of the db pod):\n" + "\n".join(timeline)
    )
    print(
        f"minimum web pods Ready: {min(sample.ready for sample in samples)} (PDB minAvailable 2); {len(samples)} samples"
    )
