"""Real local stand-ins for an image build: API emulator, Image Factory and OpenSSH."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from image_builder.stand_ins import (
    SSHD,
    HetznerEmulator,
    ImageFactory,
    RescueSshd,
    generated_raw_image,
)

from core.image_builder.api import ApiClient
from core.image_builder.pipeline import BuildRequest, Limits
from core.image_builder.schematic import schematic_id_for
from core.waits import exponential

RAW_IMAGE = generated_raw_image()
DISK_SIZE = len(RAW_IMAGE) + 1024 * 1024
#: Every bound of a build, in seconds small enough for tests.
TEST_LIMITS = Limits(
    action=5,
    ssh=10,
    write_stall=1,
    write=20,
    power_off=1,
    snapshot=5,
    teardown=5,
    stale_sweep=5,
)


@dataclass
class RescueSystem:
    """A real sshd on loopback; the emulator writes the rescue key into ``authorized_keys``."""

    port: int
    authorized_keys: Path
    disk: Path
    sshd: RescueSshd


@pytest.fixture(scope="session")
def sshd_binary() -> Path:
    if not SSHD.exists():
        pytest.fail("openssh-server is not installed: run `make setup` (it installs it) first")
    return SSHD


@pytest.fixture
def rescue(tmp_path: Path, sshd_binary: Path) -> Iterator[RescueSystem]:
    sshd = RescueSshd(tmp_path / "sshd").start()
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\xff" * DISK_SIZE)
    try:
        yield RescueSystem(
            port=sshd.port, authorized_keys=sshd.authorized_keys, disk=disk, sshd=sshd
        )
    finally:
        sshd.stop()


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


def fast_client(endpoint: str, request_timeout: tuple[float, float] = (2.0, 5.0)) -> ApiClient:
    """Polls and the library's retries in hundredths of a second."""
    return ApiClient(
        "test-token",
        endpoint,
        poll=exponential(first=0.01, cap=0.05),
        request_timeout=request_timeout,
        retry_backoff=lambda _: 0.02,
    )


@pytest.fixture
def client(hetzner: HetznerEmulator) -> ApiClient:
    return fast_client(hetzner.endpoint)


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
        limits=TEST_LIMITS,
    )
