"""A dynamic provider for the engine test: its create and delete leave traces on disk.

Pulumi pickles the provider by reference, so the engine's ``pulumi-resource-pulumi-python``
process imports this module (the tests put the repository on its PYTHONPATH).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class MarkerProvider(ResourceProvider):
    """Writes ``message`` to the file ``path`` on create and removes the file on delete."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        path = Path(props["path"])
        path.write_text(props["message"])
        digest = hashlib.sha256(props["message"].encode()).hexdigest()
        return CreateResult(id_=digest[:16], outs={**props, "sha256": digest})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        Path(props["path"]).unlink(missing_ok=True)


class Marker(Resource):
    sha256: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        path: str,
        message: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            MarkerProvider(), name, {"path": path, "message": message, "sha256": None}, opts
        )
