"""The Talos snapshot as one Pulumi resource whose create runs the whole ephemeral build.

A dynamic provider rather than ``hcloud.Server`` + ``command.remote.Command`` +
``hcloud.Snapshot``: those cannot say "delete the server once the snapshot
exists" without drift on refresh or a second run. Here only the snapshot is
state; the builder server and key live and die inside ``create``.
"""

from __future__ import annotations

import sys
from typing import Any

import pulumi
from hcloud import APIException
from hcloud.images import Image
from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from components.image_builder.pipeline import (
    BuildRequest,
    build_image,
    make_client,
    snapshot_labels,
)
from components.image_builder.schematic import register_schematic

DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
#: A different image: build a new snapshot, then delete the old one.
REPLACE_ON = ("talos_version", "schematic_id", "architecture", "factory_url")
#: Changed in place on the existing snapshot.
UPDATE_IN_PLACE = ("labels", "description")
#: Kept in state (encrypted) only so that update, refresh and destroy can authenticate.
TOKEN = "hcloud_token"


def request_from(props: dict[str, Any]) -> BuildRequest:
    return BuildRequest(
        talos_version=props["talos_version"],
        schematic_id=props["schematic_id"],
        architecture=props["architecture"],
        location=props["location"],
        server_type=props["server_type"],
        factory_url=props["factory_url"],
        extra_labels=dict(props.get("extra_labels") or {}),
        must_fit_server_types=list(props.get("must_fit_server_types") or []),
        ssh_port=int(props.get("ssh_port") or 22),
        target_device=props.get("target_device") or "/dev/sda",
    )


class TalosSnapshotProvider(ResourceProvider):
    """create = build; read drops a vanished snapshot; delete treats 404 as done."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        request = request_from(props)
        if props.get("extensions"):
            register_schematic(request.factory_url, props["extensions"])
        client = make_client(props[TOKEN], props.get("hcloud_endpoint") or DEFAULT_ENDPOINT)
        result = build_image(client, request, log=lambda line: print(line, file=sys.stderr))
        outs = {
            **props,
            "image_id": str(result.image_id),
            "labels": result.labels,
            "description": result.description,
            "disk_size": result.disk_size,
        }
        return CreateResult(id_=str(result.image_id), outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in REPLACE_ON if olds.get(key) != news.get(key)]
        wanted = _wanted(news)
        updates = [key for key in UPDATE_IN_PLACE if olds.get(key) != wanted[key]]
        return DiffResult(
            changes=bool(replaces or updates),
            replaces=replaces,
            delete_before_replace=False,
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        client = make_client(news[TOKEN], news.get("hcloud_endpoint") or DEFAULT_ENDPOINT)
        wanted = _wanted(news)
        client.images.update(
            Image(id=int(_id)), description=wanted["description"], labels=wanted["labels"]
        )
        return UpdateResult(outs={**olds, **news, **wanted})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        client = make_client(props[TOKEN], props.get("hcloud_endpoint") or DEFAULT_ENDPOINT)
        try:
            image = client.images.get_by_id(int(id_))
        except APIException as error:
            if error.code == "not_found":
                return ReadResult(id_=None, outs={})  # gone: the next up builds a new one
            raise
        return ReadResult(
            id_=id_,
            outs={
                **props,
                "labels": dict(image.labels or {}),
                "description": image.description,
                "disk_size": image.disk_size,
            },
        )

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        client = make_client(props[TOKEN], props.get("hcloud_endpoint") or DEFAULT_ENDPOINT)
        try:
            client.images.delete(Image(id=int(_id)))
        except APIException as error:
            if error.code != "not_found":
                raise


def _wanted(props: dict[str, Any]) -> dict[str, Any]:
    request = request_from(props)
    return {"labels": snapshot_labels(request), "description": request.description}


class TalosSnapshot(Resource):
    """One snapshot of one architecture."""

    image_id: pulumi.Output[str]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        secret_token = pulumi.ResourceOptions(additional_secret_outputs=[TOKEN])
        super().__init__(
            TalosSnapshotProvider(),
            name,
            {**props, "image_id": None, "disk_size": None},
            pulumi.ResourceOptions.merge(opts, secret_token),
        )
