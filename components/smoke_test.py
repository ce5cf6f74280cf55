"""Opt-in scale-up smoke test (guide step 6): pods that only fit on new autoscaled nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from core.config import Taint
from core.talos_config import NODE_GROUP_LABEL

SMOKE_TEST_NAME = "autoscaler-smoke-test"


def smoke_test_deployment(
    namespace: str, replicas: int, pools: list[str], taints: list[Taint]
) -> dict[str, Any]:
    """The guide's anti-affinity nginx Deployment, pinned to the autoscaled pools.

    One pod per node (anti-affinity on the hostname) and only on pool nodes, so
    ``replicas`` more than the pools' current nodes forces a scale-up. With no
    ``pools`` (legacy format: nodes carry no pool label) it is the guide's
    unpinned Deployment.
    """
    labels = {"app": SMOKE_TEST_NAME}
    tolerations = [
        {"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect}
        for taint in taints
    ]
    affinity: dict[str, Any] = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": labels},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    if pools:
        affinity["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": NODE_GROUP_LABEL, "operator": "In", "values": pools}
                        ]
                    }
                ]
            }
        }
    pod_spec: dict[str, Any] = {
        "affinity": affinity,
        "containers": [
            {
                "name": "nginx",
                "image": "nginx:1.27-alpine",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }
        ],
    }
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SMOKE_TEST_NAME, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def watch_nodes_command(pools: list[str]) -> str:
    """The command that shows autoscaled nodes appearing."""
    return f"kubectl get nodes -l '{NODE_GROUP_LABEL} in ({','.join(pools)})' -o wide --watch"


@dataclass(frozen=True)
class SmokeTestArgs:
    namespace: pulumi.Input[str]
    replicas: int
    pools: list[str]
    taints: list[Taint] = field(default_factory=list)


class SmokeTest(pulumi.ComponentResource):
    """Deploys the smoke-test Deployment; absent from the program when not enabled."""

    deployment_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: SmokeTestArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hcloud-talos-autoscaler:index:SmokeTest", name, None, opts)
        manifest = pulumi.Output.from_input(args.namespace).apply(
            lambda namespace: smoke_test_deployment(
                namespace, args.replicas, args.pools, args.taints
            )
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.deployment_name = deployment.metadata["name"]
        self.register_outputs({"deploymentName": self.deployment_name})
