"""Image Factory schematic ids, computed offline and registered when needed.

The factory's id is the sha256 of the schematic marshalled by go-yaml v3
(four-space indent, ``customization`` always present): the empty schematic
``customization: {}`` gives the documented well-known id ``376567988ad3...``,
and ``siderolabs/qemu-guest-agent`` alone gives ``ce4c980550dd...``.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Iterable

HTTP_TIMEOUT_SECONDS = 30


def schematic_yaml(extensions: Iterable[str]) -> str:
    """The canonical schematic document for a set of official extensions."""
    names = sorted(set(extensions))
    if not names:
        return "customization: {}\n"
    lines = ["customization:", "    systemExtensions:", "        officialExtensions:"]
    indent = " " * 12
    lines += [f"{indent}- {json.dumps(name) if _needs_quotes(name) else name}" for name in names]
    return "\n".join(lines) + "\n"


def schematic_id_for(extensions: Iterable[str]) -> str:
    """The id the Image Factory assigns to these extensions."""
    return hashlib.sha256(schematic_yaml(extensions).encode("utf-8")).hexdigest()


def register_schematic(factory_url: str, extensions: Iterable[str]) -> str:
    """POST the schematic to the factory and check it answers with the id we computed."""
    document = schematic_yaml(extensions)
    expected = hashlib.sha256(document.encode("utf-8")).hexdigest()
    request = urllib.request.Request(
        f"{factory_url.rstrip('/')}/schematics",
        data=document.encode("utf-8"),
        headers={"Content-Type": "application/yaml"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
        answered = json.loads(response.read())["id"]
    if answered != expected:
        raise ValueError(
            f"the Image Factory at {factory_url} answered schematic id {answered} for "
            f"{document!r}, but the id rule gives {expected}; set talos.schematicId explicitly"
        )
    return str(answered)


def _needs_quotes(name: str) -> bool:
    return not all(char.isalnum() or char in "-_./" for char in name)
