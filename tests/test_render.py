"""The offline render command: validates a stack file and shows what it creates."""

from __future__ import annotations

import json
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


def test_render_prints_the_package_and_the_decoded_cluster_config(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_render("--stack", "dev", "--out", str(out))
    assert result.returncode == 0, result.stderr
    printed = "\n".join(
        line.removeprefix("    ") for line in result.stdout.splitlines() if line.startswith("    ")
    )
    for name in ("package.yaml", "cluster-config.json"):
        assert (out / name).read_text().strip() in printed, name
    assert "kind: Package" in result.stdout
    assert '"imagesForArch"' in result.stdout


def test_invalid_stack_exits_non_zero_with_every_problem(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    stack_file = project / "Pulumi.dev.yaml"
    text = stack_file.read_text()
    text = text.replace("region: fsn1", "region: mars").replace("minSize: 0", "minSize: 20")
    stack_file.write_text(text)
    result = run_render("--stack", "dev", project_dir=project)
    assert result.returncode == 2  # bad input
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


def test_render_writes_redacted_worker_configs_and_autoscaler_manifests(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_render("--stack", "prod", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "cluster-config.json",
        "helm-values.yaml",
        "worker-arm-fsn1.yaml",
        "worker-general-fsn1.yaml",
        "worker-general-nbg1.yaml",
    ]
    worker = (out / "worker-arm-fsn1.yaml").read_text()
    assert "7x1m9q.0sample0token00" not in worker and "<redacted>" in worker
    assert "registerWithTaints" in worker
    assert "of 32768 bytes (plain)" in result.stdout
    assert (
        "Helm release cluster-autoscaler-hetzner: chart cluster-autoscaler 9.56.0" in result.stdout
    )
    assert "snapshot arm64" in result.stdout and "snapshot amd64" in result.stdout
    cluster_config = json.loads((out / "cluster-config.json").read_text())
    assert set(cluster_config["imagesForArch"]) == {"amd64", "arm64"}
    assert "spec.providerID" not in result.stderr  # prod enables the controller


def test_show_secrets_writes_the_real_values(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_render("--stack", "dev", "--out", str(out), "--show-secrets")
    assert result.returncode == 0, result.stderr
    assert "7x1m9q.0sample0token00" in (out / "worker-workers-fsn1.yaml").read_text()
    assert "spec.providerID" in result.stderr  # dev leaves the controller off: warned
