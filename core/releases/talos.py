"""Talos releases this program supports and the Kubernetes versions each runs.

Source: the Talos support matrix (docs "Support Matrix" per release). A kubelet
outside its Talos release's range fails on the node with "kubelet image is not
valid" minutes after boot; we refuse it at preview time instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Talos minor -> (oldest, newest) supported Kubernetes minor.
KUBERNETES_RANGE_BY_TALOS_MINOR: dict[tuple[int, int], tuple[tuple[int, int], tuple[int, int]]] = {
    (1, 8): ((1, 26), (1, 31)),
    (1, 9): ((1, 27), (1, 32)),
    (1, 10): ((1, 28), (1, 33)),
    (1, 11): ((1, 29), (1, 34)),
    (1, 12): ((1, 30), (1, 35)),
    (1, 13): ((1, 31), (1, 36)),
}

TALOS_VERSION_PATTERN = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
KUBERNETES_VERSION_PATTERN = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Version:
    """A ``major.minor.patch`` version."""

    major: int
    minor: int
    patch: int

    @property
    def minor_key(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class TalosVersion(Version):
    """A Talos release, parsed once from ``talos.version`` and carried from there."""

    @property
    def text(self) -> str:
        """As the config, the Image Factory and the snapshot labels write it: ``vX.Y.Z``."""
        return f"v{self}"


def parse_talos_version(text: str) -> TalosVersion:
    """Parse ``vX.Y.Z``; raise ValueError saying what is expected."""
    match = TALOS_VERSION_PATTERN.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a Talos version of the form vX.Y.Z (e.g. v1.11.6)")
    return TalosVersion(*(int(part) for part in match.groups()))


def supported_talos_version(text: str) -> TalosVersion:
    """``talos.version`` (and the CLI's ``--talos-version``): a Talos release this program
    knows; ValueError says what is wrong."""
    talos = parse_talos_version(text)
    check_talos_supported(talos)
    return talos


def parse_kubernetes_version(text: str) -> Version:
    """Parse ``X.Y.Z`` (a leading ``v`` is accepted)."""
    match = KUBERNETES_VERSION_PATTERN.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes version of the form X.Y.Z (e.g. 1.33.1)")
    return Version(*(int(part) for part in match.groups()))


def supported_talos_minors() -> str:
    """Human-readable list of supported Talos minors, for error messages."""
    return ", ".join(f"v{major}.{minor}" for major, minor in KUBERNETES_RANGE_BY_TALOS_MINOR)


def check_talos_supported(talos: Version) -> None:
    """Raise ValueError when this program has no tables for the Talos minor."""
    if talos.minor_key not in KUBERNETES_RANGE_BY_TALOS_MINOR:
        raise ValueError(
            f"Talos v{talos} is not supported by this program; supported minors: "
            f"{supported_talos_minors()}"
        )


def check_kubernetes_supported(talos: Version, kubernetes: Version) -> None:
    """Raise ValueError when Talos ``talos`` cannot run Kubernetes ``kubernetes``."""
    check_talos_supported(talos)
    oldest, newest = KUBERNETES_RANGE_BY_TALOS_MINOR[talos.minor_key]
    if not oldest <= kubernetes.minor_key <= newest:
        raise ValueError(
            f"Kubernetes {kubernetes} is outside what Talos v{talos} supports "
            f"({oldest[0]}.{oldest[1]}.x to {newest[0]}.{newest[1]}.x); pick a Kubernetes "
            "version in that range or another Talos release"
        )


def kubelet_image(kubernetes: Version) -> str:
    """The kubelet image Talos runs for a Kubernetes version."""
    return f"ghcr.io/siderolabs/kubelet:v{kubernetes}"
