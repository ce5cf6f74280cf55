"""Upstream tools as test oracles: Helm's renderer and Talos's own config loaders.

They are Go programs built by ``scripts/toolchain.py build oracles`` into a cache outside
the repository. A missing binary fails the test with the command that builds it: these
tests are never skipped.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SHARED_REFERENCE, load_toolchain

#: Talos minors the program supports (``core.releases.talos``); one loader each.
TALOS_MINORS = (8, 9, 10, 11, 12, 13)
UPSTREAM_CHART = SHARED_REFERENCE / "charts" / "cluster-autoscaler"
WRAPPER_CHART = SHARED_REFERENCE / "charts" / "cozystack-cluster-autoscaler"
PACKAGE_SOURCE = (
    SHARED_REFERENCE / "cozystack-crds" / "packagesource-cluster-autoscaler-hetzner.yaml"
)


def oracle(binary: str) -> Path:
    toolchain = load_toolchain()
    found: dict[str, Path] = toolchain.locate("oracles")
    if binary not in found:
        pytest.fail(f"oracle {binary} is not built: {toolchain.build_hint('oracles')}")
    return found[binary]


def reference(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test oracle missing: {path} (shared/reference must sit beside the clone)")
    return path


def helm_template(
    chart: Path, release: str, namespace: str, values_files: list[Path]
) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders (what Helm, or Flux for Cozystack, would apply)."""
    command = [str(oracle("helm")), "template", release, str(reference(chart)), "-n", namespace]
    for path in values_files:
        command += ["-f", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"helm template failed ({result.returncode}):\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass(frozen=True)
class TalosVerdict:
    """What a Talos release's own loader says about a machine config."""

    talos: str
    loaded: bool
    errors: list[str]
    warnings: list[str]

    @property
    def valid(self) -> bool:
        return self.loaded and not self.errors


def talos_validate(minor: int, config: str, scratch: Path) -> TalosVerdict:
    """Load ``config`` with Talos v1.<minor>'s loader (strict) and validate it (cloud mode)."""
    path = scratch / f"talos-v1.{minor}-{abs(hash(config))}.yaml"
    path.write_text(config)
    binary = oracle(f"talos-validate-v1.{minor}")
    result = subprocess.run([str(binary), str(path)], capture_output=True, text=True, timeout=60)
    if result.returncode not in (0, 1):
        pytest.fail(f"{binary.name} failed ({result.returncode}): {result.stderr}")
    verdict = json.loads(result.stdout)
    return TalosVerdict(
        talos=verdict["talos"],
        loaded=verdict["loaded"],
        errors=verdict["errors"],
        warnings=verdict["warnings"],
    )
