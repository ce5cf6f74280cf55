"""The stack plan: every fact derived once from the validated config, without Pulumi."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from core import safe_yaml
from core.autoscaler.values import decode_cluster_config
from core.config import ConfigError, parse_stack_config, sections_from_flat_config
from core.config.parse import read_stack_file
from core.plan import PlannedResource, StackPlan, plan_stack
from core.talos.user_data import decode_user_data

from tests.conftest import REPO, shipped_config
from tests.stand_ins.hetzner_api import TEST_TOKEN

P = "hcloud-talos-autoscaler"
C = f"{P}:index"


def stack_config(name: str, change: Any = None) -> dict[str, Any]:
    flat = shipped_config(name)
    if change is not None:
        change(flat)
    return flat


def plan_of(name: str, change: Any = None) -> StackPlan:
    sections, token = sections_from_flat_config(stack_config(name, change))
    return plan_stack(parse_stack_config(sections, token, REPO))


def test_the_dev_plan_names_every_resource_the_program_registers() -> None:
    plan = plan_of("dev")
    assert plan.resources == (
        PlannedResource(f"{C}:PrivateNetwork", "network"),
        PlannedResource("hcloud:index/network:Network", "network-network", "network"),
        PlannedResource("hcloud:index/networkSubnet:NetworkSubnet", "network-subnet", "network"),
        PlannedResource(f"{C}:TalosImage", "talos-image"),
        PlannedResource("pulumi-python:dynamic:Resource", "talos-image-amd64", "talos-image"),
        PlannedResource(f"{C}:AutoscalerSecrets", "autoscaler-secrets"),
        PlannedResource(
            "kubernetes:core/v1:Namespace", "autoscaler-secrets-namespace", "autoscaler-secrets"
        ),
        PlannedResource(
            "kubernetes:core/v1:Secret", "autoscaler-secrets-credentials", "autoscaler-secrets"
        ),
        PlannedResource(
            "kubernetes:core/v1:Secret", "autoscaler-secrets-talos-config", "autoscaler-secrets"
        ),
        PlannedResource(f"{C}:AutoscaledServers", "autoscaled-servers"),
        PlannedResource(
            "pulumi-python:dynamic/autoscaler:PoolServers",
            "autoscaled-servers-workers-fsn1",
            "autoscaled-servers",
        ),
        PlannedResource(f"{C}:ClusterAutoscaler", "autoscaler"),
        PlannedResource(
            "kubernetes:cozystack.io/v1alpha1:Package", "autoscaler-package", "autoscaler"
        ),
        PlannedResource(f"{C}:ProviderIdSetter", "provider-id-setter"),
        PlannedResource(
            "kubernetes:core/v1:ConfigMap", "provider-id-setter-script", "provider-id-setter"
        ),
        PlannedResource(
            "kubernetes:core/v1:ServiceAccount", "provider-id-setter-account", "provider-id-setter"
        ),
        PlannedResource(
            "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
            "provider-id-setter-role",
            "provider-id-setter",
        ),
        PlannedResource(
            "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
            "provider-id-setter-binding",
            "provider-id-setter",
        ),
        PlannedResource(
            "kubernetes:apps/v1:Deployment", "provider-id-setter-deployment", "provider-id-setter"
        ),
        PlannedResource(f"{C}:NodeController", "node-controller"),
        PlannedResource(
            "kubernetes:core/v1:ConfigMap", "node-controller-script", "node-controller"
        ),
        PlannedResource(
            "kubernetes:core/v1:ServiceAccount", "node-controller-account", "node-controller"
        ),
        PlannedResource(
            "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
            "node-controller-role",
            "node-controller",
        ),
        PlannedResource(
            "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
            "node-controller-binding",
            "node-controller",
        ),
        PlannedResource(
            "kubernetes:apps/v1:Deployment", "node-controller-deployment", "node-controller"
        ),
    )


def test_the_plan_follows_the_options_that_add_or_drop_resources() -> None:
    def every_option(flat: dict[str, Any]) -> None:
        flat[f"{P}:network"] = {"existing": "shared-net"}
        flat[f"{P}:autoscaler"].update(providerId="none", smokeTest={"replicas": 2})

    names = {resource.name for resource in plan_of("dev", every_option).resources}
    assert "network-network" not in names and "network-subnet" not in names
    assert not any(name.startswith("provider-id-setter") for name in names)
    assert {"smoke-test", "smoke-test-deployment"} <= names
    prod = {resource.name for resource in plan_of("prod").resources}
    assert {"talos-image-amd64", "talos-image-arm64", "autoscaler-release"} <= prod
    assert "autoscaler-package" not in prod
    assert {
        f"autoscaled-servers-{pool}" for pool in ("general-fsn1", "general-nbg1", "arm-fsn1")
    } <= prod


def test_snapshot_requests_per_architecture() -> None:
    plan = plan_of("prod")
    amd64, arm64 = plan.image.snapshots
    assert (amd64.architecture, arm64.architecture) == ("amd64", "arm64")
    assert (amd64.server_type, arm64.server_type) == ("cx23", "cax11")
    assert (amd64.must_fit_server_types, arm64.must_fit_server_types) == (("cpx32",), ("cax21",))
    assert amd64.extensions == ("siderolabs/qemu-guest-agent",)
    assert plan.image.schematic_id.startswith("ce4c980550dd")
    assert arm64.image_url == (
        f"https://factory.talos.dev/image/{plan.image.schematic_id}/v1.11.6/hcloud-arm64.raw.xz"
    )
    assert arm64.labels == {
        "os": "talos",
        "talos-version": "v1.11.6",
        "talos-schematic": plan.image.schematic_id[:32],
        "arch": "arm64",
        "managed-by": P,
        "environment": "prod",
    }
    assert set(amd64.properties()) == {
        "talos_version",
        "schematic_id",
        "extensions",
        "architecture",
        "location",
        "server_type",
        "factory_url",
        "extra_labels",
        "must_fit_server_types",
        "write_timeout",
    }


def test_worker_configs_take_the_subnet_and_are_built_once_per_subnet() -> None:
    plan = plan_of("prod")
    configs = plan.worker_configs("10.110.0.0/24")
    assert configs is plan.worker_configs("10.110.0.0/24")
    assert set(configs) == {"general-fsn1", "general-nbg1", "arm-fsn1"}
    assert "- 10.110.0.0/24" in configs["arm-fsn1"].yaml
    other = plan.worker_configs("10.110.0.0/25")
    assert "- 10.110.0.0/25" in other["arm-fsn1"].yaml
    assert configs["arm-fsn1"].machine["nodeLabels"]["hcloud/node-group"] == "arm-fsn1"


def test_the_base_worker_config_is_parsed_once_however_many_pools(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    parsed: list[int] = []
    load_all = safe_yaml.load_all

    def counting(text: str, limits: safe_yaml.Limits) -> list[Any]:
        parsed.append(len(text))
        return load_all(text, limits)

    monkeypatch.setattr(safe_yaml, "load_all", counting)
    config = stack_config("dev")
    template = config[f"{P}:autoscaler"]["nodeGroups"][0]
    config[f"{P}:autoscaler"]["nodeGroups"] = [
        {**template, "name": f"pool-{index}", "maxSize": 2} for index in range(25)
    ]
    (tmp_path / "examples").mkdir()
    worker = (REPO / "examples" / "worker.yaml").read_text()
    (tmp_path / "examples" / "worker.yaml").write_text(worker)
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))

    plan = plan_stack(*read_stack_file(tmp_path, "dev"))
    plan.worker_configs(plan.network.subnet)
    assert len(plan.worker_configs(plan.network.subnet)) == 25
    assert parsed.count(len(worker)) == 1  # the stack file is the other parse


def test_secrets_servers_autoscaler_and_outputs() -> None:
    plan = plan_of("prod")
    assert (plan.secrets.namespace, plan.secrets.talos_config_key) == (
        "cluster-autoscaler",
        "cluster-config",
    )
    assert (plan.secrets.credentials_secret, plan.secrets.credentials_key) == (
        "hetzner-credentials",
        "token",
    )
    assert plan.secrets.retain_namespace is False  # helm: the namespace is the stack's
    assert plan.servers.pools == ("general-fsn1", "general-nbg1", "arm-fsn1")
    assert plan.autoscaler.chart_version == "9.56.0"
    assert plan.autoscaler.chart_repository == "https://kubernetes.github.io/autoscaler"
    assert plan.autoscaler.image.tag == "v1.33.6"
    assert plan.outputs["nodeGroups"][2]["instanceType"] == "cax21"
    assert plan.outputs["kubectlLogs"] == (
        "kubectl -n cluster-autoscaler logs "
        "deployment/cluster-autoscaler-hetzner-hetzner-cluster-autoscaler -f"
    )
    assert "smokeTestWatch" not in plan.outputs
    assert plan.hcloud_token == TEST_TOKEN and TEST_TOKEN not in repr(plan)


def test_the_legacy_format_and_the_smoke_test() -> None:
    def legacy(flat: dict[str, Any]) -> None:
        flat[f"{P}:autoscaler"].update(configFormat="legacy", smokeTest={"replicas": 3})

    plan = plan_of("dev", legacy)
    assert plan.secrets.talos_config_key == "cloud-init"
    assert plan.smoke_test is not None
    assert plan.smoke_test.pools == []  # legacy nodes carry no pool label to pin to
    assert plan.outputs["smokeTestWatch"] == (
        "kubectl get nodes -l 'hcloud/node-group in (workers-fsn1)' -o wide --watch"
    )
    configs = plan.worker_configs(plan.network.subnet)
    secret = plan.talos_config(configs, {"amd64": "42"}, plan.network.subnet)
    assert secret.cluster_config is None and not secret.as_file
    user_data = base64.b64decode(secret.value).decode()
    assert decode_user_data(user_data) == configs["workers-fsn1"].yaml


def test_talos_config_and_chart_values_take_what_only_resources_know() -> None:
    def existing(flat: dict[str, Any]) -> None:
        flat[f"{P}:network"] = {"existing": "shared-net"}
        flat[f"{P}:talos"].update(version="v1.12.11", kubernetesVersion="1.35.0")

    plan = plan_of("dev", existing)
    configs = plan.worker_configs("10.100.0.0/24")
    first = plan.talos_config(configs, {"amd64": "101"}, "10.100.0.0/24")
    decoded = decode_cluster_config(first.value, None)
    assert decoded == first.cluster_config
    assert decoded["imagesForArch"] == {"amd64": "101"}
    assert decoded["defaultSubnetIPRange"] == "10.100.0.0/24"  # a reused network: pinned
    assert plan.talos_config(configs, {"amd64": "102"}, "10.100.0.0/24").fingerprint != (
        first.fingerprint
    )
    chart = plan.chart_values(
        network_name="the-real-name",
        image_ids={"amd64": "101"},
        credentials_secret="creds",
        talos_config_secret="talos",
        talos_config_as_file=False,
        config_hash=first.fingerprint,
    )
    assert chart["extraEnv"]["HCLOUD_NETWORK"] == "the-real-name"
    assert chart["extraEnvSecrets"]["HCLOUD_CLUSTER_CONFIG"] == {
        "name": "talos",
        "key": "cluster-config",
    }
    assert chart["podAnnotations"] == {f"{P}/config-sha256": first.fingerprint}


def test_the_reused_networks_range_must_hold_the_subnet() -> None:
    def existing(flat: dict[str, Any]) -> None:
        flat[f"{P}:network"] = {"existing": "shared-net"}

    network = plan_of("dev", existing).network
    assert network.existing_subnet("10.100.0.0/16") == "10.100.0.0/24"
    with pytest.raises(
        ConfigError, match=r"network\.subnet: 10\.100\.0\.0/24 is not inside the range"
    ):
        network.existing_subnet("10.200.0.0/16")


def test_warnings_come_once_in_order_source_first() -> None:
    def carried_over(flat: dict[str, Any]) -> None:
        flat[f"{P}:talos"].update(version="v1.12.11", kubernetesVersion="1.34.2")
        flat[f"{P}:autoscaler"]["providerId"] = "none"

    sections, token = sections_from_flat_config(stack_config("dev", carried_over))
    plan = plan_stack(parse_stack_config(sections, token, REPO), ["from the source"])
    assert plan.warnings[0] == "from the source"
    assert plan.warnings[-1].startswith("autoscaler.providerId is none")
    deprecated = [w for w in plan.warnings if "deprecated" in w]
    assert deprecated and len(deprecated) == len(set(deprecated))


def test_an_encrypted_base_config_is_planned_without_worker_configs(tmp_path: Path) -> None:
    config = stack_config("dev")
    del config[f"{P}:talos"]["workerConfigFile"]
    config[f"{P}:talos"]["workerConfig"] = {"secure": "v1:bm90LXJlYWw="}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))
    plan = plan_stack(*read_stack_file(tmp_path, "dev"))
    assert "network-network" in {resource.name for resource in plan.resources}
    with pytest.raises(ValueError, match="encrypted"):
        plan.worker_configs(plan.network.subnet)
