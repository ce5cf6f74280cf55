"""The providerID setter as its Deployment runs it: a separate process with its ConfigMap volume
laid out as the pod has it, against the Hetzner API emulator and the Kubernetes API stand-in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator
from tests.stand_ins.kubernetes_api import KubernetesApiStandIn
from tests.support.pod_volume import LaidOutPod

NETWORK = 4711
POOL = {"hcloud/node-group": "workers-fsn1"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_script(
    pod: LaidOutPod,
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    health_port: int,
) -> subprocess.Popen[str]:
    """The pod's command in its working directory: nothing of the project but the volume."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HCLOUD_TOKEN": TEST_TOKEN,
        "HCLOUD_ENDPOINT": hetzner_api.endpoint,
        "KUBERNETES_SERVICE_HOST": kubernetes_api.host,
        "KUBERNETES_SERVICE_PORT": str(kubernetes_api.port),
        "PROVIDER_ID_SETTER_SERVICE_ACCOUNT_DIR": str(kubernetes_api.service_account_dir),
        "PROVIDER_ID_SETTER_LOOP_SECONDS": "0.2",
        "PROVIDER_ID_SETTER_HEALTH_PORT": str(health_port),
    }
    assert pod.cwd is not None and pod.command[0] == sys.executable
    return subprocess.Popen(
        pod.command,
        cwd=pod.cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_standalone_until_registered(
    pod: LaidOutPod, hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> str:
    """Run the setter's ``pod`` until it registers one node, check /healthz and SIGTERM; its output."""
    server = hetzner_api.add_server("pool-1", POOL, private_ips={NETWORK: "10.100.0.11"})
    kubernetes_api.add_node("pool-1", internal_ip="10.100.0.11")
    kubernetes_api.add_node("metal-1", internal_ip="192.168.1.20")
    port = free_port()
    process = run_script(pod, hetzner_api, kubernetes_api, port)
    try:
        deadline = time.monotonic() + 60  # a Python start on busy cores, then one loop
        while kubernetes_api.provider_id("pool-1") == "" and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.05)
        assert kubernetes_api.provider_id("pool-1") == f"hcloud://{server}"
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read() if process.stdout else ""
    assert f"node pool-1: spec.providerID set to hcloud://{server}" in output
    assert kubernetes_api.provider_id("metal-1") == ""
    return output
