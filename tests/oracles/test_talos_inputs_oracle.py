"""Talos inputs as users feed them (issue 22), judged by Talos itself.

Each supported minor's loader decides the value-type table (our schema-based check must refuse
exactly what it refuses), and that minor's own machinery sources (the module the loader is
built from, in the Go module cache) decide which network documents exist, which of them turn
off the default DHCP, and so which the worker config must lose.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from core.releases.talos import parse_talos_version
from core.talos.documents import dump_documents, load_documents
from core.talos.keys import talos_keys
from core.talos.validation import validate_worker_documents

from tests.conftest import REPO, MockRuntime
from tests.oracles.oracle_tools import TALOS_MINORS, load_toolchain, talos_validate
from tests.oracles.test_talos_oracle import (
    _append,
    _set,
    as_talos_reads_it,
    assert_loads,
    base_config_for,
    on_minor,
    rendered_spec,
    run_program,
    talos_release,
    user_data_by_pool,
)
from tests.support.program import dev_config

Mutation = Callable[[list[dict[str, Any]]], None]

# ---- value types: the loader and our check refuse the same ------------------------------------

#: (case, minors, mutation of the rendered config, the loader accepts it).
TYPE_AGREEMENT: list[tuple[str, tuple[int, ...], Mutation, bool]] = [
    ("kubePrism as a list", TALOS_MINORS, _set("machine.features.kubePrism", [1]), False),
    ("sysctls as a list", TALOS_MINORS, _set("machine.sysctls", ["vm.swappiness=10"]), False),
    ("sysctl value a map", TALOS_MINORS, _set("machine.sysctls", {"a.b": {"c": 1}}), False),
    ("extraMounts as a map", TALOS_MINORS, _set("machine.kubelet.extraMounts", {"a": 1}), False),
    ("integer from a string", TALOS_MINORS, _set("machine.features.kubePrism.port", "7445"), False),
    ("boolean from a number", TALOS_MINORS, _set("machine.features.kubePrism.enabled", 1), False),
    (
        "cni name outside its enum (a worker ignores its CNI)",
        TALOS_MINORS,
        _set("cluster.network.cni", {"name": "calico"}),
        True,
    ),
    ("string from a number", TALOS_MINORS, _set("machine.sysctls", {"vm.swappiness": 10}), True),
    ("string from a boolean", TALOS_MINORS, _set("machine.sysctls", {"a.b": True}), True),
    (
        "integer from a whole float",
        TALOS_MINORS,
        _set("machine.features.kubePrism.port", 7445.0),
        True,
    ),
    ("boolean from 'yes'", TALOS_MINORS, _set("machine.features.kubePrism.enabled", "yes"), True),
    (
        "list argument before 1.13",
        (8, 9, 10, 11, 12),
        _set("machine.kubelet.extraArgs", {"feature-gates": ["A=true", "B=true"]}),
        False,
    ),
    (
        "list argument from 1.13",
        (13,),
        _set("machine.kubelet.extraArgs", {"feature-gates": ["A=true", "B=true"]}),
        True,
    ),
    (
        "mirror endpoints not a list",
        (12, 13),
        _append(
            {
                "apiVersion": "v1alpha1",
                "kind": "RegistryMirrorConfig",
                "name": "quay.io",
                "endpoints": {"url": "https://m"},
            }
        ),
        False,
    ),
]

TYPE_CASES = [
    pytest.param(minor, mutate, accepts, id=f"v1.{minor}-{name}")
    for name, minors, mutate, accepts in TYPE_AGREEMENT
    for minor in minors
]


@pytest.mark.parametrize(("minor", "mutate", "loader_accepts"), TYPE_CASES)
def test_our_type_check_agrees_with_the_loader(
    minor: int, mutate: Mutation, loader_accepts: bool, tmp_path: Path
) -> None:
    documents, spec = rendered_spec(minor)
    mutate(documents)
    verdict = talos_validate(minor, dump_documents(documents), tmp_path)
    assert verdict.valid == loader_accepts, f"the oracle itself changed: {verdict}"
    problems = [str(p) for p in validate_worker_documents(copy.deepcopy(documents), spec)]
    assert (not problems) == verdict.valid, (
        f"Talos {verdict.talos} {'accepts' if verdict.valid else 'refuses'} it "
        f"({verdict.errors}); we {'accept' if not problems else 'refuse'} it ({problems})"
    )


@pytest.mark.parametrize("minor", TALOS_MINORS, ids=lambda m: f"v1.{m}")
def test_a_file_operation_outside_its_enum_is_refused_though_talos_loads_it(
    minor: int, tmp_path: Path
) -> None:
    """Policy: the loader takes any ``op``, but machined's WriteUserFiles fails the boot on one
    it does not know ("unknown operation for file", v1alpha1_sequencer_tasks.go)."""
    documents, spec = rendered_spec(minor)
    files = [{"path": "/var/f", "permissions": 420, "op": "replace", "content": "x"}]
    _set("machine.files", files)(documents)
    assert talos_validate(minor, dump_documents(documents), tmp_path).valid
    problems = [str(p) for p in validate_worker_documents(documents, spec)]
    assert problems == [
        'machine.files[0].op: is \'replace\'; Talos accepts only "create", "append", "overwrite"'
    ]


# ---- network documents -----------------------------------------------------------------------


def go_mod_cache() -> Path:
    toolchain = load_toolchain()
    result = subprocess.run(
        [toolchain.go_binary(), "env", "GOMODCACHE"],
        capture_output=True,
        text=True,
        env=toolchain.go_env(),
        timeout=60,
    )
    return Path(result.stdout.strip())


@cache
def machinery(minor: int) -> Path:
    """The sources of the machinery module the minor's loader was built from."""
    release = talos_release(minor)
    root = go_mod_cache() / f"github.com/siderolabs/talos/pkg/machinery@{release}"
    if not (root / "config").is_dir():
        pytest.fail(
            f"{root} is missing: the oracle build puts it in the Go module cache "
            f"({load_toolchain().build_hint('oracles')})"
        )
    return root


def go_sources(directory: Path) -> dict[str, str]:
    return {
        path.name: path.read_text()
        for path in sorted(directory.glob("*.go"))
        if not path.name.endswith("_test.go")
    }


def network_kinds(minor: int) -> dict[str, str]:
    """Kind -> Go file, of every document ``types/network`` registers."""
    sources = go_sources(machinery(minor) / "config" / "types" / "network")
    strings = {
        name: value
        for text in sources.values()
        for name, value in re.findall(r'\b(\w+)\s*=\s*"(\w+)"', text)
    }
    return {
        strings[constant]: file
        for file, text in sources.items()
        for constant in re.findall(r"registry\.Register\((\w+),", text)
    }


def link_interfaces(minor: int) -> set[str]:
    """The config interfaces that make ``RunDefaultDHCPOperators`` false (container.go): the
    common link config, the DHCP config, and every interface embedding one of them."""
    container = (machinery(minor) / "config" / "container" / "container.go").read_text()
    body = container.split("func (container *Container) RunDefaultDHCPOperators() bool {")[1]
    roots = set(re.findall(r"findMatchingDocs\[config\.(\w+)\]", body.split("\n}")[0]))
    assert roots, "RunDefaultDHCPOperators no longer reads documents: re-read container.go"
    interfaces = dict(
        re.findall(
            r"type (\w+) interface \{(.*?)\n\}",
            "".join(go_sources(machinery(minor) / "config" / "config").values()),
            re.S,
        )
    )
    found = set(roots)
    while True:
        more = {
            name
            for name, body in interfaces.items()
            if name not in found and any(re.search(rf"^\s*{r}$", body, re.M) for r in found)
        }
        if not more:
            return found
        found |= more


def dhcp_disabling_kinds(minor: int) -> set[str]:
    sources = go_sources(machinery(minor) / "config" / "types" / "network")
    kinds = network_kinds(minor)
    interfaces = link_interfaces(minor)
    return {
        kind
        for kind, file in kinds.items()
        if any(f"config.{name} " in sources[file] for name in interfaces)
    }


#: Kinds the minor's machinery registers that its official JSON schema does not describe
#: (so our table has no keys for them, and refuses them as unknown).
UNDESCRIBED_KINDS = {13: {"ImageVerificationConfig"}}


def registered_kinds(minor: int) -> set[str]:
    """Every document kind the minor's ``config/types`` packages register."""
    kinds: set[str] = set()
    for package in sorted(
        {path.parent for path in (machinery(minor) / "config" / "types").rglob("*.go")}
    ):
        sources = go_sources(package)
        strings = dict(
            pair for text in sources.values() for pair in re.findall(r'\b(\w+)\s*=\s*"(\w+)"', text)
        )
        for text in sources.values():
            for name in re.findall(r'registry\.Register\(\s*("?\w+"?),', text):
                kinds.add(name.strip('"') if name.startswith('"') else strings[name])
    return kinds - {"v1alpha1"}


@pytest.mark.parametrize("minor", TALOS_MINORS, ids=lambda m: f"v1.{m}")
def test_our_document_kinds_are_the_ones_talos_registers(minor: int) -> None:
    """The schemas call KubeSpanEndpointsConfig ``KubeSpanEndpoints`` (fixed in the generator)."""
    ours = set(talos_keys(parse_talos_version(f"v1.{minor}.0")).documents) - {"v1alpha1"}
    registered = registered_kinds(minor)
    assert ours <= registered, f"not a Talos kind: {sorted(ours - registered)}"
    assert registered - ours == UNDESCRIBED_KINDS.get(minor, set())


KUBESPAN_ENDPOINTS = {
    "apiVersion": "v1alpha1",
    "kind": "KubeSpanEndpointsConfig",
    "extraAnnouncedEndpoints": ["192.0.2.1:51820"],
}


@pytest.mark.parametrize("minor", TALOS_MINORS, ids=lambda m: f"v1.{m}")
@pytest.mark.parametrize("kind", ["KubeSpanEndpointsConfig", "KubeSpanEndpoints"])
def test_the_kubespan_endpoints_kind_agrees_with_the_loader(
    kind: str, minor: int, tmp_path: Path
) -> None:
    documents, spec = rendered_spec(minor)
    documents.append({**KUBESPAN_ENDPOINTS, "kind": kind})
    verdict = talos_validate(minor, dump_documents(documents), tmp_path)
    assert verdict.valid == (kind == "KubeSpanEndpointsConfig"), verdict
    assert (not validate_worker_documents(documents, spec)) == verdict.valid


@pytest.mark.parametrize("minor", [12, 13], ids=lambda m: f"v1.{m}")
def test_every_network_document_of_the_minor_is_removed_or_kept_on_purpose(minor: int) -> None:
    table = json.loads((REPO / "core" / "talos" / "config_keys.json").read_text())
    listed = table[f"1.{minor}"]["network_documents"]
    assert sorted(network_kinds(minor)) == sorted(listed["removed"] + listed["kept"])
    assert listed["source"].split()[1] == talos_release(minor)
    disabling = dhcp_disabling_kinds(minor)
    assert {"LinkConfig", "BondConfig", "VLANConfig", "DHCPv4Config"} <= disabling
    assert disabling <= set(listed["removed"]), "a kind that turns off the default DHCP is kept"


@pytest.mark.parametrize("minor", TALOS_MINORS, ids=lambda m: f"v1.{m}")
def test_no_network_kinds_are_removed_where_talos_has_no_network_documents(minor: int) -> None:
    removed = talos_keys(parse_talos_version(f"v1.{minor}.0")).removed_network_kinds
    if minor < 12:
        assert not removed
        assert "LinkConfig" not in network_kinds(minor)
    else:
        assert removed <= set(network_kinds(minor))


#: talm's Cozystack preset, rendered from a real node (cozystack/talm charts): links with
#: static addresses and the gateway, a bond, a VLAN, the site's resolvers.
SITE_NETWORK: list[dict[str, Any]] = [
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
        "links": ["enp1s0f1", "enp1s0f2"],
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
]


@pytest.mark.parametrize("minor", [12, 13], ids=lambda m: f"v1.{m}")
def test_a_base_with_site_network_documents_renders_a_config_talos_loads_without_them(
    minor: int, pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    documents = load_documents(base_config_for(minor).read_text())
    documents += copy.deepcopy(SITE_NETWORK)
    base = tmp_path / "worker-with-network.yaml"
    base.write_text(dump_documents(documents))
    assert_loads(minor, base.read_text(), tmp_path, "the base with its site network documents")
    program = run_program(pulumi_runtime, on_minor(dev_config(), minor, mirrors=False, base=base))
    for pool, user_data in user_data_by_pool(program).items():
        text = as_talos_reads_it(user_data)[1]
        kinds = {doc.get("kind") for doc in load_documents(text)}
        assert not kinds & {doc["kind"] for doc in SITE_NETWORK}
        assert not kinds & dhcp_disabling_kinds(minor), "the private NIC would get no address"
        assert_loads(minor, text, tmp_path, f"pool {pool} without the site network")
    assert any("LinkConfig 'enp1s0f0'" in warning for warning in pulumi_runtime.warnings)


@pytest.mark.parametrize("minor", (8, 9, 10, 11), ids=lambda m: f"v1.{m}")
def test_network_documents_before_1_12_are_refused_by_both(minor: int, tmp_path: Path) -> None:
    documents, spec = rendered_spec(minor)
    documents.append(copy.deepcopy(SITE_NETWORK[0]))
    assert not talos_validate(minor, dump_documents(documents), tmp_path).valid
    assert validate_worker_documents(documents, spec)
