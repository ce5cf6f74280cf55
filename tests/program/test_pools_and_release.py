"""Issue 25 end to end: per-pool settings and the release's keys through the offline render (bad
input exits 2 naming the key) and the program under Pulumi mocks (placement groups, each pool's
Kilo location and subnet, replicas and priorities, the setter's own read-only token)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.autoscaler import values
from core.render import render_stack

from tests.conftest import TEST_TOKEN, MockRuntime, shipped_config
from tests.program.test_bad_input import changed, project, render

MAIN = Path(__file__).parents[2] / "__main__.py"
#: Hetzner API tokens have 64 characters.
READ_ONLY_TOKEN = "r" * 64
P = "hcloud-talos-autoscaler"
PLACEMENT_GROUP = "hcloud:index/placementGroup:PlacementGroup"
POOL_RECORD = "pulumi-python:dynamic/autoscaler:PoolServers"
K8S_SECRET = "kubernetes:core/v1:Secret"
HELM = "kubernetes:helm.sh/v3:Release"
SETTER_DEPLOYMENT = "kubernetes:apps/v1:Deployment"


# ---- every new key: exit 2 naming the key ------------------------------------------------

POOL = "autoscaler.nodeGroups.0"
BAD_INPUT: list[tuple[str, Any, str]] = [
    (f"{POOL}.placementGroup", "cluster", "nodeGroups[0].placementGroup: "),
    (f"{POOL}.maxSize", 11, "placementGroup spread holds at most 10 servers but maxSize is 11"),
    (f"{POOL}.nodeAnnotations", {"bad key!": "x"}, "nodeGroups[0].nodeAnnotations: label key"),
    (f"{POOL}.nodeAnnotations", ["x"], "nodeGroups[0].nodeAnnotations: "),
    (f"{POOL}.serverLabels", {"a": "b c"}, "nodeGroups[0].serverLabels: "),
    (
        f"{POOL}.serverLabels",
        {"hcloud/node-group": "x"},
        "nodeGroups[0].serverLabels: hcloud/node-group is set by the autoscaler",
    ),
    (f"{POOL}.priority", 0, "nodeGroups[0].priority: "),
    (f"{POOL}.priority", "high", "nodeGroups[0].priority: "),
    ("autoscaler.expander", "random", "autoscaler.expander: "),
    ("autoscaler.replicas", 0, "autoscaler.replicas: "),
    ("autoscaler.resources", {"requests": {"cpu": "lots"}}, "'lots' is not a Kubernetes quantity"),
    ("autoscaler.resources", {"request": {}}, "autoscaler.resources.request: "),
    ("autoscaler.nodeSelector", {"bad key!": "x"}, "autoscaler.nodeSelector: label key"),
    ("autoscaler.tolerations", [{"keyy": "a"}], "autoscaler.tolerations[0]: "),
    ("autoscaler.tolerations", [{"key": "a", "operator": "Maybe"}], "'Maybe' is not Equal or"),
    (
        "autoscaler.tolerations",
        [{"key": "a", "operator": "Exists", "value": "b"}],
        "takes no value",
    ),
    ("autoscaler.tolerations", [{"value": "b"}], "a toleration without a key must have operator"),
    ("autoscaler.tolerations", [{"key": 1, "operator": "Exists"}], "key must be a string"),
    (
        "autoscaler.tolerations",
        [{"operator": "Exists", "effect": "Never"}],
        "effect 'Never' is not NoSchedule",
    ),
    ("autoscaler.priorityClassName", "Bad_Name", "autoscaler.priorityClassName: 'Bad_Name'"),
    ("autoscaler.values", ["replicaCount", 2], "autoscaler.values: "),
    ("autoscaler.providerIdToken", 123, "autoscaler.providerIdToken: must be a non-empty string"),
    ("autoscaler.providerIdToken", "short", "autoscaler.providerIdToken: is 5 characters long"),
]


@pytest.mark.parametrize(("path", "value", "expected"), BAD_INPUT)
def test_every_new_key_refuses_bad_input_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str, value: Any, expected: str
) -> None:
    config = changed(path, value)
    if path.endswith("maxSize"):
        config[f"{P}:autoscaler"]["nodeGroups"][0]["placementGroup"] = "spread"
    code, err = render(project(tmp_path, config), capsys)
    assert code == 2
    assert expected in err, err


def _with(config: dict[str, Any], section: str, **keys: Any) -> dict[str, Any]:
    config[f"{P}:{section}"].update(keys)
    return config


@pytest.mark.parametrize(
    ("pool_keys", "kubernetes", "expected"),
    [
        # FACTS 1.2 and NodeConfig in hetzner_manager.go of each tag (see autoscaler_versions).
        (
            {"placementGroup": "spread"},
            "1.31.4",
            "nodeGroups[0].placementGroup: the autoscaler image v1.31.5",
        ),
        ({"serverLabels": {"team": "a"}}, "1.33.1", "nodeGroups[0].serverLabels: the autoscaler"),
        (
            {"subnet": "10.100.1.0/24"},
            "1.34.2",
            "nodeGroups[0].subnet: the autoscaler image v1.34.5",
        ),
    ],
)
def test_pool_settings_older_autoscalers_cannot_read_are_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pool_keys: dict[str, Any],
    kubernetes: str,
    expected: str,
) -> None:
    config = changed("talos.kubernetesVersion", kubernetes)
    config[f"{P}:autoscaler"]["nodeGroups"][0].update(pool_keys)
    code, err = render(project(tmp_path, config), capsys)
    assert code == 2
    assert expected in err, err
    assert "predates" in err


def test_the_same_pool_settings_pass_from_the_first_release_that_reads_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = changed("talos.kubernetesVersion", "1.32.0")
    config[f"{P}:autoscaler"]["nodeGroups"][0]["placementGroup"] = "spread"
    config[f"{P}:autoscaler"]["nodeGroups"][0]["maxSize"] = 10
    assert render(project(tmp_path, config), capsys)[0] == 0
    config = _with(changed("talos.version", "v1.13.0"), "talos", kubernetesVersion="1.36.0")
    config[f"{P}:autoscaler"]["nodeGroups"][0]["serverLabels"] = {"team": "a"}
    (tmp_path / "second").mkdir()
    code, err = render(project(tmp_path / "second", config), capsys)
    assert code == 0, err


@pytest.mark.parametrize(
    "pool_keys",
    [
        {"placementGroup": "spread"},
        {"nodeAnnotations": {"a": "b"}},
        {"serverLabels": {"a": "b"}},
        {"subnet": "10.100.1.0/24"},
    ],
)
def test_the_legacy_format_refuses_per_pool_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pool_keys: dict[str, Any]
) -> None:
    config = changed("autoscaler.configFormat", "legacy")
    config[f"{P}:autoscaler"]["nodeGroups"][0].update(pool_keys)
    code, err = render(project(tmp_path, config), capsys)
    assert code == 2
    assert "nodeGroups[0]: pool workers-fsn1 has labels/taints (or nodeAnnotations" in err


# ---- the program ------------------------------------------------------------------------


def prod() -> dict[str, Any]:
    return shipped_config("prod")


def test_a_spread_pool_gets_a_placement_group_named_in_its_node_config(
    pulumi_runtime: MockRuntime,
) -> None:
    pulumi_runtime.run(MAIN, prod())
    group = pulumi_runtime.one(PLACEMENT_GROUP)
    assert group.inputs["type"] == "spread"
    assert group.inputs["name"] == "general-fsn1-spread"
    assert group.inputs["labels"] == {
        "managed-by": P,
        "hcloud/node-group": "general-fsn1",
    }
    talos_config = next(s for s in pulumi_runtime.by_type(K8S_SECRET) if "talos-config" in s.name)
    assert group.urn in talos_config.dependencies
    cluster_config = json.loads(
        base64.b64decode(talos_config.inputs["stringData"]["cluster-config"])
    )
    assert cluster_config["nodeConfigs"]["general-fsn1"]["placementGroup"] == group.id
    assert "placementGroup" not in cluster_config["nodeConfigs"]["general-nbg1"]


def test_the_placement_group_is_deleted_after_its_pools_servers(
    pulumi_runtime: MockRuntime,
) -> None:
    """Destroy deletes dependents first: the pool's record (its sweep) before the group."""
    pulumi_runtime.run(MAIN, prod())
    group = pulumi_runtime.one(PLACEMENT_GROUP)
    records = {record.name: record for record in pulumi_runtime.by_type(POOL_RECORD)}
    assert group.urn in records["autoscaled-servers-general-fsn1"].dependencies
    assert group.urn not in records["autoscaled-servers-general-nbg1"].dependencies


def test_a_stack_without_spread_pools_registers_no_placement_groups(
    pulumi_runtime: MockRuntime,
) -> None:
    config = prod()
    del config[f"{P}:autoscaler"]["nodeGroups"][0]["placementGroup"]
    pulumi_runtime.run(MAIN, config)
    assert pulumi_runtime.by_type(PLACEMENT_GROUP) == []
    assert not [r for r in pulumi_runtime.resources if r.name == "placement-groups"]


def test_each_pool_carries_its_own_kilo_location(pulumi_runtime: MockRuntime) -> None:
    pulumi_runtime.run(MAIN, prod())
    talos_config = next(s for s in pulumi_runtime.by_type(K8S_SECRET) if "talos-config" in s.name)
    cluster_config = json.loads(
        base64.b64decode(talos_config.inputs["stringData"]["cluster-config"])
    )
    locations = {}
    for pool, node_config in cluster_config["nodeConfigs"].items():
        machine = next(
            doc["machine"]
            for doc in yaml.safe_load_all(node_config["cloudInit"])
            if doc and "machine" in doc
        )
        locations[pool] = machine["nodeAnnotations"]["kilo.squat.ai/location"]
        # The stack-wide annotation stays where the pool does not override it.
        assert machine["nodeAnnotations"]["kilo.squat.ai/persistent-keepalive"] == "20"
    assert locations == {
        "general-fsn1": "hetzner-fsn1",
        "general-nbg1": "hetzner-nbg1",
        "arm-fsn1": "hetzner-cloud",
    }


def test_the_release_gets_replicas_placement_and_priorities(pulumi_runtime: MockRuntime) -> None:
    pulumi_runtime.run(MAIN, prod())
    (release,) = [r for r in pulumi_runtime.by_type(HELM) if r.name == "autoscaler-release"]
    chart = release.inputs["values"]
    assert chart["replicaCount"] == 2
    assert chart["podDisruptionBudget"] == {"maxUnavailable": 1}
    assert chart["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert chart["extraArgs"]["expander"] == "priority"
    assert chart["expanderPriorities"] == {
        "20": ["^general-fsn1$"],
        "10": ["^general-nbg1$"],
        "0": ["^arm-fsn1$"],
    }
    assert chart["revisionHistoryLimit"] == 5


# ---- least privilege of the providerID setter ---------------------------------------------


def test_a_read_only_token_is_stored_apart_and_only_the_setter_uses_it(
    pulumi_runtime: MockRuntime,
) -> None:
    config = prod()
    config[f"{P}:autoscaler"]["providerIdToken"] = READ_ONLY_TOKEN
    pulumi_runtime.run(MAIN, config, secret_keys=[f"{P}:autoscaler"])
    credentials = next(s for s in pulumi_runtime.by_type(K8S_SECRET) if "credentials" in s.name)
    assert credentials.is_secret("stringData")
    assert credentials.inputs["stringData"] == {
        values.CREDENTIALS_KEY: TEST_TOKEN,
        values.SETTER_CREDENTIALS_KEY: READ_ONLY_TOKEN,
    }
    setter = next(d for d in pulumi_runtime.by_type(SETTER_DEPLOYMENT) if "provider-id" in d.name)
    (container,) = setter.inputs["spec"]["template"]["spec"]["containers"]
    (env,) = container["env"]
    assert env["valueFrom"]["secretKeyRef"]["key"] == values.SETTER_CREDENTIALS_KEY
    (release,) = [r for r in pulumi_runtime.by_type(HELM) if r.name == "autoscaler-release"]
    assert release.inputs["values"]["extraEnvSecrets"]["HCLOUD_TOKEN"]["key"] == "token"


def test_without_a_read_only_token_the_setter_reads_the_autoscalers(
    pulumi_runtime: MockRuntime,
) -> None:
    pulumi_runtime.run(MAIN, prod())
    credentials = next(s for s in pulumi_runtime.by_type(K8S_SECRET) if "credentials" in s.name)
    assert set(credentials.inputs["stringData"]) == {values.CREDENTIALS_KEY}


# ---- a pool's own subnet ----------------------------------------------------------------------


def on_kubernetes_1_35(**pool_keys: Any) -> dict[str, Any]:
    """The dev stack on an autoscaler that reads subnetIPRange, its pool with ``pool_keys``."""
    config = _with(changed("talos.version", "v1.12.0"), "talos", kubernetesVersion="1.35.0")
    config[f"{P}:autoscaler"]["nodeGroups"][0].update(pool_keys)
    return config


@pytest.mark.parametrize(
    ("subnet", "expected"),
    [
        ("10.100.1.0/33", "nodeGroups[0].subnet: '10.100.1.0/33' is not a network in CIDR form"),
        ("10.200.0.0/24", "nodeGroups[0].subnet: 10.200.0.0/24 is not inside network.ipRange"),
        ("10.100.0.128/25", "overlaps network.subnet 10.100.0.0/24"),
        ("10.100.1.0/31", "smaller than Hetzner's minimum subnet size /30"),
        ("10.100.1.0/29", "the pools in 10.100.1.0/29 may grow to 10 servers"),
    ],
)
def test_a_pools_own_subnet_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], subnet: str, expected: str
) -> None:
    code, err = render(project(tmp_path, on_kubernetes_1_35(subnet=subnet)), capsys)
    assert code == 2
    assert expected in err, err


def test_a_pools_own_subnet_is_created_used_by_its_nodes_and_named_in_its_config(
    pulumi_runtime: MockRuntime,
) -> None:
    config = on_kubernetes_1_35(subnet="10.100.1.0/24")
    config[f"{P}:autoscaler"]["nodeGroups"].append(
        {"name": "other", "minSize": 0, "maxSize": 3, "instanceType": "cpx22", "region": "fsn1"}
    )
    config["hcloud:token"] = TEST_TOKEN
    pulumi_runtime.run(MAIN, config)
    subnets = {
        s.name: s for s in pulumi_runtime.by_type("hcloud:index/networkSubnet:NetworkSubnet")
    }
    assert set(subnets) == {"network-subnet", "network-subnet-10-100-1-0-24"}
    own = subnets["network-subnet-10-100-1-0-24"]
    assert (own.inputs["type"], own.inputs["ipRange"]) == ("cloud", "10.100.1.0/24")
    network = pulumi_runtime.one("hcloud:index/network:Network")
    assert network.urn in own.dependencies

    talos_config = next(s for s in pulumi_runtime.by_type(K8S_SECRET) if "talos-config" in s.name)
    node_configs = json.loads(
        base64.b64decode(talos_config.inputs["stringData"]["cluster-config"])
    )["nodeConfigs"]
    assert node_configs["workers-fsn1"]["subnetIPRange"] == "10.100.1.0/24"
    assert "subnetIPRange" not in node_configs["other"]
    valid_subnets = {
        pool: next(
            doc["machine"]["kubelet"]["nodeIP"]["validSubnets"]
            for doc in yaml.safe_load_all(node_config["cloudInit"])
            if doc and "machine" in doc
        )
        for pool, node_config in node_configs.items()
    }
    assert valid_subnets == {"workers-fsn1": ["10.100.1.0/24"], "other": ["10.100.0.0/24"]}


def test_render_shows_the_setters_own_token_key_and_warns_when_it_is_plain_text(
    tmp_path: Path,
) -> None:
    config = changed("autoscaler.providerIdToken", READ_ONLY_TOKEN)
    rendered = render_stack(project(tmp_path, config), "dev")
    report = "\n".join(rendered.report)
    assert "key read-token" in report
    assert "Hetzner token from Secret hetzner-credentials key read-token" in report
    assert READ_ONLY_TOKEN not in report + "".join(rendered.files.values())
    assert any(
        w.startswith("autoscaler.providerIdToken is stored in plain text")
        for w in rendered.warnings
    )
    setter = yaml.safe_load_all(rendered.files["provider-id-setter.yaml"])
    deployment = next(d for d in setter if d["kind"] == "Deployment")
    (env,) = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env["valueFrom"]["secretKeyRef"]["key"] == "read-token"
