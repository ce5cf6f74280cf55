"""Every worker config the program hands new servers, judged by Talos's own loader.

One loader per supported Talos minor (``talos-validate-v1.<minor>``, built from that
release's ``pkg/machinery``): strict decoding (unknown keys are errors) and validation for
the cloud runtime mode. The configs come from the program itself, run under the Pulumi mocks:
the ``talos-config`` Secret it registers, decoded as the autoscaler and Talos decode it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import gzip
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import parse_stack_config, sections_from_flat_config
from core.plan import plan_stack
from core.releases.autoscaler import FEATURE_SINCE
from core.releases.talos import KUBERNETES_RANGE_BY_TALOS_MINOR
from core.talos.documents import dump_documents, load_documents
from core.talos.spec import WorkerConfigSpec
from core.talos.validation import validate_worker_documents

from tests.conftest import REPO, MockRuntime
from tests.oracles.oracle_tools import TALOS_MINORS, load_toolchain, talos_validate
from tests.oracles.test_chart_oracle import AUTOSCALER, Program, legacy, prod_config, run_program
from tests.support.program import dev_config

TALOS = "hcloud-talos-autoscaler:talos"
FIXTURES = REPO / "tests" / "fixtures"


def talos_release(minor: int) -> str:
    """The release whose loader judges this minor (the version pinned for the oracle)."""
    entries = {entry.name: entry for entry in load_toolchain().load_entries("oracles")}
    (version,) = entries[f"talos-validate-v1_{minor}"].modules.values()
    assert version.startswith(f"v1.{minor}."), version
    return str(version)


def kubernetes_for(minor: int) -> str:
    (_, (major, newest)) = KUBERNETES_RANGE_BY_TALOS_MINOR[(1, minor)]
    return f"{major}.{newest}.0"


def base_config_for(minor: int) -> Path:
    return FIXTURES / ("worker-v1.12.yaml" if minor >= 12 else "worker-v1.11.yaml")


def on_minor(config: dict[str, Any], minor: int, *, mirrors: bool, base: Path) -> dict[str, Any]:
    config = copy.deepcopy(config)
    talos = config[TALOS]
    talos.update(
        version=talos_release(minor),
        kubernetesVersion=kubernetes_for(minor),
        workerConfigFile=str(base),
    )
    talos["registryMirrors"] = {"docker.io": ["https://mirror.gcr.io"]} if mirrors else {}
    # Pool settings the autoscaler of that Kubernetes minor cannot read are refused: drop them.
    kubernetes = tuple(int(part) for part in kubernetes_for(minor).split(".")[:2])
    for group in config[AUTOSCALER]["nodeGroups"]:
        for key, setting in POOL_SETTINGS.items():
            if kubernetes < FEATURE_SINCE[setting]:
                group.pop(key, None)
    return config


#: Pool keys and the provider setting each needs (``autoscaler_versions.FEATURE_SINCE``).
POOL_SETTINGS = {
    "placementGroup": "placementGroup",
    "serverLabels": "serverLabels",
    "subnet": "subnetIPRange",
}


STACKS: dict[str, Callable[[], dict[str, Any]]] = {
    "dev": dev_config,
    "prod": prod_config,
    "dev-legacy": legacy,
}


def user_data_by_pool(program: Program) -> dict[str, str]:
    """What each pool's servers receive as user data, read back from the program's Secret."""
    secret = program.exports["talosConfigSecret"]
    value = program.secret(secret["name"], secret["namespace"])[secret["key"]]
    if secret["key"] == "cloud-init":  # legacy: HCLOUD_CLOUD_INIT, base64 decoded once
        text = base64.b64decode(value, validate=True).decode()
        return {group["name"]: text for group in program.exports["nodeGroups"]}
    config = json.loads(base64.b64decode(value, validate=True) if _is_base64(value) else value)
    return {pool: node["cloudInit"] for pool, node in config["nodeConfigs"].items()}


def as_talos_reads_it(user_data: str) -> tuple[str, str]:
    """(encoding, YAML): Talos base64-decodes user data, then un-gzips it (FACTS §4.4)."""
    if _is_base64(user_data):
        raw = base64.b64decode(user_data, validate=True)
        if raw[:2] == b"\x1f\x8b":
            return "gzip+base64", gzip.decompress(raw).decode()
    return "plain", user_data


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def assert_loads(minor: int, config: str, tmp_path: Path, what: str) -> None:
    verdict = talos_validate(minor, config, tmp_path)
    assert verdict.talos == talos_release(minor)
    assert verdict.valid, f"Talos {verdict.talos} refuses {what}:\n" + "\n".join(verdict.errors)


# ---- every config the program renders --------------------------------------------------------


@pytest.mark.parametrize("mirrors", [True, False], ids=["mirrors", "no-mirrors"])
@pytest.mark.parametrize("minor", TALOS_MINORS, ids=lambda m: f"v1.{m}")
@pytest.mark.parametrize("stack", STACKS)
def test_every_rendered_worker_config_loads_with_its_talos_release(
    stack: str, minor: int, mirrors: bool, pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    config = on_minor(STACKS[stack](), minor, mirrors=mirrors, base=base_config_for(minor))
    program = run_program(pulumi_runtime, config)
    by_pool = user_data_by_pool(program)
    assert sorted(by_pool) == sorted(g["name"] for g in config[AUTOSCALER]["nodeGroups"])
    for pool, user_data in by_pool.items():
        encoding, text = as_talos_reads_it(user_data)
        assert encoding == "plain"
        documents = load_documents(text)
        kinds = [doc.get("kind") for doc in documents]
        if mirrors and minor >= 12:
            assert "RegistryMirrorConfig" in kinds
        assert_loads(minor, text, tmp_path, f"the {stack} stack's config of pool {pool}")


def big_base_config(minor: int, tmp_path: Path) -> Path:
    """A base config above Hetzner's 32 KiB user-data limit (large but compressible files)."""
    files = [
        {"path": f"/var/etc/f{index}", "permissions": 420, "op": "create", "content": "x" * 4000}
        for index in range(10)
    ]
    documents = load_documents(base_config_for(minor).read_text())
    documents[0]["machine"]["files"] = files
    path = tmp_path / f"big-worker-v1.{minor}.yaml"
    path.write_text(dump_documents(documents))
    return path


@pytest.mark.parametrize("minor", TALOS_MINORS[1:], ids=lambda m: f"v1.{m}")
def test_gzip_user_data_decodes_to_a_config_its_talos_release_loads(
    minor: int, pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    """From 1.9 on (1.8 cannot read compressed user data: the program refuses, unit-tested)."""
    config = on_minor(dev_config(), minor, mirrors=True, base=big_base_config(minor, tmp_path))
    program = run_program(pulumi_runtime, config)
    for pool, user_data in user_data_by_pool(program).items():
        encoding, text = as_talos_reads_it(user_data)
        assert encoding == "gzip+base64", "the variant must exceed the plain user-data limit"
        assert_loads(minor, text, tmp_path, f"the gzip user data of pool {pool}")


# ---- deprecated keys Talos still decodes (FACTS §4.2) ----------------------------------------

DEPRECATED_MAIN_KEYS: dict[str, Any] = {
    "persist": True,
    "machine.features.rbac": True,
    "machine.features.stableHostname": True,
    "machine.features.apidCheckExtKeyUsage": True,
    "machine.registries.mirrors": {"docker.io": {"endpoints": ["https://mirror.gcr.io"]}},
}


def with_keys(text: str, keys: dict[str, Any]) -> str:
    """The base with deprecated keys, as a config upgraded from Talos 1.11 carries them.

    Such a config has no ``HostnameConfig`` (Talos refuses both hostname settings at once).
    """
    documents = [doc for doc in load_documents(text) if doc.get("kind") != "HostnameConfig"]
    for path, value in keys.items():
        node = documents[0]
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(value)
    return dump_documents(documents)


@pytest.mark.parametrize("minor", [12, 13], ids=lambda m: f"v1.{m}")
def test_deprecated_but_decoded_keys_load_and_are_accepted(
    minor: int, pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    base = tmp_path / "deprecated-worker.yaml"
    base.write_text(with_keys(base_config_for(minor).read_text(), DEPRECATED_MAIN_KEYS))
    assert_loads(minor, base.read_text(), tmp_path, "the deprecated keys")  # the oracle itself
    config = on_minor(dev_config(), minor, mirrors=False, base=base)
    program = run_program(pulumi_runtime, config)  # our validation must accept them too
    for pool, user_data in user_data_by_pool(program).items():
        assert_loads(minor, as_talos_reads_it(user_data)[1], tmp_path, f"pool {pool}")


# ---- where our validation and the loader must agree -------------------------------------------


def _set(path: str, value: Any) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(documents: list[dict[str, Any]]) -> None:
        node = documents[0]
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return mutate


def _append(document: dict[str, Any]) -> Callable[[list[dict[str, Any]]], None]:
    return lambda documents: documents.append(copy.deepcopy(document))


def _stable_hostname_the_old_way(documents: list[dict[str, Any]]) -> None:
    """1.11's way of asking for a stable hostname, instead of 1.12's HostnameConfig."""
    documents[:] = [doc for doc in documents if doc.get("kind") != "HostnameConfig"]
    _set("machine.features.stableHostname", True)(documents)


#: (case, minors it applies to, mutation of the rendered config, loader accepts it).
AGREEMENT: list[tuple[str, tuple[int, ...], Callable[[list[dict[str, Any]]], None], bool]] = [
    ("rendered as is", TALOS_MINORS, lambda documents: None, True),
    (
        "typo'd key machine.kubelet.nodeLabelz",
        TALOS_MINORS,
        _set("machine.kubelet.nodeLabelz", {"a": "b"}),
        False,
    ),
    (
        "misplaced machine.kubelet.nodeLabels",
        TALOS_MINORS,
        _set("machine.kubelet.nodeLabels", {"a": "b"}),
        False,
    ),
    (
        "misplaced top-level nodeIP",
        TALOS_MINORS,
        _set("nodeIP", {"validSubnets": ["10.0.0.0/8"]}),
        False,
    ),
    ("unknown key under cluster", TALOS_MINORS, _set("cluster.nodeLabels", {"a": "b"}), False),
    (
        "control plane: machine.type controlplane",
        TALOS_MINORS,
        _set("machine.type", "controlplane"),
        False,
    ),
    (
        "control plane: cluster.etcd on a worker",
        TALOS_MINORS,
        _set("cluster.etcd", {"advertisedSubnets": ["10.100.0.0/24"]}),
        False,
    ),
    (
        "control plane: issuing Talos API CA key",
        TALOS_MINORS,
        _set("machine.ca.key", "LS0tLS1CRUdJTg=="),
        False,
    ),
    (
        "control plane: Kubernetes CA key",
        TALOS_MINORS,
        _set("cluster.ca.key", "LS0tLS1CRUdJTg=="),
        False,
    ),
    (
        "control plane: Talos API access for Kubernetes",
        TALOS_MINORS,
        _set(
            "machine.features.kubernetesTalosAPIAccess",
            {
                "enabled": True,
                "allowedRoles": ["os:reader"],
                "allowedKubernetesNamespaces": ["kube-system"],
            },
        ),
        False,
    ),
    (
        "unknown document kind",
        (12, 13),
        _append({"apiVersion": "v1alpha1", "kind": "RegistryMirrorConfigs", "name": "x"}),
        False,
    ),
    (
        "typo'd key in a RegistryMirrorConfig",
        (12, 13),
        _append(
            {
                "apiVersion": "v1alpha1",
                "kind": "RegistryMirrorConfig",
                "name": "quay.io",
                "endpoint": [{"url": "https://m"}],
            }
        ),
        False,
    ),
    (
        "RegistryMirrorConfig before it existed",
        (11,),
        _append(
            {
                "apiVersion": "v1alpha1",
                "kind": "RegistryMirrorConfig",
                "name": "quay.io",
                "endpoints": [{"url": "https://m"}],
            }
        ),
        False,
    ),
    ("deprecated machine.features.stableHostname", (12, 13), _stable_hostname_the_old_way, True),
    (
        "deprecated machine.registries",
        (12, 13),
        _set("machine.registries", {"mirrors": {"quay.io": {"endpoints": ["https://m"]}}}),
        True,
    ),
    ("deprecated persist", TALOS_MINORS, _set("persist", True), True),
]

#: Cases where we refuse on purpose what Talos loads: policy of this program, not a reading of
#: Talos (a control-plane private key in the user data of every autoscaled server).
STRICTER_BY_POLICY: list[tuple[str, Callable[[list[dict[str, Any]]], None]]] = [
    ("aggregator CA private key", _set("cluster.aggregatorCA.key", "LS0tLS1CRUdJTg==")),
    ("service account private key", _set("cluster.serviceAccount.key", "LS0tLS1CRUdJTg==")),
]


def rendered_spec(minor: int) -> tuple[list[dict[str, Any]], WorkerConfigSpec]:
    """The dev stack's pool config as the program renders it for Talos v1.<minor>, and its spec.

    The base is the fixture without its empty ``machine.network`` (deprecated in 1.12/1.13,
    which the rendering tests above cover): each case here then tests only its own change.
    """
    documents = load_documents(base_config_for(minor).read_text())
    if documents[0]["machine"].get("network") == {}:
        del documents[0]["machine"]["network"]
    base = Path(tempfile.mkdtemp()) / "worker.yaml"
    base.write_text(dump_documents(documents))
    flat = on_minor(dev_config(), minor, mirrors=True, base=base)
    sections, token = sections_from_flat_config(flat)
    stack = parse_stack_config(sections, token, REPO)
    plan = plan_stack(stack)
    (config,) = plan.worker_configs(plan.network.subnet).values()
    (pool,) = plan.pools
    return load_documents(config.yaml), pool.worker_spec


AGREEMENT_CASES = [
    pytest.param(minor, mutate, loader_accepts, id=f"v1.{minor}-{name}")
    for name, minors, mutate, loader_accepts in AGREEMENT
    for minor in minors
]


@pytest.mark.parametrize(("minor", "mutate", "loader_accepts"), AGREEMENT_CASES)
def test_our_validation_agrees_with_the_loader(
    minor: int,
    mutate: Callable[[list[dict[str, Any]]], None],
    loader_accepts: bool,
    tmp_path: Path,
) -> None:
    documents, spec = rendered_spec(minor)
    mutate(documents)
    verdict = talos_validate(minor, dump_documents(documents), tmp_path)
    assert verdict.valid == loader_accepts, f"the oracle itself changed: {verdict}"
    problems = validate_worker_documents(copy.deepcopy(documents), spec)
    ours_accepts = not problems
    assert ours_accepts == verdict.valid, (
        f"Talos {verdict.talos} {'accepts' if verdict.valid else 'refuses'} it "
        f"({verdict.errors}); we {'accept' if ours_accepts else 'refuse'} it "
        f"({[str(p) for p in problems]})"
    )


@pytest.mark.parametrize("minor", TALOS_MINORS, ids=lambda m: f"v1.{m}")
@pytest.mark.parametrize(
    ("name", "mutate"), STRICTER_BY_POLICY, ids=[c[0] for c in STRICTER_BY_POLICY]
)
def test_control_plane_private_keys_are_refused_though_talos_loads_them(
    name: str, mutate: Callable[[list[dict[str, Any]]], None], minor: int, tmp_path: Path
) -> None:
    documents, spec = rendered_spec(minor)
    mutate(documents)
    assert talos_validate(minor, dump_documents(documents), tmp_path).valid
    assert validate_worker_documents(documents, spec), f"{name} must be refused"


@pytest.mark.parametrize("minor", (8, 9, 10, 11), ids=lambda m: f"v1.{m}")
def test_a_shared_vip_in_the_base_config_never_reaches_a_worker(minor: int, tmp_path: Path) -> None:
    """Talos refuses a VIP on a worker; the builder drops ``machine.network`` (Cozystack's guide)."""
    documents = load_documents(base_config_for(minor).read_text())
    documents[0]["machine"]["network"] = {
        "interfaces": [{"interface": "eth0", "dhcp": True, "vip": {"ip": "10.100.0.50"}}]
    }
    with_vip = dump_documents(documents)
    assert not talos_validate(minor, with_vip, tmp_path).valid  # the oracle sees the VIP
    base = tmp_path / "worker.yaml"
    base.write_text(with_vip)
    flat = on_minor(dev_config(), minor, mirrors=False, base=base)
    sections, token = sections_from_flat_config(flat)
    stack = parse_stack_config(sections, token, REPO)
    (config,) = plan_stack(stack).worker_configs(stack.network.subnet).values()
    assert "network" not in load_documents(config.yaml)[0]["machine"]
    assert_loads(minor, config.yaml, tmp_path, "the worker config built from a base with a VIP")


def test_the_loader_oracle_reads_yaml_as_talos_does(tmp_path: Path) -> None:
    """The oracle fails on what Talos fails on: it is not a YAML syntax checker that says yes."""
    verdict = talos_validate(11, "version: v1alpha1\nmachine: [\n", tmp_path)
    assert not verdict.loaded and verdict.errors
    assert yaml.safe_load(base_config_for(11).read_text())  # the fixture itself is YAML


def test_the_loader_catches_a_wrong_config_our_validation_let_through(
    pulumi_runtime: MockRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program that writes 1.12's mirror documents for Talos 1.11, with our check switched off."""
    monkeypatch.setattr("core.talos.worker_config.REGISTRY_DOCUMENTS_SINCE", (1, 8))
    monkeypatch.setattr("core.talos.worker_config.validate_worker_documents", lambda *_: [])
    config = on_minor(dev_config(), 11, mirrors=True, base=base_config_for(11))
    program = run_program(pulumi_runtime, config)
    (user_data,) = user_data_by_pool(program).values()
    verdict = talos_validate(11, as_talos_reads_it(user_data)[1], tmp_path)
    assert not verdict.valid
    assert "RegistryMirrorConfig" in " ".join(verdict.errors)
