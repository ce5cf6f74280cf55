"""``python -m cli nodes``: the stack's autoscaled nodes and their generations, from a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.nodes import main
from core.config.parse import read_stack_file
from core.kubernetes.node_controller import (
    DRAIN_FAILED_ANNOTATION,
    DRAINING_ANNOTATION,
    GENERATION_LABEL,
)
from core.plan import plan_stack

from tests.conftest import REPO
from tests.stand_ins.kubernetes_api import KubernetesApiStandIn

POOL = "workers-fsn1"
NAMESPACE = "cozy-cluster-autoscaler-hetzner"


def dev_generation() -> str:
    plan = plan_stack(read_stack_file(REPO, "dev")[0])
    return plan.generations(plan.network.subnet)[POOL]


def add(
    kubernetes_api: KubernetesApiStandIn,
    name: str,
    generation: str,
    *,
    created: str = "2026-12-06T00:00:00Z",
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> None:
    node = kubernetes_api.add_node(
        name,
        internal_ip="10.100.0.3",
        labels=labels or {"hcloud/node-group": POOL, GENERATION_LABEL: generation},
    )
    node["metadata"]["creationTimestamp"] = created
    node["metadata"]["annotations"].update(annotations or {})
    node["status"]["nodeInfo"] = {"osImage": "Talos (v1.11.5)", "kubeletVersion": "v1.33.1"}


def run_cli(kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "nodes", "--stack", "dev"],
        cwd=REPO,
        env={
            "PATH": os.environ.get("PATH", ""),
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(kubeconfig.parent),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_nodes_lists_pool_nodes_with_generation_versions_and_rollout_state(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path
) -> None:
    current = dev_generation()
    kubernetes_api.state.config_maps[(NAMESPACE, "node-controller")] = {
        "data": {
            "config.json": json.dumps(
                {"networkId": 1, "pools": {POOL: current}, "strategy": "replace"}
            )
        }
    }
    add(kubernetes_api, "workers-fsn1-new", current, created="2026-12-06T00:00:03Z")
    add(kubernetes_api, "workers-fsn1-old", "0123456789", created="2026-12-06T00:00:01Z")
    add(
        kubernetes_api,
        "workers-fsn1-draining",
        "0123456789",
        created="2026-12-06T00:00:02Z",
        annotations={DRAINING_ANNOTATION: "2026-12-06T00:00:00Z"},
    )
    add(
        kubernetes_api,
        "workers-fsn1-stuck",
        "0123456789",
        created="2026-12-06T00:00:00Z",
        annotations={DRAIN_FAILED_ANNOTATION: "2026-12-06T00:10:00Z: drain did not finish"},
    )
    add(kubernetes_api, "metal-1", "", labels={"kubernetes.io/os": "linux"})

    result = run_cli(kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig"))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "POOL",
        "GENERATION",
        "TALOS",
        "KUBELET",
        "AGE",
        "CONTROLLER",
    ]
    by_name = {line.split()[0]: line for line in lines[1:-1]}
    assert list(by_name) == [
        "workers-fsn1-stuck",
        "workers-fsn1-old",
        "workers-fsn1-draining",
        "workers-fsn1-new",
    ]  # oldest first; bare metal is not listed
    assert f"{current} (current)" in by_name["workers-fsn1-new"]
    assert "v1.11.5" in by_name["workers-fsn1-new"] and "v1.33.1" in by_name["workers-fsn1-new"]
    assert by_name["workers-fsn1-new"].rstrip().endswith("-")
    assert "0123456789 (outdated)" in by_name["workers-fsn1-old"]
    assert "waiting to be replaced" in by_name["workers-fsn1-old"]
    assert "draining for" in by_name["workers-fsn1-draining"]
    assert (
        "drain gave up at 2026-12-06T00:10:00Z: drain did not finish"
        in by_name["workers-fsn1-stuck"]
    )
    assert lines[-1] == f"4 autoscaled node(s); current generations: {POOL}={current}"


def test_without_a_deployed_controller_the_stack_files_generations_are_shown(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add(kubernetes_api, "workers-fsn1-a", dev_generation())
    kubeconfig = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig")

    assert (
        main(
            ["nodes", "--stack", "dev", "--project-dir", str(REPO)], {"KUBECONFIG": str(kubeconfig)}
        )
        == 0
    )

    out = capsys.readouterr().out
    assert out.startswith("note: no node controller is deployed; generations from the stack file")
    assert "(current)" in out


def test_an_unreachable_cluster_is_an_error_naming_why(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig", auth="exec")

    code = main(
        ["nodes", "--stack", "dev", "--project-dir", str(REPO)], {"KUBECONFIG": str(kubeconfig)}
    )

    assert code == 1
    assert "error: the cluster could not be read:" in capsys.readouterr().err


def test_a_stack_file_ahead_of_the_deployed_controller_says_an_up_is_pending(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubernetes_api.state.config_maps[(NAMESPACE, "node-controller")] = {
        "data": {"config.json": json.dumps({"networkId": 1, "pools": {POOL: "0123456789"}})}
    }
    add(kubernetes_api, "workers-fsn1-a", "0123456789")
    kubeconfig = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig")

    code = main(
        ["nodes", "--stack", "dev", "--project-dir", str(REPO)], {"KUBECONFIG": str(kubeconfig)}
    )

    assert code == 0
    out = capsys.readouterr().out
    assert "`pulumi up` has not applied them yet" in out
    assert "0123456789 (current)" in out  # judged as the running controller judges it
