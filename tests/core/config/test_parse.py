"""The stack-config contract: every rule rejects bad input with a message naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from core.config import (
    ConfigError,
    Encrypted,
    Secret,
    load_stack_file,
    parse_stack_config,
    sections_from_flat_config,
)

from tests.conftest import set_path
from tests.stand_ins.hetzner_api import TEST_TOKEN
from tests.support.stack_config import VALID, changed, parse, problems_of

REPO = Path(__file__).resolve().parents[3]


def test_valid_minimal_stack_gets_the_documented_defaults() -> None:
    stack = parse(VALID)
    assert stack.network.name == "cozystack-vswitch"
    assert stack.network.ip_range == "10.100.0.0/16"
    assert stack.network.subnet == "10.100.0.0/24"
    assert stack.network_zone == "eu-central"
    assert stack.image.location == "fsn1"
    assert stack.image.builder_server_types == {"amd64": "cx23", "arm64": "cax11"}
    assert stack.image.write_timeout == 30
    assert stack.talos.extensions == [
        "siderolabs/qemu-guest-agent",
        "siderolabs/drbd",
        "siderolabs/zfs",
    ]
    assert stack.talos.image_factory_url == "https://factory.talos.dev"
    assert stack.autoscaler.deploy == "package"
    assert stack.autoscaler.namespace == "cozy-cluster-autoscaler-hetzner"
    assert stack.autoscaler.config_format == "cluster-config"
    assert (stack.autoscaler.public_ipv4, stack.autoscaler.public_ipv6) == (True, False)
    assert stack.autoscaler.server_creation_timeout == 10
    assert stack.architectures == ["amd64"]


def test_shipped_dev_stack_validates() -> None:
    sections, token = load_stack_file(REPO, "dev")
    stack = parse_stack_config(sections, token, REPO, require_token=False)
    assert stack.base_worker_config is not None
    assert [group.name for group in stack.autoscaler.node_groups] == ["workers-fsn1"]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("talos.verison", "v1.11.6", "talos.verison: unknown key; did you mean 'version'?"),
        ("talos.version", "1.11.6", "talos.version: '1.11.6' is not a Talos version of the form"),
        ("talos.version", "v1.7.0", "talos.version: Talos v1.7.0 is not supported"),
        ("talos.version", None, "talos.version: is required"),
        (
            "talos.kubernetesVersion",
            "1.35.0",
            "talos.kubernetesVersion: Kubernetes 1.35.0 is outside",
        ),
        ("talos.kubernetesVersion", "1.33", "talos.kubernetesVersion: '1.33' is not a Kubernetes"),
        ("talos.schematicId", "ABC", "talos.schematicId: 'ABC' is not an Image Factory schematic"),
        ("talos.imageFactoryUrl", "factory", "talos.imageFactoryUrl: 'factory' is not an http(s)"),
        (
            "talos.registryMirrors",
            {"docker.io": []},
            "talos.registryMirrors: mirror 'docker.io' has no",
        ),
        ("talos.workerConfigFile", "missing.yaml", "talos.workerConfigFile: cannot read"),
        ("talos.workerConfigFile", None, "talos: set exactly one of workerConfigFile"),
        ("network.subnet", "10.200.0.0/24", "network.subnet: 10.200.0.0/24 is not inside ipRange"),
        ("network.ipRange", "10.100.0.0/33", "network.ipRange: '10.100.0.0/33' is not a network"),
        ("network.networkZone", "eu-west", "network.networkZone: 'eu-west' is not a network zone"),
        ("network.networkZone", "us-east", "network.networkZone: is 'us-east' but the pools are"),
        ("network.vswitchId", 123, "vswitchId and vswitchSubnet go together"),
        ("image.location", "fra1", "image.location: 'fra1' is not a Hetzner Cloud location"),
        ("image.writeTimeout", 61, "image.writeTimeout: is 61 minutes; set 5 to 60"),
        ("image.writeTimeout", 2, "image.writeTimeout: is 2 minutes; set 5 to 60"),
        (
            "image.builderServerTypes",
            {"amd64": "cax11"},
            "image.builderServerTypes: amd64: 'cax11' is an arm64 server type; an amd64 image",
        ),
        (
            "autoscaler.deploy",
            "kubectl",
            "autoscaler.deploy: got 'kubectl': Input should be 'package'",
        ),
        ("autoscaler.configFormat", "env", "autoscaler.configFormat: got 'env'"),
        ("autoscaler.nodeGroups", [], "autoscaler.nodeGroups: got []"),
        (
            "autoscaler.nodeGroups",
            None,
            "autoscaler.nodeGroups: is required: list at least one pool",
        ),
        ("autoscaler.nodeGroups.0.minSize", -1, "nodeGroups[0].minSize: got -1"),
        (
            "autoscaler.nodeGroups.0.minSize",
            5,
            "nodeGroups[0].maxSize: maxSize 3 is smaller than minSize 5",
        ),
        (
            "autoscaler.nodeGroups.0.name",
            "Workers_1",
            "nodeGroups[0].name: 'Workers_1' is not a valid pool",
        ),
        (
            "autoscaler.nodeGroups.0.name",
            "w" * 47,
            "is 47 characters long; pool names are at most 46",
        ),
        (
            "autoscaler.nodeGroups.0.region",
            "mars",
            "nodeGroups[0].region: 'mars' is not a Hetzner Cloud",
        ),
        ("autoscaler.nodeGroups.0.size", 3, "nodeGroups[0].size: unknown key"),
        ("autoscaler.serverCreationTimeout", 0, "autoscaler.serverCreationTimeout: got 0"),
        (
            "autoscaler.chartRepository",
            "https://charts.example.internal/autoscaler",
            "autoscaler.chartRepository: is set, but with deploy: package Cozystack installs",
        ),
        (
            "autoscaler.chartVersion",
            "9.56.0",
            "autoscaler.chartVersion: is set, but with deploy: package Cozystack installs",
        ),
    ],
)
def test_each_rule_names_the_key(path: str, value: Any, expected: str) -> None:
    problems = problems_of(changed(path, value))
    assert any(expected in problem for problem in problems), problems
    assert all(problem.startswith("hcloud-talos-autoscaler:") for problem in problems)


def test_a_chart_repository_mirror_is_an_http_url_for_helm() -> None:
    """``autoscaler.chartRepository``: where an air-gapped cluster mirrors the chart."""
    helm = changed("autoscaler.deploy", "helm")
    set_path(helm, ["autoscaler", "chartRepository"], "https://charts.example.internal/ca/")
    assert parse(helm).autoscaler.chart_repository == "https://charts.example.internal/ca"
    set_path(helm, ["autoscaler", "chartRepository"], "charts.example.internal")
    assert problems_of(helm) == [
        "hcloud-talos-autoscaler:autoscaler.chartRepository: 'charts.example.internal' is not "
        "an http(s) URL of a Helm chart repository like https://kubernetes.github.io/autoscaler "
        "(the folder holding index.yaml)"
    ]
    assert parse(changed("autoscaler.deploy", "helm")).autoscaler.chart_repository is None


def test_a_chart_version_is_semver_and_for_helm() -> None:
    helm = changed("autoscaler.deploy", "helm")
    set_path(helm, ["autoscaler", "chartVersion"], "9.57.0")
    assert parse(helm).autoscaler.chart_version == "9.57.0"
    set_path(helm, ["autoscaler", "chartVersion"], "latest")
    assert problems_of(helm) == [
        "hcloud-talos-autoscaler:autoscaler.chartVersion: 'latest' is not a chart version like "
        "9.56.0 (the cluster-autoscaler-chart-* releases of kubernetes/autoscaler)"
    ]


def test_region_is_case_insensitive() -> None:
    stack = parse(changed("autoscaler.nodeGroups.0.region", "FSN1"))
    assert stack.autoscaler.node_groups[0].region == "fsn1"


def test_unknown_top_level_key_is_reported_with_a_suggestion() -> None:
    problems = problems_of({**VALID, "netwrok": {}})
    assert problems == [
        "hcloud-talos-autoscaler:netwrok: unknown key; did you mean 'network'? "
        "known keys: talos, network, image, autoscaler"
    ]


def test_a_top_level_key_with_a_colon_is_still_named_with_the_project() -> None:
    problems = problems_of({**VALID, "a:b": {}})
    assert problems[0].startswith("hcloud-talos-autoscaler:a:b: unknown key"), problems


def test_every_problem_is_reported_at_once() -> None:
    sections = changed("talos.version", "1.11")
    sections["network"] = {"subnet": "10.200.0.0/24"}
    sections["autoscaler"]["deploy"] = "kubectl"
    problems = problems_of(sections, token=None)
    assert len(problems) == 4
    assert any("hcloud:token: is not set" in problem for problem in problems)


def test_missing_token_is_an_error_unless_only_rendering() -> None:
    assert any("hcloud:token: is not set" in p for p in problems_of(VALID, token=None))
    assert parse_stack_config(VALID, None, REPO, require_token=False).hcloud_token is None


def test_pools_spanning_network_zones_are_refused() -> None:
    sections = copy.deepcopy(VALID)
    sections["autoscaler"]["nodeGroups"].append(
        {"name": "ash", "minSize": 0, "maxSize": 1, "instanceType": "cpx21", "region": "ash"}
    )
    problems = problems_of(sections)
    assert any("pools span several network zones" in p and "us-east: ash" in p for p in problems)


def test_duplicate_pool_names_are_refused() -> None:
    sections = copy.deepcopy(VALID)
    sections["autoscaler"]["nodeGroups"].append(dict(sections["autoscaler"]["nodeGroups"][0]))
    assert any("duplicated: workers-fsn1" in p for p in problems_of(sections))


def test_arm_pool_needs_an_arm_builder() -> None:
    sections = changed("image.builderServerTypes", {"amd64": "cx23"})
    sections["autoscaler"]["nodeGroups"].append(
        {"name": "arm", "minSize": 0, "maxSize": 1, "instanceType": "cax21", "region": "nbg1"}
    )
    problems = problems_of(sections)
    assert any(
        "image.builderServerTypes.arm64: is missing but pools arm need an arm64 image" in p
        for p in problems
    ), problems


def test_mixed_architectures_get_both_builders_by_default() -> None:
    sections = copy.deepcopy(VALID)
    sections["autoscaler"]["nodeGroups"].append(
        {"name": "arm", "minSize": 0, "maxSize": 1, "instanceType": "CAX21", "region": "nbg1"}
    )
    assert parse(sections).architectures == ["amd64", "arm64"]


def test_legacy_format_refuses_what_it_cannot_carry() -> None:
    sections = changed("autoscaler.configFormat", "legacy")
    sections["autoscaler"]["nodeGroups"][0]["labels"] = {"pool": "a"}
    sections["autoscaler"]["nodeGroups"].append(
        {"name": "arm", "minSize": 0, "maxSize": 1, "instanceType": "cax21", "region": "fsn1"}
    )
    problems = problems_of(sections)
    assert any("legacy hands one image to every pool" in p for p in problems)
    assert any("nodeGroups[0]: pool workers-fsn1 has labels/taints" in p for p in problems)


def test_schematic_id_and_explicit_extensions_conflict() -> None:
    sections = changed("talos.schematicId", "a" * 64)
    sections["talos"]["extensions"] = ["siderolabs/zfs"]
    assert any("both schematicId and extensions are set" in p for p in problems_of(sections))
    assert parse(changed("talos.schematicId", "a" * 64)).talos.schematic_id == "a" * 64


def test_network_overlapping_the_cluster_pod_network_is_refused() -> None:
    sections = changed("network.ipRange", "10.244.0.0/16")
    sections["network"]["subnet"] = "10.244.0.0/24"
    problems = problems_of(sections)
    assert any(
        "network.ipRange: 10.244.0.0/16 overlaps the cluster's podSubnets 10.244.0.0/16" in p
        for p in problems
    ), problems


def test_worker_config_yaml_errors_give_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "worker.yaml").write_text("machine:\n  type: worker\n   token: x\n")
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(changed("talos.workerConfigFile", "worker.yaml"), "t", tmp_path)
    assert "talos.workerConfigFile: is not valid YAML" in str(caught.value)
    assert "line 3" in str(caught.value)


def test_secret_worker_config_is_used_and_never_shown() -> None:
    text = (REPO / "examples" / "worker.yaml").read_text()
    sections = changed("talos.workerConfigFile", None)
    sections["talos"]["workerConfig"] = text
    stack = parse(sections)
    assert isinstance(stack.base_worker_config, Secret)
    assert stack.base_worker_config.reveal() == text
    assert text not in repr(stack)


def test_encrypted_values_from_a_stack_file_stay_encrypted() -> None:
    sections, token = sections_from_flat_config(
        {
            "hcloud:token": {"secure": "v1:abc"},
            "hcloud-talos-autoscaler:talos": {
                **{k: v for k, v in VALID["talos"].items() if k != "workerConfigFile"},
                "workerConfig": {"secure": "v1:def"},
            },
            "hcloud-talos-autoscaler:autoscaler": VALID["autoscaler"],
        }
    )
    stack = parse_stack_config(sections, token, REPO)
    assert stack.hcloud_token == Encrypted("v1:abc")
    assert stack.talos.worker_config == Encrypted("v1:def")
    assert stack.base_worker_config is None


def test_engine_json_values_are_parsed() -> None:
    sections, token = sections_from_flat_config(
        {"hcloud-talos-autoscaler:network": '{"name": "x"}', "kubernetes:context": "c"}
    )
    assert sections == {"network": {"name": "x"}}
    assert token is None


OWN_TOKEN = "own-" + "0" * 60


def test_autoscaler_token_overrides_the_provider_token() -> None:
    assert parse(VALID).autoscaler_token == Secret(TEST_TOKEN)
    assert parse(changed("autoscaler.token", OWN_TOKEN)).autoscaler_token == Secret(OWN_TOKEN)


# ---- labels a node can set on itself (FACTS 4.1, 6) ---------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "node-role.kubernetes.io/worker",  # the usual mistake
        "kubernetes.io/role",
        "example.k8s.io/x",
        "node-restriction.kubernetes.io/team",
        "foo.kubernetes.io/bar",
    ],
)
def test_labels_node_restriction_refuses_are_refused_with_the_reason(key: str) -> None:
    for path in ("talos.nodeLabels", "autoscaler.nodeGroups.0.labels"):
        problems = problems_of(changed(path, {key: "x"}))
        expected = path.replace(".0.", "[0].")
        assert any(
            p.startswith(
                f"hcloud-talos-autoscaler:{expected}: {key!r} is refused by the "
                "NodeRestriction admission plugin"
            )
            and "would lose all its labels, hcloud/node-group included" in p
            for p in problems
        ), problems


@pytest.mark.parametrize(
    "key",
    [
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "kubernetes.io/os",
        "node.kubernetes.io/instance-type",
        "node.kubernetes.io/role",
        "team.node.kubernetes.io/x",
        "kubelet.kubernetes.io/x",
        "failure-domain.beta.kubernetes.io/zone",
        "hcloud/node-group",
        "example.com/role",
        "plain",
    ],
)
def test_labels_the_kubelet_may_set_are_accepted(key: str) -> None:
    assert parse(changed("talos.nodeLabels", {key: "x"})).talos.node_labels == {key: "x"}


def test_a_kilo_key_given_as_a_label_says_to_use_an_annotation() -> None:
    problems = problems_of(changed("talos.nodeLabels", {"kilo.squat.ai/location": "hetzner"}))
    assert problems == [
        "hcloud-talos-autoscaler:talos.nodeLabels: 'kilo.squat.ai/location' is a Kilo "
        "annotation, not a label: Kilo reads kilo.squat.ai/location and "
        "kilo.squat.ai/persistent-keepalive from node annotations and ignores labels; move it "
        "to talos.nodeAnnotations (or the pool's nodeAnnotations)"
    ]
    annotations = {"kilo.squat.ai/location": "hetzner", "kilo.squat.ai/persistent-keepalive": "20"}
    stack = parse(changed("talos.nodeAnnotations", annotations))
    assert stack.talos.node_annotations == annotations


def test_with_a_cozystack_package_the_namespace_is_cozystacks() -> None:
    """FACTS 3: the PackageSource fixes the namespace; a Package cannot change it."""
    problems = problems_of(changed("autoscaler.namespace", "autoscaler"))
    assert problems == [
        "hcloud-talos-autoscaler:autoscaler.namespace: is 'autoscaler', but with deploy: "
        "package Cozystack installs the autoscaler in cozy-cluster-autoscaler-hetzner whatever "
        "the Package says (its PackageSource fixes the namespace), and the autoscaler reads its "
        "Secrets from there: remove namespace (or set cozy-cluster-autoscaler-hetzner), or use "
        "deploy: helm to choose one"
    ]
    helm = changed("autoscaler.namespace", "autoscaler")
    helm["autoscaler"]["deploy"] = "helm"
    assert parse(helm).autoscaler.namespace == "autoscaler"


def test_provider_id_is_setter_or_none() -> None:
    assert parse(VALID).autoscaler.provider_id == "setter"
    assert parse(changed("autoscaler.providerId", "none")).autoscaler.provider_id == "none"
    assert any(
        "autoscaler.providerId: got 'ccm'" in p
        for p in problems_of(changed("autoscaler.providerId", "ccm"))
    )


def test_the_removed_provider_id_controller_key_is_an_error_naming_its_replacement() -> None:
    problems = problems_of(changed("autoscaler.providerIdController", True))
    assert len(problems) == 1
    assert problems[0].startswith(
        "hcloud-talos-autoscaler:autoscaler.providerIdController: was removed"
    )
    assert "autoscaler.providerId: setter (the default)" in problems[0]


# ---- the autoscaler image (FACTS 1.1, 1.6, 2) ----------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"autoscaler.imageTag": "latest"},
            "autoscaler.imageTag: 'latest' is not a release tag like v1.33.1",
        ),
        (
            {"autoscaler.imageTag": "v1.32.0"},
            "autoscaler.imageTag: v1.32.0 does not match Kubernetes 1.33.1",
        ),
        # HCLOUD_CLUSTER_CONFIG exists from 1.29.0, not 1.28 (FACTS 1.1).
        (
            {"talos.version": "v1.10.4", "talos.kubernetesVersion": "1.28.9"},
            "autoscaler.configFormat: the autoscaler image v1.28.7 (the newest release for "
            "Kubernetes 1.28) predates HCLOUD_CLUSTER_CONFIG, read from cluster-autoscaler "
            "1.29.0 on, which configFormat cluster-config needs",
        ),
    ],
)
def test_the_autoscaler_image_is_checked(changes: dict[str, Any], expected: str) -> None:
    sections = copy.deepcopy(VALID)
    for path, value in changes.items():
        section, key = path.split(".")
        sections[section][key] = value
    assert any(expected in p for p in problems_of(sections)), problems_of(sections)


def test_kubernetes_1_29_reads_the_cluster_config_and_1_28_works_with_legacy() -> None:
    sections = copy.deepcopy(VALID)
    sections["talos"].update(version="v1.10.4", kubernetesVersion="1.29.0")
    assert parse(sections).autoscaler_image.tag == "v1.29.5"
    sections["talos"]["kubernetesVersion"] = "1.28.9"
    sections["autoscaler"]["configFormat"] = "legacy"
    assert parse(sections).autoscaler_image.tag == "v1.28.7"


def test_without_kubernetes_version_the_base_configs_kubelet_decides() -> None:
    stack = parse(changed("talos.kubernetesVersion", None))
    assert str(stack.kubernetes_version) == "1.33.1"  # examples/worker.yaml's kubelet image
    assert stack.autoscaler_image.tag == "v1.33.6"
