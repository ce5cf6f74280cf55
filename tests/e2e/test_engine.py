"""The real Pulumi engine with the real pieces, on a small throwaway program (issue 15, phase 1).

The CLI built from ``pkg/v3``, the Kubernetes provider built from its module, Pulumi's own
dynamic-provider host, and a real API server (etcd, kube-apiserver, kube-controller-manager).
The program runs through the Automation API's inline mode: the Python language host
(``pulumi-language-python``) is refused by the Go module proxy (see scripts/toolchain.toml).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
from pulumi import automation as auto

from tests.conftest import SHARED_REFERENCE
from tests.e2e.engine_fixtures import PulumiEnv
from tests.e2e.kube_cluster import KubeCluster
from tests.e2e.throwaway_provider import Marker

NAMESPACE = "e2e-throwaway"
PACKAGE = "cozystack.e2e-throwaway"
RELEASE = "cluster-autoscaler-hetzner"
CHART = SHARED_REFERENCE / "charts" / "cluster-autoscaler"
DEPLOYMENT = f"{RELEASE}-hetzner-cluster-autoscaler"


def throwaway_program(kubeconfig: str, marker: Path) -> Callable[[], None]:
    def program() -> None:
        provider = k8s.Provider("kube", kubeconfig=kubeconfig)
        opts = pulumi.ResourceOptions(provider=provider)
        namespace = k8s.core.v1.Namespace("namespace", metadata={"name": NAMESPACE}, opts=opts)
        settings = k8s.core.v1.ConfigMap(
            "settings",
            metadata={"name": "settings", "namespace": namespace.metadata["name"]},
            data={"greeting": "hello"},
            opts=opts,
        )
        package = k8s.apiextensions.CustomResource(
            "package",
            api_version="cozystack.io/v1alpha1",
            kind="Package",
            metadata={"name": PACKAGE},
            spec={"variant": "default", "components": {"e2e": {"values": {"answer": 42}}}},
            opts=opts,
        )
        release = k8s.helm.v3.Release(
            "autoscaler",
            name=RELEASE,
            chart=str(CHART),
            namespace=namespace.metadata["name"],
            values={
                "cloudProvider": "hetzner",
                "autoscalingGroups": [
                    {
                        "name": "pool",
                        "minSize": 0,
                        "maxSize": 2,
                        "instanceType": "cpx22",
                        "region": "fsn1",
                    }
                ],
            },
            skip_await=True,  # no kubelet here: pods never run
            opts=opts,
        )
        marked = Marker("marker", str(marker), settings.data["greeting"])
        pulumi.export("namespace", namespace.metadata["name"])
        pulumi.export("packageId", package.id)
        pulumi.export("releaseStatus", release.status["status"])
        pulumi.export("markerSha256", marked.sha256)

    return program


def workspace(env: PulumiEnv, work_dir: Path) -> auto.LocalWorkspaceOptions:
    return auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        pulumi_home=str(env.home),
        env_vars=env.env,
        secrets_provider="passphrase",
        project_settings=auto.ProjectSettings(
            name="e2e-throwaway", runtime="python", backend=auto.ProjectBackend(url=env.backend)
        ),
        pulumi_command=auto.PulumiCommand(root=str(env.pulumi_root), skip_version_check=True),
    )


def test_engine_previews_creates_and_destroys_with_the_real_pieces(
    kube: KubeCluster, pulumi_env: PulumiEnv, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.txt"
    stack = auto.create_stack(
        "e2e",
        project_name="e2e-throwaway",
        program=throwaway_program(kube.kubeconfig.read_text(), marker),
        opts=workspace(pulumi_env, tmp_path),
    )
    version = pulumi_env.cli("version").stdout.strip()
    assert version == "v3.274.1"

    preview = stack.preview()
    # Stack, provider, Namespace, ConfigMap, Package, Release, Marker.
    assert preview.change_summary == {auto.OpType.CREATE: 7}, preview.change_summary
    assert kube.get(f"/api/v1/namespaces/{NAMESPACE}") is None  # a preview creates nothing
    assert not marker.exists()

    up = stack.up()
    assert up.summary.result == "succeeded"
    assert up.outputs["namespace"].value == NAMESPACE
    assert marker.read_text() == "hello"  # the dynamic provider's create ran
    assert up.outputs["releaseStatus"].value == "deployed"
    package = kube.get(f"/apis/cozystack.io/v1alpha1/packages/{PACKAGE}")
    assert package["spec"]["components"]["e2e"]["values"] == {"answer": 42}
    assert package["metadata"]["name"] == up.outputs["packageId"].value
    config_map = kube.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/settings")
    assert config_map["data"] == {"greeting": "hello"}
    deployment = kube.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{DEPLOYMENT}")
    assert deployment is not None, "the chart's Deployment is in the API server"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--nodes=0:2:cpx22:fsn1:pool" in container["command"]

    again = stack.preview()
    assert set(again.change_summary) == {auto.OpType.SAME}, again.change_summary
    refreshed = stack.refresh()
    assert refreshed.summary.result == "succeeded"

    destroyed = stack.destroy()
    assert destroyed.summary.result == "succeeded"
    assert not marker.exists()  # the dynamic provider's delete ran
    assert kube.get(f"/apis/cozystack.io/v1alpha1/packages/{PACKAGE}") is None
    # The namespace is gone only once the controller-manager emptied and finalized it.
    assert kube.get(f"/api/v1/namespaces/{NAMESPACE}") is None
    stack.workspace.remove_stack("e2e")
