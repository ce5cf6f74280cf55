"""A STAND-IN for a kubelet: what a node would do for the API server, without containers.

The e2e control plane has no kubelet and no scheduler, so no pod would ever run, and the
engine waits for Deployments (the Kubernetes provider's await, Helm's ``--wait``) until they
time out. This thread does what a scheduler and one healthy node would do as seen through
the API: it registers a Ready Node and renews its Lease, binds every pending pod to it and
reports it Running and Ready (all containers started), and confirms the deletion of pods
that are terminating (a kubelet reports its containers stopped; ``gracePeriodSeconds: 0``).
Nothing runs: the pods' images are never pulled.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

from tests.e2e.kube_cluster import KubeCluster

NODE = "e2e-kubelet"
MERGE_PATCH = "application/merge-patch+json"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubeletStandIn:
    """Start with ``start()``; every ``interval`` seconds it looks at every pod."""

    def __init__(self, cluster: KubeCluster, interval: float = 0.5) -> None:
        self.cluster = cluster
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[str] = []

    def start(self) -> KubeletStandIn:
        self._register_node()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, answer = self.cluster.request(method, path, body, **kwargs)
        if status >= 300 and status not in (404, 409):
            self.errors.append(f"{method} {path}: {status} {answer}")
        return answer

    def _register_node(self) -> None:
        self._call(
            "POST",
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
            },
        )
        self._call(
            "PATCH",
            f"/api/v1/nodes/{NODE}/status",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "kubelet stand-in",
                            "lastHeartbeatTime": _now(),
                            "lastTransitionTime": _now(),
                        }
                    ],
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                    "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                }
            },
            content_type=MERGE_PATCH,
        )
        self._call(
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": NODE},
                "spec": {
                    "holderIdentity": NODE,
                    "leaseDurationSeconds": 40,
                    "renewTime": _micro_now(),
                },
            },
        )

    def _run(self) -> None:
        beats = 0
        while not self._stop.wait(self.interval):
            beats += 1
            if beats % 20 == 0:  # the Lease is the node's heartbeat (every 10 s)
                self._call(
                    "PATCH",
                    f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}",
                    {"spec": {"renewTime": _micro_now()}},
                    content_type=MERGE_PATCH,
                )
            pods = self._call("GET", "/api/v1/pods") or {}
            for pod in pods.get("items") or []:
                self._handle(pod)

    def _handle(self, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        path = f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}"
        if metadata.get("deletionTimestamp"):
            self._call(
                "DELETE",
                path,
                {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
            )
        elif not pod["spec"].get("nodeName"):
            self._call(
                "POST",
                f"{path}/binding",
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": metadata["name"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
                },
            )
        elif (pod.get("status") or {}).get("phase") != "Running":
            self._call("PATCH", f"{path}/status", _running(pod), content_type=MERGE_PATCH)


def _running(pod: dict[str, Any]) -> dict[str, Any]:
    now = _now()
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now}
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
            "state": {"running": {"startedAt": now}},
        }
        for container in pod["spec"]["containers"]
    ]
    return {
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": now,
            "conditions": conditions,
            "containerStatuses": containers,
        }
    }
