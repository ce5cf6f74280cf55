"""A real Kubernetes control plane as plain processes on loopback: etcd, kube-apiserver,
kube-controller-manager (built by ``scripts/e2e-toolchain``). No kubelet, no scheduler: objects
are stored, validated, admitted, garbage-collected and finalized as in a cluster, but no pod runs.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.stand_ins import pki

LOOPBACK = "127.0.0.1"
#: The Service network; its first address is the `kubernetes` Service (in the serving cert).
SERVICE_RANGE = "10.0.0.0/24"
#: The API server's audit log keeps the requests of ServiceAccounts (the in-cluster helpers run
#: with their tokens), one event each when answered; nobody else's (admin, controllers).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "userGroups": ["system:serviceaccounts"]}, {"level": "None"}],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class KubeCluster:
    """Start with ``start()``; ``kubeconfig`` is a cluster-admin kubeconfig (client certificate)."""

    binaries: dict[str, Path]
    directory: Path
    apiserver_port: int = 0
    kubeconfig: Path = field(init=False)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, timeout: float = 120.0) -> KubeCluster:
        certificates = self.directory / "pki"
        certificates.mkdir(parents=True, exist_ok=True)
        ca = pki.certificate(pki.name("e2e-ca"), pki.new_key(), None, ca=True)
        ca_crt, _ = ca.write(certificates, "ca")
        service_ip = str(next(ipaddress.ip_network(SERVICE_RANGE).hosts()))
        serving = pki.certificate(
            pki.name("kube-apiserver"),
            pki.new_key(),
            ca,
            server_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
            ],
            addresses=[LOOPBACK, service_ip],
        )
        serving_crt, serving_key = serving.write(certificates, "apiserver")
        admin = pki.certificate(pki.name("e2e-admin", "system:masters"), pki.new_key(), ca)
        self.admin_crt, self.admin_key = admin.write(certificates, "admin")
        self.ca_crt = ca_crt
        accounts = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_key = certificates / "service-accounts.key"
        sa_pub = certificates / "service-accounts.pub"
        sa_key.write_bytes(
            accounts.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        sa_pub.write_bytes(
            accounts.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

        etcd_port, peer_port = free_port(), free_port()
        self._spawn(
            "etcd",
            [
                str(self.binaries["etcd"]),
                "--name=e2e",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls=http://{LOOPBACK}:{etcd_port}",
                f"--advertise-client-urls=http://{LOOPBACK}:{etcd_port}",
                f"--listen-peer-urls=http://{LOOPBACK}:{peer_port}",
                f"--initial-advertise-peer-urls=http://{LOOPBACK}:{peer_port}",
                f"--initial-cluster=e2e=http://{LOOPBACK}:{peer_port}",
                "--log-level=warn",
            ],
        )
        self.apiserver_port = self.apiserver_port or free_port()
        audit_policy = self.directory / "audit-policy.yaml"
        audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        self.audit_log = self.directory / "audit.log"
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries["kube-apiserver"]),
                f"--etcd-servers=http://{LOOPBACK}:{etcd_port}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={serving_crt}",
                f"--tls-private-key-file={serving_key}",
                f"--client-ca-file={ca_crt}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--authorization-mode=RBAC",
                # Loopback cannot be a Service endpoint; nothing here needs the `kubernetes` one.
                "--endpoint-reconciler-type=none",
                f"--cert-dir={certificates}",
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit_log}",
            ],
        )
        self.kubeconfig = self.directory / "kubeconfig"
        self.kubeconfig.write_text(self.kubeconfig_text())
        self.wait_ready(timeout)
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries["kube-controller-manager"]),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={ca_crt}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                f"--cert-dir={certificates}",
            ],
        )
        return self

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.directory / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.directory / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kubeconfig_text(self) -> str:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "e2e",
                        "cluster": {
                            "server": self.server,
                            "certificate-authority-data": b64(self.ca_crt),
                        },
                    }
                ],
                "users": [
                    {
                        "name": "admin",
                        "user": {
                            "client-certificate-data": b64(self.admin_crt),
                            "client-key-data": b64(self.admin_key),
                        },
                    }
                ],
                "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
                "current-context": "e2e",
            }
        )

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_crt))
        context.load_cert_chain(str(self.admin_crt), str(self.admin_key))
        return context

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        token: str | None = None,
    ) -> tuple[int, Any]:
        """One request as cluster-admin (client certificate), or as ``token``'s owner."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
            context = ssl.create_default_context(cafile=str(self.ca_crt))
        else:
            context = self._ssl()
        request = urllib.request.Request(
            self.server + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return response.status, _decoded(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _decoded(error.read())

    def service_account_token(self, namespace: str, name: str) -> str:
        """A short-lived token of a ServiceAccount (TokenRequest), as a pod would get."""
        status, body = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
        if status != 201:
            raise RuntimeError(f"TokenRequest for {namespace}/{name}: {status} {body}")
        token: str = body["status"]["token"]
        return token

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        return body if status == 200 else None

    def audited(self, username: str) -> list[dict[str, Any]]:
        """The audit events of ``username``'s answered requests (ServiceAccounts only)."""
        lines = self.audit_log.read_text().splitlines() if self.audit_log.exists() else []
        events = [json.loads(line) for line in lines if line.strip()]
        return [event for event in events if event["user"]["username"] == username]

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited ({process.returncode}):\n{self.log_tail(name)}"
                    )
            try:
                status, _ = self.request("GET", "/readyz")
                if status == 200:
                    return
            except (urllib.error.URLError, ConnectionError, ssl.SSLError, TimeoutError):
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"kube-apiserver not ready after {timeout} s:\n{self.log_tail('kube-apiserver')}"
        )

    def apply_crds(self, paths: list[Path], timeout: float = 60.0) -> list[str]:
        """Create the CustomResourceDefinitions among ``paths``; wait until each is Established."""
        names = []
        for path in paths:
            for document in yaml.safe_load_all(path.read_text()):
                if not document or document.get("kind") != "CustomResourceDefinition":
                    continue
                status, body = self.request(
                    "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", document
                )
                if status not in (201, 409):
                    raise RuntimeError(f"creating CRD from {path.name}: {status} {body}")
                names.append(document["metadata"]["name"])
        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                crd = self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                # A CRD just created may answer `conditions: null` until the API server
                # has looked at its names: not yet established, not an error.
                conditions = ((crd or {}).get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {name} not established after {timeout} s")
                time.sleep(0.2)
        return names

    def stop(self) -> None:
        """Stop what this object started, controller-manager first, etcd last."""
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _decoded(payload: bytes) -> Any:
    """JSON bodies as objects; plain ones (``/readyz`` says ``ok``) as text."""
    try:
        return json.loads(payload) if payload else None
    except json.JSONDecodeError:
        return payload.decode(errors="replace")


def call(kube: KubeCluster, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    """A request as cluster-admin that must succeed (or find the object there already)."""
    status, answer = kube.request(method, path, body, **kwargs)
    assert status < 300 or status == 409, f"{method} {path}: {status} {answer}"
    return answer


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """``check()``'s first true result, looked for every 0.2 s for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)
