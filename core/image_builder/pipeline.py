"""One Talos snapshot build, as the guide's step 1 does by hand, with guaranteed teardown.

remove stale builders of this scope -> temporary ed25519 key (in memory) ->
builder server (stopped) -> rescue with that key -> power on -> SSH -> stream the
Image Factory image through ``xz -d`` onto the disk -> read it back and compare
digests -> power off -> snapshot (labelled as a builder until verified) -> final
snapshot labels -> delete server and key.

Every wait is bounded (``Limits``). The server, key and any unfinished snapshot
carry this run's label and are deleted on every path (errors, Ctrl-C, SIGTERM),
found by that label so that resources a lost API answer never reported go too;
a teardown that fails is reported with what leaked and the cleanup command.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hcloud.images import BoundImage, Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import BoundServer
from hcloud.ssh_keys import BoundSSHKey

from core.config import WRITE_TIMEOUT_MINUTES
from core.hetzner import Architecture
from core.image_builder import rescue
from core.image_builder.api import ApiClient, describe, wait_for
from core.image_builder.builder_resources import (
    BUILDER_LABEL,
    CLEANUP_COMMAND,
    CLI_SCOPE,
    STALE_AFTER,
    Leftover,
    builder_labels,
    find,
    remove,
    remove_stale,
)
from core.validators import hetzner_label_problems
from core.waits import Interrupted, until

MANAGED_BY = "hcloud-talos-autoscaler"
BUILDER_BASE_IMAGE = "ubuntu-24.04"
#: Test-only: the tests point the build at a loopback sshd and a file instead of the
#: rescue system's port 22 and its disk. Read here only, never from stack config or state.
SSH_PORT_ENV = "HCLOUD_TALOS_TEST_SSH_PORT"
TARGET_DEVICE_ENV = "HCLOUD_TALOS_TEST_TARGET_DEVICE"
#: Time for the API calls between the bounded waits (a few dozen requests).
API_ALLOWANCE_SECONDS = 10 * 60

#: The API names architectures ``x86`` and ``arm``.
HETZNER_ARCHITECTURE: dict[Architecture, str] = {"amd64": "x86", "arm64": "arm"}

Log = Callable[[str], None]


@dataclass(frozen=True)
class Limits:
    """How long each wait of a build may take, in seconds."""

    #: Server create, rescue, power on and power off actions.
    action: float = 180.0
    ssh: float = 300.0
    #: The download is abandoned when it stays near zero this long.
    write_stall: float = 60.0
    #: The whole write and its read-back (``image.writeTimeout``); the factory may first
    #: have to generate the image.
    write: float = WRITE_TIMEOUT_MINUTES * 60.0
    power_off: float = 180.0
    snapshot: float = 40 * 60.0
    #: Deleting this run's resources, waiting while a running snapshot keeps them locked.
    teardown: float = 600.0
    #: Removing stale builders of this scope before the build.
    stale_sweep: float = 60.0

    def longest_build(self) -> float:
        """The most a build can take; builders older than ``STALE_AFTER`` are surely dead."""
        return (
            API_ALLOWANCE_SECONDS
            + self.stale_sweep
            + 4 * self.action
            + self.ssh
            + self.write
            + self.power_off
            + self.snapshot
            + self.teardown
        )


@dataclass(frozen=True)
class BuildRequest:
    """What to build and where, and whose build it is (``builder_scope``)."""

    talos_version: str
    schematic_id: str
    architecture: Architecture
    location: str
    server_type: str
    factory_url: str = "https://factory.talos.dev"
    extra_labels: dict[str, str] = field(default_factory=dict)
    must_fit_server_types: list[str] = field(default_factory=list)
    builder_scope: str = CLI_SCOPE
    limits: Limits = field(default_factory=Limits)
    ssh_port: int = field(default_factory=lambda: int(os.environ.get(SSH_PORT_ENV) or 22))
    target_device: str = field(
        default_factory=lambda: os.environ.get(TARGET_DEVICE_ENV) or "/dev/sda"
    )

    @property
    def image_url(self) -> str:
        return image_url(self)

    @property
    def description(self) -> str:
        return f"Talos {self.talos_version} {self.architecture} ({self.schematic_id[:12]})"


@dataclass(frozen=True)
class BuildResult:
    image_id: int
    architecture: Architecture
    labels: dict[str, str]
    description: str
    disk_size: float
    sha256: str
    timings: dict[str, float]


class BuildError(RuntimeError):
    """A build step failed (or teardown did); names the step, what teardown found, what leaked."""

    def __init__(
        self,
        step: str,
        detail: str,
        leaked: list[str] | None = None,
        removed: list[str] | None = None,
    ) -> None:
        self.step = step
        self.detail = detail
        self.leaked = leaked or []
        self.removed = removed or []
        message = f"image build failed at step {step!r}: {detail}"
        if self.removed:
            message += f"; teardown deleted {', '.join(self.removed)}"
        if self.leaked:
            message += (
                f"; teardown could not delete {', '.join(self.leaked)} (billed until removed): "
                f"run `{CLEANUP_COMMAND}`"
            )
        super().__init__(message)


class IntegrityError(RuntimeError):
    """The disk does not hold the image that was streamed onto it."""


class SnapshotIdentity(Protocol):
    """What a snapshot holds (a ``BuildRequest``, or the stack plan's ``SnapshotPlan``)."""

    @property
    def talos_version(self) -> str: ...
    @property
    def schematic_id(self) -> str: ...
    @property
    def architecture(self) -> Architecture: ...
    @property
    def factory_url(self) -> str: ...
    @property
    def extra_labels(self) -> dict[str, str]: ...


def image_url(request: SnapshotIdentity) -> str:
    """The Image Factory's raw image of this Talos release, schematic and architecture."""
    return (
        f"{request.factory_url.rstrip('/')}/image/{request.schematic_id}/"
        f"{request.talos_version}/hcloud-{request.architecture}.raw.xz"
    )


def snapshot_labels(request: SnapshotIdentity) -> dict[str, str]:
    """Labels that identify a finished snapshot: what it holds and who manages it."""
    labels = {
        "os": "talos",
        "talos-version": request.talos_version,
        "talos-schematic": request.schematic_id[:32],
        "arch": request.architecture,
        "managed-by": MANAGED_BY,
        **request.extra_labels,
    }
    check_labels(labels)
    return labels


def check_labels(labels: dict[str, str]) -> None:
    """Hetzner's label rules, checked before any call."""
    problems = hetzner_label_problems(labels)
    if problems:
        raise ValueError("; ".join(problems))


def build_image(client: ApiClient, request: BuildRequest, log: Log = lambda _: None) -> BuildResult:
    """Run one build; raises BuildError naming the failed step."""
    labels = snapshot_labels(request)
    limits = request.limits
    if limits.longest_build() >= STALE_AFTER.total_seconds():
        raise ValueError(
            f"these limits allow a build of {limits.longest_build() / 60:.0f} min, longer than "
            f"the {STALE_AFTER} after which builders count as leftovers: shorten the write limit"
        )
    run_id = secrets.token_hex(6)
    run_labels = builder_labels(run_id, request.builder_scope)
    check_labels(run_labels)
    timings: dict[str, float] = {}
    known: dict[str, Leftover] = {}
    #: Nothing of this run can exist before its first create request.
    created_anything = False
    step = "remove stale builders"
    started = time.monotonic()
    try:
        with _timed(timings, step):
            _, left = remove_stale(
                client,
                scope=request.builder_scope,
                older_than=STALE_AFTER,
                seconds=limits.stale_sweep,
                log=lambda line: log(f"[{run_id}] stale builder: {line}"),
            )
            if left:
                log(f"[{run_id}] could not remove stale builders {', '.join(map(str, left))}")

        step = "check server types"
        with _timed(timings, step):
            _check_disk_fits(client, request)

        step = "upload ssh key"
        with _timed(timings, step):
            private_key, public_key = rescue.ephemeral_key()
            created_anything = True
            ssh_key: BoundSSHKey = client.ssh_keys.create(
                name=f"talos-builder-{run_id}", public_key=public_key, labels=run_labels
            )
            known["ssh key"] = Leftover("ssh key", _id(ssh_key.id), ssh_key.name or "")
        log(f"[{run_id}] temporary ssh key {ssh_key.id}")

        step = "create server"
        with _timed(timings, step):
            created = client.servers.create(
                name=f"talos-builder-{request.architecture}-{run_id}",
                server_type=ServerType(name=request.server_type),
                image=Image(name=BUILDER_BASE_IMAGE),
                location=Location(name=request.location),
                ssh_keys=[ssh_key],
                start_after_create=False,
                labels=run_labels,
            )
            server: BoundServer = created.server
            known["server"] = Leftover("server", _id(server.id), server.name or "")
            if created.action is not None:
                wait_for(client, created.action, "the server to be created", limits.action)
        log(f"[{run_id}] builder server {server.id} ({request.server_type}, {request.location})")

        step = "enable rescue"
        with _timed(timings, step):
            # The API takes key IDs; the library's hint says str.
            rescue_mode = server.enable_rescue(type="linux64", ssh_keys=[ssh_key.id])  # type: ignore[list-item]
            wait_for(client, rescue_mode.action, "the rescue system", limits.action)

        step = "power on"
        with _timed(timings, step):
            wait_for(client, server.power_on(), "the server to start", limits.action)

        step = "wait for ssh"
        with _timed(timings, step):
            host = _public_ipv4(client.servers.get_by_id(_id(server.id)))
            ssh = rescue.connect(host, request.ssh_port, private_key, limits.ssh, client.poll)

        step = "write image"
        with _timed(timings, step), ssh:
            log(f"[{run_id}] writing {request.image_url} to {request.target_device}")
            written = rescue.write_image(
                ssh,
                request.image_url,
                request.target_device,
                stall_seconds=limits.write_stall,
                seconds=limits.write,
            )

        step = "verify image"
        if written.on_disk_sha256 != written.sha256:
            raise IntegrityError(
                f"the first {written.size} bytes of {request.target_device} have sha256 "
                f"{written.on_disk_sha256}, but the image written was {written.sha256}"
            )
        log(f"[{run_id}] disk holds the image: {written.size} bytes, sha256 {written.sha256}")

        step = "power off"
        with _timed(timings, step):
            wait_for(client, server.power_off(), "the power-off action", limits.action)
            _wait_until_off(client, _id(server.id), limits.power_off)

        step = "create snapshot"
        with _timed(timings, step):
            # Builder labels until verified: a build that stops early deletes it, and
            # no snapshot selector can pick a half-made image.
            snapshot = server.create_image(
                description=request.description, type="snapshot", labels=run_labels
            )
            known["snapshot"] = Leftover("snapshot", _id(snapshot.image.id), request.description)
            wait_for(client, snapshot.action, f"snapshot {snapshot.image.id}", limits.snapshot)
            image = client.images.get_by_id(_id(snapshot.image.id))
            if image.status != "available":
                raise RuntimeError(f"snapshot {image.id} is {image.status!r}, not available")

        step = "label snapshot"
        with _timed(timings, step):
            image = _relabel(client, image, labels)
        log(f"[{run_id}] snapshot {image.id} ready")
    except BaseException as error:
        detail = _detail(error)
        if not created_anything:
            raise BuildError(step, detail) from error
        removed_now, leaked = _teardown(client, run_id, list(known.values()), limits, log)
        raise BuildError(step, detail, leaked, removed_now) from error
    result = known.pop("snapshot")
    _, leaked = _teardown(client, run_id, list(known.values()), limits, log)
    if leaked:
        # The build fails, so Pulumi will not track the snapshot: delete it rather than
        # leave a finished, selectable image nobody manages. The next `up` builds again.
        removed, _ = remove(client, [result], limits.teardown, log)
        fate = "deleted again" if removed else "left in place (delete it by hand)"
        raise BuildError("teardown", f"the builder could not be removed; {result} {fate}", leaked)
    timings["total"] = round(time.monotonic() - started, 3)
    return BuildResult(
        image_id=_id(image.id),
        architecture=request.architecture,
        labels=labels,
        description=request.description,
        disk_size=float(image.disk_size or 0),
        sha256=written.sha256,
        timings=timings,
    )


class _timed:
    """Records how long a step took."""

    def __init__(self, timings: dict[str, float], step: str) -> None:
        self.timings, self.step = timings, step

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, *_: object) -> None:
        self.timings[self.step] = round(time.monotonic() - self.started, 3)


def _check_disk_fits(client: ApiClient, request: BuildRequest) -> None:
    """A snapshot only boots on server types whose disk is at least the builder's."""
    builder = client.server_types.get_by_name(request.server_type)
    if builder is None:
        raise ValueError(f"builder server type {request.server_type!r} does not exist")
    if HETZNER_ARCHITECTURE[request.architecture] != builder.architecture:
        raise ValueError(
            f"builder server type {request.server_type} is {builder.architecture}, "
            f"not {request.architecture}"
        )
    for name in request.must_fit_server_types:
        target = client.server_types.get_by_name(name)
        if target is None:
            raise ValueError(f"node group server type {name!r} does not exist")
        if (target.disk or 0) < (builder.disk or 0):
            raise ValueError(
                f"the snapshot from {request.server_type} ({builder.disk} GB disk) would not fit "
                f"{name} ({target.disk} GB disk): pick a builder type with a smaller disk"
            )


def _wait_until_off(client: ApiClient, server_id: int, seconds: float) -> None:
    def off() -> bool | None:
        return True if client.servers.get_by_id(server_id).status == "off" else None

    until(f"server {server_id} to be off", seconds, off, client.poll)


def _relabel(client: ApiClient, image: BoundImage, labels: dict[str, str]) -> BoundImage:
    """Replace the builder labels by the snapshot's own; the answer must show them."""
    updated = client.images.update(image, labels=labels)
    if dict(updated.labels or {}) != labels:
        raise RuntimeError(f"snapshot {image.id} has labels {updated.labels}, not {labels}")
    return updated


def _teardown(
    client: ApiClient, run_id: str, known: list[Leftover], limits: Limits, log: Log
) -> tuple[list[str], list[str]]:
    """Delete everything of this run: found by its label, plus what the build was told about.

    Returns (what was deleted, what could not be).
    """
    selector = f"{BUILDER_LABEL}={run_id}"
    unlisted: list[str] = []
    try:
        found = find(client, selector)
    except KeyboardInterrupt:
        return [], [str(item) for item in known] + [f"anything labelled {selector}"]
    except Exception as error:
        log(f"[{run_id}] could not list this run's resources: {describe(error)}")
        found, unlisted = [], [f"anything labelled {selector}"]
    unreported = [item for item in found if item not in known]
    for item in unreported:
        log(f"[{run_id}] found {item} by its run label (its creation was never reported)")
    removed, left = remove(
        client, found + [item for item in known if item not in found], limits.teardown, log
    )
    return (
        [
            f"{item} (found by its run label)" if item in unreported else str(item)
            for item in removed
        ],
        [str(item) for item in left] + unlisted,
    )


def _id(value: int | None) -> int:
    if value is None:
        raise RuntimeError("the Hetzner API answered without an id")
    return value


def _public_ipv4(server: BoundServer) -> str:
    address = server.public_net.ipv4 if server.public_net else None
    if address is None or not address.ip:
        raise RuntimeError(f"server {server.id} has no public IPv4 to reach the rescue system")
    return str(address.ip)


def _detail(error: BaseException) -> str:
    if isinstance(error, Interrupted):
        return f"interrupted ({error.reason})"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return describe(error)
