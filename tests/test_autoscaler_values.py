"""The autoscaler values builder: guide parity, Cozystack CRD, chart keys, cluster config."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import SHARED_REFERENCE

from components import autoscaler_values as values
from components.config import AutoscalerSettings, ConfigError

#: Top-level keys documented in the chart's values.yaml (kubernetes/autoscaler
#: charts/cluster-autoscaler/values.yaml) that this program emits.
CHART_KEYS = {
    "autoscalingGroups",
    "cloudProvider",
    "extraArgs",
    "extraEnv",
    "extraEnvSecrets",
    "extraVolumeSecrets",
    "image",
    "podAnnotations",
    "rbac",
}
CHART_NESTED_KEYS = {"image": {"tag"}, "rbac": {"additionalRules"}}


def settings(**changes: Any) -> AutoscalerSettings:
    raw: dict[str, Any] = {
        "nodeGroups": [
            {
                "name": "workers-fsn1",
                "minSize": 0,
                "maxSize": 10,
                "instanceType": "cpx22",
                "region": "FSN1",
            }
        ],
        **changes,
    }
    return AutoscalerSettings.model_validate(raw)


def inputs(config: AutoscalerSettings, **changes: Any) -> values.ValuesInputs:
    base: dict[str, Any] = {
        "settings": config,
        "kubernetes_version": "1.33.1",
        "network_name": "cozystack-vswitch",
        "image_ids": {"amd64": "123456"},
        "credentials_secret": "hetzner-credentials",
        "talos_config_secret": "talos-config",
        "config_hash": "abc",
    }
    base.update(changes)
    return values.ValuesInputs(**base)


def test_legacy_package_equals_the_guide_field_for_field() -> None:
    guide = yaml.safe_load(
        (SHARED_REFERENCE / "guide.md")
        .read_text()
        .split("Create the Package resource:\n\n```yaml\n")[1]
        .split("```")[0]
    )
    config = settings(configFormat="legacy", sshKey="<ssh-key-name>")
    manifest = values.package_manifest(
        values.autoscaler_values(inputs(config, image_ids={"amd64": "<snapshot-id>"}))
    )
    ours = manifest["spec"]["components"]["cluster-autoscaler-hetzner"]["values"][
        "cluster-autoscaler"
    ]
    theirs = guide["spec"]["components"]["cluster-autoscaler-hetzner"]["values"][
        "cluster-autoscaler"
    ]
    assert {k: v for k, v in manifest.items() if k != "spec"} == {
        k: v for k, v in guide.items() if k != "spec"
    }
    assert manifest["spec"]["variant"] == guide["spec"]["variant"]
    assert ours["autoscalingGroups"] == [
        {**g, "region": g["region"].lower()} for g in theirs["autoscalingGroups"]
    ]
    assert ours["extraEnvSecrets"] == theirs["extraEnvSecrets"]
    assert ours["rbac"] == theirs["rbac"]
    # Every variable of the guide, with the same value; ours adds the creation timeout.
    assert {k: ours["extraEnv"][k] for k in theirs["extraEnv"]} == theirs["extraEnv"]
    assert set(ours["extraEnv"]) - set(theirs["extraEnv"]) == {"HCLOUD_SERVER_CREATION_TIMEOUT"}


def crd_schema() -> dict[str, Any]:
    path = SHARED_REFERENCE / "cozystack-crds" / "cozystack.io_packages.yaml"
    if not path.exists():
        pytest.fail(f"test oracle missing: {path}")
    crd = yaml.safe_load(path.read_text())
    assert crd["spec"]["scope"] == "Cluster"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def pruned_keys(document: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields a structural schema would silently prune (the API server drops unknown keys).

    ``metadata`` is left out: the API server validates ObjectMeta itself.
    """
    if not isinstance(document, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    for key, value in document.items():
        if properties is not None and key in properties:
            found += pruned_keys(value, properties[key], f"{path}.{key}")
        elif isinstance(extra, dict):
            found += pruned_keys(value, extra, f"{path}.{key}")
        else:
            found.append(f"{path}.{key}")
    return found


@pytest.mark.parametrize("config_format", ["cluster-config", "legacy"])
def test_package_manifest_validates_against_the_cozystack_crd(config_format: str) -> None:
    manifest = values.package_manifest(
        values.autoscaler_values(inputs(settings(configFormat=config_format)))
    )
    schema = crd_schema()
    jsonschema.validate(manifest, schema)
    assert pruned_keys(manifest["spec"], schema["properties"]["spec"], ".spec") == []
    assert "namespace" not in manifest["metadata"]  # cluster-scoped
    assert manifest["metadata"]["name"] == "cozystack.cluster-autoscaler-hetzner"


def test_the_crd_check_catches_a_misplaced_field() -> None:
    manifest = values.package_manifest({"extraEnv": {}})
    manifest["spec"]["values"] = {"cluster-autoscaler": {}}
    spec_schema = crd_schema()["properties"]["spec"]
    assert pruned_keys(manifest["spec"], spec_schema, ".spec") == [".spec.values"]


def test_helm_values_use_only_keys_the_chart_documents() -> None:
    config = settings(imageTag="v1.33.0")
    chart = values.helm_values(
        values.autoscaler_values(inputs(config, cluster_config_as_file=True))
    )
    assert chart["cloudProvider"] == "hetzner"
    assert set(chart) <= CHART_KEYS
    for key, nested in CHART_NESTED_KEYS.items():
        assert set(chart[key]) <= nested


def test_values_are_wired_and_explicit() -> None:
    result = values.autoscaler_values(inputs(settings(sshKey="k", firewall="fw")))
    assert result["autoscalingGroups"] == [
        {
            "name": "workers-fsn1",
            "minSize": 0,
            "maxSize": 10,
            "instanceType": "cpx22",
            "region": "fsn1",
        }
    ]
    assert result["extraEnv"] == {
        "HCLOUD_NETWORK": "cozystack-vswitch",
        "HCLOUD_SSH_KEY": "k",
        "HCLOUD_FIREWALL": "fw",
        "HCLOUD_PUBLIC_IPV4": "true",
        "HCLOUD_PUBLIC_IPV6": "false",
        "HCLOUD_SERVER_CREATION_TIMEOUT": "10",
    }
    assert result["extraEnvSecrets"] == {
        "HCLOUD_TOKEN": {"name": "hetzner-credentials", "key": "token"},
        "HCLOUD_CLUSTER_CONFIG": {"name": "talos-config", "key": "cluster-config"},
    }
    assert result["rbac"]["additionalRules"] == [values.LEASES_RULE]
    assert result["extraArgs"] == {"enforce-node-group-min-size": True}
    assert result["podAnnotations"] == {values.CONFIG_HASH_ANNOTATION: "abc"}
    assert "image" not in result


def test_extra_args_override_the_defaults() -> None:
    result = values.autoscaler_values(
        inputs(settings(extraArgs={"enforce-node-group-min-size": False, "v": 2}))
    )
    assert result["extraArgs"] == {"enforce-node-group-min-size": False, "v": 2}


def test_image_tag_must_match_the_kubernetes_minor() -> None:
    with pytest.raises(
        ConfigError, match=r"autoscaler\.imageTag: v1\.32\.0 does not match Kubernetes 1\.33\.1"
    ):
        values.autoscaler_values(inputs(settings(imageTag="v1.32.0")))
    ok = values.autoscaler_values(inputs(settings(imageTag="1.33.2")))
    assert ok["image"] == {"tag": "v1.33.2"}


def test_image_tag_too_old_for_cluster_config_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"imageTag: v1\.27\.3 predates HCLOUD_CLUSTER_CONFIG"):
        values.autoscaler_values(inputs(settings(imageTag="v1.27.3"), kubernetes_version="1.27.1"))


def test_cluster_config_decodes_like_the_autoscaler_reads_it() -> None:
    config = settings(
        nodeGroups=[
            {"name": "x86", "minSize": 0, "maxSize": 2, "instanceType": "cpx22", "region": "fsn1"},
            {
                "name": "arm",
                "minSize": 0,
                "maxSize": 2,
                "instanceType": "cax21",
                "region": "nbg1",
                "labels": {"tier": "arm"},
                "taints": [{"key": "arch", "value": "arm64", "effect": "NoSchedule"}],
            },
        ]
    )
    cluster = values.cluster_config(
        config.node_groups,
        {"kilo.squat.ai/location": "hetzner-cloud"},
        {"amd64": "11", "arm64": "22"},
        {"x86": "x86-yaml", "arm": "arm-yaml"},
    )
    secret = values.cluster_config_secret(cluster)
    assert not secret.as_file
    decoded = json.loads(base64.b64decode(secret.value))
    assert decoded["imagesForArch"] == {"amd64": "11", "arm64": "22"}
    assert decoded["nodeConfigs"]["arm"] == {
        "cloudInit": "arm-yaml",
        "labels": {
            "kilo.squat.ai/location": "hetzner-cloud",
            "hcloud/node-group": "arm",
            "topology.kubernetes.io/region": "nbg1",
            "tier": "arm",
        },
        "taints": [{"key": "arch", "value": "arm64", "effect": "NoSchedule"}],
    }
    assert decoded["nodeConfigs"]["x86"]["cloudInit"] == "x86-yaml"
    assert values.decode_cluster_config(secret.value, None) == decoded


def test_every_architecture_in_use_needs_an_image() -> None:
    config = settings(
        nodeGroups=[
            {"name": "arm", "minSize": 0, "maxSize": 1, "instanceType": "cax11", "region": "fsn1"}
        ]
    )
    with pytest.raises(ValueError, match="no Talos image for architecture"):
        values.cluster_config(config.node_groups, {}, {"amd64": "1"}, {"arm": "y"})


def test_large_cluster_config_moves_to_a_mounted_file() -> None:
    big = {"nodeConfigs": {"p": {"cloudInit": "x" * (200 * 1024)}}}
    secret = values.cluster_config_secret(big)
    assert secret.as_file
    assert values.decode_cluster_config(None, secret.value) == big
    result = values.autoscaler_values(inputs(settings(), cluster_config_as_file=True))
    assert "HCLOUD_CLUSTER_CONFIG" not in result["extraEnvSecrets"]
    assert (
        result["extraEnv"]["HCLOUD_CLUSTER_CONFIG_FILE"]
        == "/etc/hcloud-cluster-config/cluster-config"
    )
    assert result["extraVolumeSecrets"] == {
        "hcloud-cluster-config": {"name": "talos-config", "mountPath": "/etc/hcloud-cluster-config"}
    }


def test_cluster_config_past_the_secret_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="above the 1048576-byte limit of a Kubernetes Secret"):
        values.cluster_config_secret({"nodeConfigs": {"p": {"cloudInit": "x" * (1100 * 1024)}}})


def test_legacy_cloud_init_is_single_base64() -> None:
    encoded = values.legacy_cloud_init("version: v1alpha1\n")
    assert base64.b64decode(encoded) == b"version: v1alpha1\n"


def test_node_registration_warning_only_without_controller() -> None:
    assert values.node_registration_warning(True) is None
    warning = values.node_registration_warning(False)
    assert warning is not None and "spec.providerID" in warning and "15m" in warning
