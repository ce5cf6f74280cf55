"""One snapshot per identity in a Hetzner project, shared by the stacks that need it.

A finished snapshot carries ``hcloud-talos-autoscaler/identity=<hash>`` (Talos version,
full schematic id, architecture and Image Factory URL: what decides its bytes) and one
``hcloud-talos-autoscaler/user.<hash of the stack>=<project.stack>`` label per stack that
uses it. A stack that needs a snapshot first looks for an available one with its identity
and adds its user label instead of building; on delete it removes its user label and
deletes the snapshot only when no other user label is left. A snapshot without any user
label (made before sharing existed) belongs to the stack whose state holds it alone.
"""

from __future__ import annotations

import hashlib

from core.image_builder.identity import SnapshotIdentity
from core.resources import PROJECT

IDENTITY_LABEL = f"{PROJECT}/identity"
USER_LABEL_PREFIX = f"{PROJECT}/user."


def identity(request: SnapshotIdentity) -> str:
    """What decides a snapshot's bytes, as a label value."""
    text = "|".join(
        (request.talos_version, request.schematic_id, request.architecture, request.factory_url)
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def user_label(scope: str) -> tuple[str, str]:
    """The label that records ``scope`` (``project.stack``) as a user of a snapshot."""
    return f"{USER_LABEL_PREFIX}{hashlib.sha256(scope.encode()).hexdigest()[:12]}", scope


def sharing_labels(request: SnapshotIdentity, scope: str) -> dict[str, str]:
    """The identity and this stack's user label."""
    key, value = user_label(scope)
    return {IDENTITY_LABEL: identity(request), key: value}


def is_sharing_label(key: str) -> bool:
    return key == IDENTITY_LABEL or key.startswith(USER_LABEL_PREFIX)


def users(labels: dict[str, str]) -> dict[str, str]:
    """The user labels of a snapshot (key -> the stack's scope)."""
    return {key: value for key, value in labels.items() if key.startswith(USER_LABEL_PREFIX)}
