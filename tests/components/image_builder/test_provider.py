"""The dynamic provider's lifecycle, against the local stand-ins."""

from __future__ import annotations

import functools
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from google.protobuf import json_format
from hcloud import APIException
from pulumi.dynamic import Config, ConfigureRequest
from pulumi.runtime.proto import provider_pb2

from cli import image_builder as cli_module
from components.image_builder import provider as provider_module
from components.image_builder.provider import TalosSnapshotProvider, request_from
from core.hetzner.api import ApiClient
from core.image_builder.identity import snapshot_labels

from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator, SilentApi
from tests.stand_ins.image_factory import RAW_IMAGE, ImageFactory
from tests.stand_ins.rescue_sshd import RescueSystem
from tests.support.dynamic_host import DynamicHost
from tests.support.image_build import SCHEMATIC


@pytest.fixture
def props(
    hetzner: HetznerEmulator,
    factory: ImageFactory,
    rescue_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """What the program sends; the provider uses its own production client settings,
    so the emulator's actions finish at once (no poll waits)."""
    hetzner.default_action_seconds = 0
    for name, value in rescue_env.items():
        monkeypatch.setenv(name, value)
    return {
        "talos_version": "v1.11.6",
        "schematic_id": SCHEMATIC,
        "extensions": ["siderolabs/qemu-guest-agent"],
        "architecture": "amd64",
        "location": "fsn1",
        "server_type": "cx23",
        "factory_url": factory.url,
        "extra_labels": {"environment": "test"},
        "must_fit_server_types": ["cpx22"],
        "hcloud_endpoint": hetzner.endpoint,
        "write_timeout": 30,
        "builder_scope": "hcloud-talos-autoscaler.test",
        "hcloud_token": TEST_TOKEN,
    }


def test_provider_lifecycle(
    hetzner: HetznerEmulator, factory: ImageFactory, rescue: RescueSystem, props: dict[str, Any]
) -> None:
    provider = TalosSnapshotProvider()
    factory.known_schematics.clear()  # the provider must register the schematic itself

    created = provider.create(props)
    assert created.id in {str(image_id) for image_id in hetzner.state.images}
    assert created.outs is not None and created.outs["image_id"] == created.id
    assert rescue.disk.read_bytes()[: len(RAW_IMAGE)] == RAW_IMAGE
    assert hetzner.state.servers == {} and hetzner.state.ssh_keys == {}
    outs = created.outs

    # Nothing changed: no diff (so `pulumi up --refresh` right after changes nothing).
    assert not provider.diff(created.id, outs, props).changes
    refreshed = provider.read(created.id, outs)
    assert refreshed.id == created.id
    assert refreshed.outs is not None
    assert not provider.diff(created.id, refreshed.outs, props).changes

    # New labels: updated in place.
    relabelled = {**props, "extra_labels": {"environment": "prod"}}
    diff = provider.diff(created.id, outs, relabelled)
    assert diff.changes and not diff.replaces
    updated = provider.update(created.id, outs, relabelled)
    assert hetzner.state.images[int(created.id)]["labels"]["environment"] == "prod"
    assert updated.outs is not None and updated.outs["labels"]["environment"] == "prod"

    # A rotated token or another endpoint: recorded in state, the snapshot stays.
    rotated = {**relabelled, "hcloud_token": "rotated-token"}
    diff = provider.diff(created.id, updated.outs, rotated)
    assert diff.changes and not diff.replaces
    hetzner.valid_tokens.add("rotated-token")
    recorded = provider.update(created.id, updated.outs, rotated).outs
    assert recorded is not None and recorded["hcloud_token"] == "rotated-token"

    # Another version, schematic, architecture or factory: a new snapshot.
    for key, value in [
        ("talos_version", "v1.11.7"),
        ("schematic_id", "0" * 64),
        ("architecture", "arm64"),
        ("factory_url", "https://factory.example.com"),
    ]:
        assert provider.diff(created.id, outs, {**props, key: value}).replaces == [key]

    provider.delete(created.id, outs)
    assert int(created.id) not in hetzner.state.images
    provider.delete(created.id, outs)  # already gone: still success
    gone = provider.read(created.id, outs)
    assert gone.id is None  # dropped from state; the next up rebuilds


def test_refresh_and_destroy_use_the_stacks_current_token_after_rotation(
    hetzner: HetznerEmulator, props: dict[str, Any]
) -> None:
    created = TalosSnapshotProvider().create(props)
    assert created.outs is not None
    hetzner.valid_tokens = {"rotated-token"}  # the token in state is revoked

    stale = TalosSnapshotProvider()
    with pytest.raises(APIException, match="unable to authenticate"):
        stale.read(created.id, created.outs)

    provider = TalosSnapshotProvider()  # as Pulumi hands it the stack config
    provider.configure(
        ConfigureRequest(Config({"hcloud:token": "rotated-token"}, "hcloud-talos-autoscaler"))
    )
    assert provider.read(created.id, created.outs).id == created.id
    provider.delete(created.id, created.outs)
    assert hetzner.state.images == {}


def test_pulumi_dynamic_host_builds_both_architectures_at_once_from_the_serialized_provider(
    hetzner: HetznerEmulator, factory: ImageFactory, rescue: RescueSystem, props: dict[str, Any]
) -> None:
    """What `pulumi up` runs: the provider pickled by the program, unpickled by a fresh
    `python -m pulumi.dynamic` in the project directory (as Pulumi's plugin shim starts it),
    driven over gRPC like the engine does."""
    with DynamicHost() as host:
        host.configure()
        requests = {
            arch: {
                **props,
                "architecture": arch,
                "server_type": server_type,
                "must_fit_server_types": [pool_type],
            }
            for arch, server_type, pool_type in [
                ("amd64", "cx23", "cpx22"),
                ("arm64", "cax11", "cax21"),
            ]
        }

        def create(inputs: dict[str, Any]) -> provider_pb2.CreateResponse:
            return host.create(f"urn:{inputs['architecture']}", inputs, TalosSnapshotProvider())

        with ThreadPoolExecutor(max_workers=2) as pool:
            created = dict(zip(requests, pool.map(create, requests.values()), strict=True))

        outs = {
            arch: json_format.MessageToDict(reply.properties) for arch, reply in created.items()
        }
        assert {outs[arch]["labels"]["arch"] for arch in outs} == {"amd64", "arm64"}
        assert {reply.id for reply in created.values()} == {
            str(image_id) for image_id in hetzner.state.images
        }
        assert hetzner.state.peak_servers == 2  # the builds overlapped
        assert hetzner.state.servers == {} and hetzner.state.ssh_keys == {}

        for reply in created.values():
            host.delete(reply)
        assert hetzner.state.images == {}


def test_state_written_by_the_previous_version_keeps_its_snapshot(
    hetzner: HetznerEmulator, props: dict[str, Any]
) -> None:
    """Old state held the test knobs and no scope or write limit: no replacement, no update."""
    request = request_from(props)
    image_id = hetzner.add_snapshot(snapshot_labels(request), request.description)
    previous_outs = {
        **{
            key: value
            for key, value in props.items()
            if key not in ("write_timeout", "builder_scope")
        },
        "ssh_port": 22,
        "target_device": "/dev/sda",
        "image_id": str(image_id),
        "labels": snapshot_labels(request),
        "description": request.description,
        "disk_size": 40.0,
    }
    provider = TalosSnapshotProvider()

    diff = provider.diff(str(image_id), previous_outs, props)
    assert not diff.changes and not diff.replaces

    refreshed = provider.read(str(image_id), previous_outs)
    assert refreshed.id == str(image_id) and refreshed.outs is not None
    assert not provider.diff(str(image_id), refreshed.outs, props).changes

    relabelled = {**props, "extra_labels": {"environment": "prod"}}
    assert provider.diff(str(image_id), previous_outs, relabelled).replaces == []
    updated = provider.update(str(image_id), previous_outs, relabelled).outs
    assert updated is not None
    assert "ssh_port" not in updated and "target_device" not in updated
    assert updated["builder_scope"] == props["builder_scope"]

    # The engine deletes with the state the update wrote (now with this stack's user label).
    provider.delete(str(image_id), updated)
    assert image_id not in hetzner.state.images

    # Never updated: an old state deletes its snapshot, which has no user labels, as before.
    untouched = hetzner.add_snapshot(snapshot_labels(request), request.description)
    provider.delete(str(untouched), {**previous_outs, "image_id": str(untouched)})
    assert untouched not in hetzner.state.images


@pytest.mark.parametrize("source", ["hcloud:endpoint", "HCLOUD_ENDPOINT"])
def test_refresh_and_destroy_use_the_stacks_api_endpoint(
    hetzner: HetznerEmulator, props: dict[str, Any], source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint reaches the snapshot resource as it reaches the hcloud provider."""
    image_id = hetzner.add_snapshot({"os": "talos"})
    state = {**props, "hcloud_endpoint": "http://127.0.0.1:9/v1"}  # nothing listens there
    config = {"hcloud:token": TEST_TOKEN}
    monkeypatch.delenv("HCLOUD_ENDPOINT", raising=False)
    if source == "hcloud:endpoint":
        config[source] = hetzner.endpoint
    else:
        monkeypatch.setenv(source, hetzner.endpoint)
    provider = TalosSnapshotProvider()
    provider.configure(ConfigureRequest(Config(config, "hcloud-talos-autoscaler")))

    assert provider.read(str(image_id), state).id == str(image_id)
    provider.delete(str(image_id), state)
    assert image_id not in hetzner.state.images


def test_the_provider_and_cleanup_fail_instead_of_hanging_on_a_silent_api(
    props: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refresh, destroy, up and cleanup against an API that accepts and never answers."""
    silent = SilentApi().start()
    quick = functools.partial(ApiClient, request_timeout=(1.0, 0.1), retry_backoff=lambda _: 0.02)
    monkeypatch.setattr(provider_module, "ApiClient", quick)
    monkeypatch.setattr(cli_module, "ApiClient", quick)
    monkeypatch.setenv("HCLOUD_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("HCLOUD_ENDPOINT", silent.endpoint)
    state = {**props, "extensions": [], "hcloud_endpoint": silent.endpoint}
    provider = TalosSnapshotProvider()
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(requests.exceptions.Timeout):
            provider.read("123", state)
        with pytest.raises(requests.exceptions.Timeout):
            provider.delete("123", state)
        # Before any build: the look for a snapshot another stack built (sharing).
        with pytest.raises(RuntimeError, match="snapshot to share: the Hetzner API did not answer"):
            provider.create(state)
        assert cli_module.main(["cleanup"]) == 1  # a runtime failure, reported without traceback
    finally:
        signal.signal(signal.SIGTERM, sigterm)
        silent.stop()
    assert silent.connections >= 4
