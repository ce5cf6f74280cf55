"""Talos snapshots in Hetzner Cloud, one per architecture in use (guide step 1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.image_builder.provider import TalosSnapshot
from core import resources
from core.image_builder import builder_resources
from core.plan import ImagePlan, StackPlan


@dataclass(frozen=True)
class TalosImageArgs:
    plan: ImagePlan
    #: Stored (as a secret) in each snapshot's state, for a destroy without the stack config.
    hcloud_token: pulumi.Input[str]
    hcloud_endpoint: str
    #: Whose builders these are (``<project>.<stack>``): each build removes stale ones of it.
    builder_scope: str = field(
        default_factory=lambda: builder_resources.builder_scope(
            pulumi.get_project(), pulumi.get_stack()
        )
    )

    @classmethod
    def from_plan(cls, plan: StackPlan) -> TalosImageArgs:
        return cls(plan.image, plan.hcloud_token, plan.hcloud_endpoint)


class TalosImage(pulumi.ComponentResource):
    """A ``TalosSnapshot`` per architecture; builds of different architectures run in parallel."""

    image_ids: pulumi.Output[dict[str, str]]

    def __init__(
        self, name: str, args: TalosImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(resources.TALOS_IMAGE.type, name, None, opts)
        token = pulumi.Output.secret(args.hcloud_token)
        snapshots = {
            snapshot.architecture: TalosSnapshot(
                resources.snapshot(snapshot.architecture).name(name),
                {
                    **snapshot.properties(),
                    "hcloud_endpoint": args.hcloud_endpoint,
                    "builder_scope": args.builder_scope,
                    "hcloud_token": token,
                },
                pulumi.ResourceOptions(parent=self),
            )
            for snapshot in args.plan.snapshots
        }
        existing = args.plan.existing_ids  # image.existing: read, never managed
        built = {arch: snapshot.image_id for arch, snapshot in snapshots.items()}
        self.image_ids = (
            pulumi.Output.all(**built).apply(
                lambda ids: {**existing, **{arch: str(image_id) for arch, image_id in ids.items()}}
            )
            if built
            else pulumi.Output.from_input(existing)
        )
        self.register_outputs({"imageIds": self.image_ids})
