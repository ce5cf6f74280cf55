"""A STAND-IN for the Hetzner Cloud API: an emulator, and an API that never answers.

The emulator is a stdlib HTTP server on 127.0.0.1 that speaks enough of the Hetzner Cloud API
for the official ``hcloud`` library: actions that run for a while and finish, locks
(``423 locked`` while an action runs), unique names (``409 uniqueness_error``), the error
envelope, label selectors, pagination, rate limits and real ``created`` timestamps, plus fault
injection per step, including answers lost after the request took effect. Networks and their
subnets behave as the public API documents them: a subnet with servers attached cannot be
deleted, a deleted network detaches its servers. What the emulated project holds, its catalogue
and its faults are in ``hetzner_state.py``. Servers report 127.0.0.1 as their public IPv4 so a
real OpenSSH server on loopback (``rescue_sshd.py``) plays the rescue system. ``SilentApi``
accepts connections and never answers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json
import socket
import threading
import time
import urllib.parse
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Self

from tests.stand_ins.hetzner_state import (
    LOCATIONS,
    SERVER_TYPES,
    SYSTEM_IMAGES,
    Action,
    Faults,
    HetznerState,
    now_iso,
)
from tests.stand_ins.loopback import Answer, LoopbackServer, answering

#: The token the emulator accepts: 64 characters, as Hetzner Cloud tokens are (the hcloud
#: provider refuses any other length, and so does the stack config).
TEST_TOKEN = "test-token-" + "0" * 53


class HetznerEmulator(LoopbackServer):
    """Start with ``start()``; ``endpoint`` is the API base URL for ``hcloud.Client``."""

    def __init__(
        self,
        authorized_keys: Path,
        action_seconds: float = 0.02,
        page_size: int = 2,
        token: str = TEST_TOKEN,
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
        #: How long actions run, per command (``create_image``, ``start_server``, ...). A
        #: deleted server vanishes at once unless ``delete_server`` is given here: then it
        #: stays ``deleting`` until its delete action has run.
        self.action_seconds: dict[str, float] = {}
        #: The create_image action of each snapshot, by image id.
        self._snapshot_actions: dict[int, Action] = {}
        self.default_action_seconds = action_seconds
        self.page_size = page_size
        self._ids = itertools.count(100)
        self._lock = threading.Lock()
        #: The query of the request being answered, repeated keys kept (``?id=1&id=2``).
        self._query: dict[str, list[str]] = {}
        super().__init__(self._handler())

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/v1"

    # ---- state helpers -------------------------------------------------------------
    def add_snapshot(
        self, labels: dict[str, str], description: str = "seed", created: str | None = None
    ) -> int:
        image_id = next(self._ids)
        self.state.images[image_id] = self._image_json(image_id, description, labels, 40.0)
        self.state.images[image_id]["created"] = created or now_iso()
        return image_id

    def pass_time(self, by: timedelta) -> None:
        """Make everything that exists ``by`` older, as if that much time had passed."""
        for table in (self.state.servers, self.state.ssh_keys, self.state.images):
            for item in table.values():
                created = datetime.fromisoformat(item["created"]) - by
                item["created"] = created.isoformat()

    def builder_leftovers(self) -> dict[str, list[int]]:
        """Servers, keys and snapshots that still carry a builder label."""
        tables = {
            "servers": self.state.servers,
            "ssh_keys": self.state.ssh_keys,
            "images": self.state.images,
        }
        return {
            kind: [
                item_id
                for item_id, item in table.items()
                if "hcloud-talos-autoscaler/builder" in (item.get("labels") or {})
            ]
            for kind, table in tables.items()
        }

    def add_server(
        self,
        name: str,
        labels: dict[str, str],
        *,
        server_type: str = "cx23",
        status: str = "running",
        private_ips: dict[int, str] | None = None,
        public_ipv4: str | None = "127.0.0.1",
        created: str | None = None,
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
            "created": created or now_iso(),
            "location": "fsn1",
            "private_net": dict(private_ips or {}),
            "public_ipv4": public_ipv4,
        }
        return server_id

    def add_ssh_key(self, name: str, labels: dict[str, str], created: str | None = None) -> int:
        key_id = next(self._ids)
        public_key = f"ssh-ed25519 AAAA{key_id} seeded"
        self.state.ssh_keys[key_id] = {
            "id": key_id,
            "name": name,
            "fingerprint": hashlib.md5(public_key.encode()).hexdigest(),
            "public_key": public_key,
            "labels": dict(labels),
            "created": created or now_iso(),
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
            seconds=self.action_seconds.get(command, self.default_action_seconds),
            **kwargs,
        )
        self.state.actions[action.id] = action
        self._advance()
        return action

    def _advance(self) -> None:
        """Let the effects of every action that has ended land."""
        for action in self.state.actions.values():
            if action.finished and (action.on_success or action.on_failure):
                callback = action.on_failure if action.fail else action.on_success
                action.on_success = action.on_failure = None
                if callback is not None:
                    callback()

    def _running_action_on(self, server_id: int) -> bool:
        return any(
            not action.finished and action.resources[0]["id"] == server_id
            for action in self.state.actions.values()
        )

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
            "created": now_iso(),
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

    def add_network(self, name: str, ip_range: str, labels: dict[str, str] | None = None) -> int:
        """A network that exists already (another project's, or a user's), without subnets."""
        network_id = next(self._ids)
        self.state.networks[network_id] = {
            "id": network_id,
            "name": name,
            "ip_range": ip_range,
            "subnets": [],
            "routes": [],
            "labels": dict(labels or {}),
            "protection": {"delete": False},
            "expose_routes_to_vswitch": False,
            "created": now_iso(),
        }
        return network_id

    def _network_json(self, network: dict[str, Any]) -> dict[str, Any]:
        attached = [
            server_id
            for server_id, server in self.state.servers.items()
            if network["id"] in (server.get("private_net") or {})
        ]
        return {
            **network,
            "subnets": [dict(subnet) for subnet in network["subnets"]],
            "servers": attached,
            "load_balancers": [],
        }

    # ---- HTTP ----------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return answering(self._answer, ("GET", "POST", "PUT", "DELETE"))

    def _answer(self, request: BaseHTTPRequestHandler, method: str, body: bytes) -> Answer:
        path, _, query = request.path.partition("?")
        params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        params = {key: _unquote(value) for key, value in params.items()}
        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        with self._lock:
            self._query = urllib.parse.parse_qs(query)
            self.state.requests.append((method, path))
            self.state.request_times.append(time.monotonic())
            status, payload = self._route(
                method, path, params, json.loads(body) if body else {}, token
            )
            lost = self._lose_answer(method, path, status)
        if lost == "gateway":
            return 504, "text/html", b"<html><body><h1>504 Gateway Time-out</h1></body></html>"
        if lost == "read timeout":
            time.sleep(self.faults.lost_answer_delay)
        data = json.dumps(payload).encode() if payload is not None else b""
        return status, "application/json", data

    def _lose_answer(self, method: str, path: str, status: int) -> str | None:
        """The mode of a lost answer for this (successful) request, consumed once."""
        name = f"{method} {path.removeprefix('/v1')}"
        if path.endswith("/actions/create_image"):
            name = "POST create_image"
        if status >= 300 or name not in self.faults.lost_answers:
            return None
        return self.faults.lost_answers.pop(name)

    def _route(
        self, method: str, path: str, params: dict[str, str], body: dict[str, Any], token: str
    ) -> tuple[int, Any]:
        self._advance()
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
        if not parts:
            return self._list_actions(params)
        action = self.state.actions.get(int(parts[0]))
        if action is None:
            return _error(404, "not_found", "action not found")
        return 200, {"action": action.as_json()}

    def _list_actions(self, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /actions?id=1&id=2&status=running&sort=status&sort=id``: how hcloud-go (the
        real hcloud provider) waits for actions. Repeated ``id``/``status``/``sort`` values
        (API reference, "Get multiple Actions")."""
        ids = {int(value) for value in self._query.get("id", [])}
        statuses = set(self._query.get("status", []))
        items = [
            action.as_json()
            for action in self.state.actions.values()
            if (not ids or action.id in ids)
        ]
        items = [item for item in items if not statuses or item["status"] in statuses]
        for key in reversed(self._query.get("sort", ["id"])):
            field_name, _, order = key.partition(":")
            if field_name not in ("id", "command", "status", "started", "finished", "progress"):
                return _error(400, "invalid_input", f"invalid sort field {field_name}")
            items.sort(
                key=lambda item: str(item[field_name]) if field_name != "id" else item["id"],
                reverse=order == "desc",
            )
        return 200, self._page("actions", items, params)

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
        fingerprint = hashlib.md5(body["public_key"].encode()).hexdigest()
        for existing in self.state.ssh_keys.values():
            if existing["name"] == body["name"]:
                return _error(409, "uniqueness_error", "SSH key with the same name already exists")
            if existing["fingerprint"] == fingerprint:
                return _error(
                    409, "uniqueness_error", "SSH key with the same fingerprint already exists"
                )
        key_id = next(self._ids)
        key = {
            "id": key_id,
            "name": body["name"],
            "fingerprint": fingerprint,
            "public_key": body["public_key"],
            "labels": body.get("labels") or {},
            "created": now_iso(),
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
        if any(server["name"] == body["name"] for server in self.state.servers.values()):
            return _error(409, "uniqueness_error", "server name is already used")
        architecture = SERVER_TYPES[body["server_type"]]["architecture"]
        image = body.get("image")
        by_name = SYSTEM_IMAGES.get((str(image), architecture))  # the API picks the type's arch
        known = {image_id: arch for (_, arch), image_id in SYSTEM_IMAGES.items()}
        if by_name is None and image not in known and image not in self.state.images:
            return _error(422, "invalid_input", "image not found")
        if image in known and known[image] != architecture:
            return _error(422, "invalid_input", "image architecture does not match server type")
        refusal = self._placement_refusal(body)
        if refusal is not None:
            return refusal
        self.state.server_images.append(image)
        server_id = next(self._ids)
        server = {
            "id": server_id,
            "name": body["name"],
            "server_type": body["server_type"],
            "status": "running" if body.get("start_after_create", True) else "off",
            "rescue_enabled": False,
            "labels": body.get("labels") or {},
            "created": now_iso(),
            "location": body.get("location"),
        }
        self.state.servers[server_id] = server
        self.state.peak_servers = max(self.state.peak_servers, len(self.state.servers))
        action = self._action("create_server", ("server", server_id), **self._placement(body))
        return 201, {
            "server": self._server_json(server),
            "action": action.as_json(),
            "next_actions": [],
            "root_password": None,
        }

    def _placement_refusal(self, body: dict[str, Any]) -> tuple[int, Any] | None:
        """What Hetzner answers a create it cannot place (capacity, type not sold there)."""
        where = (body["server_type"], body.get("location") or "")
        code = self.faults.refused_placements.get(where)
        if code is not None:
            return _error(503 if code == "resource_unavailable" else 422, code, "no capacity")
        if where[1] and where[1] not in self.orderable.get(where[0], set()):
            return _error(422, "invalid_input", "unsupported location for server type")
        return None

    def _placement(self, body: dict[str, Any]) -> dict[str, Any]:
        """The create action's outcome: a failed placement, or success."""
        if (body["server_type"], body.get("location") or "") in self.faults.failed_placements:
            return {"fail": True, "error_code": "placement_error"}
        return {}

    def finish_actions(self, command: str) -> None:
        """End every running action of ``command`` now (one started with a long duration)."""
        with self._lock:
            for action in self.state.actions.values():
                if action.command == command and not action.finished:
                    action.seconds = time.monotonic() - action.started

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
        if self._running_action_on(server_id):
            return _error(423, "locked", "cannot perform operation because resource is locked")
        if self.faults.server_delete_forbidden:
            return _error(403, "forbidden", "insufficient permissions for this request")
        if self.faults.server_delete_failures > 0:
            self.faults.server_delete_failures -= 1
            return _error(500, "server_error", "could not delete server")
        if "delete_server" not in self.action_seconds:
            del self.state.servers[server_id]  # gone at once, as the builder tests expect
            return 200, {"action": self._action("delete_server", ("server", server_id)).as_json()}
        # As at Hetzner: the server stays, ``deleting``, until its delete action has run.
        self.state.servers[server_id]["status"] = "deleting"
        action = self._action(
            "delete_server",
            ("server", server_id),
            on_success=lambda: self.state.servers.pop(server_id, None),
        )
        return 200, {"action": action.as_json()}

    def _server_action(self, server_id: int, command: str, body: Any) -> tuple[int, Any]:
        server = self.state.servers.get(server_id)
        if server is None:
            return _error(404, "not_found", "server not found")
        if self._running_action_on(server_id):
            return _error(423, "locked", "cannot perform operation because resource is locked")
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

            def ready() -> None:
                image["status"] = "available"

            def discard() -> None:  # a failed snapshot does not stay
                self.state.images.pop(image_id, None)

            action = self._action(
                "create_image",
                ("server", server_id),
                fail=self.faults.snapshot_action_fails,
                on_success=ready,
                on_failure=discard,
            )
            self._snapshot_actions[image_id] = action
            if self.faults.snapshot_runs_until_deleted:
                action.seconds = float("inf")
            return 201, {"image": dict(image), "action": action.as_json()}
        return _error(404, "not_found", f"unknown server action {command}")

    # networks
    def _post_networks(
        self, parts: list[str], params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if parts:
            return self._network_action(int(parts[0]), parts[2], body)
        if not body.get("name"):
            return _error(400, "invalid_input", "invalid input in field 'name'")
        ip_range = _ip_network(body.get("ip_range"))
        if ip_range is None:
            return _error(400, "invalid_input", "invalid input in field 'ip_range'")
        if any(network["name"] == body["name"] for network in self.state.networks.values()):
            return _error(409, "uniqueness_error", "network name is already used")
        network_id = self.add_network(body["name"], str(ip_range), body.get("labels"))
        network = self.state.networks[network_id]
        network["expose_routes_to_vswitch"] = bool(body.get("expose_routes_to_vswitch"))
        for subnet in body.get("subnets") or []:
            problem = self._subnet_problem(network, subnet)
            if problem is not None:
                del self.state.networks[network_id]
                return problem
            network["subnets"].append(_subnet_json(network, subnet))
        return 201, {"network": self._network_json(network)}

    def _get_networks(self, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        if parts:
            network = self.state.networks.get(int(parts[0]))
            if network is None:
                return _error(404, "not_found", "network not found")
            return 200, {"network": self._network_json(network)}
        items = [
            self._network_json(network)
            for network in _select(self.state.networks.values(), params.get("label_selector"))
            if params.get("name") in (None, network["name"])
        ]
        return 200, self._page("networks", items, params)

    def _put_networks(self, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        network = self.state.networks.get(int(parts[0]))
        if network is None:
            return _error(404, "not_found", "network not found")
        if "name" in body:
            if any(
                other["name"] == body["name"] and other is not network
                for other in self.state.networks.values()
            ):
                return _error(409, "uniqueness_error", "network name is already used")
            network["name"] = body["name"]
        if "labels" in body:
            network["labels"] = dict(body["labels"])
        if "expose_routes_to_vswitch" in body:
            network["expose_routes_to_vswitch"] = bool(body["expose_routes_to_vswitch"])
        return 200, {"network": self._network_json(network)}

    def _delete_networks(
        self, parts: list[str], params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        network_id = int(parts[0])
        if network_id not in self.state.networks:
            return _error(404, "not_found", "network not found")
        if self._running_action_on(network_id):
            return _error(409, "conflict", "network changed during the request, please retry")
        # "Attached resources will be detached automatically" (API reference, Delete a Network).
        for server in self.state.servers.values():
            (server.get("private_net") or {}).pop(network_id, None)
        del self.state.networks[network_id]
        return 204, None

    # placement groups (API reference, "Placement Groups": type spread only, names unique)
    def _post_placement_groups(
        self, parts: list[str], params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if not body.get("name"):
            return _error(400, "invalid_input", "invalid input in field 'name'")
        if body.get("type") != "spread":
            return _error(400, "invalid_input", "invalid input in field 'type'")
        groups = self.state.placement_groups.values()
        if any(group["name"] == body["name"] for group in groups):
            return _error(409, "uniqueness_error", "placement group name is already used")
        group_id = next(self._ids)
        self.state.placement_groups[group_id] = {
            "id": group_id,
            "name": body["name"],
            "type": body["type"],
            "labels": dict(body.get("labels") or {}),
            "created": now_iso(),
        }
        return 201, {"placement_group": self._placement_group_json(group_id)}

    def _get_placement_groups(
        self, parts: list[str], params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if parts:
            if int(parts[0]) not in self.state.placement_groups:
                return _error(404, "not_found", "placement group not found")
            return 200, {"placement_group": self._placement_group_json(int(parts[0]))}
        items = [
            self._placement_group_json(group["id"])
            for group in _select(self.state.placement_groups.values(), params.get("label_selector"))
            if params.get("name") in (None, group["name"])
        ]
        return 200, self._page("placement_groups", items, params)

    def _put_placement_groups(
        self, parts: list[str], params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        group = self.state.placement_groups.get(int(parts[0]))
        if group is None:
            return _error(404, "not_found", "placement group not found")
        if "name" in body:
            group["name"] = body["name"]
        if "labels" in body:
            group["labels"] = dict(body["labels"])
        return 200, {"placement_group": self._placement_group_json(group["id"])}

    def _delete_placement_groups(
        self, parts: list[str], params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if self.state.placement_groups.pop(int(parts[0]), None) is None:
            return _error(404, "not_found", "placement group not found")
        return 204, None

    def _placement_group_json(self, group_id: int) -> dict[str, Any]:
        members = [
            server_id
            for server_id, server in self.state.servers.items()
            if server.get("placement_group") == group_id
        ]
        return {**self.state.placement_groups[group_id], "servers": members}

    def _network_action(self, network_id: int, command: str, body: Any) -> tuple[int, Any]:
        network = self.state.networks.get(network_id)
        if network is None:
            return _error(404, "not_found", "network not found")
        if self._running_action_on(network_id):
            # "If a change is currently being performed on this Network, a error response
            # with code conflict will be returned" (add_subnet, delete_subnet).
            return _error(409, "conflict", "network changed during the request, please retry")
        if command == "add_subnet":
            problem = self._subnet_problem(network, body)
            if problem is not None:
                return problem
            network["subnets"].append(_subnet_json(network, body))
            return 201, {"action": self._action("add_subnet", ("network", network_id)).as_json()}
        if command == "delete_subnet":
            ip_range = _ip_network(body.get("ip_range"))
            subnet = next(
                (s for s in network["subnets"] if _ip_network(s["ip_range"]) == ip_range), None
            )
            if subnet is None:
                return _error(404, "not_found", "subnet not found")
            if self._attached_in(network_id, ip_range):
                # The API reference: "Subnets containing attached resources can not be
                # deleted". The text is not documented; the Terraform provider (#923) matches
                # this phrase of the service_error it answers.
                return _error(422, "service_error", "network has attached resources")
            network["subnets"].remove(subnet)
            action = self._action("delete_subnet", ("network", network_id))
            return 201, {"action": action.as_json()}
        return _error(404, "not_found", f"unknown network action {command}")

    def _subnet_problem(
        self, network: dict[str, Any], subnet: dict[str, Any]
    ) -> tuple[int, Any] | None:
        """Why the API refuses ``subnet`` in ``network``, or None."""
        if subnet.get("type") not in ("cloud", "server", "vswitch"):
            return _error(400, "invalid_input", "invalid input in field 'type'")
        if subnet.get("network_zone") not in {zone for _, zone in LOCATIONS.values()}:
            return _error(400, "invalid_input", "invalid input in field 'network_zone'")
        if subnet["type"] == "vswitch" and not subnet.get("vswitch_id"):
            return _error(400, "invalid_input", "vswitch_id is required for vswitch subnets")
        ip_range = _ip_network(subnet.get("ip_range"))
        parent = _ip_network(network["ip_range"])
        if ip_range is None or parent is None or not ip_range.subnet_of(parent):
            return _error(
                400, "invalid_input", "ip_range must be a subnet of the network's ip_range"
            )
        for existing in network["subnets"]:
            other = _ip_network(existing["ip_range"])
            if other is not None and ip_range.overlaps(other):
                return _error(400, "invalid_input", "ip_range overlaps with an existing subnet")
        return None

    def _attached_in(self, network_id: int, ip_range: Any) -> bool:
        for server in self.state.servers.values():
            address = (server.get("private_net") or {}).get(network_id)
            if address is not None and ipaddress.ip_address(address) in ip_range:
                return True
        return False

    # images
    def _get_images(self, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        if parts:
            image = self.state.images.get(int(parts[0]))
            if image is None:
                return _error(404, "not_found", "image not found")
            return 200, {"image": image}
        items = [
            image
            for image in _select(
                [*self.state.images.values(), *map(_system_image, SYSTEM_IMAGES.items())],
                params.get("label_selector"),
            )
            if params.get("type") in (None, image["type"])
            and params.get("name") in (None, image["name"])
            and params.get("architecture") in (None, image["architecture"])
        ]
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
        image = self.state.images.get(int(parts[0]))
        if image is None:
            return _error(404, "not_found", "image not found")
        if image["status"] == "creating":
            action = self._snapshot_actions.get(int(parts[0]))
            if self.faults.snapshot_runs_until_deleted and action is not None:
                action.seconds = time.monotonic() - action.started  # done from now on
            return _error(423, "locked", "cannot perform operation because resource is locked")
        del self.state.images[int(parts[0])]
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
        {"announced": now_iso(), "unavailable_after": "2099-01-01T00:00:00+00:00"}
        if retiring
        else None
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


def _ip_network(value: Any) -> ipaddress.IPv4Network | None:
    try:
        network = ipaddress.ip_network(str(value))
    except ValueError:
        return None
    return network if isinstance(network, ipaddress.IPv4Network) else None


def _subnet_json(network: dict[str, Any], subnet: dict[str, Any]) -> dict[str, Any]:
    """A subnet as the API shows it; the gateway is the network's first address, as in the
    API reference's examples (``10.0.0.1`` for a subnet ``10.0.1.0/24`` of ``10.0.0.0/16``)."""
    parent = ipaddress.ip_network(network["ip_range"])
    return {
        "type": subnet["type"],
        "ip_range": str(ipaddress.ip_network(subnet["ip_range"])),
        "network_zone": subnet["network_zone"],
        "gateway": str(next(parent.hosts())),
        "vswitch_id": subnet.get("vswitch_id") if subnet["type"] == "vswitch" else None,
    }


def _error(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message, "details": {}}}


def _unquote(value: str) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(value)


def _system_image(entry: tuple[tuple[str, str], int]) -> dict[str, Any]:
    (name, architecture), image_id = entry
    return {
        "id": image_id,
        "type": "system",
        "status": "available",
        "name": name,
        "description": name.replace("-", " ").title(),
        "image_size": None,
        "disk_size": 5.0,
        "created": "2024-04-25T00:00:00+00:00",
        "created_from": None,
        "bound_to": None,
        "os_flavor": "ubuntu",
        "os_version": name.partition("-")[2],
        "rapid_deploy": True,
        "protection": {"delete": False},
        "deprecated": None,
        "deleted": None,
        "labels": {},
        "architecture": architecture,
    }


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


class SilentApi:
    """A TCP port that accepts connections and never answers: an API that hangs."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._held: list[socket.socket] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.connections = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/v1"

    def start(self) -> Self:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stopping:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(connection)

    def stop(self) -> None:
        self._stopping = True
        self._socket.close()
        for connection in self._held:
            connection.close()
