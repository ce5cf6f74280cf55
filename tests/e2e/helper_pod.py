"""The in-cluster helpers (the providerID setter, the node controller) run on this machine as
their Deployment's pod would run them: no kubelet runs containers here, so this reads the
Deployment the program applied and does the kubelet's part — its ConfigMap volume's files in a
folder where it is mounted, each at the path the volume's ``items`` give it
(``tests.support.pod_volume``), its container's command (``python`` is this interpreter) run
in its ``workingDir``, its environment with Secret references resolved through the API server, a token of its
ServiceAccount (TokenRequest) with the CA and namespace where the pod finds them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.kube_cluster import LOOPBACK, KubeCluster
from tests.support.pod_volume import lay_out_container


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
    #: Its ConfigMap's files, by key.
    files: dict[str, str]
    #: Its ServiceAccount's token.
    token: str
    #: Its output (stdout and stderr).
    log: Path
    process: subprocess.Popen[bytes]


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
    config_maps: dict[str, dict[str, str]] = {}
    for volume in spec.get("volumes") or []:
        source = volume["configMap"]["name"]
        config_map = kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{source}")
        assert config_map is not None, f"no ConfigMap {namespace}/{source}"
        config_maps[source] = config_map["data"]
    pod = lay_out_container(spec, config_maps, root)
    files = {key: text for data in config_maps.values() for key, text in data.items()}
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
            env[variable["name"]] = pod.local(variable["value"])
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            secret = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{reference['name']}")
            value = base64.b64decode(secret["data"][reference["key"]]).decode()
            env[variable["name"]] = value
    assert pod.cwd is not None, "the helper runs in its mount (workingDir)"
    log = root / "log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            pod.command,
            cwd=pod.cwd,
            env={**env, **test_env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield HelperPod(deployment, files, (account / "token").read_text(), log, process)
        finally:
            process.terminate()
            process.wait(timeout=10)
