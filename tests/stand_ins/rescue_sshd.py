"""A STAND-IN for Hetzner's rescue system: a real OpenSSH server on loopback, and a file
standing for the server's disk.

Servers of the Hetzner emulator report 127.0.0.1 as their public IPv4, so the build's SSH
session reaches this sshd; the emulator writes each rescue key into its ``authorized_keys``.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def blank_disk(path: Path, size: int) -> Path:
    """A file standing for the builder's disk: ``size`` bytes of 0xff (never an image byte
    pattern), written a MiB at a time."""
    mib = 1024 * 1024
    with path.open("wb") as disk:
        for offset in range(0, size, mib):
            disk.write(b"\xff" * min(mib, size - offset))
    return path


SSHD = Path("/usr/sbin/sshd")


class RescueSshd:
    """A real OpenSSH server on a free loopback port, configured in ``home``.

    The emulator writes each rescue key into ``authorized_keys``, as Hetzner's rescue
    system would accept it. Commands run with ``home/shims`` first on the PATH, so a
    test can make the rescue system's disk misbehave (``break_disk``).
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.authorized_keys = home / "authorized_keys"
        self.shims = home / "shims"
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def break_disk(self, fault: str) -> None:
        """Make writes to the disk (``dd of=...``) go wrong silently: dd still succeeds.

        ``"corrupt"`` flips bytes after the write, ``"drop"`` discards the write.
        """
        writes = {
            "corrupt": '/usr/bin/dd "$@" || exit; '
            'printf CORRUPTED | /usr/bin/dd of="$out" bs=1 seek=4096 conv=notrunc status=none',
            "drop": '/usr/bin/dd "${kept[@]}" of=/dev/null',
        }
        shim = self.shims / "dd"
        shim.write_text(
            "#!/bin/bash\n"
            'out=; kept=()\nfor arg in "$@"; do\n'
            '  case $arg in of=*) out=${arg#of=} ;; conv=*) ;; *) kept+=("$arg") ;; esac\n'
            'done\n[ -n "$out" ] || exec /usr/bin/dd "$@"\n' + writes[fault] + "\n"
        )
        shim.chmod(0o755)

    def discarding_disk(self, leave_nonzero_at: int | None = None) -> None:
        """Make ``blkdiscard`` work on the file standing for the disk as on a real disk that
        reads back zeros once discarded: its blocks are deallocated (a hole punched over the
        whole file). With ``leave_nonzero_at``, a few old bytes stay at that offset: a disk
        whose discard does not zero everything."""
        leave = (
            f'printf LEFTOVER | /usr/bin/dd of="$dev" bs=1 seek={leave_nonzero_at} '
            "conv=notrunc status=none\n"
            if leave_nonzero_at is not None
            else ""
        )
        shim = self.shims / "blkdiscard"
        shim.write_text(
            '#!/bin/bash\nset -e\ndev=${!#}\n[ -f "$dev" ] || exit 1\n'
            'fallocate --punch-hole --offset 0 --length "$(stat -c %s "$dev")" "$dev"\n'
            + leave
            + f"touch {self.home / 'discarded'}\n"
        )
        shim.chmod(0o755)

    @property
    def discarded(self) -> bool:
        """Whether the build discarded the disk (through ``discarding_disk``'s blkdiscard)."""
        return (self.home / "discarded").exists()

    def start(self, timeout: float = 60) -> RescueSshd:
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
        self.shims.mkdir(exist_ok=True)
        session = self.home / "session"
        session.write_text(
            f'#!/bin/bash\nPATH={self.shims}:$PATH exec bash -c "$SSH_ORIGINAL_COMMAND"\n'
        )
        session.chmod(0o755)
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
                    "UseDNS no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "X11Forwarding no",
                    "StrictModes no",
                    f"PidFile {self.home / 'sshd.pid'}",
                    f"ForceCommand {session}",
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


@dataclass
class RescueSystem:
    """A real sshd on loopback; the emulator writes the rescue key into ``authorized_keys``."""

    port: int
    authorized_keys: Path
    disk: Path
    sshd: RescueSshd
