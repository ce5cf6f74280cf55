"""The stack's current Hetzner Cloud access, for the program's dynamic providers.

A dynamic provider runs in a process the engine starts; refresh and destroy hand it only
the state, whose token (or endpoint) may have been rotated away since. So it takes what
the hcloud provider itself would use now: ``hcloud:token`` from the stack config the
engine passes to ``configure``, else ``HCLOUD_TOKEN``, else the token stored (as a
secret) in the state; ``hcloud:endpoint``, else ``HCLOUD_ENDPOINT``, else the endpoint
stored in the state, else the public API.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from core.image_builder.api import api_endpoint


class ProviderConfig(Protocol):
    """``pulumi.dynamic.Config`` (or a mapping): values by full key, ``hcloud:token``."""

    def get(self, key: str) -> Any: ...


@dataclass(frozen=True)
class HetznerAccess:
    token: str
    endpoint: str


def current_hetzner_access(
    config: ProviderConfig | None, stored_token: str | None, stored_endpoint: str | None = None
) -> HetznerAccess:
    """Token and endpoint in the hcloud provider's order; raises when there is no token."""
    values = config if config is not None else {}
    token = values.get("hcloud:token") or os.environ.get("HCLOUD_TOKEN") or stored_token
    if not token:
        raise ValueError(
            "no Hetzner token: set it with `pulumi config set --secret hcloud:token` "
            "or export HCLOUD_TOKEN"
        )
    endpoint = api_endpoint(values.get("hcloud:endpoint"), stored_endpoint)
    return HetznerAccess(token=str(token), endpoint=str(endpoint))
