"""Builds that go wrong: every case ends with an error naming the step and nothing billed left.

Lost API answers, interrupted, failed and timed-out snapshots, a stalled download,
an API that never answers, SIGTERM and SIGKILL of a real build process, cleanup by
age, a disk that does not hold what was written. Each project also holds more than
a page of unrelated servers, keys and snapshots, which must all survive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core.hetzner.api import ApiClient
from core.image_builder.builder_resources import (
    BUILDER_LABEL,
    CLI_SCOPE,
    SCOPE_LABEL,
    STALE_AFTER,
    builder_scope,
)
from core.image_builder.pipeline import (
    SSH_PORT_ENV,
    TARGET_DEVICE_ENV,
    BuildError,
    BuildRequest,
    build_image,
)

from tests.stand_ins.hetzner_api import HetznerEmulator, SilentApi
from tests.stand_ins.image_factory import RAW_IMAGE, ImageFactory
from tests.stand_ins.rescue_sshd import RescueSystem
from tests.support.image_build import (
    SCHEMATIC,
    build_arguments,
    cli_command,
    cli_env,
    fast_client,
    run_cli,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def unrelated(hetzner: HetznerEmulator) -> Iterator[set[tuple[str, int]]]:
    """More than a page of other people's servers, keys and snapshots; all must survive."""
    seeded = hetzner.seed_unrelated()
    yield seeded
    assert hetzner.surviving(seeded) == seeded, "an unrelated resource was deleted"


def assert_no_builder_left(hetzner: HetznerEmulator) -> None:
    assert hetzner.builder_leftovers() == {"servers": [], "ssh_keys": [], "images": []}
    assert not [
        image for image in hetzner.state.images.values() if image["status"] == "creating"
    ], "an unfinished snapshot is left"


def limits(request: BuildRequest, **changes: float) -> BuildRequest:
    return replace(request, limits=replace(request.limits, **changes))


# ---- lost answers ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["gateway", "read timeout"])
@pytest.mark.parametrize(
    ("request_name", "step", "kind"),
    [("POST /servers", "create server", "server"), ("POST /ssh_keys", "upload ssh key", "ssh key")],
)
def test_a_lost_answer_on_create_leaves_nothing_behind(
    hetzner: HetznerEmulator,
    request_for: BuildRequest,
    unrelated: set[tuple[str, int]],
    mode: str,
    request_name: str,
    step: str,
    kind: str,
) -> None:
    """The create took effect, its answer was lost, the library's retry got 409."""
    hetzner.faults.lost_answers[request_name] = mode
    hetzner.faults.lost_answer_delay = 1.0
    client = fast_client(hetzner.endpoint, request_timeout=(2.0, 0.3))

    with pytest.raises(BuildError) as caught:
        build_image(client, request_for)

    assert request_name not in hetzner.faults.lost_answers  # the answer was lost
    assert caught.value.step == step
    assert "uniqueness_error" in caught.value.detail
    assert f"{kind} " in str(caught.value) and "(found by its run label)" in str(caught.value)
    assert caught.value.leaked == []
    assert_no_builder_left(hetzner)


def test_a_retried_snapshot_request_answered_locked_deletes_the_snapshot(
    hetzner: HetznerEmulator, client: ApiClient, request_for: BuildRequest
) -> None:
    hetzner.faults.lost_answers["POST create_image"] = "gateway"
    hetzner.faults.snapshot_runs_until_deleted = True  # still running when the retry arrives

    with pytest.raises(BuildError) as caught:
        build_image(client, request_for)

    assert caught.value.step == "create snapshot"
    assert "locked" in caught.value.detail
    assert "snapshot" in str(caught.value) and "(found by its run label)" in str(caught.value)
    assert_no_builder_left(hetzner)
    assert hetzner.state.images == {}


# ---- snapshots ----------------------------------------------------------------------


def test_a_snapshot_that_takes_too_long_is_deleted_once_hetzner_lets_go(
    hetzner: HetznerEmulator, client: ApiClient, request_for: BuildRequest
) -> None:
    hetzner.faults.snapshot_runs_until_deleted = True  # longer than the limit; locked meanwhile

    with pytest.raises(BuildError) as caught:
        build_image(client, limits(request_for, snapshot=0.3))

    assert caught.value.step == "create snapshot"
    assert "gave up waiting for snapshot" in caught.value.detail
    assert "after 0.3 s" in caught.value.detail
    assert_no_builder_left(hetzner)
    assert hetzner.state.images == {}


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in a terminal. A process started with SIGINT ignored
    (a background job of a non-interactive shell, as CI may start the suite) keeps ignoring it:
    Python installs its handler only where SIGINT was at its default."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_the_snapshot_is_taken_deletes_it(
    hetzner: HetznerEmulator,
    client: ApiClient,
    request_for: BuildRequest,
    unrelated: set[tuple[str, int]],
    ctrl_c_raises: None,
) -> None:
    hetzner.faults.snapshot_runs_until_deleted = True  # Hetzner keeps it locked until then
    poll_action = hetzner._get_actions
    pressed = threading.Event()

    def ctrl_c_while_polled(parts: list[str], params: dict[str, str], body: object) -> Any:
        answer = poll_action(parts, params, body)
        action = hetzner.state.actions.get(int(parts[0]))
        if action is not None and action.command == "create_image" and not pressed.is_set():
            pressed.set()  # the user presses Ctrl-C while the build waits for the snapshot
            os.kill(os.getpid(), signal.SIGINT)
        return answer

    hetzner._get_actions = ctrl_c_while_polled  # type: ignore[method-assign]
    with pytest.raises(BuildError) as caught:
        build_image(client, request_for)

    assert pressed.is_set()
    assert caught.value.step == "create snapshot"
    assert caught.value.detail == "interrupted"
    assert_no_builder_left(hetzner)
    assert [image["description"] for image in hetzner.state.images.values()] == [
        f"unrelated {index}" for index in range(60)
    ]


# ---- the write ----------------------------------------------------------------------


def test_a_stalled_download_is_abandoned_after_the_stall_window(
    hetzner: HetznerEmulator,
    factory: ImageFactory,
    client: ApiClient,
    request_for: BuildRequest,
    unrelated: set[tuple[str, int]],
) -> None:
    # A little data, then nothing: curl averages its speed over a few seconds.
    factory.stall_after = 4096

    with pytest.raises(BuildError) as caught:
        build_image(client, limits(request_for, write_stall=1))

    assert factory.stalled.is_set()
    assert caught.value.step == "write image"
    assert "the download stalled" in caught.value.detail
    assert "Less than 16384 bytes/sec transferred the last 1 seconds" in caught.value.detail
    assert_no_builder_left(hetzner)


def test_the_write_has_an_overall_limit(
    hetzner: HetznerEmulator, factory: ImageFactory, client: ApiClient, request_for: BuildRequest
) -> None:
    factory.stall_after = len(factory.compressed) // 3

    with pytest.raises(BuildError) as caught:
        build_image(client, limits(request_for, write_stall=60, write=1.5))

    assert caught.value.step == "write image"
    assert caught.value.detail == "the write did not finish within 1.5 s"
    assert_no_builder_left(hetzner)


@pytest.mark.parametrize("fault", ["corrupt", "drop"])
def test_a_disk_that_does_not_hold_the_image_fails_the_verification(
    hetzner: HetznerEmulator,
    client: ApiClient,
    rescue: RescueSystem,
    request_for: BuildRequest,
    fault: str,
) -> None:
    rescue.sshd.break_disk(fault)

    with pytest.raises(BuildError) as caught:
        build_image(client, request_for)

    assert caught.value.step == "verify image"
    assert f"the first {len(RAW_IMAGE)} bytes of {rescue.disk} have sha256" in caught.value.detail
    assert_no_builder_left(hetzner)
    assert hetzner.state.images == {}  # no snapshot of a bad disk


# ---- an API that never answers ------------------------------------------------------


@pytest.fixture
def silent_api() -> Iterator[SilentApi]:
    api = SilentApi().start()
    yield api
    api.stop()


def test_an_api_that_never_answers_fails_the_build_instead_of_hanging(
    silent_api: SilentApi, request_for: BuildRequest
) -> None:
    client = fast_client(silent_api.endpoint, request_timeout=(1.0, 0.1))
    outcome: list[BaseException] = []

    def build() -> None:
        try:
            build_image(client, request_for)
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=build, daemon=True)
    worker.start()
    worker.join(timeout=30)

    assert not worker.is_alive(), "the build hangs on an API that never answers"
    assert silent_api.connections >= 1
    [error] = outcome
    assert isinstance(error, BuildError)
    assert error.step == "remove stale builders"
    assert "the Hetzner API did not answer in time, also after retries" in error.detail


# ---- signals to a real build process ------------------------------------------------


def start_cli_build(
    hetzner: HetznerEmulator, factory: ImageFactory, rescue: RescueSystem
) -> subprocess.Popen[str]:
    env = cli_env(hetzner, **{SSH_PORT_ENV: str(rescue.port), TARGET_DEVICE_ENV: str(rescue.disk)})
    return subprocess.Popen(
        cli_command(*build_arguments(factory.url, "--schematic-id", SCHEMATIC)),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stalled_mid_write(
    hetzner: HetznerEmulator, factory: ImageFactory, rescue: RescueSystem
) -> subprocess.Popen[str]:
    """A CLI build that is writing the image (its download hangs) when this returns."""
    hetzner.default_action_seconds = 0  # the CLI polls with production intervals
    factory.stall_after = len(factory.compressed) // 3
    process = start_cli_build(hetzner, factory, rescue)
    if not factory.stalled.wait(timeout=60):
        process.kill()
        raise AssertionError(f"the build never reached the write: {process.communicate()}")
    return process


def test_sigterm_stops_a_running_build_like_ctrl_c(
    hetzner: HetznerEmulator,
    factory: ImageFactory,
    rescue: RescueSystem,
    unrelated: set[tuple[str, int]],
) -> None:
    process = stalled_mid_write(hetzner, factory, rescue)
    assert hetzner.builder_leftovers()["servers"]  # the builder is running

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 1
    assert "image build failed at step 'write image': interrupted (SIGTERM)" in stderr
    assert "could not delete" not in stderr
    assert_no_builder_left(hetzner)


def test_a_killed_build_is_cleaned_up_by_a_later_build_of_its_scope(
    hetzner: HetznerEmulator,
    factory: ImageFactory,
    rescue: RescueSystem,
    client: ApiClient,
    request_for: BuildRequest,
    unrelated: set[tuple[str, int]],
) -> None:
    process = stalled_mid_write(hetzner, factory, rescue)
    process.kill()  # SIGKILL: no teardown at all
    process.communicate(timeout=30)
    killed = hetzner.builder_leftovers()
    assert killed["servers"] and killed["ssh_keys"]
    factory.stall_after = None

    # Builds that stop right after their sweep (their pool type is too small):
    stops_early = replace(request_for, must_fit_server_types=["tiny"])
    # right away, a build cannot tell a dead build from a running one: it keeps them;
    with pytest.raises(BuildError, match="would not fit tiny"):
        build_image(client, stops_early)
    assert hetzner.builder_leftovers() == killed
    # a build of another scope never touches them, however old.
    hetzner.pass_time(STALE_AFTER + timedelta(minutes=1))
    with pytest.raises(BuildError, match="would not fit tiny"):
        build_image(client, replace(stops_early, builder_scope=builder_scope("other", "prod")))
    assert hetzner.builder_leftovers() == killed

    lines: list[str] = []
    build_image(client, request_for, log=lines.append)  # the killed build's scope: the CLI's
    assert_no_builder_left(hetzner)
    removed = [line for line in lines if "stale builder: deleted" in line]
    assert len(removed) == len(killed["servers"]) + len(killed["ssh_keys"])


# ---- cleanup ------------------------------------------------------------------------


def cli(*args: str, hetzner: HetznerEmulator) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=cli_env(hetzner))


def test_cleanup_keeps_builders_that_may_still_run_unless_told_all(
    hetzner: HetznerEmulator, unrelated: set[tuple[str, int]]
) -> None:
    def builder(scope: str) -> dict[str, str]:
        return {BUILDER_LABEL: "0123456789ab", SCOPE_LABEL: scope}

    old = {
        ("server", hetzner.add_server("talos-builder-old", builder("a.dev"))),
        ("ssh_key", hetzner.add_ssh_key("talos-builder-old", builder("b.prod"))),
        ("image", hetzner.add_snapshot(builder(CLI_SCOPE), description="unfinished")),
    }
    hetzner.pass_time(STALE_AFTER + timedelta(minutes=5))
    recent = {
        ("server", hetzner.add_server("talos-builder-new", builder("a.dev"))),
        ("image", hetzner.add_snapshot(builder("a.dev"), description="in progress")),
    }
    finished = {("image", hetzner.add_snapshot({"os": "talos"}, description="a finished one"))}

    for dry_run in (["--dry-run"], ["--all", "--dry-run"]):
        previewed = cli("cleanup", *dry_run, hetzner=hetzner)
        assert previewed.returncode == 0, previewed.stderr
        assert len(json.loads(previewed.stdout)["would_remove"]) == 3 + 2 * ("--all" in dry_run)
        assert hetzner.surviving(old | recent | finished) == old | recent | finished
    assert ("DELETE" in {method for method, _ in hetzner.state.requests}) is False

    cleaned = cli("cleanup", hetzner=hetzner)
    assert cleaned.returncode == 0, cleaned.stderr
    assert sorted(json.loads(cleaned.stdout)["removed"]) == sorted(
        [
            f"server {dict(old)['server']} (talos-builder-old)",
            f"ssh key {dict(old)['ssh_key']} (talos-builder-old)",
            f"snapshot {dict(old)['image']} (unfinished)",
        ]
    )
    assert hetzner.surviving(old) == set()
    assert hetzner.surviving(recent) == recent

    everything = cli("cleanup", "--all", hetzner=hetzner)
    assert everything.returncode == 0, everything.stderr
    assert len(json.loads(everything.stdout)["removed"]) == 2
    assert hetzner.surviving(recent) == set()
    assert hetzner.surviving(finished) == finished


def test_cleanup_age_and_all_exclude_each_other(hetzner: HetznerEmulator) -> None:
    result = cli("cleanup", "--all", "--older-than", "5", hetzner=hetzner)
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr
