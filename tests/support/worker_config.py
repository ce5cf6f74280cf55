"""A pool's worker config spec, the fixture base configs and the official Talos schemas (the
test oracles), shared by the tests of core/talos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from core.config import Taint
from core.releases.talos import parse_kubernetes_version, parse_talos_version
from core.talos.spec import WorkerConfigSpec

from tests.conftest import SHARED_REFERENCE

SCHEMAS = SHARED_REFERENCE / "talos-schemas"
FIXTURES = Path(__file__).parents[1] / "fixtures"
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
