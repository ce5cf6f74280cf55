"""The pure core and the command lines know nothing of the Pulumi engine.

Each check runs in a fresh interpreter whose import system refuses ``pulumi`` and every
``pulumi_*`` package, so an import of Pulumi anywhere below ``core`` or ``cli`` — direct
or through another module — fails the test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

#: Installed first in the child interpreter: any import of Pulumi raises.
BLOCK_PULUMI = """
import importlib.abc
import sys


class RefusePulumi(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pulumi" or name.startswith(("pulumi.", "pulumi_")):
            raise ImportError(f"{name} imported where Pulumi must not be")
        return None


sys.meta_path.insert(0, RefusePulumi())
"""


def run_without_pulumi(code: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_PULUMI + code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_module_of_core_and_cli_imports_first_with_pulumi_blocked() -> None:
    result = run_without_pulumi(
        """
import importlib
import pkgutil

import cli
import core

names = [
    module.name
    for package in (core, cli)
    for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
]
for name in names:  # each one first, as a command line or the program may import it
    for loaded in [m for m in sys.modules if m.split(".")[0] in {"core", "cli"}]:
        del sys.modules[loaded]
    importlib.import_module(name)
print(" ".join(sorted(names)))
"""
    )
    assert result.returncode == 0, result.stderr
    imported = result.stdout.split()
    for module in ("core.plan", "core.render", "core.config.model", "cli.render"):
        assert module in imported
    assert "core.image_builder.pipeline" in imported and "core.server_sweep" in imported


def test_the_blocker_refuses_the_components() -> None:
    """The check above can fail: a component imports Pulumi and is refused."""
    result = run_without_pulumi("import components.network\n")
    assert result.returncode != 0
    assert "pulumi imported where Pulumi must not be" in result.stderr


def test_render_and_the_builder_cli_run_with_pulumi_blocked(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_without_pulumi(
        f"""
import runpy
import sys

sys.argv = ["components", "render", "--stack", "prod", "--out", {str(out)!r}]
try:
    runpy.run_module("components", run_name="__main__")
except SystemExit as done:
    assert done.code == 0, done.code
sys.argv = ["components.image_builder", "--help"]
try:
    runpy.run_module("components.image_builder", run_name="__main__")
except SystemExit as done:
    assert done.code == 0, done.code
"""
    )
    assert result.returncode == 0, result.stderr
    assert "Helm release cluster-autoscaler-hetzner" in result.stdout
    assert "usage: python -m components.image_builder" in result.stdout
    assert (out / "helm-values.yaml").is_file()
