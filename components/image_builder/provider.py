"""The Talos snapshot as one Pulumi resource whose create runs the whole ephemeral build.

A dynamic provider rather than ``hcloud.Server`` + ``command.remote.Command`` +
``hcloud.Snapshot``: those cannot say "delete the server once the snapshot
exists" without drift on refresh or a second run. Here only the snapshot is
state; the builder server and key live and die inside ``create``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi
import requests
from hcloud import APIException
from hcloud.images import BoundImage, Image
from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    UpdateResult,
)

from components.configured_provider import ConfiguredProvider, log_line
from core.config import WRITE_TIMEOUT_MINUTES
from core.hetzner.access import current_hetzner_access
from core.hetzner.api import ApiClient, describe
from core.hetzner.facts import HETZNER_ARCHITECTURE
from core.image_builder.builder_resources import CLI_SCOPE
from core.image_builder.identity import snapshot_labels
from core.image_builder.pipeline import BuildRequest, Limits, build_image
from core.image_builder.schematic import register_schematic
from core.image_builder.sharing import (
    IDENTITY_LABEL,
    identity,
    is_sharing_label,
    sharing_labels,
    user_label,
    users,
)

#: A different image: build a new snapshot, then delete the old one.
REPLACE_ON = ("talos_version", "schematic_id", "architecture", "factory_url")
#: Changed in place on the existing snapshot.
UPDATE_IN_PLACE = ("labels", "description")
#: Kept in state (encrypted) so that update, refresh and destroy can authenticate.
TOKEN = "hcloud_token"
ENDPOINT = "hcloud_endpoint"
#: Recorded in state when they change (a rotated token), without touching the snapshot.
ACCESS = (TOKEN, ENDPOINT)
#: Test knobs that earlier versions kept in props: ignored, dropped from state at the next
#: update. (Diff compares only the keys above, so their absence never replaces a snapshot.)
RETIRED = ("ssh_port", "target_device")


def request_from(props: dict[str, Any]) -> BuildRequest:
    return BuildRequest(
        talos_version=props["talos_version"],
        schematic_id=props["schematic_id"],
        architecture=props["architecture"],
        location=props["location"],
        server_type=props["server_type"],
        factory_url=props["factory_url"],
        fallback_locations=tuple(props.get("fallback_locations") or ()),
        fallback_server_types=tuple(props.get("fallback_server_types") or ()),
        extra_labels=dict(props.get("extra_labels") or {}),
        must_fit_server_types=list(props.get("must_fit_server_types") or []),
        builder_scope=props.get("builder_scope") or CLI_SCOPE,
        limits=Limits(write=60.0 * (props.get("write_timeout") or WRITE_TIMEOUT_MINUTES)),
    )


class TalosSnapshotProvider(ConfiguredProvider):
    """create = build; read drops a vanished snapshot; delete treats 404 as done."""

    def _client(self, props: dict[str, Any]) -> ApiClient:
        access = current_hetzner_access(self.stack_config, props.get(TOKEN), props.get(ENDPOINT))
        return ApiClient(access.token, access.endpoint)

    def create(self, props: dict[str, Any]) -> CreateResult:
        request = request_from(props)
        client = self._client(props)
        try:
            image = _shared_snapshot(client, request)
        except (APIException, requests.RequestException) as error:
            raise RuntimeError(
                f"could not look for a snapshot to share: {describe(error)}"
            ) from error
        if image is not None:
            image_id, disk_size = _id(image.id), float(image.disk_size or 0)
        else:
            if props.get("extensions"):
                register_schematic(request.factory_url, props["extensions"])
            shared = sharing_labels(request, request.builder_scope)
            sharable = replace(request, extra_labels={**request.extra_labels, **shared})
            result = build_image(client, sharable, log=log_line)
            image_id, disk_size = result.image_id, result.disk_size
        outs = {
            **props,
            "image_id": str(image_id),
            **_wanted(props),
            "disk_size": disk_size,
        }
        return CreateResult(id_=str(image_id), outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in REPLACE_ON if olds.get(key) != news.get(key)]
        wanted = _wanted(news)
        updates = [key for key in UPDATE_IN_PLACE if olds.get(key) != wanted[key]]
        updates += [key for key in ACCESS if olds.get(key) != news.get(key)]
        return DiffResult(
            changes=bool(replaces or updates),
            replaces=replaces,
            delete_before_replace=False,
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        wanted = _wanted(news)
        client = self._client(news)
        request = request_from(news)
        current = client.images.get_by_id(int(_id))
        # Other stacks' user labels stay; this stack's and the identity are (re)set.
        kept = {
            key: value for key, value in (current.labels or {}).items() if is_sharing_label(key)
        }
        client.images.update(
            Image(id=int(_id)),
            description=wanted["description"],
            labels={
                **wanted["labels"],
                **kept,
                **sharing_labels(request, request.builder_scope),
            },
        )
        kept = {key: value for key, value in olds.items() if key not in RETIRED}
        return UpdateResult(outs={**kept, **news, **wanted})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            image = self._client(props).images.get_by_id(int(id_))
        except APIException as error:
            if error.code == "not_found":
                return ReadResult(id_=None, outs={})  # gone: the next up builds a new one
            raise
        return ReadResult(
            id_=id_,
            outs={
                **props,
                "labels": {
                    key: value
                    for key, value in (image.labels or {}).items()
                    if not is_sharing_label(key)
                },
                "description": image.description,
                "disk_size": image.disk_size,
            },
        )

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Delete the snapshot unless another stack still uses it; then drop only our label."""
        client = self._client(props)
        try:
            image = client.images.get_by_id(int(_id))
            mine, _ = user_label(props.get("builder_scope") or CLI_SCOPE)
            labels = dict(image.labels or {})
            others = {key: scope for key, scope in users(labels).items() if key != mine}
            if others:
                labels.pop(mine, None)
                client.images.update(Image(id=int(_id)), labels=labels)
                log_line(
                    f"snapshot {_id} kept: still used by {', '.join(sorted(others.values()))}; "
                    "only this stack's user label was removed"
                )
                return
            client.images.delete(Image(id=int(_id)))
        except APIException as error:
            if error.code != "not_found":
                raise


def _shared_snapshot(client: ApiClient, request: BuildRequest) -> BoundImage | None:
    """An available snapshot of the same identity (another stack's build), now also ours."""
    candidates = [
        image
        for image in client.images.get_all(
            label_selector=f"{IDENTITY_LABEL}={identity(request)}", type=["snapshot"]
        )
        if image.status == "available"
        and image.architecture == HETZNER_ARCHITECTURE[request.architecture]
    ]
    if not candidates:
        return None
    image = max(candidates, key=lambda found: (found.created, found.id or 0))
    labels = {**(image.labels or {}), **sharing_labels(request, request.builder_scope)}
    updated = client.images.update(image, labels=labels)
    users_now = ", ".join(sorted(users(dict(updated.labels or {})).values()))
    log_line(
        f"snapshot {image.id} with the same Talos version, schematic, architecture and factory "
        f"exists: shared instead of building (used by {users_now})"
    )
    return updated


def _id(value: int | None) -> int:
    if value is None:
        raise RuntimeError("the Hetzner API answered without an id")
    return value


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
