"""Real local stand-ins for an image build: API emulator, Image Factory and OpenSSH."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hcloud import Client
from image_builder.stand_ins import HetznerEmulator, ImageFactory, generated_raw_image

from components.image_builder.pipeline import BuildRequest, make_client
from components.image_builder.schematic import schematic_id_for

SSHD = Path("/usr/sbin/sshd")
RAW_IMAGE = generated_raw_image()
DISK_SIZE = len(RAW_IMAGE) + 1024 * 1024


@dataclass
class RescueSystem:
    """A real sshd on loopback; the emulator writes the rescue key into ``authorized_keys``."""

    port: int
    authorized_keys: Path
    disk: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def sshd_binary() -> Path:
    if not SSHD.exists():
        pytest.fail("openssh-server is not installed: run `make test` (it installs it) first")
    return SSHD


@pytest.fixture
def rescue(tmp_path: Path, sshd_binary: Path) -> Iterator[RescueSystem]:
    home = tmp_path / "sshd"
    home.mkdir()
    host_key = home / "host_ed25519"
    host_key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    host_key.chmod(0o600)
    authorized_keys = home / "authorized_keys"
    authorized_keys.write_text("")
    port = _free_port()
    config = home / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized_keys}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                f"PidFile {home / 'sshd.pid'}",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    process = subprocess.Popen(
        [str(sshd_binary), "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if process.poll() is not None:
            pytest.fail(
                f"sshd did not start: {process.stderr.read().decode() if process.stderr else ''}"
            )
        time.sleep(0.05)
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\xff" * DISK_SIZE)
    try:
        yield RescueSystem(port=port, authorized_keys=authorized_keys, disk=disk)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def hetzner(rescue: RescueSystem) -> Iterator[HetznerEmulator]:
    emulator = HetznerEmulator(rescue.authorized_keys).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def factory() -> Iterator[ImageFactory]:
    served = ImageFactory(RAW_IMAGE).start()
    served.known_schematics.add(SCHEMATIC)
    yield served
    served.stop()


@pytest.fixture
def client(hetzner: HetznerEmulator) -> Client:
    return make_client("test-token", hetzner.endpoint, poll_interval=0.01, timeout_minutes=1)


SCHEMATIC = schematic_id_for(["siderolabs/qemu-guest-agent"])


@pytest.fixture
def request_for(rescue: RescueSystem, factory: ImageFactory) -> BuildRequest:
    return BuildRequest(
        talos_version="v1.11.6",
        schematic_id=SCHEMATIC,
        architecture="amd64",
        location="fsn1",
        server_type="cx23",
        factory_url=factory.url,
        extra_labels={"environment": "test"},
        must_fit_server_types=["cpx22"],
        ssh_port=rescue.port,
        target_device=str(rescue.disk),
        ssh_timeout=10,
        power_off_timeout=1,
    )


def has_xz_tools() -> bool:
    return all(shutil.which(tool) for tool in ("xz", "curl", "dd", "bash"))
