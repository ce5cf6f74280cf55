"""A snapshot's identity: what it holds (Talos release, schematic, architecture), the Image
Factory image it is written from, and the labels that find it again.

Apart from the build (``pipeline``, which needs SSH): the plan reads this without it.
"""

from __future__ import annotations

from typing import Protocol

from core.config.model import SnapshotLabel
from core.hetzner.facts import Architecture
from core.resources import PROJECT
from core.validators import hetzner_label_problems


class SnapshotIdentity(Protocol):
    """What a snapshot holds (a ``BuildRequest``, or the stack plan's ``SnapshotPlan``)."""

    @property
    def talos_version(self) -> str: ...
    @property
    def schematic_id(self) -> str: ...
    @property
    def architecture(self) -> Architecture: ...
    @property
    def factory_url(self) -> str: ...
    @property
    def extra_labels(self) -> dict[str, str]: ...


def image_url(request: SnapshotIdentity) -> str:
    """The Image Factory's raw image of this Talos release, schematic and architecture."""
    return (
        f"{request.factory_url.rstrip('/')}/image/{request.schematic_id}/"
        f"{request.talos_version}/hcloud-{request.architecture}.raw.xz"
    )


def snapshot_labels(request: SnapshotIdentity) -> dict[str, str]:
    """Labels that identify a finished snapshot: what it holds and who manages it."""
    identity = {
        SnapshotLabel.OS: "talos",
        SnapshotLabel.TALOS_VERSION: request.talos_version,
        SnapshotLabel.TALOS_SCHEMATIC: request.schematic_id[:32],
        SnapshotLabel.ARCH: request.architecture,
        SnapshotLabel.MANAGED_BY: PROJECT,
    }
    labels = {label.value: value for label, value in identity.items()} | request.extra_labels
    check_labels(labels)
    return labels


def check_labels(labels: dict[str, str]) -> None:
    """Hetzner's label rules, checked before any call."""
    problems = hetzner_label_problems(labels)
    if problems:
        raise ValueError("; ".join(problems))
