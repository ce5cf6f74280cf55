"""Generate ``components/talos_config_keys.json`` from the official Talos JSON schemas.

The program must not need the schemas at run time, so the allowed key paths
per Talos minor and document kind are extracted once and committed; a test
regenerates them in memory and fails when the committed table is stale.

    python scripts/generate_talos_config_keys.py ../shared/reference/talos-schemas
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parents[1] / "components" / "talos_config_keys.json"
SCHEMA_NAME = re.compile(r"config\.schema\.v(\d+)\.(\d+)\.json$")
#: The legacy single document has no ``kind``; it is keyed by its version.
MAIN_DOCUMENT = "v1alpha1"


def key_paths(schema: dict[str, Any]) -> dict[str, list[str]]:
    """Document kind -> sorted allowed key paths (``a.b``, ``a[].b``, ``a.*`` for free maps)."""
    definitions = schema["$defs"]
    tables: dict[str, list[str]] = {}
    for choice in schema["oneOf"]:
        name = choice["$ref"].rsplit("/", 1)[-1]
        definition = definitions[name]
        kind_enum = definition.get("properties", {}).get("kind", {}).get("enum")
        kind = kind_enum[0] if kind_enum else MAIN_DOCUMENT
        paths: set[str] = set()
        _walk(definition, "", definitions, paths, seen=())
        tables[kind] = sorted(paths)
    return dict(sorted(tables.items()))


def _walk(
    node: dict[str, Any],
    prefix: str,
    definitions: dict[str, Any],
    paths: set[str],
    seen: tuple[str, ...],
) -> None:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:  # recursive types: allow anything below
            paths.add(f"{prefix}.*")
            return
        _walk(definitions[name], prefix, definitions, paths, (*seen, name))
        return
    for combinator in ("oneOf", "anyOf", "allOf"):
        for option in node.get(combinator, []):
            _walk(option, prefix, definitions, paths, seen)
    if node.get("type") == "array" or "items" in node:
        items = node.get("items")
        if isinstance(items, dict):
            _walk(items, f"{prefix}[]", definitions, paths, seen)
        return
    properties = node.get("properties")
    if properties:
        for key, child in properties.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            _walk(child, path, definitions, paths, seen)
    free = node.get("additionalProperties") not in (None, False) or "patternProperties" in node
    if prefix and (free or (node.get("type") == "object" and not properties)):
        paths.add(f"{prefix}.*")


def generate(schema_dir: Path) -> dict[str, dict[str, list[str]]]:
    tables: dict[str, dict[str, list[str]]] = {}
    for path in sorted(schema_dir.glob("config.schema.v*.json")):
        match = SCHEMA_NAME.search(path.name)
        if match:
            minor = f"{match.group(1)}.{match.group(2)}"
            tables[minor] = key_paths(json.loads(path.read_text(encoding="utf-8")))
    return dict(sorted(tables.items(), key=lambda item: tuple(map(int, item[0].split(".")))))


def main() -> int:
    default = Path("../shared/reference/talos-schemas")
    schema_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    tables = generate(schema_dir)
    OUTPUT.write_text(json.dumps(tables, indent=0, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT} ({', '.join(tables)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
