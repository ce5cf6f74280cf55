"""What the build does on the rescue system over SSH: write the image, then read it back.

The image is streamed (the rescue root is ~960 MB of RAM): ``curl | xz -d | tee |
dd``, the ``tee`` feeding ``sha256sum`` and ``wc -c`` so the digest and length of
the decompressed stream are known once the write ends. Then the same number of
bytes is read back from the device, past the page cache, and hashed; the build
compares the two digests.

Every remote command is bounded: curl gives up when the download stays below
``STALL_BYTES_PER_SECOND`` for the stall window, and each command has an overall
limit; the SSH connection sends keepalives and a lost connection fails at once.
"""

from __future__ import annotations

import io
import math
import shlex
import time
from dataclasses import dataclass

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.waits import (
    Backoff,
    WaitTimeout,
    format_seconds,
    until,
)

#: "Throughput near zero": a download below this for the whole stall window is stalled.
STALL_BYTES_PER_SECOND = 16 * 1024
KEEPALIVE_SECONDS = 15
#: Per connection attempt (TCP connect, SSH banner, authentication).
CONNECT_ATTEMPT_SECONDS = 10
_STDERR_TAIL = 600


@dataclass(frozen=True)
class Written:
    """The decompressed image as it was streamed, and what the disk holds over its length."""

    sha256: str
    size: int
    on_disk_sha256: str


class RemoteCommandFailed(RuntimeError):
    """A command on the rescue system exited non-zero."""


def ephemeral_key() -> tuple[paramiko.PKey, str]:
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


def connect(
    host: str, port: int, key: paramiko.PKey, seconds: float, backoff: Backoff
) -> paramiko.SSHClient:
    """Retry until the rescue system answers SSH, for at most ``seconds``."""

    def attempt() -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        # The rescue system's host key is new on every boot; there is nothing to pin.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                host,
                port=port,
                username="root",
                pkey=key,
                timeout=CONNECT_ATTEMPT_SECONDS,
                banner_timeout=CONNECT_ATTEMPT_SECONDS,
                auth_timeout=CONNECT_ATTEMPT_SECONDS,
                allow_agent=False,
                look_for_keys=False,
            )
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(KEEPALIVE_SECONDS)
        return client

    return until(
        f"the rescue system at {host}:{port} to accept SSH",
        seconds,
        attempt,
        lambda tries: min(2.0, backoff(tries)),
        retry_if=lambda error: isinstance(error, OSError | EOFError | paramiko.SSHException),
    )


def write_image(
    ssh: paramiko.SSHClient, url: str, device: str, *, stall_seconds: float, seconds: float
) -> Written:
    """Stream the image onto ``device`` and read it back, in one command on the rescue system."""
    output = run(ssh, _write_script(url, device, stall_seconds), seconds=seconds, what="the write")
    streamed, size, on_disk = output.split()
    return Written(sha256=streamed, size=int(size), on_disk_sha256=on_disk)


def _write_script(url: str, device: str, stall_seconds: float) -> str:
    quoted, source = shlex.quote(device), shlex.quote(url)
    # No curl --retry: a retry after part of the stream went to stdout appends a
    # second copy to the pipe. A failed build is cheap to run again.
    script = f"""set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkfifo "$work/hash" "$work/count"
sha256sum < "$work/hash" > "$work/sha256" &
hasher=$!
wc -c < "$work/count" > "$work/size" &
counter=$!
blkdiscard -f {quoted} >/dev/null 2>&1 || true
curl -fsSL --connect-timeout 30 --speed-limit {STALL_BYTES_PER_SECOND} \\
    --speed-time {max(1, math.ceil(stall_seconds))} {source} \\
  | xz -d | tee "$work/hash" "$work/count" | dd of={quoted} bs=4M conv=notrunc,fsync status=none
wait "$hasher" "$counter"
sync
size=$(cat "$work/size")
# Drop the block device's cached pages so the read-back comes from the disk itself.
blockdev --flushbufs {quoted} >/dev/null 2>&1 || true
on_disk=$(head -c "$size" {quoted} | sha256sum | cut -d' ' -f1)
echo "$(cut -d' ' -f1 "$work/sha256") $size $on_disk"
"""
    return f"bash -c {shlex.quote(script)}"


def run(ssh: paramiko.SSHClient, command: str, *, seconds: float, what: str) -> str:
    """Run ``command``, at most ``seconds``; returns its stdout, raises with its stderr."""
    transport = ssh.get_transport()
    if transport is None or not transport.is_active():
        raise ConnectionError("the SSH connection to the rescue system is closed")
    channel = transport.open_session(timeout=CONNECT_ATTEMPT_SECONDS)
    deadline = time.monotonic() + seconds
    stdout, stderr = bytearray(), bytearray()
    try:
        channel.exec_command(command)
        while True:
            while channel.recv_ready():
                stdout += channel.recv(65536)
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(65536)
                del stderr[:-_STDERR_TAIL]
            if channel.exit_status_ready() and not channel.recv_ready():
                break
            if not transport.is_active():
                raise ConnectionError(f"the SSH connection was lost during {what}")
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{what} did not finish within {format_seconds(seconds)}")
            channel.status_event.wait(0.05)  # wakes at once when the command exits
        stderr += channel.recv_stderr(65536) if channel.recv_stderr_ready() else b""
        status = channel.recv_exit_status()
    finally:
        channel.close()
    if status != 0:
        message = stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        if "curl: (28)" in message:
            message = f"the download stalled ({message})"
        raise RemoteCommandFailed(f"{what} exited with {status}: {message or 'no output'}")
    return stdout.decode("utf-8", "replace").strip()
