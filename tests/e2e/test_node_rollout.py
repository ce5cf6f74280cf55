"""The node controller's rollout against the real API server (kube-apiserver and
kube-controller-manager, whose disruption controller keeps PodDisruptionBudgets) and the
Hetzner API emulator.

Three nodes of an old generation run a Deployment with a PDB (``minAvailable: 2``); one also
runs a pod whose PDB never allows an eviction. A bare-metal node and another stack's node
carry the pool's labels and the old generation too. The controller runs as its Deployment
runs it (from the ConfigMap's folder, with its ServiceAccount's token and its ClusterRole),
first with the old generation (nothing to do), then with the new one, written into its
``config.json`` as ``pulumi up`` writes the ConfigMap. A thread stands in for the scheduler and
the kubelets of the pool's nodes; another samples the cluster all along: the PDB is never
violated, at most one node is cordoned at a time, foreign nodes are never touched.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.config import parse_stack_config, sections_from_flat_config
from core.manifests import CONTROLLER_COMMAND, CONTROLLER_NAME, node_controller_manifests
from core.node_controller import COMPONENT, DRAIN_FAILED_ANNOTATION, GENERATION_LABEL
from core.plan import plan_stack
from core.talos_config import NODE_GROUP_LABEL

from tests.conftest import REPO, shipped_config
from tests.e2e.kube_cluster import KubeCluster, eventually, free_port
from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator

NAMESPACE = "rollout-e2e"
POOL = "workers-fsn1"
NETWORK_RANGE = "10.100.0"
MERGE_PATCH = "application/merge-patch+json"
#: The pool's nodes, oldest first: the one with the unevictable pod last.
OLD_NODES = ("workers-fsn1-a", "workers-fsn1-b", "workers-fsn1-c")
SPARE = "workers-fsn1-new"
BARE_METAL = "metal-1"
OTHER_STACK = "workers-fsn1-other"
DRAIN_TIMEOUT = 20


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def call(kube: KubeCluster, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    status, answer = kube.request(method, path, body, **kwargs)
    assert status < 300 or status == 409, f"{method} {path}: {status} {answer}"
    return answer


def add_node(kube: KubeCluster, name: str, address: str, labels: dict[str, str]) -> None:
    """A Ready Node with its address and a Lease, as a kubelet registers it."""
    call(
        kube,
        "POST",
        "/api/v1/nodes",
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}},
    )
    call(
        kube,
        "PATCH",
        f"/api/v1/nodes/{name}/status",
        {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "stand-in",
                        "lastHeartbeatTime": now(),
                        "lastTransitionTime": now(),
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": address}],
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "nodeInfo": {"osImage": "Talos (v1.11.5)", "kubeletVersion": "v1.33.1"},
            }
        },
        content_type=MERGE_PATCH,
    )
    call(
        kube,
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
        },
    )


def deployment(name: str, replicas: int, node_name: str | None = None) -> dict[str, Any]:
    labels = {"app": name}
    pod: dict[str, Any] = {
        "containers": [{"name": "main", "image": "nginx:1.27-alpine"}],
        "terminationGracePeriodSeconds": 0,
    }
    if node_name:
        pod["nodeName"] = node_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def pdb(name: str, min_available: int) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": name}}},
    }


def running(pod: dict[str, Any]) -> dict[str, Any]:
    stamp = now()
    return {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": kind, "status": "True", "lastTransitionTime": stamp}
                for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": stamp}},
                }
                for container in pod["spec"]["containers"]
            ],
        }
    }


def is_ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@dataclass
class PoolStandIn:
    """The scheduler and the kubelets of the pool's nodes, for the pods of ``NAMESPACE``:
    binds a pending pod to the schedulable pool node with the fewest pods, reports bound pods
    Running and Ready, confirms terminating pods gone, renews the nodes' Leases."""

    kube: KubeCluster
    nodes: list[str]
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        beats = 0
        while not self._stop.wait(0.2):
            try:
                self._pass(renew=beats % 25 == 0)
            except AssertionError as error:
                self.errors.append(str(error))
            beats += 1

    def stop(self) -> None:
        self._stop.set()

    def _pass(self, *, renew: bool) -> None:
        kube = self.kube
        if renew:
            for name in list(self.nodes):
                if kube.get(f"/api/v1/nodes/{name}") is not None:
                    call(
                        kube,
                        "PATCH",
                        f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}",
                        {"spec": {"renewTime": micro_now()}},
                        content_type=MERGE_PATCH,
                    )
        pods = (kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods") or {}).get("items") or []
        nodes = {
            node["metadata"]["name"]: node
            for node in (kube.get("/api/v1/nodes") or {}).get("items") or []
            if node["metadata"]["name"] in self.nodes
        }
        schedulable = [
            name for name, node in nodes.items() if not node["spec"].get("unschedulable")
        ]
        # Per app, as a hostname anti-affinity spreads it: pods of one app on distinct nodes.
        load: dict[tuple[str, str], int] = {}
        for pod in pods:
            key = (pod["metadata"]["labels"].get("app", ""), pod["spec"].get("nodeName") or "")
            load[key] = load.get(key, 0) + 1
        for pod in pods:
            metadata = pod["metadata"]
            path = f"/api/v1/namespaces/{NAMESPACE}/pods/{metadata['name']}"
            if metadata.get("deletionTimestamp"):
                kube.request(
                    "DELETE",
                    path,
                    {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
                )
            elif not pod["spec"].get("nodeName"):
                if not schedulable:
                    continue
                app = metadata["labels"].get("app", "")
                target = min(schedulable, key=lambda name: (load.get((app, name), 0), name))
                load[(app, target)] = load.get((app, target), 0) + 1
                kube.request(
                    "POST",
                    f"{path}/binding",
                    {
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": metadata["name"]},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": target},
                    },
                )
            elif pod["spec"]["nodeName"] not in nodes:
                continue  # its node is gone: the pod garbage collector removes it
            elif not is_ready(pod):
                kube.request("PATCH", f"{path}/status", running(pod), content_type=MERGE_PATCH)


@dataclass
class Sample:
    at: float
    ready_web: int
    disruptions_allowed: int | None
    cordoned: list[str]
    nodes: set[str]


@dataclass
class Watcher:
    """Samples the cluster every 0.2 s for the whole rollout."""

    kube: KubeCluster
    samples: list[Sample] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        start = self.started
        while not self._stop.wait(0.2):
            pods = (self.kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods") or {}).get("items") or []
            budget = self.kube.get(
                f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets/web"
            )
            nodes = (self.kube.get("/api/v1/nodes") or {}).get("items") or []
            self.samples.append(
                Sample(
                    at=time.monotonic() - start,
                    ready_web=sum(
                        1
                        for pod in pods
                        if pod["metadata"]["labels"].get("app") == "web" and is_ready(pod)
                    ),
                    disruptions_allowed=((budget or {}).get("status") or {}).get(
                        "disruptionsAllowed"
                    ),
                    cordoned=sorted(
                        node["metadata"]["name"]
                        for node in nodes
                        if node["spec"].get("unschedulable")
                    ),
                    nodes={node["metadata"]["name"] for node in nodes},
                )
            )

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def threads() -> Iterator[list[tuple[threading.Thread, Any]]]:
    started: list[tuple[threading.Thread, Any]] = []
    yield started
    for thread, owner in started:
        owner.stop()
        thread.join(timeout=10)


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


def start(started: list[tuple[threading.Thread, Any]], owner: Any) -> None:
    thread = threading.Thread(target=owner.run, daemon=True)
    thread.start()
    started.append((thread, owner))


def test_outdated_nodes_are_replaced_one_at_a_time_without_violating_a_pdb(
    kube: KubeCluster,
    hetzner_api: HetznerEmulator,
    tmp_path: Path,
    threads: list[tuple[threading.Thread, Any]],
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
        add_node(kube, name, address, pool_labels)
        time.sleep(1.1)  # distinct creation seconds: the controller takes the oldest first
    other = hetzner_api.add_server(
        OTHER_STACK, {NODE_GROUP_LABEL: POOL}, private_ips={other_network: "10.200.0.11"}
    )
    add_node(kube, OTHER_STACK, "10.200.0.11", pool_labels)
    add_node(kube, BARE_METAL, "192.168.1.20", pool_labels)

    call(
        kube,
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    pool = PoolStandIn(kube, list(OLD_NODES))
    start(threads, pool)
    call(
        kube, "POST", f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets", pdb("web", 2)
    )
    call(kube, "POST", f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets", pdb("db", 1))
    call(kube, "POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", deployment("web", 3))
    call(
        kube,
        "POST",
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
        deployment("db", 1, OLD_NODES[-1]),
    )

    def placed() -> bool:
        pods = (kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods") or {}).get("items") or []
        web = sorted(
            pod["spec"].get("nodeName") or ""
            for pod in pods
            if pod["metadata"]["labels"]["app"] == "web" and is_ready(pod)
        )
        return web == list(OLD_NODES) and any(
            pod["metadata"]["labels"]["app"] == "db" and is_ready(pod) for pod in pods
        )

    eventually(placed, "one web pod Ready on each old node, the db pod on the last", 60)
    eventually(
        lambda: (
            (kube.get(f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets/web") or {})
            .get("status", {})
            .get("disruptionsAllowed")
            == 1
        ),
        "the disruption controller allows one disruption of web",
        60,
    )
    # The controller's own objects, as the program applies them (its RBAC is all it gets).
    manifests = node_controller_manifests(NAMESPACE, "hetzner-credentials", "token", "{}")
    _, account, role, binding, _ = manifests
    call(kube, "POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", account)
    call(kube, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", role)
    call(kube, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
    folder = tmp_path / "opt"
    folder.mkdir()
    for name, text in manifests[0]["data"].items():
        if name.endswith(".py"):
            (folder / name).write_text(text)
    settings = {
        "networkId": network,
        "pools": {POOL: old},
        "strategy": "replace",
        "maxUnavailable": 1,
        "drainTimeoutSeconds": DRAIN_TIMEOUT,
    }
    (folder / "config.json").write_text(json.dumps(settings))
    account_dir = tmp_path / "serviceaccount"
    account_dir.mkdir()
    (account_dir / "token").write_text(kube.service_account_token(NAMESPACE, CONTROLLER_NAME))
    shutil.copy(kube.ca_crt, account_dir / "ca.crt")

    watcher = Watcher(kube)
    start(threads, watcher)
    log = tmp_path / "controller.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, *CONTROLLER_COMMAND[1:-1], str(folder / "node_controller.py")],
            env={
                "PATH": os.environ["PATH"],
                "HCLOUD_TOKEN": TEST_TOKEN,
                "HCLOUD_ENDPOINT": hetzner_api.endpoint,
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(kube.apiserver_port),
                "NODE_CONTROLLER_SERVICE_ACCOUNT_DIR": str(account_dir),
                "NODE_CONTROLLER_CONFIG": str(folder / "config.json"),
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
            (folder / "config.json").write_text(json.dumps(settings))
            # The autoscaler's replacement for the evicted pods: a node of the new generation
            # (a cordon comes a pass before the first eviction, so it is there in time).
            hetzner_api.add_server(
                SPARE, {NODE_GROUP_LABEL: POOL}, private_ips={network: f"{NETWORK_RANGE}.20"}
            )
            add_node(
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
    for _, owner in threads:
        owner.stop()
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
        assert sample.ready_web >= 2, sample
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
    timeline = []
    previous: list[str] = []
    gone: set[str] = set()
    for sample in samples:
        if sample.cordoned != previous:
            timeline.append(
                f"{sample.at:6.1f}s cordoned {sample.cordoned or '-'}, web Ready {sample.ready_web}"
            )
            previous = sample.cordoned
        for name in OLD_NODES:
            if name not in sample.nodes and name not in gone:
                gone.add(name)
                timeline.append(f"{sample.at:6.1f}s Node {name} deleted")
    switched = rollout_started - watcher.started
    timeline.insert(0, f"{switched:6.1f}s the new generation is in config.json")
    given_up = switched + finished
    timeline.append(f"{given_up:6.1f}s {OLD_NODES[2]} given up (drain timeout {DRAIN_TIMEOUT} s)")
    print(
        f"\nrollout of {len(OLD_NODES)} nodes, finished {finished:.1f} s after the new "
        f"generation ({refusals} refused evictions of the db pod):\n" + "\n".join(timeline)
    )
    print(
        f"minimum web pods Ready: {min(sample.ready_web for sample in samples)} (PDB minAvailable 2); {len(samples)} samples"
    )
