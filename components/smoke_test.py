"""Opt-in scale-up smoke test (guide step 6): pods that only fit on new autoscaled nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from core import resources
from core.autoscaler.manifests import smoke_test_deployment
from core.config import Taint
from core.plan import SmokeTestPlan


@dataclass(frozen=True)
class SmokeTestArgs:
    namespace: pulumi.Input[str]
    replicas: int
    pools: list[str]
    taints: list[Taint] = field(default_factory=list)

    @classmethod
    def from_plan(cls, plan: SmokeTestPlan, namespace: pulumi.Input[str]) -> SmokeTestArgs:
        return cls(
            namespace=namespace, replicas=plan.replicas, pools=plan.pools, taints=plan.taints
        )


class SmokeTest(pulumi.ComponentResource):
    """Deploys the smoke-test Deployment; absent from the program when not enabled."""

    deployment_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: SmokeTestArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(resources.SMOKE_TEST.type, name, None, opts)
        manifest = pulumi.Output.from_input(args.namespace).apply(
            lambda namespace: smoke_test_deployment(
                namespace, args.replicas, args.pools, args.taints
            )
        )
        deployment = k8s.apps.v1.Deployment(
            resources.SMOKE_TEST_DEPLOYMENT.name(name),
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.deployment_name = deployment.metadata["name"]
        self.register_outputs({"deploymentName": self.deployment_name})
