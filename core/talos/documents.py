"""Talos config documents read and written: YAML as Talos takes it, a document's parts,
and the config shown with its secrets redacted.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from core import redaction, safe_yaml
from core.redaction import shown
from core.talos.problems import TalosProblem, WorkerConfigError

MAIN_DOCUMENT = "v1alpha1"

#: A base worker config far above this cannot fit Hetzner's 32 KiB user data even gzipped.
WORKER_CONFIG_LIMITS = safe_yaml.Limits(max_bytes=1024 * 1024)

REDACTED = redaction.REDACTED


def load_documents(text: str, source: str = "") -> list[dict[str, Any]]:
    """Parse a (multi-document) Talos config; YAML errors give line and column."""
    try:
        documents = safe_yaml.load_all(text, WORKER_CONFIG_LIMITS)
    except safe_yaml.YamlError as error:
        raise WorkerConfigError(
            source, [TalosProblem("", f"failed to load config: {error}")]
        ) from None
    if not all(isinstance(doc, dict) for doc in documents):
        raise WorkerConfigError(
            source, [TalosProblem("", "failed to load config: every document must be a mapping")]
        )
    return documents


#: Line width of the YAML: longer plain and quoted scalars are folded.
YAML_WIDTH = 1000


def dump_documents(documents: list[dict[str, Any]], written: dict[str, str] | None = None) -> str:
    """Deterministic YAML: same documents, same bytes.

    ``written`` remembers the YAML of sections across calls: the pools' configs differ only
    in a few labels of ``machine``, and the (pure-Python, byte-stable) dumper is most of a
    build's time. A block mapping's YAML is its sections' YAML one after the other, except
    when a value is shared (written once with an anchor): such documents are dumped whole.
    """
    return "---\n".join(_dump_document(document, written) for document in documents)


def _dump_document(document: dict[str, Any], written: dict[str, str] | None) -> str:
    if written is None or not document or _shares_values(document):
        return _dump(document)
    return "".join(_section(key, value, written) for key, value in document.items())


def _section(key: Any, value: Any, written: dict[str, str]) -> str:
    """``{key: value}`` as the dumper writes it, remembered in ``written``: a map as its key's
    line and its own sections' YAML indented, when that is sure to be the same text."""
    seen = repr((key, value))  # types and order included: equal text, equal YAML
    if seen not in written:
        written[seen] = _from_sections(key, value, written) or _dump({key: value})
    return written[seen]


def _from_sections(key: Any, value: Any, written: dict[str, str]) -> str:
    """A map's YAML from its sections'; empty for an empty map, a key the dumper quotes, or a
    section ``_indented`` refuses."""
    if not isinstance(value, dict) or not value or not _is_plain_key(key):
        return ""
    sections = [_indented(_section(inner, child, written)) for inner, child in value.items()]
    return f"{key}:\n{''.join(sections)}" if all(sections) else ""


def _is_plain_key(key: Any) -> bool:
    """Whether the dumper writes ``key`` as it is (not quoted, not as a complex ``?`` key)."""
    return isinstance(key, str) and _writes_plain(key)


@cache
def _writes_plain(key: str) -> bool:
    return _dump({key: None}) == f"{key}: null\n"


def _indented(text: str) -> str:
    """Top-level YAML as it is written under a key: two spaces before each line but the empty
    ones (breaks inside quoted scalars). Only the folding of long scalars depends on the
    column; a fold needs a line (or a line and the next) longer than the width, so with every
    line below half the width there is none at either indent; "" otherwise."""
    lines = text.split("\n")
    if any(len(line) >= YAML_WIDTH // 2 for line in lines):
        return ""
    return "\n".join(f"  {line}" if line else line for line in lines)


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=YAML_WIDTH)


def _shares_values(node: Any) -> bool:
    """Whether a map or list occurs twice (YAML aliases load so; the dumper anchors it)."""
    seen: set[int] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, dict | list):
            if id(current) in seen:
                return True
            seen.add(id(current))
            pending.extend(current.values() if isinstance(current, dict) else current)
    return False


def main_document(documents: list[dict[str, Any]], source: str) -> dict[str, Any]:
    for document in documents:
        if "kind" not in document:
            return document
    raise WorkerConfigError(
        source, [TalosProblem("", "has no v1alpha1 document (version: v1alpha1, machine, cluster)")]
    )


def document_name(document: dict[str, Any]) -> str:
    name = document.get("name")
    return f"{document.get('kind')} {shown(name)}" if name else str(document.get("kind"))


def value_at(document: dict[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def redact(text: str) -> str:
    """The config with every secret replaced, for display (the rule: ``redaction``)."""
    return dump_documents([redaction.redact(doc) for doc in load_documents(text)])
