"""No secret of a Talos config reaches stdout, stderr or a rendered file without --show-secrets.

The canary test plants a unique value in every secret-bearing field of the official Talos
JSON schema of each supported version (the fields are found by this file's own list of
names, an oracle independent of the program's rule) and renders the dev stack with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.render import main as render_main
from core import redaction
from core.releases.talos import parse_talos_version
from core.talos.keys import talos_keys
from core.talos.validation import CONTROL_PLANE_KEYS, REMOVED_SECTIONS

from tests.conftest import REPO, SHARED_REFERENCE

SCHEMAS = SHARED_REFERENCE / "talos-schemas"
FIXTURES = Path(__file__).parents[1] / "fixtures"
P = "hcloud-talos-autoscaler"
KUBERNETES_FOR = {8: "1.31.4", 9: "1.32.3", 10: "1.33.1", 11: "1.33.1", 12: "1.34.2", 13: "1.35.0"}
#: Field names that hold secrets in the Talos schemas, read from their descriptions: join
#: tokens, the cluster secret, encryption secrets, CA/identity keys, registry auth,
#: WireGuard keys, the disk passphrase, the Hetzner VIP token, the SideroLink token.
SECRET_FIELD_NAMES = frozenset(
    {
        "token",
        "secret",
        "key",
        "aescbcEncryptionSecret",
        "secretboxEncryptionSecret",
        "auth",
        "password",
        "identityToken",
        "privateKey",
        "presharedKey",
        "passphrase",
        "apiToken",
        "uniqueToken",
    }
)


class Canaries:
    """Hands out unique values and remembers the schema path of each."""

    def __init__(self) -> None:
        self.planted: dict[str, str] = {}

    def new(self, path: str) -> str:
        value = f"CANARY{len(self.planted):04d}x{abs(hash(path)) % 10**6:06d}"
        self.planted[value] = path
        return value


def secret_skeleton(
    schema: dict[str, Any],
    definition: dict[str, Any],
    canaries: Canaries,
    path: str,
    depth: int = 0,
) -> Any:
    """Only the branches of ``definition`` that lead to secret fields, with canaries planted."""
    definition = _resolve(schema, definition)
    if depth > 12:
        return None
    if definition.get("type") == "array" or "items" in definition:
        inner = secret_skeleton(
            schema, definition.get("items", {}), canaries, f"{path}[]", depth + 1
        )
        return [inner] if inner is not None else None
    found: dict[str, Any] = {}
    for name, inner in (definition.get("properties") or {}).items():
        child = f"{path}.{name}" if path else name
        if name in SECRET_FIELD_NAMES:
            value = _fill(schema, inner, canaries, child, depth + 1)
        else:
            value = secret_skeleton(schema, inner, canaries, child, depth + 1)
        if value is not None:
            found[name] = value
    maps = [
        definition.get("additionalProperties"),
        *(definition.get("patternProperties") or {}).values(),
    ]
    for extra in maps:
        if isinstance(extra, dict) and extra:
            value = secret_skeleton(schema, extra, canaries, f"{path}.*", depth + 1)
            if value is not None:
                found["example.io"] = value
    return found or None


def _fill(
    schema: dict[str, Any], definition: dict[str, Any], canaries: Canaries, path: str, depth: int
) -> Any:
    """A secret field: a canary in every string below it."""
    definition = _resolve(schema, definition)
    kind = definition.get("type")
    if kind == "string" or (kind is None and not definition.get("properties")):
        return canaries.new(path)
    if kind == "array":
        return [_fill(schema, definition.get("items", {}), canaries, f"{path}[]", depth + 1)]
    if kind == "object" and definition.get("properties"):
        return {
            name: _fill(schema, inner, canaries, f"{path}.{name}", depth + 1)
            for name, inner in definition["properties"].items()
            if _resolve(schema, inner).get("type") in {"string", "object", "array", None}
            and name not in {"apiVersion", "kind"}
        }
    return None  # integers and booleans carry no secret


def _resolve(schema: dict[str, Any], definition: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in definition:
        definition = schema["$defs"][definition["$ref"].rsplit("/", 1)[-1]]
    return definition


def canary_config(talos_minor: int, canaries: Canaries, *, control_plane_keys: bool) -> str:
    """The fixture worker config with a canary in every secret field of every document kind."""
    schema = json.loads((SCHEMAS / f"config.schema.v1.{talos_minor}.json").read_text())
    base = (
        FIXTURES / ("worker-v1.12.yaml" if talos_minor >= 12 else "worker-v1.11.yaml")
    ).read_text()
    if talos_minor >= 13:
        base = base.replace("  network: {}\n", "", 1)
    documents = [doc for doc in yaml.safe_load_all(base) if doc]
    for choice in schema["oneOf"]:
        definition = _resolve(schema, choice)
        kind = ((definition.get("properties") or {}).get("kind") or {}).get("enum", [None])[0]
        skeleton = secret_skeleton(schema, definition, canaries, kind or "")
        if not skeleton:
            continue
        if kind is None:
            _merge(documents[0], skeleton)
        else:
            api = definition["properties"]["apiVersion"]["enum"][0]
            named = {"name": "canary"} if "name" in definition["properties"] else {}
            documents.append({"apiVersion": api, "kind": kind, **named, **skeleton})
    if not control_plane_keys:
        for path in CONTROL_PLANE_KEYS:
            *parents, last = path.split(".")
            node: Any = documents[0]
            for part in parents:
                node = node.get(part) or {}
            if last in node:
                canaries.planted.pop(node[last], None)
                node[last] = ""
        # etcd settings are control-plane only: Talos refuses a worker config holding them.
        if (documents[0].get("cluster") or {}).pop("etcd", None) is not None:
            for value, path in list(canaries.planted.items()):
                if path.startswith("cluster.etcd."):
                    del canaries.planted[value]
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in documents)


def _merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def project(tmp_path: Path, talos_minor: int, worker: str) -> Path:
    (tmp_path / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    config = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
    config[f"{P}:talos"]["version"] = f"v1.{talos_minor}.2"
    config[f"{P}:talos"]["kubernetesVersion"] = KUBERNETES_FOR[talos_minor]
    config[f"{P}:talos"]["workerConfigFile"] = "worker.yaml"
    (tmp_path / "worker.yaml").write_text(worker)
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp_path


def everything_shown(out_dir: Path, captured: pytest.CaptureFixture[str]) -> str:
    output = captured.readouterr()
    files = "".join(path.read_text() for path in sorted(out_dir.glob("*")) if path.is_file())
    return output.out + output.err + files


@pytest.mark.parametrize("talos_minor", [8, 9, 10, 11, 12, 13])
def test_no_canary_reaches_any_output_without_show_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], talos_minor: int
) -> None:
    canaries = Canaries()
    worker = canary_config(talos_minor, canaries, control_plane_keys=False)
    # The oracle finds the secret fields of every version: tokens, keys, registry auth ...
    assert len(canaries.planted) >= 15, canaries.planted
    endings = {path.rsplit(".", 1)[-1] for path in canaries.planted.values()}
    assert {"token", "password", "privateKey", "passphrase"} <= endings, endings
    folder = project(tmp_path, talos_minor, worker)
    args = ["render", "--project-dir", str(folder), "--stack", "dev", "--out"]

    assert render_main([*args, str(tmp_path / "shown")]) == 0
    shown = everything_shown(tmp_path / "shown", capsys)
    leaked = {value: path for value, path in canaries.planted.items() if value in shown}
    assert leaked == {}

    # The canaries did reach the rendered config: --show-secrets writes every one of them,
    # but for those in the sections and network documents the builder drops.
    assert render_main([*args, str(tmp_path / "revealed"), "--show-secrets"]) == 0
    revealed = everything_shown(tmp_path / "revealed", capsys)
    talos = parse_talos_version(f"v1.{talos_minor}.2")
    dropped = tuple(f"machine.{section}." for section in REMOVED_SECTIONS) + tuple(
        f"{kind}." for kind in talos_keys(talos).removed_network_kinds
    )
    kept = {value: path for value, path in canaries.planted.items() if not path.startswith(dropped)}
    assert len(kept) >= 10, kept
    missing = {value: path for value, path in kept.items() if value not in revealed}
    assert missing == {}


@pytest.mark.parametrize("talos_minor", [8, 13])
def test_no_canary_reaches_the_error_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], talos_minor: int
) -> None:
    canaries = Canaries()
    # Control-plane keys make the worker rule refuse the config: the error path must not leak.
    worker = canary_config(talos_minor, canaries, control_plane_keys=True)
    folder = project(tmp_path, talos_minor, worker)
    code = render_main(["render", "--project-dir", str(folder), "--out", str(tmp_path / "out")])
    assert code == 2
    output = capsys.readouterr()
    assert "is a control-plane private key" in output.err
    assert [value for value in canaries.planted if value in output.out + output.err] == []
    assert not (tmp_path / "out").exists()


# ---- the rule itself --------------------------------------------------------------------

PEM_KEY = (
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIEXAMPLEONLYexampleonlyEXAMPLEONLYexampleonlyoAoGCCqGSM49\n"
    "-----END EC PRIVATE KEY-----\n"
)
PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIBexampleonly\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("token", True),
        ("identityToken", True),
        ("privateKey", True),
        ("presharedKey", True),
        ("aescbcEncryptionSecret", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("db-password", True),
        ("client_secret", True),
        ("auth", True),
        ("publicKey", False),
        ("keySize", False),
        ("authorizationConfig", False),
        ("credentialProviderConfig", False),
        ("crt", False),
        ("endpoint", False),
    ],
)
def test_keys_name_secrets_by_their_last_word(key: str, secret: bool) -> None:
    assert redaction.is_secret_key(key) is secret


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        (PEM_KEY, True),
        (f"# a file\n{PEM_KEY}", True),
        (__import__("base64").b64encode(PEM_KEY.encode()).decode(), True),
        (__import__("base64").b64encode(PEM_CERT.encode()).decode(), False),
        (PEM_CERT, False),
        ("https://user:hunter2@proxy.example.com:3128", True),
        ("https://proxy.example.com:3128", False),
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {a: b}\n", True),
        ("apiVersion: v1\nkind: ConfigMap\n", False),
        ("x" * 200, False),
    ],
)
def test_values_that_look_like_key_material(value: str, secret: bool) -> None:
    assert redaction.looks_like_key_material(value) is secret


def test_redact_keeps_the_structure_and_hides_every_value_under_a_secret_key() -> None:
    document = {
        "machine": {
            "ca": {"crt": "Y2VydA==", "key": ""},
            "registries": {"config": {"r.io": {"auth": {"username": "u", "password": "p"}}}},
            "files": [{"path": "/etc/k", "content": PEM_KEY}],
        }
    }
    assert redaction.redact(document) == {
        "machine": {
            "ca": {"crt": "Y2VydA==", "key": ""},
            "registries": {
                "config": {"r.io": {"auth": {"username": "<redacted>", "password": "<redacted>"}}}
            },
            "files": [{"path": "/etc/k", "content": "<redacted>"}],
        }
    }


@pytest.mark.parametrize(
    ("value", "key", "expected"),
    [
        ("short", "", "'short'"),
        (
            "x" * 1000,
            "",
            "'xxxxxxxxxx",
        ),
        ("hunter2", "hcloud:token", "[secret]"),
        ("hunter2", "autoscaler.token", "[secret]"),
        ({"auth": {"password": "p"}}, "talos.registryMirrors", "[secret]"),
        (PEM_KEY, "talos.nodeLabels.a", "[secret]"),
        (list(range(10_000)), "", "[0, 1, 2, 3, 4, 5, ...] (10000 items)"),
    ],
)
def test_error_messages_show_values_short_and_never_secret(
    value: Any, key: str, expected: str
) -> None:
    assert redaction.shown(value, key).startswith(expected)
    assert len(redaction.shown(value, key)) < 120
