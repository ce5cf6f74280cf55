"""Local stand-ins for the image build: Hetzner Cloud API emulator, Image Factory, rescue sshd.

The first two are stdlib HTTP servers on 127.0.0.1. The emulator speaks enough
of the Hetzner Cloud API for the official ``hcloud`` library: actions that run
and finish, locks, the error envelope, label selectors, pagination and rate
limits, plus fault injection per step. Servers report 127.0.0.1 as their public
IPv4 so a real OpenSSH server on loopback (``RescueSshd``) plays the rescue system.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import lzma
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

NOW = "2026-11-24T12:00:00+00:00"
LOCATIONS = {
    name: (index, zone)
    for index, (name, zone) in enumerate(
        [
            ("fsn1", "eu-central"),
            ("nbg1", "eu-central"),
            ("hel1", "eu-central"),
            ("ash", "us-east"),
            ("hil", "us-west"),
            ("sin", "ap-southeast"),
        ],
        start=1,
    )
}
SERVER_TYPES: dict[str, dict[str, Any]] = {
    name: {"disk": disk, "architecture": arch, "cores": cores, "memory": memory}
    for name, disk, arch, cores, memory in [
        ("cx23", 40, "x86", 2, 4.0),
        ("cpx22", 80, "x86", 2, 4.0),
        ("cpx32", 160, "x86", 4, 8.0),
        ("ccx13", 80, "x86", 2, 8.0),
        ("cax11", 40, "arm", 2, 4.0),
        ("cax21", 80, "arm", 4, 8.0),
        ("tiny", 20, "x86", 1, 1.0),
    ]
}


@dataclass
class Action:
    id: int
    command: str
    resources: list[dict[str, Any]]
    polls_left: int
    fail: bool = False
    on_success: Any = None

    def as_json(self) -> dict[str, Any]:
        finished = self.polls_left <= 0
        status = ("error" if self.fail else "success") if finished else "running"
        return {
            "id": self.id,
            "command": self.command,
            "status": status,
            "progress": 100 if finished else 50,
            "started": NOW,
            "finished": NOW if finished else None,
            "resources": self.resources,
            "error": {"code": "action_failed", "message": f"{self.command} failed"}
            if finished and self.fail
            else None,
        }


@dataclass
class Faults:
    """What goes wrong, per step; counters are consumed as requests arrive."""

    server_create_status: int | None = None
    rescue_action_fails: bool = False
    rescue_skips_key: bool = False
    power_off_never_off: bool = False
    snapshot_action_fails: bool = False
    server_delete_failures: int = 0
    rate_limited_requests: int = 0


@dataclass
class HetznerState:
    servers: dict[int, dict[str, Any]] = field(default_factory=dict)
    ssh_keys: dict[int, dict[str, Any]] = field(default_factory=dict)
    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    actions: dict[int, Action] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: Most servers that existed at once (concurrent builds show as 2).
    peak_servers: int = 0


class _LoopbackHttpServer:
    """A stdlib HTTP server on a free 127.0.0.1 port, served from a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HetznerEmulator(_LoopbackHttpServer):
    """Start with ``start()``; ``endpoint`` is the API base URL for ``hcloud.Client``."""

    def __init__(
        self,
        authorized_keys: Path,
        action_polls: int = 1,
        page_size: int = 2,
        token: str = "test-token",
    ) -> None:
        self.state = HetznerState()
        #: Bearer tokens the API accepts; replace to revoke or rotate.
        self.valid_tokens = {token}
        self.faults = Faults()
        #: Server type -> locations where it can be ordered (per-location types, 2025-09).
        self.orderable = {name: set(LOCATIONS) for name in SERVER_TYPES}
        #: Server types Hetzner has announced to retire (``locations[].deprecation``).
        self.retiring: set[str] = set()
        self.authorized_keys = authorized_keys
        self.action_polls = action_polls
        self.page_size = page_size
        self._ids = itertools.count(100)
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/v1"

    # ---- state helpers -------------------------------------------------------------
    def add_snapshot(self, labels: dict[str, str], description: str = "seed") -> int:
        image_id = next(self._ids)
        self.state.images[image_id] = self._image_json(image_id, description, labels, 40.0)
        return image_id

    def add_server(
        self,
        name: str,
        labels: dict[str, str],
        *,
        server_type: str = "cx23",
        status: str = "running",
        private_ips: dict[int, str] | None = None,
        public_ipv4: str | None = "127.0.0.1",
        created: str = NOW,
    ) -> int:
        """A server that exists already (another run's, the autoscaler's, or unrelated).

        ``private_ips`` maps network id -> the server's IP in that network.
        """
        server_id = next(self._ids)
        self.state.servers[server_id] = {
            "id": server_id,
            "name": name,
            "server_type": server_type,
            "status": status,
            "rescue_enabled": False,
            "labels": dict(labels),
            "created": created,
            "location": "fsn1",
            "private_net": dict(private_ips or {}),
            "public_ipv4": public_ipv4,
        }
        return server_id

    def add_ssh_key(self, name: str, labels: dict[str, str], created: str = NOW) -> int:
        key_id = next(self._ids)
        public_key = f"ssh-ed25519 AAAA{key_id} seeded"
        self.state.ssh_keys[key_id] = {
            "id": key_id,
            "name": name,
            "fingerprint": hashlib.md5(public_key.encode()).hexdigest(),
            "public_key": public_key,
            "labels": dict(labels),
            "created": created,
        }
        return key_id

    def seed_unrelated(self, count: int = 60) -> set[tuple[str, int]]:
        """More than a page of servers, keys and snapshots that are none of our business.

        Returns their (kind, id) so a test can prove every one of them survived.
        """
        seeded: set[tuple[str, int]] = set()
        for index in range(count):
            labels = {"team": "other", "index": str(index)}
            seeded.add(("server", self.add_server(f"unrelated-{index}", labels)))
            seeded.add(("ssh_key", self.add_ssh_key(f"unrelated-{index}", labels)))
            seeded.add(("image", self.add_snapshot(labels, description=f"unrelated {index}")))
        return seeded

    def surviving(self, seeded: set[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which of ``seeded`` still exist."""
        tables = {
            "server": self.state.servers,
            "ssh_key": self.state.ssh_keys,
            "image": self.state.images,
        }
        return {(kind, item_id) for kind, item_id in seeded if item_id in tables[kind]}

    def _action(self, command: str, resource: tuple[str, int], **kwargs: Any) -> Action:
        action = Action(
            id=next(self._ids),
            command=command,
            resources=[{"id": resource[1], "type": resource[0]}],
            polls_left=self.action_polls,
            **kwargs,
        )
        self.state.actions[action.id] = action
        if action.polls_left <= 0:
            self._finish(action)
        return action

    def _finish(self, action: Action) -> None:
        if action.on_success is not None and not action.fail:
            callback, action.on_success = action.on_success, None
            callback()

    def _image_json(
        self, image_id: int, description: str, labels: dict[str, str], disk: float
    ) -> dict[str, Any]:
        return {
            "id": image_id,
            "type": "snapshot",
            "status": "available",
            "name": None,
            "description": description,
            "image_size": 0.4,
            "disk_size": disk,
            "created": NOW,
            "created_from": None,
            "bound_to": None,
            "os_flavor": "unknown",
            "os_version": None,
            "rapid_deploy": False,
            "protection": {"delete": False},
            "deprecated": None,
            "deleted": None,
            "labels": dict(labels),
            "architecture": "x86",
        }

    def _server_json(self, server: dict[str, Any]) -> dict[str, Any]:
        server_type = SERVER_TYPES[server["server_type"]]
        # Builders answer SSH on loopback: the real sshd plays every rescue system.
        ipv4 = server.get("public_ipv4", "127.0.0.1")
        return {
            "id": server["id"],
            "name": server["name"],
            "status": server["status"],
            "created": server["created"],
            "public_net": {
                "ipv4": {"id": 1, "ip": ipv4, "blocked": False, "dns_ptr": "localhost"}
                if ipv4
                else None,
                "ipv6": None,
                "floating_ips": [],
                "firewalls": [],
            },
            "private_net": [
                {
                    "network": network_id,
                    "ip": ip,
                    "alias_ips": [],
                    "mac_address": "86:00:00:00:00:01",
                }
                for network_id, ip in (server.get("private_net") or {}).items()
            ],
            "server_type": _server_type_json(
                server["server_type"],
                server_type,
                self.orderable[server["server_type"]],
                server["server_type"] in self.retiring,
            ),
            "datacenter": None,
            "image": None,
            "iso": None,
            "rescue_enabled": server["rescue_enabled"],
            "locked": False,
            "backup_window": None,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 0,
            "protection": {"delete": False, "rebuild": False},
            "labels": server["labels"],
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": server_type["disk"],
            "placement_group": None,
        }

    # ---- HTTP ----------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PUT(self) -> None:
                self._dispatch("PUT")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

            def _dispatch(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                path, _, query = self.path.partition("?")
                params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
                params = {key: _unquote(value) for key, value in params.items()}
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                with emulator._lock:
                    emulator.state.requests.append((method, path))
                    status, payload = emulator._route(method, path, params, body, token)
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _route(
        self, method: str, path: str, params: dict[str, str], body: dict[str, Any], token: str
    ) -> tuple[int, Any]:
        if token not in self.valid_tokens:
            return _error(401, "unauthorized", "unable to authenticate")
        if self.faults.rate_limited_requests > 0:
            self.faults.rate_limited_requests -= 1
            return _error(429, "rate_limit_exceeded", "limit of 3600 requests per hour reached")
        parts = path.removeprefix("/v1/").split("/")
        handler = getattr(self, f"_{method.lower()}_{parts[0]}", None)
        if handler is None:
            return _error(404, "not_found", f"no route {method} {path}")
        result: tuple[int, Any] = handler(parts[1:], params, body)
        return result

    # actions
    def _get_actions(self, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        action = self.state.actions.get(int(parts[0]))
        if action is None:
            return _error(404, "not_found", "action not found")
        if action.polls_left > 0:
            action.polls_left -= 1
            if action.polls_left == 0:
                self._finish(action)
        return 200, {"action": action.as_json()}

    # server types
    def _get_server_types(
        self, parts: list[str], params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        items = [
            _server_type_json(name, spec, self.orderable[name], name in self.retiring)
            for name, spec in SERVER_TYPES.items()
            if params.get("name") in (None, name)
        ]
        return 200, self._page("server_types", items, params)

    # ssh keys
    def _post_ssh_keys(
        self, parts: list[str], params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        key_id = next(self._ids)
        key = {
            "id": key_id,
            "name": body["name"],
            "fingerprint": hashlib.md5(body["public_key"].encode()).hexdigest(),
            "public_key": body["public_key"],
            "labels": body.get("labels") or {},
            "created": NOW,
        }
        self.state.ssh_keys[key_id] = key
        return 201, {"ssh_key": key}

    def _get_ssh_keys(self, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        items = _select(self.state.ssh_keys.values(), params.get("label_selector"))
        return 200, self._page("ssh_keys", items, params)

    def _delete_ssh_keys(
        self, parts: list[str], params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if self.state.ssh_keys.pop(int(parts[0]), None) is None:
            return _error(404, "not_found", "ssh key not found")
        return 204, None

    # servers
    def _post_servers(self, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        if parts:
            return self._server_action(int(parts[0]), parts[2], body)
        if self.faults.server_create_status:
            return _error(self.faults.server_create_status, "server_error", "internal error")
        if body["server_type"] not in SERVER_TYPES:
            return _error(422, "invalid_input", "server type not found")
        server_id = next(self._ids)
        server = {
            "id": server_id,
            "name": body["name"],
            "server_type": body["server_type"],
            "status": "running" if body.get("start_after_create", True) else "off",
            "rescue_enabled": False,
            "labels": body.get("labels") or {},
            "created": NOW,
            "location": body.get("location"),
        }
        self.state.servers[server_id] = server
        self.state.peak_servers = max(self.state.peak_servers, len(self.state.servers))
        action = self._action("create_server", ("server", server_id))
        return 201, {
            "server": self._server_json(server),
            "action": action.as_json(),
            "next_actions": [],
            "root_password": None,
        }

    def _get_servers(self, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        if parts:
            server = self.state.servers.get(int(parts[0]))
            if server is None:
                return _error(404, "not_found", "server not found")
            return 200, {"server": self._server_json(server)}
        items = [
            self._server_json(server)
            for server in _select(self.state.servers.values(), params.get("label_selector"))
        ]
        return 200, self._page("servers", items, params)

    def _delete_servers(
        self, parts: list[str], params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        server_id = int(parts[0])
        if server_id not in self.state.servers:
            return _error(404, "not_found", "server not found")
        if self.faults.server_delete_failures > 0:
            self.faults.server_delete_failures -= 1
            return _error(500, "server_error", "could not delete server")
        del self.state.servers[server_id]
        return 200, {"action": self._action("delete_server", ("server", server_id)).as_json()}

    def _server_action(self, server_id: int, command: str, body: Any) -> tuple[int, Any]:
        server = self.state.servers.get(server_id)
        if server is None:
            return _error(404, "not_found", "server not found")
        running = [
            a
            for a in self.state.actions.values()
            if a.polls_left > 0 and a.resources[0]["id"] == server_id
        ]
        if running:
            return _error(423, "locked", "server is locked by a running action")
        if command == "enable_rescue":

            def rescue() -> None:
                server["rescue_enabled"] = True
                if not self.faults.rescue_skips_key:
                    server["rescue_keys"] = [
                        self.state.ssh_keys[int(k)]["public_key"] for k in body.get("ssh_keys", [])
                    ]
                # One sshd plays every server's rescue system: it takes all their keys.
                self.authorized_keys.write_text(
                    "".join(
                        f"{key}\n"
                        for each in self.state.servers.values()
                        for key in each.get("rescue_keys", [])
                    )
                )

            action = self._action(
                "enable_rescue",
                ("server", server_id),
                fail=self.faults.rescue_action_fails,
                on_success=rescue,
            )
            return 201, {"action": action.as_json(), "root_password": "not-used"}
        if command == "poweron":
            action = self._action(
                "start_server",
                ("server", server_id),
                on_success=lambda: server.update(status="running"),
            )
            return 201, {"action": action.as_json()}
        if command in {"poweroff", "shutdown"}:

            def off() -> None:
                if not self.faults.power_off_never_off:
                    server["status"] = "off"

            action = self._action("stop_server", ("server", server_id), on_success=off)
            return 201, {"action": action.as_json()}
        if command == "create_image":
            image_id = next(self._ids)
            disk = float(SERVER_TYPES[server["server_type"]]["disk"])
            image = self._image_json(
                image_id, body.get("description", ""), body.get("labels") or {}, disk
            )
            image["status"] = "creating"
            self.state.images[image_id] = image
            fail = self.faults.snapshot_action_fails

            def ready() -> None:
                image["status"] = "available"

            action = self._action(
                "create_image", ("server", server_id), fail=fail, on_success=ready
            )
            if fail:
                action.on_success = None
                self.state.images.pop(image_id)
            return 201, {"image": image, "action": action.as_json()}
        return _error(404, "not_found", f"unknown server action {command}")

    # images
    def _get_images(self, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        if parts:
            image = self.state.images.get(int(parts[0]))
            if image is None:
                return _error(404, "not_found", "image not found")
            return 200, {"image": image}
        items = _select(self.state.images.values(), params.get("label_selector"))
        return 200, self._page("images", items, params)

    def _put_images(self, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        image = self.state.images.get(int(parts[0]))
        if image is None:
            return _error(404, "not_found", "image not found")
        if "description" in body:
            image["description"] = body["description"]
        if "labels" in body:
            image["labels"] = dict(body["labels"])
        return 200, {"image": image}

    def _delete_images(
        self, parts: list[str], params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if self.state.images.pop(int(parts[0]), None) is None:
            return _error(404, "not_found", "image not found")
        return 204, None

    def _page(self, name: str, items: list[Any], params: dict[str, str]) -> dict[str, Any]:
        per_page = int(params.get("per_page", self.page_size))
        page = int(params.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(items) // per_page))
        return {
            name: chunk,
            "meta": {
                "pagination": {
                    "page": page,
                    "per_page": per_page,
                    "previous_page": page - 1 if page > 1 else None,
                    "next_page": page + 1 if page < last else None,
                    "last_page": last,
                    "total_entries": len(items),
                }
            },
        }


def _server_type_json(
    name: str, spec: dict[str, Any], orderable: set[str], retiring: bool
) -> dict[str, Any]:
    deprecation = (
        {"announced": NOW, "unavailable_after": "2099-01-01T00:00:00+00:00"} if retiring else None
    )
    return {
        "id": abs(hash(name)) % 1000,
        "name": name,
        "description": name.upper(),
        "cores": spec["cores"],
        "memory": spec["memory"],
        "disk": spec["disk"],
        "prices": [
            {
                "location": location,
                "price_hourly": {"net": "0.0050", "gross": "0.0060"},
                "price_monthly": {"net": "3.0000", "gross": "3.5700"},
                "included_traffic": 21990232555520,
                "price_per_tb_traffic": {"net": "1.0000", "gross": "1.1900"},
            }
            for location in sorted(orderable)
        ],
        "storage_type": "local",
        "cpu_type": "shared",
        "architecture": spec["architecture"],
        "deprecated": retiring,
        "deprecation": deprecation,
        "locations": [
            {
                "id": LOCATIONS[location][0],
                "name": location,
                "deprecation": deprecation,
                "available": location in orderable,
                "recommended": location in orderable,
            }
            for location in LOCATIONS
        ],
    }


def _error(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message, "details": {}}}


def _unquote(value: str) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(value)


def _select(items: Any, selector: str | None) -> list[dict[str, Any]]:
    """Label selectors as Hetzner supports them: ``k``, ``k=v``, ``k!=v``, comma = and."""
    chosen = []
    for item in items:
        labels = item.get("labels") or {}
        if selector is None or all(_matches(labels, term) for term in selector.split(",")):
            chosen.append(item)
    return chosen


def _matches(labels: dict[str, str], term: str) -> bool:
    if "!=" in term:
        key, value = term.split("!=", 1)
        return labels.get(key) != value
    if "=" in term:
        key, value = term.split("=", 1)
        return labels.get(key) == value
    return term.removeprefix("!") not in labels if term.startswith("!") else term in labels


class ImageFactory(_LoopbackHttpServer):
    """Serves ``/image/{schematic}/{version}/hcloud-{arch}.raw.xz`` and ``POST /schematics``."""

    def __init__(self, raw_image: bytes, corrupt: bool = False) -> None:
        self.raw_image = raw_image
        # The fastest preset: `xz -d` reads any, and big benchmark images compress in seconds.
        self.compressed = lzma.compress(raw_image, format=lzma.FORMAT_XZ, preset=0)
        if corrupt:
            self.compressed = self.compressed[: len(self.compressed) // 2] + b"garbage"
        self.known_schematics: set[str] = set()
        self.downloads: list[str] = []
        factory = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                schematic_id = hashlib.sha256(body).hexdigest()
                factory.known_schematics.add(schematic_id)
                self._send(201, json.dumps({"id": schematic_id}).encode())

            def do_GET(self) -> None:
                match = re.fullmatch(
                    r"/image/([0-9a-f]{64})/(v[\d.]+)/hcloud-(amd64|arm64)\.raw\.xz", self.path
                )
                if match is None or match.group(1) not in factory.known_schematics:
                    self._send(404, b"not found")
                    return
                factory.downloads.append(self.path)
                self._send(200, factory.compressed)

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.base_url


def generated_raw_image(size: int = 3 * 1024 * 1024, seed: int = 11) -> bytes:
    """A disk image with long zero runs and some random blocks, like a real raw image."""
    import random

    rng = random.Random(seed)
    chunks: Iterator[bytes] = (
        rng.randbytes(64 * 1024) if index % 5 == 0 else bytes(64 * 1024)
        for index in range(size // (64 * 1024))
    )
    return b"".join(chunks)


SSHD = Path("/usr/sbin/sshd")


class RescueSshd:
    """A real OpenSSH server on a free loopback port, configured in ``home``.

    The emulator writes each rescue key into ``authorized_keys``, as Hetzner's rescue
    system would accept it.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.authorized_keys = home / "authorized_keys"
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> RescueSshd:
        if not SSHD.exists():
            raise RuntimeError("openssh-server is not installed: `make setup` installs it")
        self.home.mkdir(parents=True, exist_ok=True)
        host_key = self.home / "host_ed25519"
        host_key.write_bytes(
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
        )
        host_key.chmod(0o600)
        self.authorized_keys.write_text("")
        config = self.home / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    f"PidFile {self.home / 'sshd.pid'}",
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self._process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"sshd did not start: {stderr}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not listen on 127.0.0.1:{self.port} within {timeout}s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
