"""The SmokeTest component under mocks."""

from __future__ import annotations

from components.smoke_test import SmokeTest, SmokeTestArgs
from core.autoscaler.manifests import smoke_test_deployment
from core.config import Taint

from tests.conftest import MockRuntime
from tests.support.manifest_paths import pod_spec, required_anti_affinity, required_node_terms


def test_smoke_test_deployment_forces_one_pod_per_pool_node() -> None:
    manifest = smoke_test_deployment(
        "ns", 5, ["workers-fsn1", "arm"], [Taint(key="arch", value="arm64", effect="NoSchedule")]
    )
    pod = pod_spec(manifest)
    assert manifest["spec"]["replicas"] == 5
    anti = required_anti_affinity(pod)
    assert anti == [
        {
            "labelSelector": {"matchLabels": {"app": "autoscaler-smoke-test"}},
            "topologyKey": "kubernetes.io/hostname",
        }
    ]
    assert required_node_terms(pod)[0]["matchExpressions"] == [
        {"key": "hcloud/node-group", "operator": "In", "values": ["workers-fsn1", "arm"]}
    ]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}}
    assert pod["tolerations"] == [
        {"key": "arch", "operator": "Equal", "value": "arm64", "effect": "NoSchedule"}
    ]


def test_smoke_test_component_registers_the_deployment(pulumi_runtime: MockRuntime) -> None:
    def program() -> None:
        SmokeTest("smoke", SmokeTestArgs(namespace="ns", replicas=3, pools=["p"]))

    pulumi_runtime.run(program)
    deployment = pulumi_runtime.one("kubernetes:apps/v1:Deployment")
    assert deployment.inputs["metadata"]["namespace"] == "ns"
    assert deployment.inputs["spec"]["replicas"] == 3
    assert pulumi_runtime.parent_of(deployment).type == "hcloud-talos-autoscaler:index:SmokeTest"
