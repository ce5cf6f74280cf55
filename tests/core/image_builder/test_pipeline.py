"""End-to-end builds against the local API emulator, Image Factory and a real OpenSSH server."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import pytest

from core.config import WRITE_TIMEOUT_MAX_MINUTES
from core.hetzner.api import ApiClient
from core.hetzner.facts import Architecture
from core.image_builder.builder_resources import (
    BUILDER_LABEL,
    SCOPE_LABEL,
    STALE_AFTER,
    builder_scope,
)
from core.image_builder.identity import check_labels, snapshot_labels
from core.image_builder.pipeline import BuildError, BuildRequest, Limits, Step, build_image

from tests.conftest import REPO
from tests.stand_ins.hetzner_api import HetznerEmulator
from tests.stand_ins.hetzner_state import SYSTEM_IMAGES
from tests.stand_ins.image_factory import RAW_IMAGE, ImageFactory
from tests.stand_ins.rescue_sshd import RescueSystem


def assert_nothing_left(hetzner: HetznerEmulator) -> None:
    """No builder server or key, and no snapshot that is unfinished or half-labelled."""
    assert hetzner.state.servers == {}, "a builder server leaked"
    assert hetzner.state.ssh_keys == {}, "a builder ssh key leaked"
    assert hetzner.builder_leftovers()["images"] == [], "an unfinished snapshot leaked"


def test_build_writes_the_image_byte_for_byte_and_leaves_only_the_snapshot(
    client: ApiClient,
    hetzner: HetznerEmulator,
    factory: ImageFactory,
    rescue: RescueSystem,
    request_for: BuildRequest,
) -> None:
    result = build_image(client, request_for)

    disk = rescue.disk.read_bytes()
    assert disk[: len(RAW_IMAGE)] == RAW_IMAGE
    assert set(disk[len(RAW_IMAGE) :]) == {0xFF}  # nothing past the image was touched
    assert_nothing_left(hetzner)
    snapshot = hetzner.state.images[result.image_id]
    assert snapshot["labels"] == {
        "os": "talos",
        "talos-version": "v1.11.6",
        "talos-schematic": request_for.schematic_id[:32],
        "arch": "amd64",
        "managed-by": "hcloud-talos-autoscaler",
        "environment": "test",
    }
    assert snapshot["description"] == request_for.description
    assert result.disk_size == 40.0
    assert factory.downloads == [f"/image/{request_for.schematic_id}/v1.11.6/hcloud-amd64.raw.xz"]
    assert set(result.timings) >= {"create server", "write image", "create snapshot", "total"}


@pytest.mark.parametrize(
    ("architecture", "server_type", "hetzner_architecture"),
    [("amd64", "cx23", "x86"), ("arm64", "cax11", "arm")],
)
def test_builder_server_boots_the_base_image_of_its_architecture(
    client: ApiClient,
    hetzner: HetznerEmulator,
    request_for: BuildRequest,
    architecture: Architecture,
    server_type: str,
    hetzner_architecture: str,
) -> None:
    """Resolved by name and architecture first (the API lists one image per architecture)."""
    request = replace(
        request_for, architecture=architecture, server_type=server_type, must_fit_server_types=[]
    )
    build_image(client, request)
    assert hetzner.state.server_images == [SYSTEM_IMAGES[("ubuntu-24.04", hetzner_architecture)]]
    assert_nothing_left(hetzner)


def test_builders_and_unfinished_snapshots_never_carry_snapshot_labels(
    client: ApiClient, hetzner: HetznerEmulator, request_for: BuildRequest
) -> None:
    """Server, key and the snapshot while it is taken carry only the builder's labels;
    the finished snapshot only its own."""
    seen: list[dict[str, str]] = []
    original = hetzner._post_servers

    def spy(parts, params, body):  # type: ignore[no-untyped-def]
        if not parts:
            seen.append(body["labels"])
            seen.append(next(iter(hetzner.state.ssh_keys.values()))["labels"])
        elif parts[-1] == "create_image":
            seen.append(body["labels"])
        return original(parts, params, body)

    hetzner._post_servers = spy  # type: ignore[method-assign]
    result = build_image(client, request_for)
    assert len(seen) == 3
    for labels in seen:
        assert sorted(labels) == [BUILDER_LABEL, SCOPE_LABEL]
        assert labels[SCOPE_LABEL] == "hcloud-talos-autoscaler"
        assert "os" not in labels
    assert hetzner.state.images[result.image_id]["labels"] == result.labels
    assert BUILDER_LABEL not in result.labels and SCOPE_LABEL not in result.labels


@pytest.mark.parametrize(
    ("break_it", "step", "detail"),
    [
        (
            lambda h, f, r: setattr(h.faults, "server_create_status", 500),
            "create server",
            "server_error",
        ),
        (
            lambda h, f, r: setattr(h.faults, "rescue_action_fails", True),
            "enable rescue",
            "enable_rescue failed",
        ),
        (
            lambda h, f, r: setattr(h.faults, "rescue_skips_key", True),
            "wait for ssh",
            "to accept SSH after 2 s",
        ),
        (lambda h, f, r: f.known_schematics.clear(), "write image", "404"),
        (
            lambda h, f, r: setattr(h.faults, "power_off_never_off", True),
            "power off",
            "to be off after 1 s",
        ),
        (
            lambda h, f, r: setattr(h.faults, "snapshot_action_fails", True),
            "create snapshot",
            "create_image failed",
        ),
    ],
)
def test_each_failed_step_is_named_and_nothing_leaks(
    client: ApiClient,
    hetzner: HetznerEmulator,
    factory: ImageFactory,
    rescue: RescueSystem,
    request_for: BuildRequest,
    break_it: Callable[[HetznerEmulator, ImageFactory, RescueSystem], object],
    step: str,
    detail: str,
) -> None:
    break_it(hetzner, factory, rescue)
    # The two waits that are meant to run out here do so quickly.
    request = replace(request_for, limits=replace(request_for.limits, ssh=2, power_off=1))
    with pytest.raises(BuildError) as caught:
        build_image(client, request)
    assert caught.value.step == step
    assert detail in str(caught.value)
    assert caught.value.leaked == []
    assert_nothing_left(hetzner)
    assert [i for i in hetzner.state.images.values() if i["labels"].get("os") == "talos"] == []


def test_corrupt_xz_fails_the_write_step(
    client: ApiClient, hetzner: HetznerEmulator, request_for: BuildRequest
) -> None:
    corrupt = ImageFactory(RAW_IMAGE, corrupt=True).start()
    corrupt.known_schematics.add(request_for.schematic_id)
    try:
        with pytest.raises(BuildError) as caught:
            build_image(client, replace(request_for, factory_url=corrupt.url))
    finally:
        corrupt.stop()
    assert caught.value.step == "write image"
    assert "xz" in str(caught.value)
    assert_nothing_left(hetzner)


def test_disk_write_failure_fails_the_write_step(
    client: ApiClient, hetzner: HetznerEmulator, rescue: RescueSystem, request_for: BuildRequest
) -> None:
    missing = rescue.disk.parent / "no-such-dir" / "disk"
    with pytest.raises(BuildError) as caught:
        build_image(client, replace(request_for, target_device=str(missing)))
    assert caught.value.step == "write image"
    assert "dd" in str(caught.value)
    assert_nothing_left(hetzner)


@pytest.mark.parametrize(
    "fault", ["server_delete_failures", "rate_limited_requests"], ids=["delete-once", "429"]
)
def test_passing_faults_are_retried(
    client: ApiClient, hetzner: HetznerEmulator, request_for: BuildRequest, fault: str
) -> None:
    setattr(hetzner.faults, fault, 1)
    result = build_image(client, request_for)
    assert result.image_id in hetzner.state.images
    assert getattr(hetzner.faults, fault) == 0  # the fault did happen
    assert_nothing_left(hetzner)


def test_teardown_that_keeps_failing_is_reported_with_the_cleanup_command(
    client: ApiClient, hetzner: HetznerEmulator, request_for: BuildRequest
) -> None:
    hetzner.faults.server_delete_failures = 10**6
    with pytest.raises(BuildError) as caught:
        build_image(client, replace(request_for, limits=replace(request_for.limits, teardown=1)))
    assert caught.value.step == "teardown"
    server_id = next(iter(hetzner.state.servers))
    assert caught.value.leaked == [
        f"server {server_id} ({hetzner.state.servers[server_id]['name']})"
    ]
    assert "python -m components.image_builder cleanup" in str(caught.value)
    assert "deleted again" in caught.value.detail
    assert hetzner.state.ssh_keys == {}
    assert hetzner.state.images == {}  # no finished snapshot that Pulumi would not track


def test_ctrl_c_mid_build_still_tears_down(
    client: ApiClient, hetzner: HetznerEmulator, request_for: BuildRequest
) -> None:
    def interrupt(message: str) -> None:
        if "builder server" in message:
            raise KeyboardInterrupt

    with pytest.raises(BuildError) as caught:
        build_image(client, request_for, log=interrupt)
    assert caught.value.step == "create server"
    assert caught.value.detail == "interrupted"
    assert_nothing_left(hetzner)


def test_snapshot_must_fit_every_pool_server_type(
    client: ApiClient, hetzner: HetznerEmulator, request_for: BuildRequest
) -> None:
    with pytest.raises(BuildError, match=r"would not fit tiny \(20 GB disk\)"):
        build_image(client, replace(request_for, must_fit_server_types=["tiny"]))
    assert hetzner.state.ssh_keys == {} and hetzner.state.servers == {}


def test_label_rules() -> None:
    with pytest.raises(ValueError, match="not a valid Hetzner label value"):
        check_labels({"team": "x" * 64})
    with pytest.raises(ValueError, match="not a valid Hetzner label key"):
        check_labels({"bad key": "x"})
    labels = snapshot_labels(
        BuildRequest(
            talos_version="v1.12.0",
            schematic_id="f" * 64,
            architecture="arm64",
            location="fsn1",
            server_type="cax11",
        )
    )
    assert labels["talos-schematic"] == "f" * 32
    assert all(len(value) <= 63 for value in labels.values())


@pytest.mark.parametrize(
    ("project", "stack", "expected"),
    [
        ("hcloud-talos-autoscaler", "dev", "hcloud-talos-autoscaler.dev"),
        ("hcloud-talos-autoscaler", None, "hcloud-talos-autoscaler"),
        ("_my project_", "org/prod", "my-project_.org-prod"),
    ],
)
def test_builder_scope_names_the_stack_as_a_valid_label_value(
    project: str, stack: str | None, expected: str
) -> None:
    assert builder_scope(project, stack) == expected
    check_labels({SCOPE_LABEL: expected})


def test_a_long_builder_scope_stays_a_valid_label_value_and_distinct() -> None:
    long_a = builder_scope("p" * 80, "staging")
    long_b = builder_scope("p" * 80, "production")
    assert len(long_a) <= 63 and len(long_b) <= 63 and long_a != long_b
    check_labels({SCOPE_LABEL: long_a, BUILDER_LABEL: "0123456789ab"})


def test_the_longest_possible_build_is_well_below_the_age_of_a_leftover() -> None:
    slowest = Limits(write=WRITE_TIMEOUT_MAX_MINUTES * 60.0)
    assert slowest.longest_build() < STALE_AFTER.total_seconds()
    assert Limits().longest_build() < slowest.longest_build()


def test_limits_that_would_outlast_the_leftover_age_are_refused(
    client: ApiClient, hetzner: HetznerEmulator, request_for: BuildRequest
) -> None:
    too_long = replace(request_for, limits=Limits(write=STALE_AFTER.total_seconds()))
    with pytest.raises(ValueError, match="longer than the 3:00:00 after which builders"):
        build_image(client, too_long)
    assert hetzner.state.requests == []


def test_the_steps_are_logged_in_order_with_the_run_id_as_the_docs_list_them(
    client: ApiClient, hetzner: HetznerEmulator, request_for: BuildRequest
) -> None:
    lines: list[str] = []
    result = build_image(client, request_for, log=lines.append)
    steps = [step for step in Step if step is not Step.TEARDOWN]
    run_id = lines[0].split("]")[0] + "]"
    assert all(line.startswith(run_id) for line in lines)  # teardown's lines too
    logged = [line.removeprefix(f"{run_id} ") for line in lines if "] step " in line]
    assert logged == [f"step {n}/{len(steps)}: {step}" for n, step in enumerate(steps, 1)]
    assert list(result.timings) == [*(step.value for step in steps), "total"]
    assert any(" deleted ssh key " in line for line in lines)  # a teardown line

    page = (REPO / "docs" / "image-build.md").read_text()
    start = page.index("## Steps")
    section = page[start : page.index("\n## ", start)]
    listed = re.findall(r"^\d+\. `([a-z ]+)`", section, flags=re.MULTILINE)
    assert listed == [step.value for step in steps]
    assert "Then the `teardown`" in section
