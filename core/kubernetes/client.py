"""What the in-cluster helpers share: the Kubernetes and Hetzner API clients, a pod's
access to both, servers and nodes as the helpers see them, and the health endpoint.

Standard library only. The ConfigMap of each helper ships this file at the path it has here
(``<mount>/core/kubernetes/client.py``), so the scripts, the destroy sweep and the command
lines all import it as ``core.kubernetes.client``. Nothing here imports a script.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

PROVIDER_ID_PREFIX = "hcloud://"
#: Label the autoscaler puts on every server it creates (hetzner_cloud_provider.go).
NODE_GROUP_LABEL = "hcloud/node-group"
#: Set by the kubelet from ``--node-ip`` when the cloud provider is external.
PROVIDED_NODE_IP_ANNOTATION = "alpha.kubernetes.io/provided-node-ip"
DEFAULT_HCLOUD_ENDPOINT = "https://api.hetzner.cloud/v1"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: Hetzner's largest page.
SERVERS_PER_PAGE = 50
NODES_PER_PAGE = 500
REQUEST_TIMEOUT_SECONDS = 10.0
#: How late the loop may be before /healthz fails (requests may time out on the way).
LIVENESS_GRACE_SECONDS = 120.0

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ApiError(Exception):
    """A failed API call: which API, what was asked, and the server's answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status, when the server answered (404: the object is gone).
        self.status = status


@dataclass(frozen=True)
class PodAccess:
    """What a pod of this project reaches its two APIs with, from its environment."""

    hcloud_token: str
    hcloud_endpoint: str
    kubernetes_url: str

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> PodAccess:
        token = env.get("HCLOUD_TOKEN", "").strip()
        if not token:
            raise SystemExit("HCLOUD_TOKEN is not set (the hetzner-credentials Secret, key token)")
        host = env.get("KUBERNETES_SERVICE_HOST", "")
        if not host:
            raise SystemExit("KUBERNETES_SERVICE_HOST is not set: not running in a cluster?")
        if ":" in host:  # an IPv6 service address
            host = f"[{host}]"
        port = env.get("KUBERNETES_SERVICE_PORT", "443")
        return cls(
            hcloud_token=token,
            hcloud_endpoint=env.get("HCLOUD_ENDPOINT", "").rstrip("/") or DEFAULT_HCLOUD_ENDPOINT,
            kubernetes_url=f"https://{host}:{port}",
        )


def request_json(
    api: str,
    method: str,
    url: str,
    token: str | None,
    *,
    body: dict[str, Any] | None = None,
    content_type: str = "application/json",
    context: ssl.SSLContext | None = None,
) -> Any:
    """One JSON request; any failure becomes an ApiError naming the API and the answer.

    Without a token the request authenticates by the context's client certificate.
    """
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(
            request, timeout=REQUEST_TIMEOUT_SECONDS, context=context
        ) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raise ApiError(
            f"{api}: {method} {url}: {error.code} {_error_text(error)}", error.code
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as error:
        raise ApiError(f"{api}: {method} {url}: {error}") from None


def _error_text(error: urllib.error.HTTPError) -> str:
    """The message of a Hetzner error envelope or a Kubernetes Status, else the raw body."""
    raw = error.read().decode("utf-8", "replace")
    try:
        payload = json.loads(raw)
    except ValueError:
        return raw.strip()[:500]
    if isinstance(payload, dict):
        inner = payload.get("error")
        if isinstance(inner, dict):  # Hetzner: {"error": {"code", "message"}}
            return f"{inner.get('code')}: {inner.get('message')}"
        if "message" in payload:  # Kubernetes Status
            return str(payload["message"])
    return raw.strip()[:500]


@dataclass(frozen=True)
class Server:
    id: int
    name: str
    ips: frozenset[IpAddress]
    ipv6_networks: tuple[ipaddress.IPv6Network, ...] = ()
    #: Its ``hcloud/node-group`` label ("" without one) and the networks it is attached to.
    pool: str = ""
    network_ids: frozenset[int] = frozenset()

    def has_address(self, address: IpAddress) -> bool:
        if address in self.ips:
            return True
        return isinstance(address, ipaddress.IPv6Address) and any(
            address in network for network in self.ipv6_networks
        )


@dataclass(frozen=True)
class Node:
    name: str
    uid: str
    provider_id: str
    addresses: frozenset[IpAddress]


def parse_server(raw: Mapping[str, Any]) -> Server:
    """The server's id, name, pool label, networks, and every IP it answers on."""
    ips: set[IpAddress] = set()
    networks: list[ipaddress.IPv6Network] = []
    network_ids: set[int] = set()
    for private in raw.get("private_net") or []:
        for text in [private.get("ip"), *(private.get("alias_ips") or [])]:
            _add_ip(ips, text)
        if private.get("network") is not None:
            network_ids.add(int(private["network"]))
    public = raw.get("public_net") or {}
    _add_ip(ips, (public.get("ipv4") or {}).get("ip"))
    ipv6 = (public.get("ipv6") or {}).get("ip")
    if ipv6:  # a /64 network: the node picks one of its addresses
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.IPv6Network(ipv6, strict=False))
    return Server(
        id=int(raw["id"]),
        name=str(raw["name"]),
        ips=frozenset(ips),
        ipv6_networks=tuple(networks),
        pool=str((raw.get("labels") or {}).get(NODE_GROUP_LABEL, "")),
        network_ids=frozenset(network_ids),
    )


def parse_node(raw: Mapping[str, Any]) -> Node:
    """The node's name, uid, providerID and addresses (status and the kubelet's --node-ip)."""
    metadata = raw.get("metadata") or {}
    addresses: set[IpAddress] = set()
    for address in (raw.get("status") or {}).get("addresses") or []:
        if address.get("type") in {"InternalIP", "ExternalIP"}:
            _add_ip(addresses, address.get("address"))
    provided = (metadata.get("annotations") or {}).get(PROVIDED_NODE_IP_ANNOTATION, "")
    for text in provided.split(","):
        _add_ip(addresses, text.strip())
    return Node(
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        provider_id=str((raw.get("spec") or {}).get("providerID") or ""),
        addresses=frozenset(addresses),
    )


def _add_ip(found: set[IpAddress], text: Any) -> None:
    if not text:
        return
    try:
        found.add(ipaddress.ip_address(str(text)))
    except ValueError:
        return


def match(node: Node, servers_by_name: Mapping[str, Server]) -> Server | None:
    """The autoscaler's server for a node: same name and a shared IP address, else None."""
    server = servers_by_name.get(node.name)
    if server is None or not any(server.has_address(address) for address in node.addresses):
        return None
    return server


def in_pool(server: Server, pool: str, network_id: int) -> bool:
    """A server of this stack's ``pool``: labelled ``hcloud/node-group=<pool>``, attached to the
    stack's network (the destroy sweep's and the node controller's proof, with ``match``)."""
    return server.pool == pool and network_id in server.network_ids


class HetznerApi:
    def __init__(self, endpoint: str, token: str) -> None:
        self.endpoint = endpoint
        self.token = token

    def autoscaler_servers(self) -> list[Server]:
        """Every server labelled ``hcloud/node-group``, all pages."""
        servers: list[Server] = []
        page: int | None = 1
        while page is not None:
            query = urllib.parse.urlencode(
                {"label_selector": NODE_GROUP_LABEL, "per_page": SERVERS_PER_PAGE, "page": page}
            )
            answer = request_json(
                "Hetzner API", "GET", f"{self.endpoint}/servers?{query}", self.token
            )
            servers.extend(parse_server(raw) for raw in answer.get("servers") or [])
            pagination = (answer.get("meta") or {}).get("pagination") or {}
            page = pagination.get("next_page")
        return servers


class KubernetesApi:
    """The API server's Node endpoints (and paginated lists), as one client of either kind.

    ``token`` is called before every request: a ServiceAccount's bound token is rotated
    in place by the kubelet. It returns None when ``context`` carries a client certificate.
    """

    def __init__(self, url: str, token: Callable[[], str | None], context: ssl.SSLContext) -> None:
        self.url = url
        self._token = token
        self._context = context

    @classmethod
    def in_cluster(cls, url: str, service_account_dir: Path) -> KubernetesApi:
        """With the ServiceAccount's token and CA (read again for every request)."""
        return cls(
            url,
            lambda: (service_account_dir / "token").read_text().strip(),
            ssl.create_default_context(cafile=str(service_account_dir / "ca.crt")),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        try:
            token = self._token()
        except OSError as error:
            raise ApiError(f"Kubernetes API: cannot read the token: {error}") from None
        return request_json(
            "Kubernetes API",
            method,
            f"{self.url}{path}",
            token,
            body=body,
            content_type=content_type,
            context=self._context,
        )

    def list_all(self, path: str) -> list[dict[str, Any]]:
        """Every item of a list endpoint, page by page (``limit``/``continue``)."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = {"limit": str(NODES_PER_PAGE)}
            if token:
                query["continue"] = token
            separator = "&" if "?" in path else "?"
            answer = self.request("GET", f"{path}{separator}{urllib.parse.urlencode(query)}")
            items.extend(answer.get("items") or [])
            token = (answer.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    def nodes(self) -> list[Node]:
        return [parse_node(raw) for raw in self.list_all("/api/v1/nodes")]

    def set_provider_id(self, node: Node, provider_id: str) -> None:
        self.request(
            "PATCH",
            f"/api/v1/nodes/{urllib.parse.quote(node.name)}",
            body={"spec": {"providerID": provider_id}},
            content_type="application/merge-patch+json",
        )

    def delete_node(self, name: str) -> None:
        self.request("DELETE", f"/api/v1/nodes/{urllib.parse.quote(name)}")


class Scheduled(Protocol):
    """A loop that says until when it is on time (the setter, the node controller)."""

    alive_until: float


def serve_health(setter: Scheduled, port: int, clock: Callable[[], float]) -> ThreadingHTTPServer:
    """``GET /healthz``: 200 while the loop keeps its schedule, 503 when it is overdue."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/healthz":
                self.send_error(404)
                return
            healthy = clock() <= setter.alive_until
            body = b"ok\n" if healthy else b"loop overdue\n"
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
