"""The providerID setter as its Deployment runs it: a separate process with its ConfigMap volume
laid out as the pod has it, against the Hetzner API emulator and the Kubernetes API stand-in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
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


def run_helper(
    pod: LaidOutPod,
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    health_port: int,
    env_prefix: str = "PROVIDER_ID_SETTER",
    **settings: str,
) -> subprocess.Popen[str]:
    """An in-cluster helper's pod (the setter's unless ``env_prefix`` says otherwise): its command
    in its working directory, nothing of the project but the volume; ``settings`` are further
    ``<env_prefix>_<name>`` variables."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HCLOUD_TOKEN": TEST_TOKEN,
        "HCLOUD_ENDPOINT": hetzner_api.endpoint,
        "KUBERNETES_SERVICE_HOST": kubernetes_api.host,
        "KUBERNETES_SERVICE_PORT": str(kubernetes_api.port),
        f"{env_prefix}_SERVICE_ACCOUNT_DIR": str(kubernetes_api.service_account_dir),
        f"{env_prefix}_LOOP_SECONDS": "0.2",
        f"{env_prefix}_HEALTH_PORT": str(health_port),
        **{f"{env_prefix}_{name}": value for name, value in settings.items()},
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


class RunningHelper:
    """An in-cluster helper's process, its output read as it comes so that a test waits for a
    line it logs (after the call it logs about, which a stand-in sees first) instead of
    polling; killed on leaving the ``with`` block if still running."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:  # end of output: the process has exited
            self._changed.notify_all()

    def wait_for(self, text: str, seconds: float) -> bool:
        """Whether ``text`` was logged within ``seconds``; False at once when the process ended
        without it."""
        with self._changed:
            return self._changed.wait_for(
                lambda: any(text in line for line in self.lines) or not self._reader.is_alive(),
                seconds,
            ) and any(text in line for line in self.lines)

    def healthy_then_stopped(self, health_port: int) -> None:
        """/healthz answers 200, and SIGTERM (a pod's stop) ends the process with 0."""
        health = urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=5)
        assert health.status == 200
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) == 0

    def text(self) -> str:
        """All of it, once the process has exited."""
        self._reader.join(timeout=30)
        return "".join(self.lines)

    def __enter__(self) -> RunningHelper:
        return self

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_standalone_until_registered(
    pod: LaidOutPod, hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> str:
    """Run the setter's ``pod`` until it registers one node, check /healthz and SIGTERM; its output."""
    server = hetzner_api.add_server("pool-1", POOL, private_ips={NETWORK: "10.100.0.11"})
    kubernetes_api.add_node("pool-1", internal_ip="10.100.0.11")
    kubernetes_api.add_node("metal-1", internal_ip="192.168.1.20")
    port = free_port()
    with RunningHelper(run_helper(pod, hetzner_api, kubernetes_api, port)) as setter:
        # A Python start on busy cores, then one loop.
        registered = f"node pool-1: spec.providerID set to hcloud://{server}"
        assert setter.wait_for(registered, 60), "".join(setter.lines)
        assert kubernetes_api.provider_id("pool-1") == f"hcloud://{server}"
        setter.healthy_then_stopped(port)
    assert kubernetes_api.provider_id("metal-1") == ""
    return setter.text()
