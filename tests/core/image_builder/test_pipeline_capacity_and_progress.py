"""Capacity fallback, the sparse verified write and progress lines, against the Hetzner API
emulator, the Image Factory stand-in and the real sshd as the rescue system."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from core.hetzner.api import ApiClient
from core.image_builder.pipeline import BuildError, BuildRequest, BuildResult, build_image

from tests.stand_ins.hetzner_api import HetznerEmulator
from tests.stand_ins.image_factory import RAW_IMAGE, ImageFactory, talos_shaped_raw_image
from tests.stand_ins.rescue_sshd import RescueSystem
from tests.support.image_build import SCHEMATIC

MIB = 1024 * 1024
TALOS_SHAPED = talos_shaped_raw_image()


def assert_no_builder_left(hetzner: HetznerEmulator) -> None:
    assert hetzner.builder_leftovers() == {"servers": [], "ssh_keys": [], "images": []}


def created_servers(hetzner: HetznerEmulator) -> list[str]:
    return [
        path for method, path in hetzner.state.requests if (method, path) == ("POST", "/v1/servers")
    ]


@pytest.fixture
def talos_factory() -> Iterator[ImageFactory]:
    with ImageFactory(TALOS_SHAPED) as served:
        served.known_schematics.add(SCHEMATIC)
        yield served


@pytest.fixture
def sparse_request(request_for: BuildRequest, talos_factory: ImageFactory) -> BuildRequest:
    return replace(request_for, factory_url=talos_factory.url)


# ---- capacity ----------------------------------------------------------------------


def test_resource_unavailable_in_the_first_location_moves_to_the_next(
    hetzner: HetznerEmulator, client: ApiClient, request_for: BuildRequest, rescue: RescueSystem
) -> None:
    hetzner.faults.refused_placements[("cx23", "fsn1")] = "resource_unavailable"
    lines: list[str] = []

    build_image(client, replace(request_for, fallback_locations=("nbg1",)), log=lines.append)

    assert rescue.disk.read_bytes().startswith(RAW_IMAGE)
    refused = [line for line in lines if "refused" in line]
    assert len(refused) == 1 and "cx23 in fsn1" in refused[0]
    assert "resource_unavailable" in refused[0] and "trying the next candidate" in refused[0]
    assert any(line.endswith("(cx23, nbg1)") for line in lines)
    assert len(created_servers(hetzner)) == 2
    assert_no_builder_left(hetzner)


def test_a_failed_placement_is_deleted_and_the_next_server_type_is_tried(
    hetzner: HetznerEmulator, client: ApiClient, request_for: BuildRequest
) -> None:
    # Accepted, then the create action fails with placement_error (in both locations).
    hetzner.faults.failed_placements |= {("cx23", "fsn1"), ("cx23", "nbg1")}
    lines: list[str] = []

    build_image(
        client,
        replace(request_for, fallback_locations=("nbg1",), fallback_server_types=("cpx22",)),
        log=lines.append,
    )

    # Each type in every location before the next type: cx23 fsn1, cx23 nbg1, cpx22 fsn1.
    assert [
        line.split("builder ")[1].split(" refused")[0] for line in lines if "refused" in line
    ] == [
        "cx23 in fsn1",
        "cx23 in nbg1",
    ]
    assert any(line.endswith("(cpx22, fsn1)") for line in lines)
    assert sum("deleted server" in line for line in lines) == 3  # two refused, then the builder
    assert_no_builder_left(hetzner)


def test_a_type_not_orderable_in_a_location_is_skipped_without_a_request(
    hetzner: HetznerEmulator, client: ApiClient, request_for: BuildRequest
) -> None:
    hetzner.orderable["cx23"] = {"hel1"}
    lines: list[str] = []

    build_image(client, replace(request_for, fallback_locations=("hel1",)), log=lines.append)

    assert len(created_servers(hetzner)) == 1
    assert any("cx23 in fsn1 refused (not orderable there" in line for line in lines)
    assert any(line.endswith("(cx23, hel1)") for line in lines)


def test_when_every_candidate_refuses_the_error_lists_each_answer(
    hetzner: HetznerEmulator, client: ApiClient, request_for: BuildRequest
) -> None:
    hetzner.faults.refused_placements |= {
        ("cx23", "fsn1"): "resource_unavailable",
        ("cx23", "nbg1"): "placement_error",
    }
    hetzner.faults.failed_placements.add(("cpx22", "fsn1"))
    hetzner.orderable["cpx22"] = {"fsn1"}

    with pytest.raises(BuildError) as caught:
        build_image(
            client,
            replace(request_for, fallback_locations=("nbg1",), fallback_server_types=("cpx22",)),
        )

    assert caught.value.step == "create server"
    detail = caught.value.detail
    assert "every candidate refused" in detail
    assert "cx23 in fsn1: Hetzner API error resource_unavailable" in detail
    assert "cx23 in nbg1: Hetzner API error placement_error" in detail
    assert "cpx22 in fsn1: create_server failed" in detail
    assert "cpx22 in nbg1: not orderable there" in detail
    assert_no_builder_left(hetzner)


def test_without_fallbacks_a_refusal_fails_as_before(
    hetzner: HetznerEmulator, client: ApiClient, request_for: BuildRequest
) -> None:
    hetzner.faults.refused_placements[("cx23", "fsn1")] = "resource_unavailable"

    with pytest.raises(BuildError, match="every candidate refused: cx23 in fsn1"):
        build_image(client, request_for)
    assert len(created_servers(hetzner)) == 1
    assert_no_builder_left(hetzner)


# ---- the sparse, verified write -------------------------------------------------------


def test_onto_a_discarded_disk_zero_blocks_are_skipped_and_the_image_verified(
    hetzner: HetznerEmulator, client: ApiClient, sparse_request: BuildRequest, rescue: RescueSystem
) -> None:
    rescue.sshd.discarding_disk()
    lines: list[str] = []

    result = build_image(client, sparse_request, log=lines.append)

    assert rescue.sshd.discarded
    assert any("wrote sparse" in line for line in lines)
    on_disk = rescue.disk.read_bytes()
    assert on_disk[: len(TALOS_SHAPED)] == TALOS_SHAPED
    assert result.sha256 == hashlib.sha256(TALOS_SHAPED).hexdigest()
    # The zero MiB in the middle was never written: the file has a hole there.
    allocated = rescue.disk.stat().st_blocks * 512
    assert allocated <= len(TALOS_SHAPED) - MIB, allocated
    assert_no_builder_left(hetzner)


def test_a_non_zero_block_left_on_the_discarded_disk_fails_verify_image(
    hetzner: HetznerEmulator, client: ApiClient, sparse_request: BuildRequest, rescue: RescueSystem
) -> None:
    # Inside the image's zero MiB, which the sparse write skips.
    rescue.sshd.discarding_disk(leave_nonzero_at=MIB + MIB // 2)

    with pytest.raises(BuildError) as caught:
        build_image(client, sparse_request)

    assert caught.value.step == "verify image"
    assert (
        f"the image written was {hashlib.sha256(TALOS_SHAPED).hexdigest()}" in caught.value.detail
    )
    assert not [image for image in hetzner.state.images.values() if image["status"] == "creating"]
    assert_no_builder_left(hetzner)


def test_a_disk_that_cannot_be_discarded_is_written_in_full(
    client: ApiClient, sparse_request: BuildRequest, rescue: RescueSystem
) -> None:
    lines: list[str] = []
    # No discard: the file standing for the disk is 0xff, so a skipped block would show.
    build_image(client, sparse_request, log=lines.append)

    assert not any("wrote sparse" in line for line in lines)
    assert rescue.disk.read_bytes()[: len(TALOS_SHAPED)] == TALOS_SHAPED


# ---- progress -----------------------------------------------------------------------


class Build:
    """A build in a thread whose log lines the test can wait for."""

    def __init__(self, client: ApiClient, request: BuildRequest) -> None:
        self.lines: list[str] = []
        self.result: BuildResult | BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(client, request), daemon=True)
        self.thread.start()

    def _run(self, client: ApiClient, request: BuildRequest) -> None:
        try:
            self.result = build_image(client, request, log=self.lines.append)
        except BaseException as error:
            self.result = error

    def wait_for_lines(self, matching: Callable[[str], bool], count: int) -> list[str]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if matching(line)]
            if len(found) >= count:
                return found
            assert self.thread.is_alive(), f"the build ended: {self.result}; {self.lines}"
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} lines matched: {self.lines}")

    def finish(self) -> BuildResult:
        self.thread.join(timeout=120)
        assert isinstance(self.result, BuildResult), self.result
        return self.result


def test_progress_lines_during_a_throttled_download(
    hetzner: HetznerEmulator, client: ApiClient, request_for: BuildRequest, factory: ImageFactory
) -> None:
    release = threading.Event()
    factory.throttled_until = release
    # The held end of the download must not count as a stall.
    request = replace(request_for, limits=replace(request_for.limits, progress=0.5, write_stall=60))

    build = Build(client, request)
    try:
        progress = build.wait_for_lines(lambda line: "write image:" in line, 2)
    finally:
        release.set()
    build.finish()

    assert all("MiB of the image streamed" in line and "MiB/s" in line for line in progress)
    streamed = [float(line.split("write image: ")[1].split(" MiB")[0]) for line in progress]
    assert streamed == sorted(streamed)


def test_progress_lines_during_the_snapshot_wait(
    hetzner: HetznerEmulator, client: ApiClient, request_for: BuildRequest
) -> None:
    hetzner.action_seconds["create_image"] = 3600.0  # until the test ends it
    request = replace(request_for, limits=replace(request_for.limits, progress=0.5, snapshot=600))

    build = Build(client, request)
    try:
        waiting = build.wait_for_lines(lambda line: "create snapshot: waiting" in line, 2)
    finally:
        hetzner.finish_actions("create_image")
    build.finish()

    assert all("Hetzner reports 50%" in line for line in waiting)
    assert_no_builder_left(hetzner)
