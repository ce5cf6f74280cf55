"""The Talos worker config builder, checked against the official schemas (test oracles)."""

from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import random
import string
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from core.config import Taint
from core.releases.talos import parse_kubernetes_version, parse_talos_version
from core.talos.documents import REDACTED, dump_documents, load_documents, redact
from core.talos.keys import deprecated_keys, talos_keys
from core.talos.node_labels import label_problem
from core.talos.problems import WorkerConfigError
from core.talos.spec import WorkerConfigSpec
from core.talos.user_data import decode_user_data, encode_user_data
from core.talos.validation import validate_worker_documents
from core.talos.worker_config import build_worker_config

from tests.conftest import REPO, SHARED_REFERENCE

SCHEMAS = SHARED_REFERENCE / "talos-schemas"
FIXTURES = Path(__file__).parents[2] / "fixtures"
SCHEMATIC = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
#: A Kubernetes version inside every Talos minor's range, per minor.
KUBERNETES_FOR = {8: "1.31.4", 9: "1.32.3", 10: "1.33.1", 11: "1.33.1", 12: "1.34.2", 13: "1.35.0"}


def spec(talos_minor: int = 11, **changes: Any) -> WorkerConfigSpec:
    values: dict[str, Any] = {
        "talos": parse_talos_version(f"v1.{talos_minor}.2"),
        "kubernetes": parse_kubernetes_version(KUBERNETES_FOR[talos_minor]),
        "subnet": "10.100.0.0/24",
        "network_ip_range": "10.100.0.0/16",
        "node_labels": {
            "topology.kubernetes.io/zone": "hetzner-cloud",
            "hcloud/node-group": "workers",
        },
        "node_annotations": {"kilo.squat.ai/location": "hetzner-cloud"},
        "taints": [Taint(key="dedicated", value="batch", effect="NoSchedule")],
        "registry_mirrors": {"docker.io": ["https://mirror.gcr.io"]},
    }
    values.update(changes)
    return WorkerConfigSpec(**values)


def base_for(talos_minor: int) -> str:
    name = "worker-v1.12.yaml" if talos_minor >= 12 else "worker-v1.11.yaml"
    return (FIXTURES / name).read_text()


def schema_for(talos_minor: int) -> dict[str, Any]:
    path = SCHEMAS / f"config.schema.v1.{talos_minor}.json"
    if not path.exists():
        pytest.fail(f"test oracle missing: {path} (shared/reference must sit beside the clone)")
    return json.loads(path.read_text())


def schema_errors(document: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    # Schema caveat 1: `persist` is still written by `talosctl gen config` and decoded by
    # Talos (deprecated, ignored) but absent from the schema; only that key is dropped.
    return raw_schema_errors(
        {key: value for key, value in document.items() if key != "persist"}, schema
    )


def raw_schema_errors(document: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    # Schema caveat 2: the root is a oneOf over every document kind; validating a document
    # against its own definition gives precise errors instead of "not valid under any".
    kind = document.get("kind")
    definitions = schema["$defs"]
    for choice in schema["oneOf"]:
        name = choice["$ref"].rsplit("/", 1)[-1]
        kind_enum = definitions[name].get("properties", {}).get("kind", {}).get("enum")
        if (kind_enum[0] if kind_enum else None) == kind:
            validator = jsonschema.Draft202012Validator({**schema, "$ref": choice["$ref"]})
            return [
                f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)
            ]
    return [f"no schema definition for kind {kind!r}"]


@pytest.mark.parametrize("talos_minor", [8, 9, 10, 11, 12, 13])
def test_rendered_config_validates_against_the_official_schema(talos_minor: int) -> None:
    base = base_for(talos_minor)
    if talos_minor >= 13:
        # Talos 1.13 moved `machine.network` to documents; its gen config no longer writes it.
        base = base.replace("  network: {}\n", "", 1)
    config = build_worker_config(base, spec(talos_minor))
    documents = load_documents(config.yaml)
    schema = schema_for(talos_minor)
    for document in documents:
        assert schema_errors(document, schema) == []
    assert len(documents) >= 1


def test_the_oracle_rejects_a_misplaced_key() -> None:
    """The schema check above can fail: a key at the wrong level is reported."""
    document = load_documents(base_for(11))[0]
    document["machine"]["nodeIP"] = {"validSubnets": ["10.100.0.0/24"]}
    assert any("nodeIP" in error for error in schema_errors(document, schema_for(11)))


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


def test_builder_places_every_key_where_talos_expects_it() -> None:
    config = build_worker_config(base_for(11), spec(11))
    main = load_documents(config.yaml)[0]
    machine = main["machine"]
    assert machine["nodeLabels"] == {
        "topology.kubernetes.io/zone": "hetzner-cloud",
        "hcloud/node-group": "workers",
    }
    assert machine["nodeAnnotations"] == {"kilo.squat.ai/location": "hetzner-cloud"}
    assert machine["kubelet"]["nodeIP"] == {"validSubnets": ["10.100.0.0/24"]}
    assert machine["kubelet"]["extraArgs"] == {"cloud-provider": "external"}
    assert machine["kubelet"]["image"] == "ghcr.io/siderolabs/kubelet:v1.33.1"
    assert machine["kubelet"]["extraConfig"]["registerWithTaints"] == [
        {"key": "dedicated", "value": "batch", "effect": "NoSchedule"}
    ]
    # Cozystack's guide deletes what was discovered on the machine the config came from.
    assert "install" not in machine and "network" not in machine
    assert machine["registries"]["mirrors"] == {
        "docker.io": {"endpoints": ["https://mirror.gcr.io"]}
    }
    # Everything else is kept as it was: tokens, CAs, endpoint, cluster network.
    base = load_documents(base_for(11))[0]
    assert main["cluster"] == base["cluster"]
    assert machine["token"] == base["machine"]["token"]
    assert machine["ca"] == base["machine"]["ca"]


def test_extra_args_values_keep_their_yaml_types() -> None:
    """Talos decodes ``512`` and ``true`` into its string args as written; Python's
    ``str(True)`` would hand the kubelet ``True``."""
    base = base_for(11).replace(
        "    disableManifestsDirectory: true\n",
        "    disableManifestsDirectory: true\n    extraArgs:\n      max-pods: 512\n      rotate-server-certificates: true\n",
    )
    config = build_worker_config(base, spec(11))
    kubelet = load_documents(config.yaml)[0]["machine"]["kubelet"]
    assert kubelet["extraArgs"] == {
        "max-pods": 512,
        "rotate-server-certificates": True,
        "cloud-provider": "external",
    }
    assert "rotate-server-certificates: true\n" in config.yaml


def test_from_talos_1_12_mirrors_are_documents_never_both() -> None:
    documents = load_documents(build_worker_config(base_for(12), spec(12)).yaml)
    main = documents[0]
    assert "registries" not in main["machine"]
    mirrors = {doc["name"]: doc for doc in documents if doc.get("kind") == "RegistryMirrorConfig"}
    assert mirrors["docker.io"] == {
        "apiVersion": "v1alpha1",
        "kind": "RegistryMirrorConfig",
        "name": "docker.io",
        "endpoints": [{"url": "https://mirror.gcr.io"}],
    }
    assert "ghcr.io" in mirrors  # the base config's own mirror document is kept


def test_before_talos_1_12_mirrors_stay_in_the_machine_section() -> None:
    documents = load_documents(build_worker_config(base_for(11), spec(11)).yaml)
    assert [doc for doc in documents if doc.get("kind") == "RegistryMirrorConfig"] == []
    assert "docker.io" in documents[0]["machine"]["registries"]["mirrors"]


def test_a_registry_document_on_talos_1_11_is_refused() -> None:
    base = base_for(11) + "---\napiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: x.io\n"
    with pytest.raises(
        WorkerConfigError,
        match=r"document kind 'RegistryMirrorConfig' does not exist in Talos v1\.11",
    ):
        build_worker_config(base, spec(11))


def test_static_hostnames_are_removed() -> None:
    base = base_for(11).replace("  network: {}\n", "  network:\n    hostname: worker-1\n")
    config = build_worker_config(base, spec(11), "of pool w")
    assert "network" not in load_documents(config.yaml)[0]["machine"]
    assert config.warnings[0].startswith("machine.install, machine.network removed from the")
    base12 = base_for(12).replace("auto: stable", "hostname: worker-1")
    kinds = [doc.get("kind") for doc in load_documents(build_worker_config(base12, spec(12)).yaml)]
    assert "HostnameConfig" not in kinds


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
        build_worker_config(mutate(base_for(11)), spec(11, kubernetes=None), "of pool w")
    assert any(expected in str(problem) for problem in caught.value.problems), caught.value
    assert str(caught.value).startswith("the Talos worker config of pool w has")


def test_failed_to_load_config_points_at_line_and_column() -> None:
    with pytest.raises(WorkerConfigError, match=r"failed to load config: .* at line 3, column 3"):
        build_worker_config("machine:\n  type: worker\n  - token\n", spec(11))


def test_wrong_internal_ip_subnet_is_reported() -> None:
    documents = load_documents(build_worker_config(base_for(11), spec(11)).yaml)
    problems = validate_worker_documents(documents, spec(11, subnet="10.100.1.0/24"))
    assert [str(p) for p in problems] == [
        "machine.kubelet.nodeIP.validSubnets: is ['10.100.0.0/24'] but the private subnet is "
        "10.100.1.0/24; nodes would register the wrong Internal IP"
    ]


def test_same_inputs_give_identical_bytes() -> None:
    first = build_worker_config(base_for(12), spec(12))
    second = build_worker_config(base_for(12), spec(12))
    assert first.yaml.encode() == second.yaml.encode()
    assert first.user_data == second.user_data


def _big_config(size: int, compressible: bool) -> str:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits
    files: list[dict[str, Any]] = []
    while sum(len(f["content"]) for f in files) < size:
        content = "x" * 4000 if compressible else "".join(rng.choices(alphabet, k=4000))
        files.append(
            {
                "path": f"/var/etc/f{len(files)}",
                "permissions": 420,
                "op": "create",
                "content": content,
            }
        )
    return base_for(11).replace(
        "  certSANs: []\n", "  certSANs: []\n  files:\n" + _indent(yaml.safe_dump(files), 4), 1
    )


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line for line in text.splitlines(keepends=True))


def test_too_big_plain_config_is_gzip_encoded_and_round_trips() -> None:
    config = build_worker_config(_big_config(40_000, compressible=True), spec(11))
    assert len(config.yaml.encode()) > 32_768
    assert config.user_data.encoding == "gzip+base64"
    assert config.user_data.size <= 32_768
    assert gzip.decompress(base64.b64decode(config.user_data.text)).decode() == config.yaml
    assert decode_user_data(config.user_data.text) == config.yaml


def test_too_big_even_compressed_fails_clearly() -> None:
    with pytest.raises(
        WorkerConfigError, match=r"Hetzner accepts at most 32768 bytes of user data"
    ):
        build_worker_config(_big_config(60_000, compressible=False), spec(11))


def test_too_big_for_talos_1_8_fails_instead_of_gzip() -> None:
    """Talos 1.8 does not base64-decode Hetzner user data: gzip+base64 would never boot."""
    base = _big_config(40_000, compressible=True).replace("kubelet:v1.33.1", "kubelet:v1.31.4")
    with pytest.raises(WorkerConfigError, match=r"Talos v1\.8 cannot read it compressed"):
        build_worker_config(base, spec(8))
    assert build_worker_config(base, spec(9)).user_data.encoding == "gzip+base64"


def test_small_config_stays_plain() -> None:
    assert encode_user_data("version: v1alpha1\n", spec(11).talos).encoding == "plain"


def test_before_talos_1_9_a_config_too_big_for_plain_user_data_is_an_error() -> None:
    """FACTS 4.4: base64(gzip) user data is decoded on Hetzner only from Talos v1.9."""
    big = _big_config(40_000, compressible=True)
    assert build_worker_config(big, spec(9)).user_data.encoding == "gzip+base64"
    with pytest.raises(WorkerConfigError, match=r"Talos v1\.8 cannot read it compressed"):
        build_worker_config(big, spec(8))


def test_redact_hides_tokens_keys_and_secrets() -> None:
    text = build_worker_config(base_for(11), spec(11)).yaml
    shown = redact(text)
    assert "7x1m9q.0sample0token00" in text
    for secret in (
        "7x1m9q.0sample0token00",
        "3f9k2p.0sample0cluster0",
        "c2FtcGxlLWNsdXN0ZXItc2VjcmV0",
    ):
        assert secret not in shown
    assert "https://192.0.2.10:6443" in shown
    assert REDACTED in shown


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


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("node-role.kubernetes.io/worker", "is refused by the NodeRestriction admission plugin"),
        ("kilo.squat.ai/location", "is a Kilo annotation, not a label"),
    ],
)
def test_a_base_config_label_the_node_cannot_carry_is_refused(label: str, reason: str) -> None:
    base = base_for(11).replace(
        "  certSANs: []\n", f"  certSANs: []\n  nodeLabels:\n    {label}: x\n", 1
    )
    with pytest.raises(WorkerConfigError) as caught:
        build_worker_config(base, spec(11))
    assert [str(p) for p in caught.value.problems if reason in p.message] == [
        f"machine.nodeLabels.{label}: {label_problem(label)}"
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
        build_worker_config(dump_documents(documents), spec(11), "of pool w")
    assert any(expected in str(problem) for problem in caught.value.problems), caught.value
