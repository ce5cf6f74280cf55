"""The Talos key tables: the committed table against the schemas, unknown and deprecated keys
(configs carried over from an older Talos release, FACTS 4.2)."""

from __future__ import annotations

import importlib.util
import json
import sys
from typing import Any

import pytest

from core.talos.documents import load_documents
from core.talos.keys import deprecated_keys, talos_keys
from core.talos.problems import WorkerConfigError
from core.talos.spec import WorkerConfigSpec
from core.talos.validation import validate_worker_documents
from core.talos.worker_config import build_worker_config

from tests.conftest import REPO, SHARED_REFERENCE
from tests.support.worker_config import SCHEMAS, base_for, raw_schema_errors, schema_for, spec


def test_committed_key_table_matches_the_schemas() -> None:
    spec_ = importlib.util.spec_from_file_location(
        "generate_talos_config_keys", REPO / "scripts" / "generate_talos_config_keys.py"
    )
    assert spec_ is not None and spec_.loader is not None
    generator = importlib.util.module_from_spec(spec_)
    sys.modules[spec_.name] = generator  # its dataclasses look their module up
    spec_.loader.exec_module(generator)
    assert json.loads(generator.OUTPUT.read_text()) == generator.generate(SCHEMAS), (
        "core/talos/config_keys.json is stale: run "
        "`python scripts/generate_talos_config_keys.py ../shared/reference/talos-schemas`"
    )


def test_a_registry_document_on_talos_1_11_is_refused() -> None:
    base = base_for(11) + "---\napiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: x.io\n"
    with pytest.raises(
        WorkerConfigError,
        match=r"document kind 'RegistryMirrorConfig' does not exist in Talos v1\.11",
    ):
        build_worker_config(base, spec(11))


# ---- configs carried over from an older Talos release (FACTS 4.2) ------------------

SAMPLES = SHARED_REFERENCE / "talos-samples"
#: FACTS 4.2: deprecated keys Talos 1.12 and 1.13 still decode although their schemas omit them.
DECODED_BY_1_12_AND_1_13 = {
    "persist",
    "machine.features.rbac",
    "machine.features.stableHostname",
    "machine.features.apidCheckExtKeyUsage",
    "machine.registries",
}


def sample(version: str, name: str = "overrides-worker.yaml") -> str:
    path = SAMPLES / version / name
    if not path.exists():
        pytest.fail(f"test oracle missing: {path}")
    return path.read_text()


def upgraded_spec(talos_minor: int) -> WorkerConfigSpec:
    # The samples' service network 10.96.0.0/12 covers 10.100.0.0/16: use a disjoint one.
    return spec(
        talos_minor,
        subnet="10.200.0.0/24",
        network_ip_range="10.200.0.0/16",
        registry_mirrors={},
    )


@pytest.mark.parametrize("talos_minor", [12, 13])
def test_a_worker_config_from_talos_1_11_is_accepted_on_newer_releases_with_warnings(
    talos_minor: int,
) -> None:
    """`talosctl gen config` v1.11 output, the cluster upgraded: Talos still boots it."""
    config = build_worker_config(sample("v1.11"), upgraded_spec(talos_minor), "of pool w")
    warned = {warning.split(":", 1)[0] for warning in config.warnings}
    assert warned >= DECODED_BY_1_12_AND_1_13
    assert any(w.startswith("machine.install removed from") for w in config.warnings)
    registries = next(w for w in config.warnings if w.startswith("machine.registries:"))
    assert f"Talos v1.{talos_minor} still accepts it" in registries
    assert "RegistryMirrorConfig documents" in registries
    # The deprecated keys are kept as they were: Talos still reads them.
    main = load_documents(config.yaml)[0]
    assert main["persist"] is True
    assert main["machine"]["registries"]["mirrors"]["ghcr.io"]["endpoints"] == [
        "https://ghcr.io.my-mirror.com"
    ]


def test_the_same_config_on_talos_1_11_warns_only_about_what_1_11_left_out() -> None:
    config = build_worker_config(sample("v1.11"), upgraded_spec(11), "of pool w")
    assert [w.split(":", 1)[0] for w in config.warnings if "removed from" not in w] == ["persist"]


def test_talos_1_13_still_decodes_machine_network() -> None:
    documents = load_documents(
        sample("v1.11").replace(
            "network: {}", "network:\n        hostname: w1\n        nameservers: [1.1.1.1]"
        )
    )
    talos = spec(13).talos
    assert not [
        p
        for p in validate_worker_documents(documents, upgraded_spec(13))
        if "unknown key" in p.message
    ]
    warned = [w.split(":", 1)[0] for w in deprecated_keys(documents, talos)]
    assert "machine.network" in warned
    assert "machine.network.hostname" not in warned  # reported once, at the outermost key
    assert "machine.install.extraKernelArgs" in warned


@pytest.mark.parametrize(
    ("talos_minor", "mutate", "path"),
    [
        (
            12,
            lambda b: b.replace("    registries:\n", "    registriez:\n", 1),
            "machine.registriez",
        ),
        (
            12,
            lambda b: b.replace("        mirrors:\n", "        mirrorz:\n"),
            "machine.registries.mirrorz",
        ),
        (
            13,
            lambda b: b.replace("        rbac: true\n", "        rback: true\n"),
            "machine.features.rback",
        ),
        (13, lambda b: b.replace("persist: true", "persists: true"), "persists"),
    ],
)
def test_truly_unknown_keys_are_still_refused(talos_minor: int, mutate: Any, path: str) -> None:
    documents = load_documents(mutate(sample("v1.11")))
    problems = validate_worker_documents(documents, upgraded_spec(talos_minor))
    assert [p.path for p in problems if "unknown key" in p.message] == [path]


@pytest.mark.parametrize("talos_minor", [8, 9, 10, 11, 12, 13])
def test_deprecated_keys_are_exactly_those_the_official_schema_omits(talos_minor: int) -> None:
    """The table adds only keys outside the schema, and the schema really lacks them."""
    schema = schema_for(talos_minor)
    keys = talos_keys(spec(talos_minor).talos)
    for field in keys.deprecated:
        assert field.path not in keys.documents["v1alpha1"], field.path
        document: dict[str, Any] = {}
        node = document
        parts = field.path.replace("[]", ".[]").split(".")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "[]":
                continue
            nested = parts[index + 1] == "[]" if not last else False
            value: Any = True if last else ([{}] if nested else {})
            node[part] = value
            node = value[0] if nested else value
        assert any(
            "Additional properties" in error or "Unevaluated properties" in error
            for error in raw_schema_errors(document, schema)
        ), field.path
