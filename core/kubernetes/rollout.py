"""The node controller's contract with the rest of the project: the label and annotations
it reads and writes on Nodes, and its settings (``config.json``, written by the program).

Standard library only: the controller's ConfigMap ships this file with its script;
the worker configs (the generation label) and the ``nodes`` command import it here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: On every autoscaled node (its pool's worker config): what it booted.
GENERATION_LABEL = "hcloud-talos-autoscaler/generation"
#: On a node this controller cordoned: when its drain began (UTC, ISO 8601).
DRAINING_ANNOTATION = "hcloud-talos-autoscaler/draining-since"
#: On a node whose drain was given up: when, and why.
DRAIN_FAILED_ANNOTATION = "hcloud-talos-autoscaler/drain-failed"


@dataclass(frozen=True)
class RolloutConfig:
    """What the stack says (``config.json``); read again every pass."""

    network_id: int
    #: Pool -> the generation its nodes should carry.
    pools: Mapping[str, str]
    strategy: str = "replace"
    max_unavailable: int = 1
    drain_timeout: float = 600.0

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RolloutConfig:
        strategy = str(raw.get("strategy", "replace"))
        if strategy not in {"replace", "none"}:
            raise ValueError(f"strategy is {strategy!r}; expected replace or none")
        return cls(
            network_id=int(raw["networkId"]),
            pools={str(pool): str(generation) for pool, generation in raw["pools"].items()},
            strategy=strategy,
            max_unavailable=max(1, int(raw.get("maxUnavailable", 1))),
            drain_timeout=float(raw.get("drainTimeoutSeconds", 600)),
        )

    @classmethod
    def read(cls, path: Path) -> RolloutConfig:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
