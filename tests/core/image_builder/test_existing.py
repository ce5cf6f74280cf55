"""``image.existing``: a snapshot made elsewhere, by id or label selector, checked at preview;
no build for its architecture and nothing of the stack that could delete it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
import pytest

from core.hetzner.facts import Architecture
from core.image_builder.existing import find_existing

from tests.conftest import REPO, MockRuntime, shipped_config
from tests.stand_ins.hetzner_api import HetznerEmulator
from tests.support.image_build import fast_client

MAIN = REPO / "__main__.py"
P = "hcloud-talos-autoscaler"
SNAPSHOT = "pulumi-python:dynamic:Resource"
TALOS = {"os": "talos", "talos-version": "v1.11.6"}


def snapshot(
    hetzner: HetznerEmulator,
    labels: dict[str, str] | None = None,
    *,
    arch: str = "x86",
    status: str = "available",
    age: timedelta = timedelta(0),
) -> int:
    created = (datetime.now(UTC) - age).isoformat()
    image_id = hetzner.add_snapshot(labels or {}, created=created)
    hetzner.state.images[image_id].update(architecture=arch, status=status)
    return image_id


def problems(hetzner: HetznerEmulator, existing: dict[Architecture, int | str]) -> list[str]:
    _, found = find_existing(fast_client(hetzner.endpoint), existing)
    return [str(problem) for problem in found]


def test_by_id_and_by_selector_the_newest_available_snapshot_of_the_architecture(
    hetzner_api: HetznerEmulator,
) -> None:
    mine = snapshot(hetzner_api)
    snapshot(hetzner_api, TALOS, age=timedelta(days=2))
    newest = snapshot(hetzner_api, TALOS, age=timedelta(days=1))
    snapshot(hetzner_api, TALOS, arch="arm")  # newer, but not amd64
    snapshot(hetzner_api, TALOS, status="creating")  # newer, but not finished
    arm = snapshot(hetzner_api, TALOS, arch="arm", age=timedelta(hours=1))

    found, none = find_existing(fast_client(hetzner_api.endpoint), {"amd64": mine})
    assert (found, none) == ({"amd64": mine}, [])
    selector = "os=talos,talos-version=v1.11.6"
    found, none = find_existing(
        fast_client(hetzner_api.endpoint), {"amd64": selector, "arm64": selector}
    )
    assert none == []
    assert found["amd64"] == newest
    assert found["arm64"] != arm  # the newer arm one without age wins
    assert hetzner_api.state.images[found["arm64"]]["architecture"] == "arm"


def test_a_missing_a_wrong_architecture_and_an_unfinished_snapshot_are_refused(
    hetzner_api: HetznerEmulator,
) -> None:
    arm = snapshot(hetzner_api, arch="arm")
    creating = snapshot(hetzner_api, status="creating")
    assert problems(hetzner_api, {"amd64": 999999}) == [
        f"{P}:image.existing.amd64: snapshot 999999 does not exist in this Hetzner project"
    ]
    assert problems(hetzner_api, {"amd64": arm}) == [
        f"{P}:image.existing.amd64: snapshot {arm} is for arm, not amd64"
    ]
    assert problems(hetzner_api, {"amd64": creating}) == [
        f"{P}:image.existing.amd64: snapshot {creating} is 'creating', not available"
    ]
    (message,) = problems(hetzner_api, {"arm64": "team=nobody"})
    assert message.startswith(f"{P}:image.existing.arm64: no available arm64 snapshot matches")


def test_an_existing_snapshot_is_used_and_none_is_built_for_its_architecture(
    pulumi_runtime: MockRuntime, hetzner_api: HetznerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HCLOUD_ENDPOINT", hetzner_api.endpoint)
    existing = snapshot(hetzner_api, TALOS)
    config = shipped_config("dev")
    config[f"{P}:image"] = {**config.get(f"{P}:image", {}), "existing": {"amd64": "os=talos"}}

    exports = pulumi_runtime.run(MAIN, config, ["hcloud:token"])

    assert pulumi_runtime.by_type(SNAPSHOT) == []  # nothing built, nothing to delete it
    assert exports["imageIds"].value == {"amd64": str(existing)}
    (talos_config,) = [
        resource
        for resource in pulumi_runtime.resources
        if resource.inputs.get("metadata", {}).get("name") == "talos-config"
    ]
    decoded = json.loads(base64.b64decode(talos_config.inputs["stringData"]["cluster-config"]))
    assert decoded["imagesForArch"] == {"amd64": str(existing)}


def test_an_unusable_existing_snapshot_fails_the_preview_before_anything_is_created(
    pulumi_preview: MockRuntime, hetzner_api: HetznerEmulator
) -> None:
    arm = snapshot(hetzner_api, arch="arm")
    config = shipped_config("dev")
    config[f"{P}:image"] = {**config.get(f"{P}:image", {}), "existing": {"amd64": arm}}

    with pytest.raises(pulumi.RunError) as caught:
        pulumi_preview.run(MAIN, config, ["hcloud:token"])

    assert f"{P}:image.existing.amd64: snapshot {arm} is for arm, not amd64" in str(caught.value)
    assert pulumi_preview.resources == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "0 is not a snapshot id"), ("os = talos", "is neither a snapshot id nor a label")],
)
def test_a_bad_reference_is_refused_offline(value: Any, expected: str) -> None:
    from tests.support.stack_config import changed, problems_of

    found = problems_of(changed("image", {"existing": {"amd64": value}}))
    assert any(expected in problem for problem in found), found
