"""Talos worker configs as users really feed them (issue 22): 1.12+ network documents, value
types, 1.13 list arguments, kernel modules and their extensions, the smaller rules, and the
failures of the guide's troubleshooting."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from core.autoscaler.values import template_labels
from core.config import ConfigError, parse_stack_config
from core.config.parse import read_stack_file
from core.config.rules import extension_warnings
from core.plan import plan_stack
from core.releases.talos import parse_kubernetes_version, parse_talos_version
from core.talos.documents import dump_documents, load_documents
from core.talos.keys import talos_keys
from core.talos.problems import WorkerConfigError
from core.talos.spec import WorkerConfigSpec
from core.talos.validation import validate_worker_documents
from core.talos.worker_config import build_worker_config

from tests.conftest import REPO, set_path
from tests.stand_ins.hetzner_api import TEST_TOKEN
from tests.support.worker_config import base_for
from tests.support.worker_config import spec as pool_spec

FIXTURES = Path(__file__).parents[2] / "fixtures"
KUBERNETES_FOR = {11: "1.33.1", 12: "1.34.2", 13: "1.35.0"}


def spec(minor: int) -> WorkerConfigSpec:
    return WorkerConfigSpec(
        talos=parse_talos_version(f"v1.{minor}.2"),
        kubernetes=parse_kubernetes_version(KUBERNETES_FOR[minor]),
        subnet="10.100.0.0/24",
        network_ip_range="10.100.0.0/16",
    )


def base_documents(minor: int) -> list[dict[str, Any]]:
    name = "worker-v1.12.yaml" if minor >= 12 else "worker-v1.11.yaml"
    documents = load_documents((FIXTURES / name).read_text())
    documents[0]["machine"].pop("network", None)
    return documents


def build(documents: list[dict[str, Any]], minor: int) -> Any:
    return build_worker_config(dump_documents(documents), spec(minor), source="of pool p")


def problems(documents: list[dict[str, Any]], minor: int) -> list[str]:
    with pytest.raises(WorkerConfigError) as caught:
        build(documents, minor)
    return [str(problem) for problem in caught.value.problems]


# ---- 1. network documents (Talos >= 1.12) -----------------------------------------------------

#: What talm's Cozystack preset writes from a real node: links with static addresses and
#: the gateway, and the site's resolvers (cozystack/talm charts/cozystack/templates).
TALM_NETWORK: list[dict[str, Any]] = [
    {
        "apiVersion": "v1alpha1",
        "kind": "LinkConfig",
        "name": "enp1s0f0",
        "up": True,
        "addresses": [{"address": "192.0.2.21/24"}],
        "routes": [{"gateway": "192.0.2.1"}],
    },
    {
        "apiVersion": "v1alpha1",
        "kind": "BondConfig",
        "name": "bond0",
        "links": ["enp1s0f0", "enp1s0f1"],
        "bondMode": "802.3ad",
    },
    {
        "apiVersion": "v1alpha1",
        "kind": "VLANConfig",
        "name": "bond0.42",
        "vlanID": 42,
        "parent": "bond0",
    },
    {
        "apiVersion": "v1alpha1",
        "kind": "ResolverConfig",
        "nameservers": [{"address": "192.0.2.53"}],
    },
    {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": "site-worker-1"},
]
KEPT: list[dict[str, Any]] = [
    {
        "apiVersion": "v1alpha1",
        "kind": "TimeSyncConfig",
        "ntp": {"servers": ["time.cloudflare.com"]},
    },
    {"apiVersion": "v1alpha1", "kind": "NetworkDefaultActionConfig", "ingress": "accept"},
]


@pytest.mark.parametrize("minor", [12, 13])
def test_network_documents_are_removed_with_a_warning_naming_each(minor: int) -> None:
    documents = [
        *(doc for doc in base_documents(minor) if doc.get("kind") != "HostnameConfig"),
        *copy.deepcopy(TALM_NETWORK),
        *copy.deepcopy(KEPT),
    ]
    config = build(documents, minor)
    kinds = [doc.get("kind") for doc in load_documents(config.yaml)]
    for document in TALM_NETWORK:
        assert document["kind"] not in kinds
    assert {"TimeSyncConfig", "NetworkDefaultActionConfig", "RegistryMirrorConfig"} <= set(kinds)
    (warning,) = [w for w in config.warnings if w.startswith("network documents")]
    for named in (
        "LinkConfig 'enp1s0f0'",
        "BondConfig 'bond0'",
        "VLANConfig 'bond0.42'",
        "ResolverConfig",
        "HostnameConfig",
    ):
        assert named in warning
    assert "default DHCP" in warning and "of pool p" in warning


def test_an_auto_hostname_document_is_kept_silently() -> None:
    config = build(base_documents(12), 12)
    assert {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"} in (
        load_documents(config.yaml)
    )
    assert not [w for w in config.warnings if w.startswith("network documents")]


def test_the_removed_kinds_come_from_the_table_of_each_minor() -> None:
    """1.13's routing documents are removed on 1.13; 1.12 does not know them."""
    assert "VRFConfig" in talos_keys(parse_talos_version("v1.13.0")).removed_network_kinds
    assert "VRFConfig" not in talos_keys(parse_talos_version("v1.12.0")).removed_network_kinds
    assert not talos_keys(parse_talos_version("v1.11.0")).removed_network_kinds


def test_a_volume_on_one_machines_disk_is_kept_with_a_warning() -> None:
    volume: dict[str, Any] = {
        "apiVersion": "v1alpha1",
        "kind": "VolumeConfig",
        "name": "EPHEMERAL",
        "provisioning": {"diskSelector": {"match": "disk.dev_path == '/dev/nvme0n1'"}},
    }
    system = copy.deepcopy(volume) | {"name": "IMAGE-CACHE"}
    system["provisioning"]["diskSelector"]["match"] = "system_disk"
    config = build([*base_documents(12), volume, system], 12)
    assert volume in load_documents(config.yaml)
    (warning,) = [w for w in config.warnings if "diskSelector" in w]
    assert "VolumeConfig 'EPHEMERAL'" in warning and "system_disk" in warning


# ---- 2. value types --------------------------------------------------------------------------

TYPE_ERRORS = [
    ("machine.features.kubePrism", [1], "machine.features.kubePrism: must be a mapping"),
    ("machine.sysctls", ["net.core.somaxconn=65535"], "machine.sysctls: must be a mapping"),
    (
        "machine.kubelet.extraMounts",
        {"source": "/var/x"},
        "machine.kubelet.extraMounts: must be a list",
    ),
    ("machine.features.kubePrism.port", "7445", "kubePrism.port: must be an integer"),
    ("machine.features.kubePrism.enabled", 1, "kubePrism.enabled: must be true or false"),
    ("machine.sysctls", {"vm.max_map_count": {"value": 1}}, "vm.max_map_count: must be a string"),
    (
        "machine.files",
        [{"path": "/var/f", "permissions": 420, "op": "replace", "content": "x"}],
        "machine.files[0].op: is 'replace'; Talos accepts only",
    ),
]


@pytest.mark.parametrize("minor", [11, 12, 13])
@pytest.mark.parametrize(
    ("path", "value", "expected"), TYPE_ERRORS, ids=[c[2] for c in TYPE_ERRORS]
)
def test_a_value_of_the_wrong_type_is_refused_with_its_path_and_type(
    path: str, value: Any, expected: str, minor: int
) -> None:
    documents = base_documents(minor)
    set_path(documents[0], path.split("."), value)
    assert any(expected in problem for problem in problems(documents, minor))


def test_scalars_decode_as_talos_decodes_them() -> None:
    """go-yaml v3 reads any scalar into a string, a number into an integer, yes/on into a bool."""
    documents = base_documents(12)
    set_path(documents[0], ["machine", "sysctls"], {"net.ipv4.ip_forward": 1, "a.b": True})
    set_path(documents[0], ["machine", "features", "kubePrism", "enabled"], "yes")
    build(documents, 12)


def test_a_type_error_inside_a_document_names_the_document() -> None:
    mirror = {
        "apiVersion": "v1alpha1",
        "kind": "RegistryMirrorConfig",
        "name": "quay.io",
        "endpoints": "x",
    }
    found = problems([*base_documents(12), mirror], 12)
    assert any(p.startswith("RegistryMirrorConfig: endpoints: must be a list") for p in found)


def test_a_type_error_stops_the_offline_render(tmp_path: Path) -> None:
    documents = base_documents(12)
    set_path(documents[0], ["machine", "features", "kubePrism"], [1])
    stack = stack_with_base(tmp_path, documents, "v1.12.7", "1.34.2")
    with pytest.raises(WorkerConfigError, match="kubePrism: must be a mapping"):
        plan_stack(stack)


# ---- 3. arguments keep their values ----------------------------------------------------------


def test_talos_1_13_list_arguments_stay_lists() -> None:
    documents = base_documents(13)
    gates = ["A=true", "B=true"]
    set_path(documents[0], ["machine", "kubelet", "extraArgs"], {"feature-gates": gates})
    kubelet = load_documents(build(documents, 13).yaml)[0]["machine"]["kubelet"]
    assert kubelet["extraArgs"] == {"feature-gates": gates, "cloud-provider": "external"}


def test_list_arguments_before_talos_1_13_are_refused() -> None:
    documents = base_documents(12)
    set_path(documents[0], ["machine", "kubelet", "extraArgs"], {"feature-gates": ["A=true"]})
    found = problems(documents, 12)
    assert any("extraArgs.feature-gates: must be a string" in p for p in found)


#: Values of every YAML type, where users put them.
RICH_VALUES: dict[str, Any] = {
    "machine.kubelet.extraArgs": {"max-pods": 512, "rotate-server-certificates": True, "v": "2"},
    "machine.sysctls": {"net.ipv4.ip_forward": 1, "vm.swappiness": "10", "x.y": 1.5},
    "machine.kubelet.extraConfig": {"maxPods": 512, "serializeImagePulls": False, "cpu": "1.0"},
    "machine.kernel": {"modules": [{"name": "br_netfilter", "parameters": ["a=1"]}]},
    "machine.files": [{"path": "/var/f", "permissions": 420, "op": "create", "content": "0755"}],
}


def leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in leaves(value, (*path, key))]
    if isinstance(node, list):
        return [leaf for index, value in enumerate(node) for leaf in leaves(value, (*path, index))]
    return [(path, node)]


def at(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@pytest.mark.parametrize("minor", [11, 12, 13])
def test_every_value_written_is_the_value_given(minor: int) -> None:
    """Walks every leaf of the base config: same value and same type in what nodes receive,
    except the sections the builder owns or removes."""
    documents = base_documents(minor)
    for path, value in RICH_VALUES.items():
        set_path(documents[0], path.split("."), copy.deepcopy(value))
    written = load_documents(build(documents, minor).yaml)
    owned = {("machine", "install"), ("machine", "nodeLabels"), ("machine", "kubelet", "image")}
    for index, document in enumerate(documents):
        for leaf_path, leaf in leaves(document):
            if any(leaf_path[: len(prefix)] == prefix for prefix in owned) and index == 0:
                continue
            copied = at(written[index], leaf_path)
            assert (copied, type(copied)) == (leaf, type(leaf)), leaf_path


# ---- 4. kernel modules and their extensions --------------------------------------------------


def stack_with_base(
    tmp_path: Path,
    documents: list[dict[str, Any]],
    version: str = "v1.11.6",
    kubernetes: str = "1.33.1",
    **talos: Any,
) -> Any:
    base = tmp_path / "worker.yaml"
    base.write_text(dump_documents(documents))
    sections: dict[str, Any] = {
        "talos": {
            "version": version,
            "kubernetesVersion": kubernetes,
            "workerConfigFile": str(base),
        }
        | talos,
        "network": {},
        "image": {},
        "autoscaler": {
            "nodeGroups": [
                {
                    "name": "workers",
                    "minSize": 0,
                    "maxSize": 3,
                    "instanceType": "cpx22",
                    "region": "fsn1",
                }
            ]
        },
    }
    return parse_stack_config(sections, TEST_TOKEN, REPO)


def with_modules(*names: str) -> list[dict[str, Any]]:
    documents = base_documents(11)
    modules = [{"name": name} for name in names]
    set_path(documents[0], ["machine", "kernel", "modules"], modules)
    return documents


def test_a_module_without_its_extension_is_refused_naming_both(tmp_path: Path) -> None:
    documents = with_modules("drbd", "drbd-transport-tcp", "zfs", "br_netfilter")
    with pytest.raises(ConfigError) as caught:
        stack_with_base(tmp_path, documents, extensions=["siderolabs/qemu-guest-agent"])
    found = [str(problem) for problem in caught.value.problems]
    assert len(found) == 3
    assert all(p.startswith("hcloud-talos-autoscaler:talos.extensions: ") for p in found)
    assert any("kernel module drbd, which only the siderolabs/drbd extension" in p for p in found)
    assert any("kernel module zfs, which only the siderolabs/zfs extension" in p for p in found)


def test_the_default_extensions_carry_cozystacks_modules(tmp_path: Path) -> None:
    stack = stack_with_base(tmp_path, with_modules("drbd", "zfs", "spl"))
    assert stack.talos.extensions == [
        "siderolabs/qemu-guest-agent",
        "siderolabs/drbd",
        "siderolabs/zfs",
    ]


def test_with_a_schematic_id_the_modules_are_a_warning(tmp_path: Path) -> None:
    stack = stack_with_base(tmp_path, with_modules("drbd"), schematicId="a" * 64)
    (warning,) = extension_warnings(stack)
    assert "drbd" in warning and "siderolabs/drbd" in warning and "aaaaaaaaaaaa" in warning


# ---- 5. smaller rules ------------------------------------------------------------------------


def test_pool_nodes_carry_the_instance_type_the_autoscaler_template_promises(
    tmp_path: Path,
) -> None:
    stack = stack_with_base(tmp_path, base_documents(11))
    plan = plan_stack(stack)
    (pool,) = plan.pools
    (config,) = plan.worker_configs(plan.network.subnet).values()
    labels = load_documents(config.yaml)[0]["machine"]["nodeLabels"]
    assert labels["node.kubernetes.io/instance-type"] == "cpx22"
    # The autoscaler's own template sets the pool's server type there (FACTS §1.5); so do ours.
    template = template_labels(pool, dict(stack.talos.node_labels))
    assert template["node.kubernetes.io/instance-type"] == "cpx22"


@pytest.mark.parametrize("key", ["hcloud:token", "autoscaler.token"])
def test_a_token_that_is_not_64_characters_is_refused_without_showing_it(
    key: str, tmp_path: Path
) -> None:
    secret = "x7Kq" * 8  # 32 characters: half a token, pasted
    sections: dict[str, Any] = {
        "talos": {
            "version": "v1.11.6",
            "kubernetesVersion": "1.33.1",
            "workerConfigFile": "examples/worker.yaml",
        },
        "network": {},
        "image": {},
        "autoscaler": {
            "nodeGroups": [
                {
                    "name": "workers",
                    "minSize": 0,
                    "maxSize": 3,
                    "instanceType": "cpx22",
                    "region": "fsn1",
                }
            ]
        },
    }
    token = secret if key == "hcloud:token" else TEST_TOKEN
    if key == "autoscaler.token":
        sections["autoscaler"]["token"] = secret
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(sections, token, REPO)
    (problem,) = [str(p) for p in caught.value.problems]
    shown = key if key == "hcloud:token" else f"hcloud-talos-autoscaler:{key}"
    assert problem.startswith(f"{shown}: is 32 characters long; a Hetzner Cloud API token has 64")
    assert secret not in str(caught.value) and "x7Kq" not in str(caught.value)


def test_a_pool_that_can_never_grow_is_a_warning(tmp_path: Path) -> None:
    stack_file = REPO / "Pulumi.dev.yaml"
    project = tmp_path / "project"
    project.mkdir()
    (project / "examples").mkdir()
    (project / "examples" / "worker.yaml").write_text(
        (REPO / "examples" / "worker.yaml").read_text()
    )
    text = stack_file.read_text()
    assert "maxSize: 10" in text
    (project / "Pulumi.dev.yaml").write_text(text.replace("maxSize: 10", "maxSize: 0", 1))
    (project / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    _, warnings = read_stack_file(project, "dev")
    assert any("maxSize 0: the autoscaler never creates a server in it" in w for w in warnings)


# ---- 6. the guide's troubleshooting failures, the Internal IP, control-plane-only settings ---


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        # "unknown keys found during decoding": nodeLabels not under machine.
        (
            lambda b: b.replace("  kubelet:\n", "  kubelet:\n    nodeLabels:\n      a: b\n", 1),
            "machine.kubelet.nodeLabels: unknown key for Talos v1.11 (Talos would fail with 'unknown keys found during decoding'); `nodeLabels` goes under `machine`",
        ),
        # ... and nodeIP not under machine.kubelet.
        (
            lambda b: b.replace(
                "  certSANs: []\n",
                "  certSANs: []\n  nodeIP:\n    validSubnets: [10.100.0.0/24]\n",
                1,
            ),
            "machine.nodeIP: unknown key for Talos v1.11 (Talos would fail with 'unknown keys found during decoding'); `nodeIP` goes under `machine.kubelet`",
        ),
        (
            lambda b: "nodeLabels:\n  a: b\n" + b,
            "nodeLabels: unknown key for Talos v1.11",
        ),
        # "kubelet image is not valid": Kubernetes newer than the Talos release supports.
        (
            lambda b: b.replace("kubelet:v1.33.1", "kubelet:v1.35.0"),
            "machine.kubelet.image: 'ghcr.io/siderolabs/kubelet:v1.35.0': Kubernetes 1.35.0 is outside what Talos v1.11.2 supports",
        ),
        (
            lambda b: b.replace("type: worker", "type: controlplane"),
            "machine.type: is 'controlplane'; autoscaled nodes join as workers",
        ),
        (
            lambda b: b.replace(
                '    key: ""\n  certSANs',
                "    key: TFMwdExTMUNSVWRKVGlCRlJESTFOVEU1\n  certSANs",
                1,
            ),
            "machine.ca.key: is a control-plane private key",
        ),
        (
            lambda b: b.replace("https://192.0.2.10:6443", "192.0.2.10:6443"),
            "cluster.controlPlane.endpoint: is '192.0.2.10:6443'; it must be the https URL",
        ),
        (
            lambda b: b.replace("  token: 3f9k2p.0sample0cluster0\n", ""),
            "cluster.token: is missing",
        ),
        # Talos' default service network 10.96.0.0/12 swallows the guide's 10.100.0.0/16.
        (
            lambda b: b.replace("10.96.0.0/16", "10.96.0.0/12"),
            "cluster.network.serviceSubnets: 10.96.0.0/12 overlaps the private network 10.100.0.0/16",
        ),
    ],
)
def test_guide_troubleshooting_failures_are_caught(mutate: Any, expected: str) -> None:
    with pytest.raises(WorkerConfigError) as caught:
        build_worker_config(mutate(base_for(11)), pool_spec(11, kubernetes=None), "of pool w")
    assert any(expected in str(problem) for problem in caught.value.problems), caught.value
    assert str(caught.value).startswith("the Talos worker config of pool w has")


def test_wrong_internal_ip_subnet_is_reported() -> None:
    documents = load_documents(build_worker_config(base_for(11), pool_spec(11)).yaml)
    problems = validate_worker_documents(documents, pool_spec(11, subnet="10.100.1.0/24"))
    assert [str(p) for p in problems] == [
        "machine.kubelet.nodeIP.validSubnets: is ['10.100.0.0/24'] but the private subnet is "
        "10.100.1.0/24; nodes would register the wrong Internal IP"
    ]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"cluster": {"etcd": {"advertisedSubnets": ["10.100.0.0/24"]}}},
            "cluster.etcd: is only allowed on control plane machines",
        ),
        (
            {"machine": {"features": {"kubernetesTalosAPIAccess": {"enabled": True}}}},
            "machine.features.kubernetesTalosAPIAccess: can only be enabled on control plane",
        ),
    ],
)
def test_settings_talos_refuses_on_workers_are_refused(
    extra: dict[str, Any], expected: str
) -> None:
    """Talos's own validation refuses these on a worker (found by the loader oracle, issue 17)."""
    documents = load_documents(base_for(11))
    for section, values in extra.items():
        for key, value in values.items():
            merged = documents[0][section].get(key) or {}
            documents[0][section][key] = {**merged, **value} if isinstance(value, dict) else value
    with pytest.raises(WorkerConfigError) as caught:
        build_worker_config(dump_documents(documents), pool_spec(11), "of pool w")
    assert any(expected in str(problem) for problem in caught.value.problems), caught.value
