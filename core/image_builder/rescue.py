"""What the build does on the rescue system over SSH: write the image, then read it back.

The image is streamed (the rescue root is ~960 MB of RAM): ``curl | xz -d -T0 | tee |
dd``, the ``tee`` feeding ``sha256sum`` and ``wc -c`` so the digest and length of
the decompressed stream are known once the write ends. Then the same number of
bytes is read back from the device, past the page cache, and hashed; the build
compares the two digests.

When the disk could be discarded first, ``dd`` writes sparse: it seeks over
all-zero blocks instead of writing them, trusting the discarded disk to read back
zeros there. The read-back digest covers those blocks too, so a disk that does not
is caught at ``verify image``. While the write runs, the script prints a
``progress`` line every second (bytes ``dd`` took in and bytes it wrote, from
``/proc/<pid>/io``); ``write_image`` hands them to ``on_progress``.

Every remote command is bounded: curl gives up when the download stays below
``STALL_BYTES_PER_SECOND`` for the stall window, and each command has an overall
limit; the SSH connection sends keepalives and a lost connection fails at once.

paramiko and cryptography are imported by the functions that use them: the Pulumi program
imports this module (for the snapshot's provider), and evaluating it opens no connection.
"""

from __future__ import annotations

import io
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.waits import (
    Backoff,
    WaitTimeout,
    format_seconds,
    until,
)

if TYPE_CHECKING:
    import paramiko

#: "Throughput near zero": a download below this for the whole stall window is stalled.
STALL_BYTES_PER_SECOND = 16 * 1024
KEEPALIVE_SECONDS = 15
#: Per connection attempt (TCP connect, SSH banner, authentication).
CONNECT_ATTEMPT_SECONDS = 10
_STDERR_TAIL = 600
#: Output blocks of the write: an all-zero block of this size is skipped when writing sparse.
WRITE_BLOCK = "1M"
#: Seconds between the script's progress lines (at most; the build logs fewer).
PROGRESS_SECONDS = 1.0


@dataclass(frozen=True)
class Written:
    """The decompressed image as it was streamed, and what the disk holds over its length."""

    sha256: str
    size: int
    on_disk_sha256: str
    #: True when the disk was discarded and all-zero blocks were skipped, not written.
    sparse: bool = False


@dataclass(frozen=True)
class WriteProgress:
    """Where a running write is: bytes of the image streamed into ``dd``, bytes it wrote."""

    streamed: int
    written: int


class RemoteCommandFailed(RuntimeError):
    """A command on the rescue system exited non-zero."""


def ephemeral_key() -> tuple[paramiko.PKey, str]:
    """An ed25519 key pair that lives only in memory."""
    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
    import paramiko

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
    ssh: paramiko.SSHClient,
    url: str,
    device: str,
    *,
    stall_seconds: float,
    seconds: float,
    on_progress: Callable[[WriteProgress], None] = lambda _: None,
    progress_seconds: float = PROGRESS_SECONDS,
) -> Written:
    """Stream the image onto ``device`` and read it back, in one command on the rescue system."""
    result: list[str] = []

    def line(text: str) -> None:
        words = text.split()
        if len(words) == 3 and words[0] == "progress":
            on_progress(WriteProgress(streamed=int(words[1]), written=int(words[2])))
        elif words and words[0] == "result":
            result[:] = words[1:]

    script = _write_script(url, device, stall_seconds, progress_seconds)
    run(ssh, script, seconds=seconds, what="the write", on_line=line)
    if len(result) != 4:
        raise RemoteCommandFailed("the write ended without reporting what it wrote")
    streamed, size, on_disk, mode = result
    return Written(sha256=streamed, size=int(size), on_disk_sha256=on_disk, sparse=mode == "sparse")


def _write_script(url: str, device: str, stall_seconds: float, progress_seconds: float) -> str:
    quoted, source = shlex.quote(device), shlex.quote(url)
    # No curl --retry: a retry after part of the stream went to stdout appends a
    # second copy to the pipe. A failed build is cheap to run again.
    script = f"""set -euo pipefail
work=$(mktemp -d)
reporter=
trap '[ -z "$reporter" ] || kill "$reporter" 2>/dev/null; rm -rf "$work"' EXIT
mkfifo "$work/hash" "$work/count"
sha256sum < "$work/hash" > "$work/sha256" &
hasher=$!
wc -c < "$work/count" > "$work/size" &
counter=$!
# Sparse only onto a discarded disk; the read-back digest proves the skipped blocks are zero.
mode=plain conv=notrunc,fsync
if blkdiscard -f {quoted} >/dev/null 2>&1; then mode=sparse conv=notrunc,fsync,sparse; fi
# Multi-threaded where this xz can (5.4+ decompresses multi-block files in parallel).
threads=
if xz -T0 --version >/dev/null 2>&1; then threads=-T0; fi
# Progress: what dd has read and written so far, from its /proc/<pid>/io.
(
  while sleep {progress_seconds:g}; do
    pid=$(cat "$work/pid" 2>/dev/null) || continue
    io=$(cat /proc/"$pid"/io 2>/dev/null) || continue
    echo "progress $(sed -n 's/^rchar: //p' <<<"$io") $(sed -n 's/^wchar: //p' <<<"$io")"
  done
) &
reporter=$!
curl -fsSL --connect-timeout 30 --speed-limit {STALL_BYTES_PER_SECOND} \\
    --speed-time {max(1, math.ceil(stall_seconds))} {source} \\
  | xz -d $threads | tee "$work/hash" "$work/count" \\
  | bash -c 'echo $$ > "$1"; shift; exec dd "$@"' dd "$work/pid" \\
      of={quoted} bs={WRITE_BLOCK} iflag=fullblock conv=$conv status=none
kill "$reporter" 2>/dev/null || true
reporter=
wait "$hasher" "$counter"
sync
size=$(cat "$work/size")
# Drop the block device's cached pages so the read-back comes from the disk itself.
blockdev --flushbufs {quoted} >/dev/null 2>&1 || true
on_disk=$(head -c "$size" {quoted} | sha256sum | cut -d' ' -f1)
echo "result $(cut -d' ' -f1 "$work/sha256") $size $on_disk $mode"
"""
    return f"bash -c {shlex.quote(script)}"


def run(
    ssh: paramiko.SSHClient,
    command: str,
    *,
    seconds: float,
    what: str,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Run ``command``, at most ``seconds``; returns its stdout, raises with its stderr.

    ``on_line`` gets each complete line of stdout as it arrives."""
    transport = ssh.get_transport()
    if transport is None or not transport.is_active():
        raise ConnectionError("the SSH connection to the rescue system is closed")
    channel = transport.open_session(timeout=CONNECT_ATTEMPT_SECONDS)
    deadline = time.monotonic() + seconds
    stdout, stderr = bytearray(), bytearray()
    try:
        channel.exec_command(command)
        delivered = 0
        while True:
            while channel.recv_ready():
                stdout += channel.recv(65536)
            if on_line is not None:
                delivered = _deliver_lines(stdout, delivered, on_line)
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
        if on_line is not None:
            _deliver_lines(stdout + b"\n", delivered, on_line)
    finally:
        channel.close()
    if status != 0:
        message = stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        if "curl: (28)" in message:
            message = f"the download stalled ({message})"
        raise RemoteCommandFailed(f"{what} exited with {status}: {message or 'no output'}")
    return stdout.decode("utf-8", "replace").strip()


def _deliver_lines(
    output: bytearray | bytes, delivered: int, on_line: Callable[[str], None]
) -> int:
    """Hand complete lines after offset ``delivered`` to ``on_line``; returns the new offset."""
    end = output.rfind(b"\n") + 1
    if end > delivered:
        for text in bytes(output[delivered:end]).decode("utf-8", "replace").splitlines():
            if text:
                on_line(text)
    return max(end, delivered)
