"""Facts about Hetzner Cloud that the configuration is checked against."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from core.redaction import shown

Architecture = Literal["amd64", "arm64"]

#: The API names architectures ``x86`` and ``arm``.
HETZNER_ARCHITECTURE: dict[Architecture, str] = {"amd64": "x86", "arm64": "arm"}

#: The label the autoscaler gives every server of a pool (``hetzner_node_group.go``); the
#: pool's nodes get it too. The in-cluster ``provider_id_setter`` (standard library only)
#: keeps a copy that ``tests/project/test_fact_copies.py`` holds equal.
NODE_GROUP_LABEL = "hcloud/node-group"

#: Cloud locations and the network zone each belongs to. A cloud subnet lives in
#: one network zone, so every server attached to it must be in that zone.
#: Source: FACTS §7 (hcloud-go ``network.go``; terraform-provider-hcloud location tests).
NETWORK_ZONE_BY_LOCATION: dict[str, str] = {
    "fsn1": "eu-central",
    "nbg1": "eu-central",
    "hel1": "eu-central",
    "ash": "us-east",
    "hil": "us-west",
    "sin": "ap-southeast",
}

NETWORK_ZONES: frozenset[str] = frozenset(NETWORK_ZONE_BY_LOCATION.values())

#: Server types orderable in Hetzner Cloud and their CPU architecture. Source: FACTS §7
#: (cx23, cpx22, cpx32, cax11, cax21) and Hetzner's server type list of October 2025
#: (shared x86 ``cx*3``, AMD ``cpx*2``, Ampere ``cax*1``, dedicated ``ccx*3``); check
#: with ``hcloud server-type list``. A preview with a token checks the live list instead.
SERVER_TYPES: dict[str, Architecture] = {
    **{name: "amd64" for name in ("cx23", "cx33", "cx43", "cx53")},
    **{name: "amd64" for name in ("cpx12", "cpx22", "cpx32", "cpx42", "cpx52", "cpx62")},
    **{name: "amd64" for name in ("ccx13", "ccx23", "ccx33", "ccx43", "ccx53", "ccx63")},
    **{name: "arm64" for name in ("cax11", "cax21", "cax31", "cax41")},
}
#: The generation Hetzner replaced in October 2025: still known to the API, being retired.
PREVIOUS_GENERATION: dict[str, Architecture] = {
    **{name: "amd64" for name in ("cx22", "cx32", "cx42", "cx52")},
    **{name: "amd64" for name in ("cpx11", "cpx21", "cpx31", "cpx41", "cpx51")},
}

#: Hetzner rejects user data (the Talos config handed to a new server) above this size.
USER_DATA_LIMIT_BYTES = 32 * 1024


@dataclass(frozen=True)
class Catalogue:
    """Which server types exist, where they can be ordered, and where that list came from."""

    server_types: Mapping[str, Architecture]
    #: Types that still exist but are being retired (a warning, not an error).
    deprecated: frozenset[str]
    #: Type -> locations where it can be ordered now; None when unknown (offline).
    available_in: Mapping[str, frozenset[str]] | None
    source: str

    def server_type_problem(self, server_type: str, location: str | None = None) -> str | None:
        """Why ``server_type`` cannot be ordered (in ``location``), with the fix; None if it can."""
        name = server_type.lower()
        if name not in self.server_types:
            close = difflib.get_close_matches(name, list(self.server_types), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            return (
                f"{shown(server_type)} is not a Hetzner Cloud server type ({self.source}); {hint}"
                "list them with `hcloud server-type list`"
            )
        if location is not None and self.available_in is not None:
            where = self.available_in.get(name, frozenset())
            if location not in where:
                offered = ", ".join(sorted(where)) or "no location"
                return (
                    f"{name} cannot be ordered in {location} ({self.source}: offered in "
                    f"{offered}); pick another type or region"
                )
        return None


BUILT_IN_CATALOGUE = Catalogue(
    server_types={**SERVER_TYPES, **PREVIOUS_GENERATION},
    deprecated=frozenset(PREVIOUS_GENERATION),
    available_in=None,
    source="the built-in table of hcloud-talos-autoscaler",
)


def architecture_of(server_type: str) -> Architecture:
    """The CPU architecture of a server type: Ampere (``cax*``) types are arm64."""
    return "arm64" if server_type.lower().startswith("cax") else "amd64"


def network_zone_of(location: str) -> str:
    """The network zone of a cloud location (``fsn1`` -> ``eu-central``)."""
    return NETWORK_ZONE_BY_LOCATION[location.lower()]
