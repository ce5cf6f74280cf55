"""What the Hetzner Cloud API emulator (``hetzner_api.py``) holds: the catalogue it lists
(locations, server types, system images), its actions, the project's resources, and the faults
a test injects per step."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def now_iso() -> str:
    """A timestamp as the API writes them (``2026-11-24T12:00:00+00:00``)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


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

#: System images by (name, architecture): one image per architecture, as Hetzner lists them.
SYSTEM_IMAGES: dict[tuple[str, str], int] = {
    ("ubuntu-24.04", "x86"): 161547269,
    ("ubuntu-24.04", "arm"): 161547270,
}


@dataclass
class Action:
    """Runs from ``started`` for ``seconds``; its effect (``on_success``) lands when it ends."""

    id: int
    command: str
    resources: list[dict[str, Any]]
    seconds: float
    fail: bool = False
    error_code: str = "action_failed"
    on_success: Any = None
    on_failure: Any = None
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=now_iso)

    @property
    def finished(self) -> bool:
        return time.monotonic() >= self.started + self.seconds

    def as_json(self) -> dict[str, Any]:
        finished = self.finished
        status = ("error" if self.fail else "success") if finished else "running"
        return {
            "id": self.id,
            "command": self.command,
            "status": status,
            "progress": 100 if finished else 50,
            "started": self.started_at,
            "finished": now_iso() if finished else None,
            "resources": self.resources,
            "error": {"code": self.error_code, "message": f"{self.command} failed"}
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
    #: Server deletes answer 403 ``forbidden``, as for a read-only token.
    server_delete_forbidden: bool = False
    rate_limited_requests: int = 0
    #: Requests (``POST /servers``, ``POST /ssh_keys``, ``POST create_image``) whose next
    #: answer is lost after the request took effect: ``"gateway"`` answers 504 from the
    #: proxy (an HTML page), ``"read timeout"`` answers only after ``lost_answer_delay``.
    lost_answers: dict[str, str] = field(default_factory=dict)
    lost_answer_delay: float = 1.0
    #: A snapshot is taken until the build asks to delete it: Hetzner refuses that delete
    #: (``locked``) and finishes the snapshot, so the next try succeeds. Tests of a build that
    #: stops mid-snapshot wait for the build's own request instead of racing a timer.
    snapshot_runs_until_deleted: bool = False
    #: (server type, location) -> the error code ``POST /servers`` answers there (no capacity).
    refused_placements: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (server type, location) whose server create is accepted, then its action fails with
    #: ``placement_error`` (Hetzner's asynchronous placement failure).
    failed_placements: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class HetznerState:
    servers: dict[int, dict[str, Any]] = field(default_factory=dict)
    ssh_keys: dict[int, dict[str, Any]] = field(default_factory=dict)
    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Networks as the API stores them (``subnets``); their ``servers`` come from the
    #: servers' ``private_net``.
    networks: dict[int, dict[str, Any]] = field(default_factory=dict)
    placement_groups: dict[int, dict[str, Any]] = field(default_factory=dict)
    actions: dict[int, Action] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: The ``image`` of each ``POST /servers`` (an id, or a name the API resolves).
    server_images: list[Any] = field(default_factory=list)
    #: When each request arrived (``time.monotonic()``).
    request_times: list[float] = field(default_factory=list)
    #: Most servers that existed at once (concurrent builds show as 2).
    peak_servers: int = 0
