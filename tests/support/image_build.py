"""Fixtures of an image build on the stand-ins (``tests/stand_ins``): API emulator, Image Factory
and OpenSSH, and the build's command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.hetzner.api import ApiClient
from core.image_builder.pipeline import SSH_PORT_ENV, TARGET_DEVICE_ENV, BuildRequest, Limits
from core.image_builder.schematic import schematic_id_for
from core.waits import exponential

from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator
from tests.stand_ins.image_factory import RAW_IMAGE, ImageFactory
from tests.stand_ins.rescue_sshd import SSHD, RescueSshd, RescueSystem, blank_disk

DISK_SIZE = len(RAW_IMAGE) + 1024 * 1024
#: Every bound of a build, with room for a machine whose cores other builds keep busy: no
#: test waits for one of these to run out (a test of a limit sets its own, see ``limits``),
#: so a generous bound costs nothing while the emulator's actions take hundredths of a second.
TEST_LIMITS = Limits(
    action=60,
    ssh=60,
    write_stall=30,
    write=120,
    power_off=60,
    snapshot=60,
    teardown=60,
    stale_sweep=60,
)


@pytest.fixture(scope="session")
def sshd_binary() -> Path:
    if not SSHD.exists():
        pytest.fail("openssh-server is not installed: run `make setup` (it installs it) first")
    return SSHD


@pytest.fixture
def rescue(tmp_path: Path, sshd_binary: Path) -> Iterator[RescueSystem]:
    sshd = RescueSshd(tmp_path / "sshd").start()
    disk = blank_disk(tmp_path / "disk.img", DISK_SIZE)
    try:
        yield RescueSystem(
            port=sshd.port, authorized_keys=sshd.authorized_keys, disk=disk, sshd=sshd
        )
    finally:
        sshd.stop()


@pytest.fixture
def rescue_env(rescue: RescueSystem) -> dict[str, str]:
    """The test-only knobs, as the build pipeline reads them."""
    return {SSH_PORT_ENV: str(rescue.port), TARGET_DEVICE_ENV: str(rescue.disk)}


@pytest.fixture
def hetzner(rescue: RescueSystem) -> Iterator[HetznerEmulator]:
    with HetznerEmulator(rescue.authorized_keys) as emulator:
        yield emulator


@pytest.fixture
def factory() -> Iterator[ImageFactory]:
    with ImageFactory(RAW_IMAGE) as served:
        served.known_schematics.add(SCHEMATIC)
        yield served


def fast_client(endpoint: str, request_timeout: tuple[float, float] = (2.0, 5.0)) -> ApiClient:
    """Polls and the library's retries in hundredths of a second."""
    return ApiClient(
        TEST_TOKEN,
        endpoint,
        poll=exponential(first=0.01, cap=0.05),
        request_timeout=request_timeout,
        retry_backoff=lambda _: 0.02,
    )


@pytest.fixture
def client(hetzner: HetznerEmulator) -> ApiClient:
    return fast_client(hetzner.endpoint)


SCHEMATIC = schematic_id_for(["siderolabs/qemu-guest-agent"])
REPO = Path(__file__).resolve().parents[2]


def cli_command(*args: str) -> list[str]:
    """``python -m components.image_builder <args>``, the documented command."""
    return [sys.executable, "-m", "components.image_builder", *args]


def build_arguments(factory_url: str, *more: str) -> list[str]:
    """``build`` of the amd64 image of Talos v1.11.6 in fsn1 from ``factory_url``; ``more``
    adds the schematic (``--schematic-id`` or ``--extension``) and other options."""
    return [
        "build",
        "--talos-version",
        "v1.11.6",
        "--arch",
        "amd64",
        "--location",
        "fsn1",
        "--factory-url",
        factory_url,
        *more,
    ]


def cli_env(hetzner: HetznerEmulator | None = None, **more: str) -> dict[str, str]:
    """The command's environment: PATH, and the emulator's token and endpoint if given."""
    env = {"PATH": os.environ["PATH"], **more}
    if hetzner is not None:
        env.update(HCLOUD_TOKEN=TEST_TOKEN, HCLOUD_ENDPOINT=hetzner.endpoint)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
