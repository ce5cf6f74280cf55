"""One Talos snapshot build, as the guide's step 1 does by hand, with guaranteed teardown.

The steps are ``Step`` (in order; docs/image-build.md lists the same):
remove stale builders of this scope, check the server types, upload a temporary ed25519
key (kept in memory), create the builder server (stopped), enable rescue with that key,
power on, wait for SSH, stream the Image Factory image through ``xz -d`` onto the disk,
verify it by reading it back, power off, create the snapshot (labelled as a builder
until verified) and label it; then the teardown.

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
from enum import StrEnum
from typing import TYPE_CHECKING

from hcloud import APIException
from hcloud.actions import BoundAction
from hcloud.images import BoundImage, Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import BoundServer
from hcloud.ssh_keys import BoundSSHKey

from core.config.model import DEFAULT_FACTORY_URL, WRITE_TIMEOUT_MINUTES
from core.hetzner.api import ActionFailed, ApiClient, describe, wait_for
from core.hetzner.facts import HETZNER_ARCHITECTURE, Architecture
from core.image_builder import rescue
from core.image_builder.builder_resources import (
    BUILDER_LABEL,
    CLEANUP_COMMAND,
    CLI_SCOPE,
    STALE_AFTER,
    Kind,
    Leftover,
    builder_labels,
    find,
    remove,
    remove_stale,
)
from core.image_builder.identity import check_labels, image_url, snapshot_labels
from core.waits import Interrupted, until

if TYPE_CHECKING:  # the build connects through ``rescue``, which loads it
    import paramiko

BUILDER_BASE_IMAGE = "ubuntu-24.04"
#: Test-only: the tests point the build at a loopback sshd and a file instead of the
#: rescue system's port 22 and its disk. Read here only, never from stack config or state.
SSH_PORT_ENV = "HCLOUD_TALOS_TEST_SSH_PORT"
TARGET_DEVICE_ENV = "HCLOUD_TALOS_TEST_TARGET_DEVICE"
#: Time for the API calls between the bounded waits (a few dozen requests).
API_ALLOWANCE_SECONDS = 10 * 60
#: Hetzner's answers for "no such server here now": the build tries its next candidate.
CAPACITY_CODES = frozenset({"resource_unavailable", "placement_error", "no_space_left_in_location"})


class Step(StrEnum):
    """The steps of a build, in order: the names errors, logs, timings, docs and tests use."""

    REMOVE_STALE_BUILDERS = "remove stale builders"
    CHECK_SERVER_TYPES = "check server types"
    UPLOAD_SSH_KEY = "upload ssh key"
    CREATE_SERVER = "create server"
    ENABLE_RESCUE = "enable rescue"
    POWER_ON = "power on"
    WAIT_FOR_SSH = "wait for ssh"
    WRITE_IMAGE = "write image"
    VERIFY_IMAGE = "verify image"
    POWER_OFF = "power off"
    CREATE_SNAPSHOT = "create snapshot"
    LABEL_SNAPSHOT = "label snapshot"
    #: Deleting everything of the run: after every build, failed or not.
    TEARDOWN = "teardown"


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
    #: A progress line at least this often during the write and the snapshot wait.
    progress: float = 10.0

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
    factory_url: str = DEFAULT_FACTORY_URL
    #: Where and on what else the builder may run, in order, when Hetzner has no capacity.
    fallback_locations: tuple[str, ...] = ()
    fallback_server_types: tuple[str, ...] = ()
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
    def server_types(self) -> tuple[str, ...]:
        return (self.server_type, *self.fallback_server_types)

    def candidates(self) -> list[tuple[str, str]]:
        """(server type, location) in the order tried: each type in every location before the
        next type, since the type (its disk) decides which servers the snapshot fits."""
        locations = (self.location, *self.fallback_locations)
        return [
            (server_type, location) for server_type in self.server_types for location in locations
        ]

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
        step: Step,
        detail: str,
        leaked: list[str] | None = None,
        removed: list[str] | None = None,
    ) -> None:
        self.step = step
        self.detail = detail
        self.leaked = leaked or []
        self.removed = removed or []
        message = f"image build failed at step {step.value!r}: {detail}"
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


def build_image(client: ApiClient, request: BuildRequest, log: Log = lambda _: None) -> BuildResult:
    """Run one build (the steps of ``Step``, in order); raises BuildError naming the failed step."""
    return _Build(client, request, log).run()


class _Build:
    """One run of the steps. Its state is what the steps made (key, server, connection,
    snapshot); whatever it creates is registered for teardown right after the create."""

    def __init__(self, client: ApiClient, request: BuildRequest, log: Log) -> None:
        self.labels = snapshot_labels(request)
        limits = request.limits
        if limits.longest_build() >= STALE_AFTER.total_seconds():
            raise ValueError(
                f"these limits allow a build of {limits.longest_build() / 60:.0f} min, longer "
                f"than the {STALE_AFTER} after which builders count as leftovers: shorten the "
                "write limit"
            )
        self.run_id = secrets.token_hex(6)
        self.run_labels = builder_labels(self.run_id, request.builder_scope)
        check_labels(self.run_labels)
        self.client, self.request, self.limits = client, request, limits
        #: Every line of a build carries its run id: builds of both architectures interleave.
        self.log: Log = lambda line: log(f"[{self.run_id}] {line}")
        self.teardown = _Teardown(client, self.run_id, limits, self.log)
        self.timings: dict[str, float] = {}
        self.private_key: paramiko.PKey | None = None
        self.ssh_key: BoundSSHKey | None = None
        self.server: BoundServer | None = None
        self.ssh: paramiko.SSHClient | None = None
        self.written: rescue.Written | None = None
        self.image: BoundImage | None = None
        #: Server type -> location -> why it cannot be ordered there (from the live list).
        self.orderable: dict[str, dict[str, str]] = {}

    def steps(self) -> list[tuple[Step, Callable[[], None]]]:
        return [
            (Step.REMOVE_STALE_BUILDERS, self.remove_stale_builders),
            (Step.CHECK_SERVER_TYPES, self.check_server_types),
            (Step.UPLOAD_SSH_KEY, self.upload_ssh_key),
            (Step.CREATE_SERVER, self.create_server),
            (Step.ENABLE_RESCUE, self.enable_rescue),
            (Step.POWER_ON, self.power_on),
            (Step.WAIT_FOR_SSH, self.wait_for_ssh),
            (Step.WRITE_IMAGE, self.write_image),
            (Step.VERIFY_IMAGE, self.verify_image),
            (Step.POWER_OFF, self.power_off),
            (Step.CREATE_SNAPSHOT, self.create_snapshot),
            (Step.LABEL_SNAPSHOT, self.label_snapshot),
        ]

    def run(self) -> BuildResult:
        started = time.monotonic()
        steps = self.steps()
        failure: BaseException | None = None
        step = steps[0][0]
        try:
            for number, (step, action) in enumerate(steps, start=1):
                self.log(f"step {number}/{len(steps)}: {step}")
                begun = time.monotonic()
                try:
                    action()
                finally:
                    self.timings[step.value] = round(time.monotonic() - begun, 3)
        except BaseException as error:
            failure = error
        finally:
            if self.ssh is not None:
                self.ssh.close()
        result = self.teardown.keep("snapshot") if failure is None else None
        removed, leaked = self.teardown.run()
        if failure is not None:
            raise BuildError(step, _detail(failure), leaked, removed) from failure
        assert result is not None and self.image is not None and self.written is not None
        if leaked:
            # The build fails, so Pulumi will not track the snapshot: delete it rather than
            # leave a finished, selectable image nobody manages. The next `up` builds again.
            deleted, _ = remove(self.client, [result], self.limits.teardown, self.log)
            fate = "deleted again" if deleted else "left in place (delete it by hand)"
            raise BuildError(
                Step.TEARDOWN, f"the builder could not be removed; {result} {fate}", leaked
            )
        self.timings["total"] = round(time.monotonic() - started, 3)
        return BuildResult(
            image_id=_id(self.image.id),
            architecture=self.request.architecture,
            labels=self.labels,
            description=self.request.description,
            disk_size=float(self.image.disk_size or 0),
            sha256=self.written.sha256,
            timings=self.timings,
        )

    # ---- the steps, in order -----------------------------------------------------------
    def remove_stale_builders(self) -> None:
        _, left = remove_stale(
            self.client,
            scope=self.request.builder_scope,
            older_than=STALE_AFTER,
            seconds=self.limits.stale_sweep,
            log=lambda line: self.log(f"stale builder: {line}"),
        )
        if left:
            self.log(f"could not remove stale builders {', '.join(map(str, left))}")

    def check_server_types(self) -> None:
        self.orderable = _check_disk_fits(self.client, self.request)

    def upload_ssh_key(self) -> None:
        self.private_key, public_key = rescue.ephemeral_key()
        self.teardown.arm()
        self.ssh_key = self.client.ssh_keys.create(
            name=f"talos-builder-{self.run_id}", public_key=public_key, labels=self.run_labels
        )
        self.teardown.register(Leftover("ssh key", _id(self.ssh_key.id), self.ssh_key.name or ""))
        self.log(f"temporary ssh key {self.ssh_key.id}")

    def create_server(self) -> None:
        """The first candidate Hetzner can place; each refusal is logged and kept for the error."""
        # By name and architecture, as Hetzner's Terraform provider and Packer plugin do: a
        # name alone names one image per architecture.
        architecture = HETZNER_ARCHITECTURE[self.request.architecture]
        base = self.client.images.get_by_name_and_architecture(BUILDER_BASE_IMAGE, architecture)
        if base is None:
            raise ValueError(
                f"Hetzner has no {BUILDER_BASE_IMAGE} image for {self.request.architecture} "
                f"({architecture}); the builder server needs it"
            )
        refusals: list[str] = []
        for attempt, (server_type, location) in enumerate(self.request.candidates()):
            where = f"{server_type} in {location}"
            problem = self.orderable.get(server_type, {}).get(location)
            try:
                if problem is not None:
                    raise CapacityRefused(problem)
                self._create_server_in(server_type, location, attempt, Image(id=base.id))
            except CapacityRefused as refused:
                refusals.append(f"{where}: {refused}")
                self.log(f"builder {where} refused ({refused}); trying the next candidate")
                continue
            return
        raise RuntimeError(
            f"no builder could be placed, every candidate refused: {'; '.join(refusals)}; add "
            "locations to image.location or types to image.builderServerTypes, or retry later"
        )

    def _create_server_in(
        self, server_type: str, location: str, attempt: int, image: Image
    ) -> None:
        suffix = f"-{attempt}" if attempt else ""
        try:
            created = self.client.servers.create(
                name=f"talos-builder-{self.request.architecture}-{self.run_id}{suffix}",
                server_type=ServerType(name=server_type),
                image=image,
                location=Location(name=location),
                ssh_keys=[self._ssh_key()],
                start_after_create=False,
                labels=self.run_labels,
            )
        except APIException as error:
            if error.code in CAPACITY_CODES:
                raise CapacityRefused(describe(error)) from error
            raise
        server = created.server
        leftover = Leftover("server", _id(server.id), server.name or "")
        self.teardown.register(leftover)
        if created.action is not None:
            try:
                wait_for(
                    self.client, created.action, "the server to be created", self.limits.action
                )
            except ActionFailed as error:
                if error.code not in CAPACITY_CODES:
                    raise
                # Placed nowhere after all: remove it before the next candidate.
                removed, _ = remove(self.client, [leftover], self.limits.teardown, self.log)
                if removed:
                    self.teardown.created.remove(leftover)
                raise CapacityRefused(str(error)) from error
        self.server = server
        self.log(f"builder server {server.id} ({server_type}, {location})")

    def enable_rescue(self) -> None:
        # The API takes key IDs; the library's hint says str.
        key_ids = [self._ssh_key().id]
        rescue_mode = self._server().enable_rescue(type="linux64", ssh_keys=key_ids)  # type: ignore[arg-type]
        wait_for(self.client, rescue_mode.action, "the rescue system", self.limits.action)

    def power_on(self) -> None:
        wait_for(self.client, self._server().power_on(), "the server to start", self.limits.action)

    def wait_for_ssh(self) -> None:
        assert self.private_key is not None
        host = _public_ipv4(self.client.servers.get_by_id(_id(self._server().id)))
        self.ssh = rescue.connect(
            host, self.request.ssh_port, self.private_key, self.limits.ssh, self.client.poll
        )

    def write_image(self) -> None:
        request = self.request
        assert self.ssh is not None
        with self.ssh:
            self.log(f"writing {request.image_url} to {request.target_device}")
            self.written = rescue.write_image(
                self.ssh,
                request.image_url,
                request.target_device,
                stall_seconds=self.limits.write_stall,
                seconds=self.limits.write,
                on_progress=_WriteReport(self.log, self.limits.progress),
                progress_seconds=min(rescue.PROGRESS_SECONDS, self.limits.progress),
            )
        if self.written.sparse:
            self.log("wrote sparse onto the discarded disk: zero blocks were skipped")

    def verify_image(self) -> None:
        written = self.written
        assert written is not None
        if written.on_disk_sha256 != written.sha256:
            raise IntegrityError(
                f"the first {written.size} bytes of {self.request.target_device} have sha256 "
                f"{written.on_disk_sha256}, but the image written was {written.sha256}"
            )
        self.log(f"disk holds the image: {written.size} bytes, sha256 {written.sha256}")

    def power_off(self) -> None:
        server = self._server()
        wait_for(self.client, server.power_off(), "the power-off action", self.limits.action)
        _wait_until_off(self.client, _id(server.id), self.limits.power_off)

    def create_snapshot(self) -> None:
        # Builder labels until verified: a build that stops early deletes it, and
        # no snapshot selector can pick a half-made image.
        snapshot = self._server().create_image(
            description=self.request.description, type="snapshot", labels=self.run_labels
        )
        snapshot_id = _id(snapshot.image.id)
        self.teardown.register(Leftover("snapshot", snapshot_id, self.request.description))
        wait_for(
            self.client,
            snapshot.action,
            f"snapshot {snapshot_id}",
            self.limits.snapshot,
            sleep=_reporting_sleep(
                self.limits.progress,
                _snapshot_report(self.log, snapshot_id, snapshot.action),
            ),
        )
        self.image = self.client.images.get_by_id(snapshot_id)
        if self.image.status != "available":
            raise RuntimeError(f"snapshot {self.image.id} is {self.image.status!r}, not available")

    def label_snapshot(self) -> None:
        assert self.image is not None
        self.image = _relabel(self.client, self.image, self.labels)
        self.log(f"snapshot {self.image.id} ready")

    def _server(self) -> BoundServer:
        assert self.server is not None
        return self.server

    def _ssh_key(self) -> BoundSSHKey:
        assert self.ssh_key is not None
        return self.ssh_key


class _Teardown:
    """Everything of one run goes, on every path: what the build registered right after
    each create, and whatever carries the run's label (what a lost answer never reported)."""

    def __init__(self, client: ApiClient, run_id: str, limits: Limits, log: Log) -> None:
        self.client, self.run_id, self.limits, self.log = client, run_id, limits, log
        self.created: list[Leftover] = []
        #: Nothing of this run can exist before its first create request: no listing then.
        self.armed = False

    def arm(self) -> None:
        """Called right before the run's first create request."""
        self.armed = True

    def register(self, item: Leftover) -> None:
        self.created.append(item)

    def keep(self, kind: Kind) -> Leftover:
        """The build's result: registered, but not to be deleted."""
        (kept,) = [item for item in self.created if item.kind == kind]
        self.created.remove(kept)
        return kept

    def run(self) -> tuple[list[str], list[str]]:
        """Delete this run's resources; returns (what was deleted, what could not be)."""
        if not self.armed:
            return [], []
        selector = f"{BUILDER_LABEL}={self.run_id}"
        unlisted: list[str] = []
        try:
            found = find(self.client, selector)
        except KeyboardInterrupt:
            return [], [str(item) for item in self.created] + [f"anything labelled {selector}"]
        except Exception as error:
            self.log(f"could not list this run's resources: {describe(error)}")
            found, unlisted = [], [f"anything labelled {selector}"]
        unreported = [item for item in found if item not in self.created]
        for item in unreported:
            self.log(f"found {item} by its run label (its creation was never reported)")
        removed, left = remove(
            self.client,
            found + [item for item in self.created if item not in found],
            self.limits.teardown,
            self.log,
        )
        return (
            [
                f"{item} (found by its run label)" if item in unreported else str(item)
                for item in removed
            ],
            [str(item) for item in left] + unlisted,
        )


class _WriteReport:
    """Logs the write's progress at most every ``every`` seconds: what was streamed, what
    reached the disk (less when zero blocks were skipped), and the rate. The image's
    decompressed size is known only at its end (xz stores it there), so no total."""

    def __init__(self, log: Log, every: float) -> None:
        self.log, self.every = log, every
        self.started = self.last = time.monotonic()

    def __call__(self, progress: rescue.WriteProgress) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        mib = 1024 * 1024
        rate = progress.streamed / mib / max(now - self.started, 1e-6)
        self.log(
            f"write image: {progress.streamed / mib:.1f} MiB of the image streamed, "
            f"{progress.written / mib:.1f} MiB written to the disk, {rate:.1f} MiB/s"
        )


def _snapshot_report(log: Log, snapshot_id: int, action: BoundAction) -> Callable[[float], None]:
    def report(elapsed: float) -> None:
        progress = f", Hetzner reports {action.progress}%" if action.progress is not None else ""
        log(f"create snapshot: waiting for snapshot {snapshot_id}, {elapsed:.0f} s{progress}")

    return report


def _reporting_sleep(every: float, report: Callable[[float], None]) -> Callable[[float], None]:
    """A sleep for ``until`` that reports (the time since the wait began) at least every
    ``every`` seconds, however long the poll interval has grown."""
    started = time.monotonic()
    last = [started]

    def sleep(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (now := time.monotonic()) < end:
            if now - last[0] >= every:
                last[0] = now
                report(now - started)
            time.sleep(max(0.0, min(end, last[0] + every) - now))

    return sleep


class CapacityRefused(RuntimeError):
    """Hetzner cannot place this builder candidate now; the build tries the next."""


def _check_disk_fits(client: ApiClient, request: BuildRequest) -> dict[str, dict[str, str]]:
    """A snapshot only boots on server types whose disk is at least the builder's: every
    candidate type must fit. Returns where each type cannot be ordered (the live list)."""
    not_orderable: dict[str, dict[str, str]] = {}
    for server_type in request.server_types:
        builder = client.server_types.get_by_name(server_type)
        if builder is None:
            raise ValueError(f"builder server type {server_type!r} does not exist")
        if HETZNER_ARCHITECTURE[request.architecture] != builder.architecture:
            raise ValueError(
                f"builder server type {server_type} is {builder.architecture}, "
                f"not {request.architecture}"
            )
        for name in request.must_fit_server_types:
            target = client.server_types.get_by_name(name)
            if target is None:
                raise ValueError(f"node group server type {name!r} does not exist")
            if (target.disk or 0) < (builder.disk or 0):
                raise ValueError(
                    f"the snapshot from {server_type} ({builder.disk} GB disk) would not fit "
                    f"{name} ({target.disk} GB disk): pick a builder type with a smaller disk"
                )
        if builder.locations is not None:
            orderable = {
                str(entry.location.name)
                for entry in builder.locations
                if entry.available is not False and entry.location is not None
            }
            not_orderable[server_type] = {
                location: "not orderable there (the live server type list)"
                for location in (request.location, *request.fallback_locations)
                if location not in orderable
            }
    return not_orderable


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
