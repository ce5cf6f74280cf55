"""The offline render command: validates a stack file and shows what it creates."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.autoscaler.manifests import provider_id_setter_manifests
from core.config.parse import read_stack_file
from core.plan import plan_stack

from tests.conftest import REPO
from tests.stand_ins.hetzner_api import HetznerEmulator
from tests.stand_ins.kubernetes_api import KubernetesApiStandIn
from tests.support.manifest_paths import pod_spec
from tests.support.pod_volume import lay_out_helper, projected
from tests.support.setter_process import run_standalone_until_registered


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
        "node-controller.yaml",
        "provider-id-setter.yaml",
        "worker-arm-fsn1.yaml",
        "worker-general-fsn1.yaml",
        "worker-general-nbg1.yaml",
    ]
    worker = (out / "worker-arm-fsn1.yaml").read_text()
    assert "7x1m9q.0sample0token00" not in worker and "<redacted>" in worker
    assert "registerWithTaints" in worker
    assert "of 32768 bytes (plain)" in result.stdout
    assert (
        "Helm release cluster-autoscaler-hetzner: chart cluster-autoscaler 9.56.0 from "
        "https://kubernetes.github.io/autoscaler into cluster-autoscaler" in result.stdout
    )
    assert "snapshot arm64" in result.stdout and "snapshot amd64" in result.stdout
    cluster_config = json.loads((out / "cluster-config.json").read_text())
    assert set(cluster_config["imagesForArch"]) == {"amd64", "arm64"}
    assert "spec.providerID" not in result.stderr  # the setter is deployed: no warning


def test_show_secrets_writes_the_real_values(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_render("--stack", "dev", "--out", str(out), "--show-secrets")
    assert result.returncode == 0, result.stderr
    assert "7x1m9q.0sample0token00" in (out / "worker-workers-fsn1.yaml").read_text()
    assert "spec.providerID" not in result.stderr


def test_render_writes_the_provider_id_setter_that_runs_as_tested(
    tmp_path: Path, hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    """The rendered ConfigMap holds the tested script byte for byte, and that copy runs."""
    out = tmp_path / "out"
    result = run_render("--stack", "dev", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert 'ProviderIdSetter "provider-id-setter"' in result.stdout
    manifests = list(yaml.safe_load_all((out / "provider-id-setter.yaml").read_text()))
    by_kind = {manifest["kind"]: manifest for manifest in manifests}
    assert list(by_kind) == [
        "ConfigMap",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    ]
    assert manifests == provider_id_setter_manifests(
        "cozy-cluster-autoscaler-hetzner", "hetzner-credentials", "token"
    )
    data = by_kind["ConfigMap"]["data"]
    assert sorted(data) == ["client.py", "provider_id_setter.py"]
    (volume,) = pod_spec(by_kind["Deployment"])["volumes"]
    files = projected(data, volume["configMap"])
    # Each file at the path it has in the repository, byte for byte.
    assert sorted(files) == ["core/kubernetes/client.py", "core/kubernetes/provider_id_setter.py"]
    for path, text in files.items():
        assert text.encode() == (REPO / path).read_bytes()
    container = pod_spec(by_kind["Deployment"])["containers"][0]
    (mount,) = container["volumeMounts"]
    assert container["workingDir"] == mount["mountPath"]
    assert container["command"][-2:] == ["-m", "core.kubernetes.provider_id_setter"]

    pod = lay_out_helper(manifests, tmp_path / "pod")
    run_standalone_until_registered(pod, hetzner_api, kubernetes_api)


def test_provider_id_none_is_warned_and_writes_no_setter(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    stack_file = project / "Pulumi.dev.yaml"
    stack_file.write_text(
        stack_file.read_text().replace("    providerId: setter\n", "    providerId: none\n")
    )
    result = run_render("--stack", "dev", "--out", str(tmp_path / "out"), project_dir=project)
    assert result.returncode == 0, result.stderr
    assert "warning: autoscaler.providerId is none" in result.stderr
    assert not (tmp_path / "out" / "provider-id-setter.yaml").exists()


def test_a_config_carried_over_to_a_newer_talos_renders_with_warnings(tmp_path: Path) -> None:
    """FACTS 4.2: a v1.11 worker config on Talos v1.12 boots; its deprecated keys are named."""
    project = copy_project(tmp_path)
    stack_file = project / "Pulumi.dev.yaml"
    stack_file.write_text(
        stack_file.read_text()
        .replace("version: v1.11.6", "version: v1.12.11")
        .replace("kubernetesVersion: 1.33.1", "kubernetesVersion: 1.34.2")
    )
    result = run_render("--stack", "dev", "--out", str(tmp_path / "out"), project_dir=project)
    assert result.returncode == 0, result.stderr
    for key in ("machine.features.rbac", "machine.features.stableHostname"):
        assert f"warning: {key}: deprecated; Talos v1.12 still accepts it" in result.stderr
    # One pool, one base config: each warning once.
    assert result.stderr.count("machine.features.rbac: deprecated") == 1


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_render_shows_the_setter_the_annotations_and_the_template_labels(
    tmp_path: Path, stack: str
) -> None:
    result = run_render("--stack", stack, "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert 'ProviderIdSetter "provider-id-setter"' in result.stdout
    assert (
        "nodeAnnotations  kilo.squat.ai/location=hetzner-cloud, "
        "kilo.squat.ai/persistent-keepalive=20" in result.stdout
    )
    cluster_config = json.loads((tmp_path / "out" / "cluster-config.json").read_text())
    assert all(
        pool["labels"]["kubernetes.io/os"] == "linux"
        for pool in cluster_config["nodeConfigs"].values()
    )
    assert '"kubernetes.io/os": "linux"' in result.stdout


def test_render_says_what_destroy_does_with_the_autoscaled_servers(tmp_path: Path) -> None:
    result = run_render("--stack", "dev", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (
        "  PoolServers autoscaled-servers-workers-fsn1: servers labelled "
        "hcloud/node-group=workers-fsn1; on destroy or the pool's removal deletes them in "
        "network cozystack-vswitch, then their Nodes"
    ) in result.stdout

    (tmp_path / "project").mkdir()
    project = copy_project(tmp_path / "project")
    stack_file = project / "Pulumi.dev.yaml"
    stack_file.write_text(
        stack_file.read_text().replace(
            "    providerId: setter\n", "    providerId: setter\n    keepServersOnDestroy: true\n"
        )
    )
    kept = run_render("--stack", "dev", project_dir=project)
    assert kept.returncode == 0, kept.stderr
    assert "on destroy or the pool's removal keeps them (autoscaler.keepServersOnDestroy)" in (
        kept.stdout
    )


def test_render_shows_each_pools_generation_and_writes_the_node_controller(
    tmp_path: Path,
) -> None:
    plan = plan_stack(read_stack_file(REPO, "prod")[0])
    generations = plan.generations(plan.network.subnet)
    out = tmp_path / "out"
    result = run_render("--stack", "prod", "--out", str(out))
    assert result.returncode == 0, result.stderr
    for pool, generation in generations.items():
        assert f"hcloud-talos-autoscaler/generation={generation}" in result.stdout
        worker = yaml.safe_load_all((out / f"worker-{pool}.yaml").read_text())
        labels = next(iter(worker))["machine"]["nodeLabels"]
        assert labels["hcloud-talos-autoscaler/generation"] == generation
    assert f"    generation       {generations['arm-fsn1']} (boots talos " in result.stdout
    assert 'NodeController "node-controller"' in result.stdout
    manifests = list(yaml.safe_load_all((out / "node-controller.yaml").read_text()))
    assert [manifest["kind"] for manifest in manifests] == [
        "ConfigMap",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    ]
    data = manifests[0]["data"]
    (volume,) = pod_spec(manifests[4])["volumes"]
    files = projected(data, volume["configMap"])
    for name in ("node_controller.py", "client.py", "rollout.py"):
        assert files[f"core/kubernetes/{name}"] == (REPO / "core" / "kubernetes" / name).read_text()
    assert files["config.json"] == data["config.json"]
    settings = json.loads(data["config.json"])
    assert settings["pools"] == generations
    assert settings["networkId"] == f"<id of network {plan.network.shown_name}>"
    assert (settings["strategy"], settings["maxUnavailable"]) == ("replace", 1)
