"""The offline render command: validates a stack file and shows what it creates."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def run_render(*args: str, project_dir: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "components", "render", "--project-dir", str(project_dir), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def copy_project(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("*.py"))
    return tmp_path


def test_dev_stack_renders_without_credentials(tmp_path: Path) -> None:
    result = run_render("--stack", "dev", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "stack dev: configuration is valid" in result.stdout
    assert "name=cozystack-vswitch ipRange=10.100.0.0/16" in result.stdout
    assert "zone=eu-central ipRange=10.100.0.0/24" in result.stdout
    assert "hcloud:token is not set" in result.stderr


def test_invalid_stack_exits_non_zero_with_every_problem(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    stack_file = project / "Pulumi.dev.yaml"
    text = stack_file.read_text()
    text = text.replace("region: fsn1", "region: mars").replace("minSize: 0", "minSize: 20")
    stack_file.write_text(text)
    result = run_render("--stack", "dev", project_dir=project)
    assert result.returncode == 1
    assert (
        "autoscaler.nodeGroups[0].maxSize: maxSize 10 is smaller than minSize 20" in result.stderr
    )
    assert (
        "autoscaler.nodeGroups[0].region: 'mars' is not a Hetzner Cloud location" in result.stderr
    )
    assert result.stdout == ""


def test_encrypted_values_are_shown_as_encrypted_never_decrypted(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    stack_file = project / "Pulumi.dev.yaml"
    stack_file.write_text(
        stack_file.read_text().replace(
            "config:\n",
            "config:\n  hcloud:token:\n    secure: v1:AAAAbm90LWEtcmVhbC1jaXBoZXJ0ZXh0\n",
            1,
        )
    )
    result = run_render("--stack", "dev", "--out", str(tmp_path / "out"), project_dir=project)
    assert result.returncode == 0, result.stderr
    assert "hcloud:token is not set" not in result.stderr
    assert "AAAAbm90LWEtcmVhbC1jaXBoZXJ0ZXh0" not in result.stdout
