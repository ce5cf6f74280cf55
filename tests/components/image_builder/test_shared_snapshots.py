"""Two stacks of one Hetzner project that need the same snapshot share one, and destroying
either never deletes it while the other still uses it (the dynamic provider, against the
emulator, the Image Factory stand-in and the rescue sshd)."""

from __future__ import annotations

from typing import Any

import pytest

from components.image_builder.provider import TalosSnapshotProvider
from core.image_builder.pipeline import SSH_PORT_ENV, TARGET_DEVICE_ENV
from core.image_builder.sharing import IDENTITY_LABEL, USER_LABEL_PREFIX

from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator
from tests.stand_ins.image_factory import ImageFactory
from tests.stand_ins.rescue_sshd import RescueSystem
from tests.support.image_build import SCHEMATIC

DEV, PROD = "hcloud-talos-autoscaler.dev", "hcloud-talos-autoscaler.prod"


@pytest.fixture
def props_of(
    hetzner: HetznerEmulator,
    factory: ImageFactory,
    rescue: RescueSystem,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    hetzner.default_action_seconds = 0
    monkeypatch.setenv(SSH_PORT_ENV, str(rescue.port))
    monkeypatch.setenv(TARGET_DEVICE_ENV, str(rescue.disk))

    def props(scope: str, **changes: Any) -> dict[str, Any]:
        return {
            "talos_version": "v1.11.6",
            "schematic_id": SCHEMATIC,
            "extensions": [],
            "architecture": "amd64",
            "location": "fsn1",
            "server_type": "cx23",
            "factory_url": factory.url,
            "extra_labels": {},
            "must_fit_server_types": ["cpx22"],
            "hcloud_endpoint": hetzner.endpoint,
            "write_timeout": 30,
            "builder_scope": scope,
            "hcloud_token": TEST_TOKEN,
            **changes,
        }

    return props


def builds(hetzner: HetznerEmulator) -> int:
    return sum(1 for request in hetzner.state.requests if request == ("POST", "/v1/servers"))


def user_labels(hetzner: HetznerEmulator, image_id: str) -> set[str]:
    labels = hetzner.state.images[int(image_id)]["labels"]
    return {value for key, value in labels.items() if key.startswith(USER_LABEL_PREFIX)}


@pytest.mark.parametrize("first_gone", [DEV, PROD])
def test_two_stacks_share_one_snapshot_and_destroy_in_either_order(
    hetzner: HetznerEmulator, props_of: Any, first_gone: str
) -> None:
    provider = TalosSnapshotProvider()
    dev = provider.create(props_of(DEV))
    prod = provider.create(props_of(PROD))

    assert prod.id == dev.id and builds(hetzner) == 1  # built once, shared
    snapshots = [
        image for image in hetzner.state.images.values() if IDENTITY_LABEL in image["labels"]
    ]
    assert len(snapshots) == 1
    assert user_labels(hetzner, dev.id) == {DEV, PROD}
    # Sharing labels are no drift: a refresh of either stack changes nothing.
    for result, scope in ((dev, DEV), (prod, PROD)):
        assert result.outs is not None
        refreshed = provider.read(result.id, result.outs)
        assert refreshed.outs is not None
        assert not provider.diff(result.id, refreshed.outs, props_of(scope)).changes

    assert dev.outs is not None and prod.outs is not None
    outs: dict[str, dict[str, Any]] = {DEV: dev.outs, PROD: prod.outs}
    last = PROD if first_gone == DEV else DEV
    provider.delete(dev.id, outs[first_gone])
    assert int(dev.id) in hetzner.state.images  # the other stack still uses it
    assert user_labels(hetzner, dev.id) == {last}
    provider.delete(dev.id, outs[last])
    assert int(dev.id) not in hetzner.state.images


def test_another_identity_builds_its_own_and_a_label_update_keeps_the_other_user(
    hetzner: HetznerEmulator, props_of: Any
) -> None:
    provider = TalosSnapshotProvider()
    dev = provider.create(props_of(DEV))
    other = provider.create(props_of(PROD, talos_version="v1.11.7"))
    assert other.id != dev.id and builds(hetzner) == 2

    shared = provider.create(props_of(PROD))
    assert shared.id == dev.id and builds(hetzner) == 2
    assert shared.outs is not None
    relabelled = props_of(PROD, extra_labels={"team": "platform"})
    updated = provider.update(shared.id, shared.outs, relabelled).outs
    assert updated is not None
    labels = hetzner.state.images[int(dev.id)]["labels"]
    assert labels["team"] == "platform"
    assert user_labels(hetzner, dev.id) == {DEV, PROD}


def test_a_snapshot_still_being_made_is_not_shared(hetzner: HetznerEmulator, props_of: Any) -> None:
    provider = TalosSnapshotProvider()
    dev = provider.create(props_of(DEV))
    hetzner.state.images[int(dev.id)]["status"] = "creating"

    prod = provider.create(props_of(PROD))
    assert prod.id != dev.id and builds(hetzner) == 2
