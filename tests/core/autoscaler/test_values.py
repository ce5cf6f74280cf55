"""The autoscaler values builder: guide parity, Cozystack CRD, chart keys, cluster config."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonschema
import pytest
import yaml

from core.autoscaler import values
from core.config import AutoscalerSettings, ConfigError
from core.pools import LOWEST_PRIORITY
from core.releases.autoscaler import AutoscalerImage, autoscaler_image, parse_image_tag

from tests.conftest import SHARED_REFERENCE
from tests.support.manifest_paths import package_values
from tests.support.stack_config import autoscaler_settings, pools_of

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
    "replicaCount",
    "podDisruptionBudget",
    "topologySpreadConstraints",
    "resources",
    "nodeSelector",
    "tolerations",
    "priorityClassName",
    "expanderPriorities",
}
CHART_NESTED_KEYS = {
    "image": {"tag"},
    "rbac": {"additionalRules"},
    "podDisruptionBudget": {"maxUnavailable"},
    "resources": {"requests", "limits"},
}


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
        "pools": pools_of(config),
        "image": autoscaler_image(
            config.image_tag, config.deploy, "9.56.0", parse_image_tag("1.33.1")
        ),
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
    ours = package_values(manifest)
    theirs = package_values(guide)
    assert {k: v for k, v in manifest.items() if k != "spec"} == {
        k: v for k, v in guide.items() if k != "spec"
    }
    assert manifest["spec"]["variant"] == guide["spec"]["variant"]
    assert ours["autoscalingGroups"] == [
        {**g, "region": g["region"].lower()} for g in theirs["autoscalingGroups"]
    ]
    assert ours["extraEnvSecrets"] == theirs["extraEnvSecrets"]
    # The early guide's leases rule: the chart's ClusterRole grants it and Cozystack's
    # values-hetzner.yaml adds it, which a Package list would replace (the current guide
    # dropped it, FACTS 3).
    assert "rbac" in theirs and "rbac" not in ours
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
    config = settings(
        imageTag="v1.33.0",
        deploy="helm",
        namespace="autoscaler",
        extraArgs={"leader-elect-resource-name": "renamed"},
        replicas=2,
        resources={"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}},
        nodeSelector={"a": "b"},
        tolerations=[{"operator": "Exists"}],
        priorityClassName="x",
        expander="priority",
    )
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
    assert "rbac" not in result
    assert result["extraArgs"] == {"enforce-node-group-min-size": True}
    assert result["podAnnotations"] == {values.CONFIG_HASH_ANNOTATION: "abc"}
    assert result["image"] == {"tag": "v1.33.6"}  # the newest 1.33 release


def test_extra_args_override_the_defaults() -> None:
    result = values.autoscaler_values(
        inputs(settings(extraArgs={"enforce-node-group-min-size": False, "v": 2}))
    )
    assert result["extraArgs"] == {"enforce-node-group-min-size": False, "v": 2}


def test_an_image_tag_is_used_as_given() -> None:
    assert values.autoscaler_values(inputs(settings(imageTag="1.33.2")))["image"] == {
        "tag": "v1.33.2"
    }


#: FACTS 1.1 and 1.2: the first release whose Hetzner provider reads each setting.
FIRST_RELEASE_READING = {
    "HCLOUD_CLUSTER_CONFIG": "1.29.0",
    "HCLOUD_CLUSTER_CONFIG_FILE": "1.33.0",
    "defaultSubnetIPRange": "1.35.0",
    "placementGroup": "1.32.0",
    "serverLabels": "1.36.0",
}


@pytest.mark.parametrize(("setting", "first"), FIRST_RELEASE_READING.items())
def test_an_image_reads_a_setting_from_its_first_release_on(setting: str, first: str) -> None:
    version = parse_image_tag(first)
    before = parse_image_tag(f"{version.major}.{version.minor - 1}.99")
    assert not AutoscalerImage("x", version, "test").lacks(setting)
    assert AutoscalerImage("x", before, "test").lacks(setting)
    assert not AutoscalerImage(None, None, "unknown chart").lacks(setting)


@pytest.mark.parametrize(
    ("deploy", "chart", "kubernetes", "tag", "runs"),
    [
        # FACTS 2: chart 9.56.0 runs v1.35.0, Cozystack's vendored 9.55.0 runs v1.34.2.
        ("helm", "9.56.0", None, None, "1.35.0"),
        ("package", "9.56.0", None, None, "1.34.2"),
        ("helm", "9.59.0", None, None, "1.35.0"),
        ("helm", "9.99.0", None, None, None),  # a chart we know nothing about
        # FACTS 1.6: the release built for the cluster's Kubernetes minor.
        ("package", "9.56.0", "1.33.1", "v1.33.6", "1.33.6"),
        ("helm", "9.56.0", "1.30.0", "v1.30.7", "1.30.7"),
        ("helm", "9.56.0", "1.36.2", "v1.36.1", "1.36.1"),
    ],
)
def test_the_image_that_runs_when_image_tag_is_unset(
    deploy: str, chart: str, kubernetes: str | None, tag: str | None, runs: str | None
) -> None:
    image = autoscaler_image(
        None, deploy, chart, parse_image_tag(kubernetes) if kubernetes else None
    )
    assert image.tag == tag
    assert (str(image.version) if image.version else None) == runs


def test_a_mounted_config_needs_an_autoscaler_that_reads_the_file() -> None:
    old = autoscaler_image(None, "helm", "9.56.0", parse_image_tag("1.32.3"))
    with pytest.raises(
        ConfigError,
        match=r"predates HCLOUD_CLUSTER_CONFIG_FILE, read from cluster-autoscaler 1\.33\.0 on",
    ):
        values.autoscaler_values(inputs(settings(), image=old, cluster_config_as_file=True))
    new = autoscaler_image(None, "helm", "9.56.0", parse_image_tag("1.33.0"))
    assert values.autoscaler_values(inputs(settings(), image=new, cluster_config_as_file=True))


def test_rbac_only_where_the_chart_needs_it() -> None:
    """The chart grants the default lease; a renamed one needs a rule, with Helm only."""
    renamed = {"leader-elect-resource-name": "ca-hetzner"}
    helm = values.autoscaler_values(
        inputs(settings(deploy="helm", namespace="x", extraArgs=renamed))
    )
    assert helm["rbac"]["additionalRules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["ca-hetzner"],
            "verbs": ["get", "update"],
        }
    ]
    # Cozystack's own leases rule covers any name; a Package list would replace it.
    assert "rbac" not in values.autoscaler_values(inputs(settings(extraArgs=renamed)))
    assert "rbac" not in values.autoscaler_values(inputs(settings(deploy="helm", namespace="x")))


def test_the_charts_own_rules_grant_the_default_lease() -> None:
    """Oracle: the chart's ClusterRole template (9.56.0 and Cozystack's vendored 9.55.0)."""
    for chart in ("cluster-autoscaler", "cozystack-cluster-autoscaler/charts/cluster-autoscaler"):
        template = (
            SHARED_REFERENCE / "charts" / chart / "templates" / "clusterrole.yaml"
        ).read_text()
        assert (
            f"resourceNames:\n    - {values.LEASE_NAME}\n    resources:\n    - leases" in template
        )
    hetzner = yaml.safe_load(
        (
            SHARED_REFERENCE / "charts" / "cozystack-cluster-autoscaler" / "values-hetzner.yaml"
        ).read_text()
    )
    (rule,) = hetzner["cluster-autoscaler"]["rbac"]["additionalRules"]
    assert rule["resources"] == ["leases"] and "resourceNames" not in rule


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
        pools_of(config),
        {"topology.kubernetes.io/zone": "hetzner-cloud"},
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
            "kubernetes.io/os": "linux",
            "topology.kubernetes.io/zone": "hetzner-cloud",
            "hcloud/node-group": "arm",
            "topology.kubernetes.io/region": "nbg1",
            "node.kubernetes.io/instance-type": "cax21",
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
        values.cluster_config(pools_of(config), {}, {"amd64": "1"}, {"arm": "y"})


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


def test_node_registration_warning_only_without_the_setter() -> None:
    assert values.node_registration_warning("setter") is None
    warning = values.node_registration_warning("none")
    assert warning is not None and "spec.providerID" in warning and "15m" in warning


def test_every_pools_template_says_linux() -> None:
    """FACTS 1.5: the provider's template has no kubernetes.io/os; pods selecting it need it."""
    config = settings(
        nodeGroups=[
            {"name": "x86", "minSize": 0, "maxSize": 2, "instanceType": "cpx22", "region": "fsn1"},
            {"name": "arm", "minSize": 0, "maxSize": 2, "instanceType": "cax21", "region": "fsn1"},
        ]
    )
    cluster = values.cluster_config(
        pools_of(config), {}, {"amd64": "1", "arm64": "2"}, {"x86": "a", "arm": "b"}
    )
    assert {
        pool: c["labels"]["kubernetes.io/os"] for pool, c in cluster["nodeConfigs"].items()
    } == {
        "x86": "linux",
        "arm": "linux",
    }


def test_the_environment_limit_counts_the_variables_name() -> None:
    """Linux limits each ``NAME=value`` string (with its NUL) to 128 KiB, not the value."""
    overhead = len(json.dumps({"nodeConfigs": {"p": {"cloudInit": ""}}}, separators=(",", ":")))
    # 98,299 bytes of JSON are 131,068 of base64: under 128 KiB alone, over it with the name.
    config = {"nodeConfigs": {"p": {"cloudInit": "x" * (98_299 - overhead)}}}
    encoded = base64.b64encode(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    assert len(encoded) == 131_068 < values.ENV_STRING_LIMIT_BYTES
    assert values.env_string_bytes("HCLOUD_CLUSTER_CONFIG", encoded.decode()) == 131_091
    assert values.cluster_config_secret(config).as_file
    smaller = {"nodeConfigs": {"p": {"cloudInit": "x" * (98_299 - overhead - 30)}}}
    assert not values.cluster_config_secret(smaller).as_file


def test_an_existing_network_pins_new_servers_to_the_subnet_when_the_image_can() -> None:
    """FACTS 1.2: defaultSubnetIPRange (CA >= 1.35) attaches servers to that subnet."""
    new = autoscaler_image(None, "helm", "9.56.0", parse_image_tag("1.35.0"))
    old = autoscaler_image(None, "helm", "9.56.0", parse_image_tag("1.34.0"))
    assert values.pinned_subnet("shared-net", "10.100.0.0/24", new) == "10.100.0.0/24"
    assert values.pinned_subnet(None, "10.100.0.0/24", new) is None  # our network: one subnet
    assert values.pinned_subnet("shared-net", "10.100.0.0/24", old) is None
    config = settings()
    cluster = values.cluster_config(
        pools_of(config), {}, {"amd64": "1"}, {"workers-fsn1": "a"}, "10.100.0.0/24"
    )
    assert cluster["defaultSubnetIPRange"] == "10.100.0.0/24"
    assert "defaultSubnetIPRange" not in values.cluster_config(
        pools_of(config), {}, {"amd64": "1"}, {"workers-fsn1": "a"}
    )
    assert values.subnet_pin_warning("shared-net", "cluster-config", new) is None
    assert values.subnet_pin_warning(None, "cluster-config", old) is None
    warning = values.subnet_pin_warning("shared-net", "cluster-config", old)
    assert warning is not None and "predates defaultSubnetIPRange" in warning
    legacy = values.subnet_pin_warning("shared-net", "legacy", new)
    assert legacy is not None and "configFormat legacy has no cluster config" in legacy


# ---- replicas, placement, priorities and the chart's values (issue 25) ----------------------


def release_values(config: AutoscalerSettings) -> dict[str, Any]:
    image = AutoscalerImage("v1.33.6", parse_image_tag("1.33.6"), "test")
    return values.autoscaler_values(
        values.ValuesInputs(
            config, pools_of(config), image, "net", {"amd64": "1"}, "creds", "talos", "hash"
        )
    )


def test_a_stack_without_the_new_keys_keeps_its_values() -> None:
    produced = release_values(autoscaler_settings())
    assert set(produced) == {
        "autoscalingGroups",
        "extraEnv",
        "extraEnvSecrets",
        "extraArgs",
        "podAnnotations",
        "image",
    }
    assert "expander" not in produced["extraArgs"]


def test_several_replicas_get_a_budget_and_a_spread_over_nodes() -> None:
    produced = release_values(
        autoscaler_settings(
            replicas=2,
            resources={"requests": {"cpu": "100m", "memory": "300Mi"}},
            nodeSelector={"node-role.kubernetes.io/control-plane": ""},
            tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
            priorityClassName="platform-critical",
        )
    )
    assert produced["replicaCount"] == 2
    assert produced["podDisruptionBudget"] == {"maxUnavailable": 1}
    (spread,) = produced["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"] == values.POD_SELECTOR
    assert produced["resources"] == {"requests": {"cpu": "100m", "memory": "300Mi"}}
    assert produced["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert produced["tolerations"] == [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}
    ]
    assert produced["priorityClassName"] == "platform-critical"


def test_one_replica_leaves_the_charts_budget_and_placement() -> None:
    produced = release_values(autoscaler_settings(replicas=1))
    assert not {"replicaCount", "podDisruptionBudget", "topologySpreadConstraints"} & set(produced)


def test_priorities_become_the_expanders_map_and_pools_without_one_come_last() -> None:
    produced = release_values(
        autoscaler_settings(expander="priority", pools=[{"priority": 10}, {}, {"priority": 30}, {}])
    )
    assert produced["extraArgs"]["expander"] == "priority"
    assert produced["expanderPriorities"] == {
        "30": ["^p2$"],
        "10": ["^p0$"],
        str(LOWEST_PRIORITY): ["^p1$", "^p3$"],
    }


def test_chart_values_are_merged_last_maps_key_by_key() -> None:
    produced = release_values(
        autoscaler_settings(
            replicas=2,
            extraArgs={"v": 2},
            values={
                "extraArgs": {"scan-interval": "20s"},
                "podDisruptionBudget": {"maxUnavailable": 2},
                "tolerations": [{"operator": "Exists"}],
                "revisionHistoryLimit": 3,
            },
        )
    )
    assert produced["extraArgs"] == {
        "enforce-node-group-min-size": True,
        "v": 2,
        "scan-interval": "20s",
    }
    assert produced["podDisruptionBudget"] == {"maxUnavailable": 2}
    assert produced["tolerations"] == [{"operator": "Exists"}]
    assert produced["revisionHistoryLimit"] == 3
    assert produced["extraEnv"]["HCLOUD_NETWORK"] == "net"


@pytest.mark.parametrize("deploy", ["package", "helm"])
def test_values_no_chart_reads_are_warned_about(deploy: str) -> None:
    namespace = {} if deploy == "package" else {"namespace": "x"}
    config = autoscaler_settings(
        deploy=deploy, values={"replicaCount": 2, "replicas": 2}, **namespace
    )
    warning = values.ignored_values_warning(config)
    assert warning is not None
    assert warning.startswith("autoscaler.values: replicas is not a value")
    assert ("9.55.0" in warning) == (deploy == "package")
    assert values.ignored_values_warning(autoscaler_settings(values={"replicaCount": 2})) is None


@pytest.mark.parametrize(
    "chart", ["cluster-autoscaler", "cozystack-cluster-autoscaler/charts/cluster-autoscaler"]
)
def test_the_known_chart_values_are_the_charts_own(chart: str) -> None:
    """The upstream chart (9.56.0) and the one Cozystack's wrapper vendors (9.55.0)."""
    chart_values = yaml.safe_load((SHARED_REFERENCE / "charts" / chart / "values.yaml").read_text())
    assert set(chart_values) == values.CHART_VALUE_KEYS


def test_cluster_config_names_placement_groups_and_server_labels_only_where_set() -> None:
    config = autoscaler_settings(
        pools=[{"placementGroup": "spread", "serverLabels": {"team": "a"}}, {"maxSize": 20}]
    )
    decoded = values.cluster_config(
        pools_of(config), {}, {"amd64": "1"}, {"p0": "x", "p1": "y"}, None, {"p0": "4711"}
    )
    assert decoded["nodeConfigs"]["p0"]["placementGroup"] == "4711"
    assert decoded["nodeConfigs"]["p0"]["serverLabels"] == {"team": "a"}
    assert not {"placementGroup", "serverLabels"} & set(decoded["nodeConfigs"]["p1"])
    with pytest.raises(ValueError, match="no placement group for pool"):
        values.cluster_config(pools_of(config), {}, {"amd64": "1"}, {"p0": "x", "p1": "y"})
