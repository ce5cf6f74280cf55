"""The keys and value types each Talos minor accepts (``config_keys.json``, generated from
the official schemas by ``scripts/generate_talos_config_keys.py``), and the checks on them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from core.redaction import shown
from core.releases import talos as talos_versions
from core.talos.documents import MAIN_DOCUMENT
from core.talos.problems import TalosProblem


@dataclass(frozen=True)
class DeprecatedField:
    """A field Talos still decodes although its schema for that minor leaves it out."""

    path: str
    instead: str
    #: The field and the keys accepted below it.
    paths: frozenset[str]


@dataclass(frozen=True)
class ValueRules:
    """What one document kind's values must be: JSON types and enums by path pattern."""

    types: dict[str, frozenset[str]]
    enums: dict[str, tuple[Any, ...]]
    #: Every pattern with a rule at or below it (where the walk must go on).
    reaching: frozenset[str]


@dataclass(frozen=True)
class TalosKeys:
    """What a Talos minor accepts: key paths per document kind, deprecated fields, value
    types, and which network documents worker configs lose."""

    documents: dict[str, frozenset[str]]
    deprecated: tuple[DeprecatedField, ...]
    values: dict[str, ValueRules] = field(default_factory=dict)
    removed_network_kinds: frozenset[str] = frozenset()

    def allowed(self, kind: str) -> frozenset[str] | None:
        paths = self.documents.get(kind)
        if paths is None or kind != MAIN_DOCUMENT:
            return paths
        return paths.union(*(field.paths for field in self.deprecated))


def talos_keys(talos: talos_versions.Version) -> TalosKeys:
    """The keys of a Talos minor (our committed table, generated from schemas and Go types)."""
    return _minor_keys(f"{talos.major}.{talos.minor}")


@cache
def _minor_keys(minor: str) -> TalosKeys:
    """One minor's keys, built when first asked for (a stack needs one of them)."""
    table = _talos_keys_table()[minor]
    return TalosKeys(
        documents={kind: frozenset(paths) for kind, paths in table["documents"].items()},
        deprecated=tuple(
            DeprecatedField(path, entry["instead"], frozenset(entry["paths"]))
            for path, entry in table["deprecated"].items()
        ),
        values={kind: _value_rules(rules) for kind, rules in table["values"].items()},
        removed_network_kinds=frozenset(table["network_documents"]["removed"]),
    )


@cache
def _talos_keys_table() -> dict[str, Any]:
    text = resources.files("core.talos").joinpath("config_keys.json").read_text("utf-8")
    return dict(json.loads(text))


def _value_rules(rules: dict[str, dict[str, list[Any]]]) -> ValueRules:
    patterns = {*rules["types"], *rules["enums"]}
    reaching = {
        pattern[:end]
        for pattern in patterns
        for end in [match.start() for match in re.finditer(r"[.\[]", pattern)] + [len(pattern)]
    }
    return ValueRules(
        types={path: frozenset(types) for path, types in rules["types"].items()},
        enums={path: tuple(values) for path, values in rules["enums"].items()},
        reaching=frozenset(reaching),
    )


#: How a type is named in problems.
TYPE_NAMES = {
    "object": "a mapping (key: value)",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
}

#: Enums not judged here: ``machine.type`` has its own worker rule; a worker ignores its CNI
#: (Talos validates ``cluster.network.cni`` on control planes only, v1alpha1_validation.go).
ENUMS_NOT_CHECKED = frozenset({"machine.type", "cluster.network.cni.name"})

#: Booleans Talos's YAML decoder (go-yaml v3, ``decode.go`` ``scalar``) reads from strings.
YAML_BOOLEAN_WORDS = frozenset(
    form
    for word in ("y", "yes", "on", "n", "no", "off")
    for form in (word, word.title(), word.upper())
)


def value_type_problems(
    documents: list[dict[str, Any]], talos: talos_versions.Version
) -> list[TalosProblem]:
    """Values of the wrong type (Talos decodes strictly and refuses the whole config at
    boot) or outside an enum, per the JSON schema of the Talos minor."""
    keys = talos_keys(talos)
    problems: list[TalosProblem] = []
    for document in documents:
        kind = str(document.get("kind", MAIN_DOCUMENT))
        rules = keys.values.get(kind)
        if rules is None:
            continue
        prefix = "" if kind == MAIN_DOCUMENT else f"{kind}: "
        for key, value in document.items():
            _check_value(value, _path_part(key), str(key), rules, prefix, problems)
    return problems


def _check_value(
    value: Any, path: str, pattern: str, rules: ValueRules, prefix: str, found: list[TalosProblem]
) -> None:
    if pattern not in rules.reaching or value is None:
        return
    expected = rules.types.get(pattern)
    if expected is not None and not _decodes_as(value, expected):
        wanted = " or ".join(TYPE_NAMES[name] for name in sorted(expected))
        found.append(
            TalosProblem(
                f"{prefix}{path}",
                f"must be {wanted}, got {shown(value, path)} (Talos would refuse the whole "
                "config when decoding it)",
            )
        )
        return
    allowed = rules.enums.get(pattern)
    if allowed is not None and pattern not in ENUMS_NOT_CHECKED and value not in allowed:
        found.append(
            TalosProblem(
                f"{prefix}{path}",
                f"is {shown(value, path)}; Talos accepts only "
                f"{', '.join(json.dumps(option) for option in allowed)}",
            )
        )
        return
    if isinstance(value, dict):
        for key, child in value.items():
            named = f"{pattern}.{key}"
            child_pattern = named if named in rules.reaching else f"{pattern}.*"
            _check_value(child, f"{path}.{_path_part(key)}", child_pattern, rules, prefix, found)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _check_value(child, f"{path}[{index}]", f"{pattern}[]", rules, prefix, found)


def _decodes_as(value: Any, expected: frozenset[str]) -> bool:
    """Whether Talos's YAML decoder (go-yaml v3, ``decode.go`` ``scalar``) takes the value
    for one of the JSON types: any scalar into a string, a whole or float number into an
    integer, the YAML 1.1 words into a boolean."""
    if isinstance(value, dict):
        return "object" in expected
    if isinstance(value, list):
        return "array" in expected
    if "string" in expected:
        return True
    if isinstance(value, bool):
        return "boolean" in expected
    if isinstance(value, int | float):
        return bool(expected & {"integer", "number"})
    return "boolean" in expected and value in YAML_BOOLEAN_WORDS


def deprecated_keys(documents: list[dict[str, Any]], talos: talos_versions.Version) -> list[str]:
    """One message per deprecated field present (the outermost, when they nest)."""
    main = next((doc for doc in documents if "kind" not in doc), {})
    present = {_pattern(parts) for _, parts in _key_paths(main)}
    found = [field for field in talos_keys(talos).deprecated if field.path in present]
    return [
        f"{field.path}: deprecated; Talos v{talos.major}.{talos.minor} still accepts it but "
        f"its schema no longer lists it: {field.instead}"
        for field in found
        if not any(
            other is not field and field.path.startswith((f"{other.path}.", f"{other.path}["))
            for other in found
        )
    ]


def unknown_keys(
    documents: list[dict[str, Any]], talos: talos_versions.Version
) -> list[TalosProblem]:
    keys = talos_keys(talos)
    problems: list[TalosProblem] = []
    for document in documents:
        kind = str(document.get("kind", MAIN_DOCUMENT))
        allowed = keys.allowed(kind)
        if allowed is None:
            problems.append(
                TalosProblem(
                    "kind",
                    f"document kind {kind!r} does not exist in Talos v{talos.major}.{talos.minor}",
                )
            )
            continue
        prefix = "" if kind == MAIN_DOCUMENT else f"{kind}: "
        reported_parts: list[tuple[str, ...]] = []
        for path, parts in _key_paths(document):
            if any(parts[: len(done)] == done for done in reported_parts):
                continue
            if not _is_allowed(parts, allowed):
                reported_parts.append(parts)
                problems.append(
                    TalosProblem(f"{prefix}{path}", _unknown_key_message(parts, allowed, talos))
                )
    return problems


def _key_paths(
    node: Any, path: str = "", parts: tuple[str, ...] = ()
) -> list[tuple[str, tuple[str, ...]]]:
    """(printable path, parts) of every key; list items become ``[]`` parts."""
    found: list[tuple[str, tuple[str, ...]]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            name = _path_part(key)
            key_path = f"{path}.{name}" if path else name
            found.append((key_path, (*parts, str(key))))
            found.extend(_key_paths(value, key_path, (*parts, str(key))))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_key_paths(value, f"{path}[{index}]", (*parts, "[]")))
    return found


def _path_part(key: Any) -> str:
    """A key as a path shows it; empty, odd or huge keys are quoted and shortened."""
    return _shown_key(str(key))


@cache  # every pool's config has the same keys
def _shown_key(text: str) -> str:
    if text and len(text) <= 64 and re.fullmatch(r"[\w./-]+", text):
        return text
    return shown(text)


def _pattern(parts: tuple[str, ...]) -> str:
    """Table form of a path: ``machine.kubelet.extraMounts[].source``."""
    text = ""
    for part in parts:
        text = f"{text}[]" if part == "[]" else (f"{text}.{part}" if text else part)
    return text


def _is_allowed(parts: tuple[str, ...], allowed: frozenset[str]) -> bool:
    """Listed in the table, or below a free-form map (``prefix.*``)."""
    if _pattern(parts) in allowed:
        return True
    return any(f"{_pattern(parts[:end])}.*" in allowed for end in range(len(parts) - 1, 0, -1))


def _unknown_key_message(
    parts: tuple[str, ...], allowed: frozenset[str], talos: talos_versions.Version
) -> str:
    key = parts[-1]
    homes = sorted(
        candidate.rsplit(".", 1)[0] for candidate in allowed if candidate.endswith(f".{key}")
    )
    where = f"; `{key}` goes under `{homes[0]}`" if homes else ""
    return (
        f"unknown key for Talos v{talos.major}.{talos.minor} (Talos would fail with "
        f"'unknown keys found during decoding'){where}"
    )
