"""The in-cluster helpers (the providerID setter, the node controller) run on this machine as
their Deployment's pod would run them: no kubelet runs containers here, so this reads the
Deployment the program applied and does the kubelet's part — its ConfigMap volume's files in a
folder where it is mounted, its container's command (``python`` is this interpreter), its
environment with Secret references resolved through the API server, a token of its
ServiceAccount (TokenRequest) with the CA and namespace where the pod finds them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.kube_cluster import LOOPBACK, KubeCluster


def service_account_dir(kube: KubeCluster, directory: Path, namespace: str, name: str) -> Path:
    """What a pod of ServiceAccount ``name`` finds mounted: its token, the CA, the namespace."""
    directory.mkdir(parents=True)
    (directory / "token").write_text(kube.service_account_token(namespace, name))
    shutil.copy(kube.ca_crt, directory / "ca.crt")
    (directory / "namespace").write_text(namespace)
    return directory


@dataclass
class HelperPod:
    deployment: dict[str, Any]
    #: The files of its ConfigMap volume, by name, as the pod reads them.
    files: dict[str, str]
    #: Its ServiceAccount's token.
    token: str
    #: Its output (stdout and stderr).
    log: Path
    process: subprocess.Popen[bytes]


def _local(mounts: dict[str, Path], text: str) -> str:
    """A path of the pod, here."""
    for mount, folder in mounts.items():
        if text.startswith(mount):
            return str(folder) + text[len(mount) :]
    return text


@contextlib.contextmanager
def helper_pod(
    kube: KubeCluster,
    namespace: str,
    name: str,
    directory: Path,
    account_variable: str,
    test_env: dict[str, str],
) -> Iterator[HelperPod]:
    """Deployment ``name``'s pod, running until the end of the ``with``. ``account_variable``
    points the script at the ServiceAccount's folder; ``test_env`` holds the test knobs
    (``HCLOUD_ENDPOINT``, health port, loop times)."""
    deployment = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    assert deployment is not None, f"no Deployment {namespace}/{name}"
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    root = directory / name
    volumes = {volume["name"]: volume for volume in spec.get("volumes") or []}
    mounts: dict[str, Path] = {}
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        source = volumes[mount["name"]]["configMap"]["name"]
        config_map = kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{source}")
        assert config_map is not None, f"no ConfigMap {namespace}/{source}"
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True)
        for key, text in config_map["data"].items():
            (folder / key).write_text(text)
            files[key] = text
        mounts[mount["mountPath"]] = folder
    account = service_account_dir(
        kube, root / "serviceaccount", namespace, spec["serviceAccountName"]
    )
    env = {
        "PATH": os.environ["PATH"],
        "KUBERNETES_SERVICE_HOST": LOOPBACK,
        "KUBERNETES_SERVICE_PORT": str(kube.apiserver_port),
        account_variable: str(account),
    }
    for variable in container.get("env") or []:
        if "value" in variable:
            env[variable["name"]] = _local(mounts, variable["value"])
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            secret = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{reference['name']}")
            value = base64.b64decode(secret["data"][reference["key"]]).decode()
            env[variable["name"]] = value
    command = [
        sys.executable if word == "python" else _local(mounts, word)
        for word in container["command"]
    ]
    log = root / "log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env={**env, **test_env}, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            yield HelperPod(deployment, files, (account / "token").read_text(), log, process)
        finally:
            process.terminate()
            process.wait(timeout=10)
