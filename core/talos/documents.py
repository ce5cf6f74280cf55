"""Talos config documents read and written: YAML as Talos takes it, a document's parts,
and the config shown with its secrets redacted.
"""

from __future__ import annotations

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


def dump_documents(documents: list[dict[str, Any]], written: dict[str, str] | None = None) -> str:
    """Deterministic YAML: same documents, same bytes.

    ``written`` remembers the YAML of top-level sections across calls: the pools' configs
    differ only in ``machine``, and the (pure-Python, byte-stable) dumper is most of a
    build's time. A block mapping's YAML is its sections' YAML one after the other, except
    when a value is shared (written once with an anchor): such documents are dumped whole.
    """
    return "---\n".join(_dump_document(document, written) for document in documents)


def _dump_document(document: dict[str, Any], written: dict[str, str] | None) -> str:
    if written is None or not document or _shares_values(document):
        return _dump(document)
    sections = []
    for key, value in document.items():
        seen = repr((key, value))  # types and order included: equal text, equal YAML
        if seen not in written:
            written[seen] = _dump({key: value})
        sections.append(written[seen])
    return "".join(sections)


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)


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
