"""One Talos snapshot build, as the guide's step 1 does by hand, with guaranteed teardown.

temporary ed25519 key (in memory) -> builder server (stopped) -> rescue with that
key -> power on -> SSH -> stream the Image Factory image through ``xz -d`` onto
the disk -> power off and wait until off -> snapshot -> delete server and key.
The server and key are deleted on every path (errors, Ctrl-C); a teardown that
fails is reported with what leaked and the cleanup command, never swallowed.
"""

from __future__ import annotations

import io
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hcloud import APIException, Client
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import BoundServer
from hcloud.ssh_keys import BoundSSHKey

from components.hetzner import Architecture
from components.validators import hetzner_label_problems

MANAGED_BY = "hcloud-talos-autoscaler"
#: Builder servers and keys carry only this label, never the snapshot's, so a
#: snapshot selector can never match a builder.
BUILDER_LABEL = "hcloud-talos-autoscaler/builder"
BUILDER_BASE_IMAGE = "ubuntu-24.04"
CLEANUP_COMMAND = "python -m components.image_builder cleanup"

#: The API names architectures ``x86`` and ``arm``.
HETZNER_ARCHITECTURE: dict[Architecture, str] = {"amd64": "x86", "arm64": "arm"}

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildRequest:
    """What to build and where; the test knobs default to the real rescue system."""

    talos_version: str
    schematic_id: str
    architecture: Architecture
    location: str
    server_type: str
    factory_url: str = "https://factory.talos.dev"
    extra_labels: dict[str, str] = field(default_factory=dict)
    must_fit_server_types: list[str] = field(default_factory=list)
    ssh_port: int = 22
    target_device: str = "/dev/sda"
    ssh_timeout: float = 300.0
    power_off_timeout: float = 180.0

    @property
    def image_url(self) -> str:
        return (
            f"{self.factory_url.rstrip('/')}/image/{self.schematic_id}/{self.talos_version}/"
            f"hcloud-{self.architecture}.raw.xz"
        )

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
    timings: dict[str, float]


class BuildError(RuntimeError):
    """A build step failed (or teardown did); names the step and anything leaked."""

    def __init__(self, step: str, detail: str, leaked: list[str] | None = None) -> None:
        self.step = step
        self.detail = detail
        self.leaked = leaked or []
        message = f"image build failed at step {step!r}: {detail}"
        if self.leaked:
            message += (
                f"; teardown could not delete {', '.join(self.leaked)} (billed until removed): "
                f"run `{CLEANUP_COMMAND}`"
            )
        super().__init__(message)


def snapshot_labels(request: BuildRequest) -> dict[str, str]:
    """Labels that identify a snapshot: what it holds and who manages it."""
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


def make_client(
    token: str, endpoint: str, *, poll_interval: float = 2.0, timeout_minutes: int = 40
) -> Client:
    """A client whose action waits outlast a snapshot (the default gives up after ~2 min)."""
    return Client(
        token=token,
        api_endpoint=endpoint,
        application_name=MANAGED_BY,
        poll_interval=poll_interval,
        poll_max_retries=max(1, int(timeout_minutes * 60 / poll_interval)),
    )


def build_image(client: Client, request: BuildRequest, log: Log = lambda _: None) -> BuildResult:
    """Run one build; raises BuildError naming the failed step."""
    labels = snapshot_labels(request)
    run_id = secrets.token_hex(6)
    builder_labels = {BUILDER_LABEL: run_id}
    timings: dict[str, float] = {}
    resources: dict[str, BoundServer | BoundSSHKey] = {}
    step = "check server types"
    started = time.monotonic()
    try:
        with _timed(timings, step):
            _check_disk_fits(client, request)

        step = "upload ssh key"
        with _timed(timings, step):
            private_key, public_key = _ephemeral_key()
            ssh_key = client.ssh_keys.create(
                name=f"talos-builder-{run_id}", public_key=public_key, labels=builder_labels
            )
            resources["ssh key"] = ssh_key
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
                labels=builder_labels,
            )
            server = created.server
            resources["server"] = server
            if created.action is not None:
                created.action.wait_until_finished()
        log(f"[{run_id}] builder server {server.id} ({request.server_type}, {request.location})")

        step = "enable rescue"
        with _timed(timings, step):
            # The API takes key IDs; the library's hint says str.
            rescue = server.enable_rescue(type="linux64", ssh_keys=[ssh_key.id])  # type: ignore[list-item]
            rescue.action.wait_until_finished()

        step = "power on"
        with _timed(timings, step):
            server.power_on().wait_until_finished()

        step = "wait for ssh"
        with _timed(timings, step):
            host = _public_ipv4(client.servers.get_by_id(_id(server.id)))
            ssh = _connect(host, request.ssh_port, private_key, request.ssh_timeout)

        step = "write image"
        with _timed(timings, step), ssh:
            log(f"[{run_id}] writing {request.image_url} to {request.target_device}")
            _run(ssh, _write_command(request))

        step = "power off"
        with _timed(timings, step):
            server.power_off().wait_until_finished()
            _wait_until_off(client, _id(server.id), request.power_off_timeout)

        step = "create snapshot"
        with _timed(timings, step):
            snapshot = server.create_image(
                description=request.description, type="snapshot", labels=labels
            )
            snapshot.action.wait_until_finished()
            image = client.images.get_by_id(_id(snapshot.image.id))
        log(f"[{run_id}] snapshot {image.id} ready")
    except BaseException as error:
        leaked = _teardown(client, resources, log)
        if isinstance(error, BuildError):
            raise BuildError(error.step, error.detail, leaked) from error
        detail = "interrupted" if isinstance(error, KeyboardInterrupt) else _describe(error)
        raise BuildError(step, detail, leaked) from error
    leaked = _teardown(client, resources, log)
    if leaked:
        raise BuildError("teardown", f"snapshot {image.id} was created", leaked)
    timings["total"] = round(time.monotonic() - started, 3)
    return BuildResult(
        image_id=_id(image.id),
        architecture=request.architecture,
        labels=labels,
        description=request.description,
        disk_size=float(image.disk_size or 0),
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


def _check_disk_fits(client: Client, request: BuildRequest) -> None:
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


def _ephemeral_key() -> tuple[paramiko.PKey, str]:
    """An ed25519 key pair that lives only in memory."""
    key = Ed25519PrivateKey.generate()
    private_text = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_text = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )
    return paramiko.Ed25519Key.from_private_key(io.StringIO(private_text)), public_text


def _connect(host: str, port: int, key: paramiko.PKey, timeout: float) -> paramiko.SSHClient:
    """Retry until the rescue system answers SSH, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        client = paramiko.SSHClient()
        # The rescue system's host key is new on every boot; there is nothing to pin.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                host,
                port=port,
                username="root",
                pkey=key,
                timeout=5,
                banner_timeout=5,
                auth_timeout=5,
                allow_agent=False,
                look_for_keys=False,
            )
            return client
        except (TimeoutError, OSError, paramiko.SSHException) as error:
            client.close()
            last_error = error
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    raise TimeoutError(
        f"the rescue system at {host}:{port} did not accept SSH within {timeout:.0f}s "
        f"(last error: {last_error})"
    )


def _write_command(request: BuildRequest) -> str:
    """Stream, decompress and write in one pipe: the rescue root is ~960 MB of RAM."""
    device = shlex.quote(request.target_device)
    url = shlex.quote(request.image_url)
    script = (
        "set -euo pipefail; "
        f"blkdiscard -f {device} >/dev/null 2>&1 || true; "
        f"curl -fsSL --retry 3 {url} | xz -d "
        f"| dd of={device} bs=4M conv=notrunc,fsync status=none; "
        "sync"
    )
    return f"bash -c {shlex.quote(script)}"


def _run(ssh: paramiko.SSHClient, command: str) -> None:
    _, stdout, stderr = ssh.exec_command(command)
    status = stdout.channel.recv_exit_status()
    if status != 0:
        message = stderr.read().decode("utf-8", "replace").strip()[-500:]
        raise RuntimeError(f"remote command exited with {status}: {message or 'no output'}")


def _wait_until_off(client: Client, server_id: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = client.servers.get_by_id(server_id).status
        if status == "off":
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"server {server_id} is still {status!r} after {timeout:.0f}s")
        time.sleep(min(1.0, timeout / 10))


def _teardown(
    client: Client, resources: dict[str, BoundServer | BoundSSHKey], log: Log
) -> list[str]:
    """Delete the builder server, then the key; returns what could not be deleted."""
    leaked: list[str] = []
    server = resources.get("server")
    if isinstance(server, BoundServer) and _delete(
        lambda: server.delete().wait_until_finished(), f"server {server.id}", log
    ):
        leaked.append(f"server {server.id}")
    key = resources.get("ssh key")
    if isinstance(key, BoundSSHKey) and _delete(key.delete, f"ssh key {key.id}", log):
        leaked.append(f"ssh key {key.id}")
    return leaked


def _delete(delete: Callable[[], object], what: str, log: Log, attempts: int = 3) -> bool:
    """True when ``what`` is still there after the retries (404 counts as deleted)."""
    for attempt in range(1, attempts + 1):
        try:
            delete()
            log(f"deleted {what}")
            return False
        except APIException as error:
            if error.code == "not_found":
                return False
            log(f"deleting {what} failed (attempt {attempt}/{attempts}): {error.message}")
        time.sleep(0.2 * attempt)
    return True


def _id(value: int | None) -> int:
    if value is None:
        raise RuntimeError("the Hetzner API answered without an id")
    return value


def _public_ipv4(server: BoundServer) -> str:
    address = server.public_net.ipv4 if server.public_net else None
    if address is None or not address.ip:
        raise RuntimeError(f"server {server.id} has no public IPv4 to reach the rescue system")
    return str(address.ip)


def _describe(error: BaseException) -> str:
    if isinstance(error, APIException):
        return f"Hetzner API error {error.code}: {error.message}"
    return str(error) or type(error).__name__
