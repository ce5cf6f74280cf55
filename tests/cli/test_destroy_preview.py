"""The destroy sweep's dry run: what it would delete per pool and why, and nothing deleted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.kubernetes.client import KubernetesApi
from core.server_sweep import PoolTarget, preview_pool

from tests.conftest import REPO
from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator
from tests.stand_ins.kubernetes_api import KubernetesApiStandIn
from tests.support.image_build import fast_client

POOL = "workers-fsn1"
LABEL = {"hcloud/node-group": POOL}


def writes(hetzner: HetznerEmulator) -> list[tuple[str, str]]:
    return [(method, path) for method, path in hetzner.state.requests if method != "GET"]


def test_the_preview_names_each_server_and_node_the_sweep_would_delete_and_why(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    network = hetzner_api.add_network("cozystack-vswitch", "10.100.0.0/16")
    other = hetzner_api.add_network("other", "10.200.0.0/16")
    registered = hetzner_api.add_server(f"{POOL}-1a2b", LABEL, private_ips={network: "10.100.0.3"})
    unregistered = hetzner_api.add_server(
        f"{POOL}-3c4d", LABEL, private_ips={network: "10.100.0.4"}
    )
    elsewhere = hetzner_api.add_server(f"{POOL}-0707", LABEL, private_ips={other: "10.200.0.7"})
    unattached = hetzner_api.add_server(f"{POOL}-9999", LABEL)
    hetzner_api.add_server("bastion", {}, private_ips={network: "10.100.0.9"})
    kubernetes_api.add_node(
        f"{POOL}-1a2b", internal_ip="10.100.0.3", provider_id=f"hcloud://{registered}"
    )
    kubernetes_api.add_node(f"{POOL}-3c4d", internal_ip="10.100.0.4")
    kubernetes_api.add_node("metal-1", internal_ip="192.168.1.20")
    before = dict(hetzner_api.state.servers), sorted(kubernetes_api.state.nodes)
    kubernetes = KubernetesApi.in_cluster(kubernetes_api.url, kubernetes_api.service_account_dir)

    preview = preview_pool(
        fast_client(hetzner_api.endpoint),
        PoolTarget(pool=POOL, network_id=network, namespace="cozy-cluster-autoscaler-hetzner"),
        kubernetes,
    )

    text = "\n".join(preview.lines())
    assert f"pool {POOL}: would delete 2 server(s) and 2 Node(s)" in text
    attached = f"labelled hcloud/node-group={POOL} and attached to network {network}"
    assert f"server {POOL}-1a2b ({registered}, running): {attached}" in text
    assert f"server {POOL}-3c4d ({unregistered}, running): {attached}" in text
    assert f"Node {POOL}-1a2b: providerID hcloud://{registered}" in text
    assert f"Node {POOL}-3c4d: no providerID; name and address of server {unregistered}" in text
    assert f"left alone: server {POOL}-0707 ({elsewhere}, running): attached to other" in text
    assert f"left alone: server {POOL}-9999 ({unattached}, running): attached to no network" in text
    assert "bastion" not in text and "metal-1" not in text
    assert (dict(hetzner_api.state.servers), sorted(kubernetes_api.state.nodes)) == before
    assert writes(hetzner_api) == []


def test_the_command_previews_every_pool_of_the_stack_and_deletes_nothing(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn, tmp_path: Path
) -> None:
    network = hetzner_api.add_network("cozystack-vswitch", "10.100.0.0/16")
    server = hetzner_api.add_server(f"{POOL}-1a2b", LABEL, private_ips={network: "10.100.0.3"})
    kubeconfig = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HCLOUD_TOKEN": TEST_TOKEN,
        "HCLOUD_ENDPOINT": hetzner_api.endpoint,
        "KUBECONFIG": str(kubeconfig),
    }

    result = subprocess.run(
        [sys.executable, "-m", "components", "destroy-preview", "--stack", "dev"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert f"network cozystack-vswitch ({network}); nothing is deleted" in result.stdout
    assert f"pool {POOL}: would delete 1 server(s) and 0 Node(s)" in result.stdout
    assert f"server {POOL}-1a2b ({server}, running)" in result.stdout
    assert server in hetzner_api.state.servers
    assert writes(hetzner_api) == []


def test_the_command_without_a_token_is_bad_input(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "components", "destroy-preview", "--stack", "dev"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "HCLOUD_TOKEN is not set" in result.stderr
