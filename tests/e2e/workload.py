"""A workload guarded by a PodDisruptionBudget, and a thread that samples it: what the node
controller's rollouts are judged by (``test_node_rollout``, and the program's ``talos.version``
change in ``test_program_end_to_end``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.e2e.kube_cluster import KubeCluster
from tests.stand_ins.kubelet import is_ready


def deployment(
    namespace: str,
    name: str,
    replicas: int,
    node_name: str | None = None,
    node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    labels = {"app": name}
    pod: dict[str, Any] = {
        "containers": [{"name": "main", "image": "nginx:1.27-alpine"}],
        "terminationGracePeriodSeconds": 0,
    }
    if node_name:
        pod["nodeName"] = node_name
    if node_selector:
        pod["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def pdb(namespace: str, name: str, min_available: int) -> dict[str, Any]:
    """A PodDisruptionBudget for the pods of ``deployment(namespace, name, …)``."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": name}}},
    }


def disruptions_allowed(kube: KubeCluster, namespace: str, name: str) -> int | None:
    """What the disruption controller last computed for the PDB (None before it did)."""
    budget = kube.get(f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{name}")
    allowed: int | None = ((budget or {}).get("status") or {}).get("disruptionsAllowed")
    return allowed


def ready_nodes(kube: KubeCluster, namespace: str, app: str) -> list[str]:
    """The nodes of ``app``'s Ready pods, one entry a pod, sorted."""
    pods = (kube.get(f"/api/v1/namespaces/{namespace}/pods") or {}).get("items") or []
    return sorted(
        pod["spec"].get("nodeName") or ""
        for pod in pods
        if pod["metadata"]["labels"].get("app") == app and is_ready(pod)
    )


@dataclass
class Sample:
    at: float
    #: Ready pods of the guarded app.
    ready: int
    disruptions_allowed: int | None
    cordoned: list[str]
    nodes: set[str]


@dataclass
class Watcher:
    """Samples the cluster every 0.2 s: the Ready pods of ``app`` in ``namespace``, its PDB
    (named ``app`` too), the cordoned nodes, the nodes. Run ``run`` in a thread."""

    kube: KubeCluster
    namespace: str
    app: str
    samples: list[Sample] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(0.2):
            path = f"/api/v1/namespaces/{self.namespace}/pods"
            pods = (self.kube.get(path) or {}).get("items") or []
            allowed = disruptions_allowed(self.kube, self.namespace, self.app)
            nodes = (self.kube.get("/api/v1/nodes") or {}).get("items") or []
            self.samples.append(
                Sample(
                    at=time.monotonic() - self.started,
                    ready=sum(
                        1
                        for pod in pods
                        if pod["metadata"]["labels"].get("app") == self.app and is_ready(pod)
                    ),
                    disruptions_allowed=allowed,
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

    def timeline(self, replaced: tuple[str, ...], since: float = 0.0) -> list[str]:
        """Each change of the cordoned nodes and each deletion of a ``replaced`` Node, at its
        time after ``since`` (seconds after the watcher started), up to now."""
        lines = []
        previous: list[str] = []
        gone: set[str] = set()
        for sample in list(self.samples):
            if sample.cordoned != previous:
                lines.append(
                    f"{sample.at - since:6.1f}s cordoned {sample.cordoned or '-'}, "
                    f"{self.app} Ready {sample.ready}"
                )
                previous = sample.cordoned
            for name in replaced:
                if name not in sample.nodes and name not in gone:
                    gone.add(name)
                    lines.append(f"{sample.at - since:6.1f}s Node {name} deleted")
        return lines


class Stoppable(Protocol):
    def run(self) -> None: ...

    def stop(self) -> None: ...


class Background:
    """Stand-ins and watchers in threads, all stopped and joined on ``stop`` (or at the end of
    a ``with``)."""

    def __init__(self) -> None:
        self._started: list[tuple[threading.Thread, Stoppable]] = []

    def start(self, owner: Stoppable) -> None:
        thread = threading.Thread(target=owner.run, daemon=True)
        thread.start()
        self._started.append((thread, owner))

    def stop(self) -> None:
        for _, owner in self._started:
            owner.stop()
        for thread, _ in self._started:
            thread.join(timeout=10)

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
