"""The project's live list of server types, read from the Hetzner API at preview.

The built-in table (``hetzner.SERVER_TYPES``) is all an offline render knows; a
preview with a token asks the API which types exist and where each can be
ordered now, so a type that is sold out or retired in a pool's location fails
the preview instead of the first scale-up. The lookup is bounded in time; when
the API cannot be read the preview goes on with the built-in table and says so.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from hcloud import APIException, Client

from core.errors import InputError
from core.hetzner.facts import Architecture, Catalogue

#: The whole lookup (all pages of server types) gives up after this many seconds.
DEADLINE_SECONDS = 20.0
#: Per request: connect and read timeouts.
REQUEST_TIMEOUT = (5.0, 10.0)
HETZNER_ARCHITECTURES: dict[str, Architecture] = {"x86": "amd64", "arm": "arm64"}


class CatalogueUnavailable(RuntimeError):
    """The API could not be read (unreachable, timed out, an unexpected answer)."""


class TokenRefused(InputError):
    """The API refused the token: a problem of ``hcloud:token``, and the fix."""


def fetch_catalogue(token: str, endpoint: str, deadline: float = DEADLINE_SECONDS) -> Catalogue:
    """The live catalogue; raises TokenRefused (a refused token) or CatalogueUnavailable."""
    result: dict[str, Any] = {}

    def read() -> None:
        try:
            client = Client(token=token, api_endpoint=endpoint, timeout=REQUEST_TIMEOUT)
            result["types"] = client.server_types.get_all()
        except BaseException as error:  # handed to the caller's thread
            result["error"] = error

    # A daemon thread: a stuck connection can neither outlive the deadline nor block exit.
    thread = threading.Thread(target=read, name="hetzner-catalogue", daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        raise CatalogueUnavailable(f"no answer within {deadline:.0f}s")
    error = result.get("error")
    if isinstance(error, APIException):
        if error.code in {"unauthorized", "forbidden", 401, 403}:
            raise TokenRefused(
                f"the Hetzner API at {endpoint} refused this token ({error.code}): set a "
                "valid read/write API token with `pulumi config set --secret hcloud:token`"
            )
        raise CatalogueUnavailable(f"API error {error.code}: {str(error.message)[:200]}")
    if error is not None:
        raise CatalogueUnavailable(str(error).splitlines()[0][:200] or type(error).__name__)
    return catalogue_from(result["types"], endpoint)


def catalogue_from(server_types: list[Any], endpoint: str) -> Catalogue:
    """Types, architectures and orderable locations from ``GET /server_types``."""
    now = datetime.now(UTC)
    architectures: dict[str, Architecture] = {}
    available_in: dict[str, frozenset[str]] = {}
    deprecated: set[str] = set()
    for server_type in server_types:
        name = str(server_type.name).lower()
        architecture = HETZNER_ARCHITECTURES.get(str(server_type.architecture))
        if architecture is None:
            continue
        architectures[name] = architecture
        orderable: set[str] = set()
        for entry in server_type.locations or []:
            retired = entry.deprecation is not None
            gone = (
                retired
                and entry.deprecation.unavailable_after is not None
                and (entry.deprecation.unavailable_after <= now)
            )
            if retired:
                deprecated.add(name)
            if entry.available is not False and not gone and entry.location.name:
                orderable.add(str(entry.location.name))
        if server_type.locations is None:  # an API before per-location types: prices tell
            orderable = {str(price["location"]) for price in server_type.prices or []}
        available_in[name] = frozenset(orderable)
    return Catalogue(
        server_types=architectures,
        deprecated=frozenset(deprecated),
        available_in=available_in,
        source=f"the live list of {endpoint}",
    )
