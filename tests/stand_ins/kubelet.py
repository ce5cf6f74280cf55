"""STAND-INS for kubelets (and the scheduler): what nodes would do for the API server, without
containers.

The e2e control plane has no kubelet and no scheduler, so no pod would ever run, and the
engine waits for Deployments (the Kubernetes provider's await, Helm's ``--wait``) until they
time out. ``KubeletStandIn`` does what a scheduler and one healthy node would do as seen through
the API: it registers a Ready Node and renews its Lease, binds every pending pod to it and
reports it Running and Ready (all containers started), and confirms the deletion of pods
that are terminating (a kubelet reports its containers stopped; ``gracePeriodSeconds: 0``).
``PoolStandIn`` does the same for one namespace's pods on a pool's nodes (the node controller's
rollouts). Nothing runs: the pods' images are never pulled.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.kube_cluster import KubeCluster, call

NODE = "e2e-kubelet"
MERGE_PATCH = "application/merge-patch+json"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def register_node(
    kube: KubeCluster,
    name: str,
    address: str,
    labels: dict[str, str],
    provider_id: str | None = None,
) -> None:
    """A Ready Node with its addresses and a Lease, as a kubelet registers it."""
    spec = {"providerID": provider_id} if provider_id else {}
    call(
        kube,
        "POST",
        "/api/v1/nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
            "spec": spec,
        },
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
                        "message": "kubelet stand-in",
                        "lastHeartbeatTime": now(),
                        "lastTransitionTime": now(),
                    }
                ],
                "addresses": [
                    {"type": "InternalIP", "address": address},
                    {"type": "Hostname", "address": name},
                ],
                "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
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


def renew_lease(kube: KubeCluster, name: str) -> Any:
    """The node's heartbeat (a kubelet renews it every 10 s)."""
    return kube.request(
        "PATCH",
        f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}",
        {"spec": {"renewTime": micro_now()}},
        content_type=MERGE_PATCH,
    )


def confirm_gone(kube: KubeCluster, path: str) -> tuple[int, Any]:
    """A kubelet's word that the terminating pod at ``path`` has stopped its containers."""
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
    return kube.request("DELETE", path, body)


def bind(kube: KubeCluster, path: str, node: str) -> tuple[int, Any]:
    """The scheduler's decision: the pod at ``path`` runs on ``node``."""
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": path.rsplit("/", 1)[1]},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    return kube.request("POST", f"{path}/binding", binding)


def report_running(kube: KubeCluster, path: str, pod: dict[str, Any]) -> tuple[int, Any]:
    """A kubelet's report that the pod at ``path`` runs, Ready."""
    return kube.request("PATCH", f"{path}/status", running(pod), content_type=MERGE_PATCH)


def running(pod: dict[str, Any]) -> dict[str, Any]:
    """The status a kubelet reports for a pod whose containers all started."""
    stamp = now()
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": stamp}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    containers = [
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
    ]
    return {
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": stamp,
            "conditions": conditions,
            "containerStatuses": containers,
        }
    }


def is_ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class KubeletStandIn:
    """Start with ``start()``; every ``interval`` seconds it looks at every pod but those of
    ``elsewhere`` (namespaces whose pods a ``PoolStandIn`` schedules)."""

    def __init__(self, cluster: KubeCluster, interval: float = 0.5) -> None:
        self.cluster = cluster
        self.interval = interval
        self.elsewhere: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[str] = []

    def start(self) -> KubeletStandIn:
        register_node(self.cluster, NODE, "127.0.0.1", {})
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _check(self, what: str, answered: tuple[int, Any]) -> Any:
        status, answer = answered
        if status >= 300 and status not in (404, 409):
            self.errors.append(f"{what}: {status} {answer}")
        return answer

    def _run(self) -> None:
        beats = 0
        while not self._stop.wait(self.interval):
            beats += 1
            if beats % 20 == 0:  # the Lease is the node's heartbeat (every 10 s)
                self._check("renewing the Lease", renew_lease(self.cluster, NODE))
            pods = self._check("listing pods", self.cluster.request("GET", "/api/v1/pods")) or {}
            for pod in pods.get("items") or []:
                if pod["metadata"]["namespace"] not in self.elsewhere:
                    self._handle(pod)

    def _handle(self, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        path = f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}"
        if metadata.get("deletionTimestamp"):
            self._check(f"confirming {path} gone", confirm_gone(self.cluster, path))
        elif not pod["spec"].get("nodeName"):
            self._check(f"binding {path}", bind(self.cluster, path, NODE))
        elif (pod.get("status") or {}).get("phase") != "Running":
            self._check(f"reporting {path} running", report_running(self.cluster, path, pod))


@dataclass
class PoolStandIn:
    """The scheduler and the kubelets of a pool's ``nodes``, for the pods of ``namespace``:
    binds a pending pod to the schedulable pool node with the fewest pods of its app (as a
    hostname anti-affinity spreads them), reports bound pods Running and Ready, confirms
    terminating pods gone, renews the nodes' Leases. Run ``run`` in a thread."""

    kube: KubeCluster
    namespace: str
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
                    status, answer = renew_lease(kube, name)
                    assert status < 300, f"renewing the Lease of {name}: {status} {answer}"
        pods = (kube.get(f"/api/v1/namespaces/{self.namespace}/pods") or {}).get("items") or []
        nodes = {
            node["metadata"]["name"]: node
            for node in (kube.get("/api/v1/nodes") or {}).get("items") or []
            if node["metadata"]["name"] in self.nodes
        }
        schedulable = [
            name for name, node in nodes.items() if not node["spec"].get("unschedulable")
        ]
        load: dict[tuple[str, str], int] = {}
        for pod in pods:
            key = (pod["metadata"]["labels"].get("app", ""), pod["spec"].get("nodeName") or "")
            load[key] = load.get(key, 0) + 1
        for pod in pods:
            metadata = pod["metadata"]
            path = f"/api/v1/namespaces/{self.namespace}/pods/{metadata['name']}"
            if metadata.get("deletionTimestamp"):
                confirm_gone(kube, path)
            elif not pod["spec"].get("nodeName"):
                if not schedulable:
                    continue
                app = metadata["labels"].get("app", "")
                target = min(schedulable, key=lambda name: (load.get((app, name), 0), name))
                load[(app, target)] = load.get((app, target), 0) + 1
                bind(kube, path, target)
            elif pod["spec"]["nodeName"] not in nodes:
                continue  # its node is gone: the pod garbage collector removes it
            elif not is_ready(pod):
                report_running(kube, path, pod)
