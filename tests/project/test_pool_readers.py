"""Code after the plan reads the pools from the plan's records (``StackPlan.pools``), never
from the config's ``autoscaler.nodeGroups``: the plan is the one place that derives them."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

#: Everything that runs on a finished plan: the autoscaler's values, render, the worker
#: configs, the components, the command lines and the program.
AFTER_THE_PLAN = (
    "core/autoscaler",
    "core/render.py",
    "core/worker_configs.py",
    "components",
    "cli",
)


def node_groups_reads(path: Path) -> list[int]:
    """Lines of ``path`` that read ``.node_groups`` (the config's pools)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "node_groups"
    ]


def after_the_plan() -> list[Path]:
    found = [REPO / "__main__.py"]
    for place in AFTER_THE_PLAN:
        path = REPO / place
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


def test_the_finder_sees_a_read_of_the_configs_pools() -> None:
    """The check below can fail: the plan itself reads them."""
    assert node_groups_reads(REPO / "core" / "pools.py")


def test_nothing_after_the_plan_reads_the_configs_pools() -> None:
    paths = after_the_plan()
    assert REPO / "core" / "autoscaler" / "values.py" in paths
    assert REPO / "components" / "autoscaled_servers.py" in paths
    assert REPO / "cli" / "destroy_preview.py" in paths
    reads = {
        path.relative_to(REPO).as_posix(): lines
        for path in paths
        if (lines := node_groups_reads(path))
    }
    assert reads == {}
