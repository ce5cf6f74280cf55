"""Talos snapshots in Hetzner Cloud, one per architecture in use (guide step 1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.image_builder.provider import TalosSnapshot
from core.config import WRITE_TIMEOUT_MINUTES, StackConfig
from core.hetzner import Architecture, architecture_of
from core.image_builder import builder_resources
from core.image_builder.api import DEFAULT_ENDPOINT


@dataclass(frozen=True)
class TalosImageArgs:
    talos_version: str
    schematic_id: str
    architectures: list[Architecture]
    location: str
    builder_server_types: dict[Architecture, str]
    factory_url: str
    hcloud_token: pulumi.Input[str]
    #: Registered with the factory before the build when the schematic comes from them.
    extensions: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    #: The pools' server types: the snapshot's disk must fit each of them.
    must_fit_server_types: list[str] = field(default_factory=list)
    hcloud_endpoint: str = DEFAULT_ENDPOINT
    #: Minutes the download and write of the image may take.
    write_timeout: int = WRITE_TIMEOUT_MINUTES
    #: Whose builders these are (``<project>.<stack>``): each build removes stale ones of it.
    builder_scope: str = field(
        default_factory=lambda: builder_resources.builder_scope(
            pulumi.get_project(), pulumi.get_stack()
        )
    )

    @classmethod
    def from_stack(
        cls,
        stack: StackConfig,
        schematic_id: str,
        hcloud_token: pulumi.Input[str],
        hcloud_endpoint: str | None,
    ) -> TalosImageArgs:
        return cls(
            talos_version=stack.talos.version,
            schematic_id=schematic_id,
            extensions=[] if stack.talos.schematic_id else list(stack.talos.extensions),
            architectures=stack.architectures,
            location=stack.image.location,
            builder_server_types=dict(stack.image.builder_server_types),
            factory_url=stack.talos.image_factory_url,
            labels=dict(stack.image.labels),
            must_fit_server_types=sorted(
                {group.instance_type for group in stack.autoscaler.node_groups}
            ),
            hcloud_token=hcloud_token,
            hcloud_endpoint=hcloud_endpoint or DEFAULT_ENDPOINT,
            write_timeout=stack.image.write_timeout,
        )


class TalosImage(pulumi.ComponentResource):
    """A ``TalosSnapshot`` per architecture; builds of different architectures run in parallel."""

    image_ids: pulumi.Output[dict[str, str]]

    def __init__(
        self, name: str, args: TalosImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hcloud-talos-autoscaler:index:TalosImage", name, None, opts)
        token = pulumi.Output.secret(args.hcloud_token)
        snapshots = {
            arch: TalosSnapshot(
                f"{name}-{arch}",
                {
                    "talos_version": args.talos_version,
                    "schematic_id": args.schematic_id,
                    "extensions": args.extensions,
                    "architecture": arch,
                    "location": args.location,
                    "server_type": args.builder_server_types[arch],
                    "factory_url": args.factory_url,
                    "extra_labels": args.labels,
                    "must_fit_server_types": [
                        server_type
                        for server_type in args.must_fit_server_types
                        if architecture_of(server_type) == arch
                    ],
                    "hcloud_endpoint": args.hcloud_endpoint,
                    "write_timeout": args.write_timeout,
                    "builder_scope": args.builder_scope,
                    "hcloud_token": token,
                },
                pulumi.ResourceOptions(parent=self),
            )
            for arch in args.architectures
        }
        self.image_ids = pulumi.Output.all(
            **{arch: snapshot.image_id for arch, snapshot in snapshots.items()}
        ).apply(lambda ids: {arch: str(image_id) for arch, image_id in ids.items()})
        self.register_outputs({"imageIds": self.image_ids})
