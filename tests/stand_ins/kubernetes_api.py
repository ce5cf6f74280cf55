"""A local stand-in for the Kubernetes API server's Node endpoints, over HTTPS on 127.0.0.1.

Faithful where clients depend on it: authentication by bearer token or by a client
certificate its client CA signed (else 401 ``Status``), ``GET /api/v1/nodes`` with
``limit``/``continue`` pagination, ``GET``, JSON merge-patch ``PATCH`` (RFC 7386) and
``DELETE /api/v1/nodes/{name}`` (a Node is not returned on delete: the answer is a
``Success`` Status, as the API server's node storage does), ``GET
/api/v1/namespaces/{namespace}/pods`` (an empty list for a namespace that does not
exist) and ``GET /api/v1/pods?fieldSelector=spec.nodeName=<node>``, ``GET`` of a ConfigMap, the Eviction API
(``POST .../pods/{name}/eviction``: 201, 404 for a pod that is gone, 429 while
``refused_evictions`` says a PodDisruptionBudget refuses; an evicted pod goes at once, as with
a zero grace period), ``POST /api/v1/namespaces/{namespace}/events``, and the API server's Node update rule that ``spec.providerID`` may only go
from empty to a value, refused with its own 422 ``Status``. A self-signed certificate
for 127.0.0.1 is written as ``ca.crt`` next to a ``token`` file, like a ServiceAccount
mount; ``write_kubeconfig`` writes a kubeconfig for it as a user would have one.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlparse

import yaml

from tests.stand_ins import pki
from tests.stand_ins.loopback import Answer, LoopbackServer, answering

MERGE_PATCH = "application/merge-patch+json"
PROVIDER_ID_FORBIDDEN = 'node updates may not change providerID except from "" to valid'


@dataclass
class KubernetesState:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Pods by (namespace, name).
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: (method, path with query) of every request, in order.
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: Statuses to answer the next requests with, one per request (e.g. 500, 503).
    failures: list[int] = field(default_factory=list)
    #: Pods (namespace, name) whose eviction a PodDisruptionBudget refuses (429), and how many
    #: more times (-1: always).
    refused_evictions: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Events created (``POST /api/v1/namespaces/{namespace}/events``).
    events: list[dict[str, Any]] = field(default_factory=list)
    #: ConfigMaps by (namespace, name), read with ``GET``.
    config_maps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


class KubernetesApiStandIn(LoopbackServer):
    """Start with ``start()``; point a client at ``url`` with ``service_account_dir``."""

    def __init__(self, directory: Path, token: str = "service-account-token") -> None:
        self.state = KubernetesState()
        self.token = token
        self.service_account_dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(token)
        # A serving certificate for 127.0.0.1 that is its own CA (the ServiceAccount's ca.crt).
        serving = pki.certificate(
            pki.name("kube-apiserver"), pki.new_key(), None, ca=True, addresses=["127.0.0.1"]
        )
        (directory / "ca.crt").write_bytes(serving.cert_pem)
        (directory / "tls.key").write_bytes(serving.key_pem)
        #: The client CA and a user certificate it signed (PEM), as a kubeconfig carries them.
        client_ca = pki.certificate(pki.name("kubernetes-client-ca"), pki.new_key(), None, ca=True)
        admin = pki.certificate(pki.name("admin", "system:masters"), pki.new_key(), client_ca)
        self.client_ca = client_ca.cert_pem
        self.client_certificate, self.client_key = admin.cert_pem, admin.key_pem
        (directory / "client-ca.crt").write_bytes(self.client_ca)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / "ca.crt", directory / "tls.key")
        context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate is one way to log in
        context.load_verify_locations(directory / "client-ca.crt")
        super().__init__(answering(self._answer, ("GET", "POST", "PATCH", "DELETE")), tls=context)
        self._lock = threading.Lock()
        self._uids = itertools.count(1)
        self._versions = itertools.count(100)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return self.base_url

    # ---- state helpers -------------------------------------------------------------
    def add_node(
        self,
        name: str,
        *,
        internal_ip: str | None = None,
        external_ip: str | None = None,
        provided_node_ip: str | None = None,
        provider_id: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A registered Node as the kubelet and a cloud controller leave it."""
        addresses = [{"type": "Hostname", "address": name}]
        if internal_ip:
            addresses.append({"type": "InternalIP", "address": internal_ip})
        if external_ip:
            addresses.append({"type": "ExternalIP", "address": external_ip})
        annotations = {}
        if provided_node_ip:
            annotations["alpha.kubernetes.io/provided-node-ip"] = provided_node_ip
        spec: dict[str, Any] = {}
        if provider_id:
            spec["providerID"] = provider_id
        node = {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": f"00000000-0000-4000-8000-{next(self._uids):012d}",
                "resourceVersion": str(next(self._versions)),
                "labels": {"kubernetes.io/hostname": name, **(labels or {})},
                "annotations": annotations,
            },
            "spec": spec,
            "status": {"addresses": addresses},
        }
        with self._lock:
            self.state.nodes[name] = node
        return node

    def add_pod(
        self,
        namespace: str,
        name: str,
        command: list[str],
        *,
        phase: str = "Running",
        node: str | None = None,
        owner_kind: str | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A pod with one container running ``command``, on ``node``, owned by a controller
        of ``owner_kind`` (``ReplicaSet``, ``DaemonSet``)."""
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": f"00000000-0000-4000-9000-{next(self._uids):012d}",
            "resourceVersion": str(next(self._versions)),
            "annotations": dict(annotations or {}),
        }
        if owner_kind:
            metadata["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": owner_kind,
                    "name": f"{name}-owner",
                    "uid": f"00000000-0000-4000-a000-{next(self._uids):012d}",
                    "controller": True,
                }
            ]
        spec: dict[str, Any] = {
            "containers": [{"name": "main", "image": "example", "command": command}]
        }
        if node:
            spec["nodeName"] = node
        pod = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": metadata,
            "spec": spec,
            "status": {"phase": phase},
        }
        with self._lock:
            self.state.pods[(namespace, name)] = pod
        return pod

    def write_kubeconfig(
        self,
        path: Path,
        *,
        auth: Literal["token", "certificate", "exec"] = "token",
        ca: Literal["data", "file"] = "data",
    ) -> Path:
        """A kubeconfig whose current context reaches this stand-in, as ``kubectl`` reads it."""
        cluster: dict[str, Any] = {"server": self.url}
        if ca == "data":
            cluster["certificate-authority-data"] = _b64(
                (self.service_account_dir / "ca.crt").read_bytes()
            )
        else:
            cluster["certificate-authority"] = str(self.service_account_dir / "ca.crt")
        user: dict[str, Any]
        if auth == "token":
            user = {"token": self.token}
        elif auth == "certificate":
            user = {
                "client-certificate-data": _b64(self.client_certificate),
                "client-key-data": _b64(self.client_key),
            }
        else:
            user = {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": "kubelogin",
                    "args": ["get-token"],
                }
            }
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": cluster}],
            "users": [{"name": "stand-in-user", "user": user}],
            "contexts": [
                {"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in-user"}}
            ],
            "current-context": "stand-in",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def provider_id(self, name: str) -> str:
        return str(self.state.nodes[name]["spec"].get("providerID") or "")

    def count(self, method: str) -> int:
        return sum(1 for each, _ in self.state.requests if each == method)

    # ---- HTTP ----------------------------------------------------------------------
    def _answer(self, request: BaseHTTPRequestHandler, method: str, body: bytes) -> Answer:
        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        # The TLS layer verified a client certificate against the client CA.
        certificate = request.connection.getpeercert()
        with self._lock:
            self.state.requests.append((method, request.path))
            status, payload = self._route(
                method,
                request.path,
                token,
                body,
                request.headers.get("Content-Type") or "",
                has_certificate=bool(certificate),
            )
        return status, "application/json", json.dumps(payload).encode()

    def _route(
        self,
        method: str,
        target: str,
        token: str,
        raw: bytes,
        content_type: str,
        *,
        has_certificate: bool = False,
    ) -> tuple[int, Any]:
        if token != self.token and not (has_certificate and not token):
            return _status(401, "Unauthorized", "Unauthorized")
        if self.state.failures:
            code = self.state.failures.pop(0)
            return _status(code, "InternalError", "Internal error occurred: injected fault")
        parsed = urlparse(target)
        parts = [unquote(part) for part in parsed.path.strip("/").split("/")]
        query = {key: values[0] for key, values in parse_qs(parsed.query).items()}
        if parts == ["api", "v1", "pods"] and method == "GET":
            wanted = query.get("fieldSelector", "").removeprefix("spec.nodeName=")
            on_node = {
                f"{namespace}/{name}": pod
                for (namespace, name), pod in self.state.pods.items()
                if not wanted or pod["spec"].get("nodeName") == wanted
            }
            return 200, self._list("PodList", on_node, query)
        if parts[:3] == ["api", "v1", "namespaces"] and method == "POST":
            return self._post(parts[3:], raw)
        if len(parts) == 6 and parts[4] == "configmaps" and method == "GET":
            found = self.state.config_maps.get((parts[3], parts[5]))
            if found is None:
                return _status(404, "NotFound", f'configmaps "{parts[5]}" not found')
            return 200, found
        if (
            len(parts) == 5
            and parts[:3] == ["api", "v1", "namespaces"]
            and parts[4] == "pods"
            and method == "GET"
        ):
            in_namespace = {
                name: pod
                for (namespace, name), pod in self.state.pods.items()
                if namespace == parts[3]
            }
            return 200, self._list("PodList", in_namespace, query)
        if parts[:3] != ["api", "v1", "nodes"] or len(parts) > 4:
            return _status(404, "NotFound", "the server could not find the requested resource")
        if len(parts) == 3 and method == "GET":
            return 200, self._list("NodeList", self.state.nodes, query)
        if len(parts) == 4:
            node = self.state.nodes.get(parts[3])
            if node is None:
                return _status(404, "NotFound", f'nodes "{parts[3]}" not found', {"name": parts[3]})
            if method == "GET":
                return 200, node
            if method == "PATCH":
                return self._patch(node, raw, content_type)
            if method == "DELETE":
                del self.state.nodes[parts[3]]
                return 200, {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": parts[3],
                        "kind": "nodes",
                        "uid": node["metadata"]["uid"],
                    },
                }
        return _status(405, "MethodNotAllowed", "the server does not allow this method")

    def _post(self, parts: list[str], raw: bytes) -> tuple[int, Any]:
        """Evictions and Events (``parts`` after ``/api/v1/namespaces``)."""
        body = json.loads(raw or b"{}")
        if len(parts) == 2 and parts[1] == "events":
            event = {**body, "metadata": {**body.get("metadata", {}), "namespace": parts[0]}}
            self.state.events.append(event)
            return 201, event
        if len(parts) == 4 and parts[1] == "pods" and parts[3] == "eviction":
            key = (parts[0], parts[2])
            if key not in self.state.pods:
                return _status(404, "NotFound", f'pods "{parts[2]}" not found')
            remaining = self.state.refused_evictions.get(key, 0)
            if remaining:
                if remaining > 0:
                    self.state.refused_evictions[key] = remaining - 1
                return _status(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                )
            del self.state.pods[key]
            return 201, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}
        return _status(404, "NotFound", "the server could not find the requested resource")

    def _list(
        self, kind: str, objects: dict[str, dict[str, Any]], query: dict[str, str]
    ) -> dict[str, Any]:
        names = sorted(objects)
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or 0) or len(names)
        chunk = names[start : start + limit]
        more = start + limit < len(names)
        return {
            "kind": kind,
            "apiVersion": "v1",
            "metadata": {
                "resourceVersion": str(next(self._versions)),
                **({"continue": str(start + limit)} if more else {}),
            },
            "items": [objects[name] for name in chunk],
        }

    def _patch(self, node: dict[str, Any], raw: bytes, content_type: str) -> tuple[int, Any]:
        name = node["metadata"]["name"]
        if content_type.split(";")[0].strip() != MERGE_PATCH:
            return _status(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json-patch+json, {MERGE_PATCH}, "
                "application/strategic-merge-patch+json, application/apply-patch+yaml",
            )
        try:
            patch = json.loads(raw)
        except ValueError as error:
            return _status(400, "BadRequest", f"error decoding patch: {error}")
        updated = merge_patch(copy.deepcopy(node), patch)
        old_id = node["spec"].get("providerID") or ""
        new_id = (updated.get("spec") or {}).get("providerID") or ""
        if old_id and new_id != old_id:
            message = f"Forbidden: {PROVIDER_ID_FORBIDDEN}"
            return _status(
                422,
                "Invalid",
                f'Node "{name}" is invalid: spec.providerID: {message}',
                {
                    "name": name,
                    "kind": "Node",
                    "causes": [
                        {
                            "reason": "FieldValueForbidden",
                            "message": message,
                            "field": "spec.providerID",
                        }
                    ],
                },
            )
        updated["metadata"]["resourceVersion"] = str(next(self._versions))
        self.state.nodes[name] = updated
        return 200, updated


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        status["details"] = {"kind": "nodes", **details}
    return code, status


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
