"""What ``python -m cli nodes`` shows: each autoscaled node, its generation, and what the node
controller is doing with it, from the Nodes and the controller's own settings (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.hetzner.facts import NODE_GROUP_LABEL
from core.kubernetes.rollout import (
    DRAIN_FAILED_ANNOTATION,
    DRAINING_ANNOTATION,
    GENERATION_LABEL,
    RolloutConfig,
)

HEADER = ("NAME", "POOL", "GENERATION", "TALOS", "KUBELET", "AGE", "CONTROLLER")


@dataclass(frozen=True)
class NodeRow:
    name: str
    pool: str
    generation: str
    talos: str
    kubelet: str
    age: str
    controller: str

    def cells(self) -> tuple[str, ...]:
        return (
            self.name,
            self.pool,
            self.generation,
            self.talos,
            self.kubelet,
            self.age,
            self.controller,
        )


def controller_settings(config_map: Mapping[str, Any] | None) -> RolloutConfig | None:
    """The deployed controller's ``config.json`` (None when it is not deployed or unreadable)."""
    if config_map is None:
        return None
    text = (config_map.get("data") or {}).get("config.json")
    if not text:
        return None
    try:
        return RolloutConfig.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None


def node_rows(
    nodes: Sequence[Mapping[str, Any]],
    pools: Mapping[str, str],
    strategy: str,
    now: datetime,
) -> list[NodeRow]:
    """One row per node of ``pools`` (pool -> current generation), oldest first."""
    rows: list[tuple[str, NodeRow]] = []
    for node in nodes:
        metadata = node.get("metadata") or {}
        labels = metadata.get("labels") or {}
        pool = str(labels.get(NODE_GROUP_LABEL) or "")
        if pool not in pools:
            continue
        generation = str(labels.get(GENERATION_LABEL, ""))
        current = generation == pools[pool]
        info = (node.get("status") or {}).get("nodeInfo") or {}
        created = str(metadata.get("creationTimestamp", ""))
        rows.append(
            (
                created,
                NodeRow(
                    name=str(metadata.get("name", "")),
                    pool=pool,
                    generation=f"{generation or '(none)'} ({'current' if current else 'outdated'})",
                    talos=_talos_version(str(info.get("osImage", ""))),
                    kubelet=str(info.get("kubeletVersion", "")) or "?",
                    age=_age(created, now),
                    controller=_doing(node, current, strategy, now),
                ),
            )
        )
    return [row for _, row in sorted(rows, key=lambda pair: (pair[0], pair[1].name))]


def table(rows: Sequence[NodeRow]) -> str:
    lines = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _doing(node: Mapping[str, Any], current: bool, strategy: str, now: datetime) -> str:
    metadata = node.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    since = annotations.get(DRAINING_ANNOTATION)
    if since:
        return f"draining for {_age(str(since), now)}, then replacing"
    failed = annotations.get(DRAIN_FAILED_ANNOTATION)
    if failed and not current:
        return f"drain gave up at {failed}; tried again later"
    if current:
        return "-"
    if (node.get("spec") or {}).get("unschedulable"):
        return "cordoned by someone else: left alone"
    if strategy != "replace":
        return "outdated; rollout paused (strategy none)"
    return "waiting to be replaced"


def _talos_version(os_image: str) -> str:
    """``Talos (v1.11.6)`` -> ``v1.11.6``; another OS image as it is."""
    if os_image.startswith("Talos (") and os_image.endswith(")"):
        return os_image[len("Talos (") : -1]
    return os_image or "?"


def _age(timestamp: str, now: datetime) -> str:
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
