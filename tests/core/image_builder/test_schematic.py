"""The schematic id the program computes offline is the one the Image Factory registers."""

from __future__ import annotations

from core.image_builder.schematic import schematic_id_for, schematic_yaml

from tests.stand_ins.image_factory import ImageFactory


def test_snapshot_id_rule_matches_the_factory(factory: ImageFactory) -> None:
    from core.image_builder.schematic import register_schematic

    assert (
        schematic_id_for([]) == "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
    )
    assert schematic_id_for(["siderolabs/qemu-guest-agent"]) == (
        "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
    )
    assert schematic_id_for(["b/x", "a/y"]) == schematic_id_for(["a/y", "b/x"])
    assert schematic_yaml(["siderolabs/zfs"]).startswith("customization:\n    systemExtensions:\n")
    registered = register_schematic(factory.url, ["siderolabs/zfs", "siderolabs/drbd"])
    assert registered == schematic_id_for(["siderolabs/drbd", "siderolabs/zfs"])
