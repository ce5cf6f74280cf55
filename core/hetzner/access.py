"""The Hetzner Cloud token and API endpoint, read in the hcloud provider's order: the one
place that falls back to ``HCLOUD_TOKEN``, ``HCLOUD_ENDPOINT`` and the public API.

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

#: The public API, when neither ``hcloud:endpoint`` nor ``HCLOUD_ENDPOINT`` is set.
DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
TOKEN_VARIABLE = "HCLOUD_TOKEN"
ENDPOINT_VARIABLE = "HCLOUD_ENDPOINT"


def environment_token() -> str | None:
    """``HCLOUD_TOKEN``: the token the hcloud provider uses when ``hcloud:token`` is unset."""
    return os.environ.get(TOKEN_VARIABLE)


def api_endpoint(configured: str | None = None, stored: str | None = None) -> str:
    """The API URL as the hcloud provider reads it: ``hcloud:endpoint``, else HCLOUD_ENDPOINT,
    else ``stored`` (what a dynamic resource's state holds), else the public API."""
    return configured or os.environ.get(ENDPOINT_VARIABLE) or stored or DEFAULT_ENDPOINT


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
    token = values.get("hcloud:token") or environment_token() or stored_token
    if not token:
        raise ValueError(
            "no Hetzner token: set it with `pulumi config set --secret hcloud:token` "
            "or export HCLOUD_TOKEN"
        )
    endpoint = api_endpoint(values.get("hcloud:endpoint"), stored_endpoint)
    return HetznerAccess(token=str(token), endpoint=str(endpoint))
