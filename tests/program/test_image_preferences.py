"""``image.location`` and ``image.builderServerTypes.<arch>``: one value, or several in order."""

from __future__ import annotations

import pytest

from core.plan import plan_stack
from core.render import Rendered, _images

from tests.conftest import MockRuntime
from tests.program.test_live_checks_and_warnings import MAIN, dev_config, preview_error
from tests.stand_ins.hetzner_api import HetznerEmulator
from tests.support.stack_config import changed, parse, problems_of

P = "hcloud-talos-autoscaler"


def test_single_values_stay_valid_and_the_snapshot_inputs_unchanged() -> None:
    stack = parse(changed("image", {"location": "nbg1", "builderServerTypes": {"amd64": "cx23"}}))
    (snapshot,) = plan_stack(stack).image.snapshots
    assert (snapshot.location, snapshot.server_type) == ("nbg1", "cx23")
    assert (snapshot.fallback_locations, snapshot.fallback_server_types) == ((), ())
    # The state of existing stacks: the same input keys as before the lists existed.
    assert "fallback_locations" not in snapshot.properties()
    assert "fallback_server_types" not in snapshot.properties()


def test_lists_are_preferences_in_order() -> None:
    stack = parse(
        changed(
            "image",
            {
                "location": ["fsn1", "NBG1", "hel1"],
                "builderServerTypes": {"amd64": ["cx23", "cpx22"]},
            },
        )
    )
    plan = plan_stack(stack)
    (snapshot,) = plan.image.snapshots
    assert (snapshot.location, snapshot.fallback_locations) == ("fsn1", ("nbg1", "hel1"))
    assert (snapshot.server_type, snapshot.fallback_server_types) == ("cx23", ("cpx22",))
    assert snapshot.properties()["fallback_locations"] == ["nbg1", "hel1"]
    assert snapshot.properties()["fallback_server_types"] == ["cpx22"]
    rendered = Rendered(warnings=[])
    _images(plan, rendered)
    assert "when Hetzner has no capacity: cx23, cpx22 in fsn1, nbg1, hel1" in "\n".join(
        rendered.report
    )


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({"location": []}, "image.location: is an empty list"),
        ({"location": ["fsn1", "fsn1"]}, "image.location: lists fsn1 more than once"),
        ({"location": ["fsn1", "fra1"]}, "'fra1' is not a Hetzner Cloud location"),
        ({"builderServerTypes": {"amd64": []}}, "builderServerTypes.amd64: is an empty list"),
        (
            {"builderServerTypes": {"amd64": ["cx23", "cax11"]}},
            "amd64: 'cax11' is an arm64 server type",
        ),
        ({"builderServerTypes": {"amd64": ["cx23", "cx99"]}}, "'cx99' is not a Hetzner Cloud"),
    ],
)
def test_bad_preferences_name_the_key(image: dict[str, object], expected: str) -> None:
    assert any(expected in problem for problem in problems_of(changed("image", image))), (
        problems_of(changed("image", image))
    )


def with_image(**image: object) -> dict[str, object]:
    config = dev_config()
    config[f"{P}:image"] = {**config.get(f"{P}:image", {}), **image}
    return config


def test_the_live_check_accepts_a_builder_type_orderable_in_a_later_location(
    pulumi_preview: MockRuntime, hetzner_api: HetznerEmulator
) -> None:
    hetzner_api.orderable["cx23"] = {"nbg1"}
    pulumi_preview.run(MAIN, with_image(location=["fsn1", "nbg1"]), ["hcloud:token"])
    assert pulumi_preview.resources


def test_the_live_check_refuses_a_builder_type_orderable_in_none_of_the_locations(
    pulumi_preview: MockRuntime, hetzner_api: HetznerEmulator
) -> None:
    hetzner_api.orderable["cx23"] = {"hel1"}
    message = preview_error(pulumi_preview, with_image(location=["fsn1", "nbg1"]))
    assert "image.builderServerTypes: amd64: cx23 cannot be ordered in fsn1" in message
