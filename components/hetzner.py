"""Facts about Hetzner Cloud that the configuration is checked against."""

from __future__ import annotations

from typing import Literal

Architecture = Literal["amd64", "arm64"]

#: Cloud locations and the network zone each belongs to. A cloud subnet lives in
#: one network zone, so every server attached to it must be in that zone.
NETWORK_ZONE_BY_LOCATION: dict[str, str] = {
    "fsn1": "eu-central",
    "nbg1": "eu-central",
    "hel1": "eu-central",
    "ash": "us-east",
    "hil": "us-west",
    "sin": "ap-southeast",
}

NETWORK_ZONES: frozenset[str] = frozenset(NETWORK_ZONE_BY_LOCATION.values())

#: Hetzner rejects user data (the Talos config handed to a new server) above this size.
USER_DATA_LIMIT_BYTES = 32 * 1024

#: Hetzner label values (and the name part of keys) are at most this long.
LABEL_VALUE_MAX_LENGTH = 63


def architecture_of(server_type: str) -> Architecture:
    """The CPU architecture of a server type: Ampere (``cax*``) types are arm64."""
    return "arm64" if server_type.lower().startswith("cax") else "amd64"


def network_zone_of(location: str) -> str:
    """The network zone of a cloud location (``fsn1`` -> ``eu-central``)."""
    return NETWORK_ZONE_BY_LOCATION[location.lower()]
