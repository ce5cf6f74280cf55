"""The billed things a build creates, found by their labels and removed.

Every builder server, SSH key and unfinished snapshot carries two labels:
``hcloud-talos-autoscaler/builder=<run id>`` (this build) and
``hcloud-talos-autoscaler/scope=<project.stack>`` (whose builds). Teardown removes
everything of its run by the run label, including what a lost API answer never
told the build about; each build first removes what killed builds of its scope
left behind; ``cleanup`` removes leftovers of every scope. Nothing without the
builder label is ever touched.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from hcloud import APIException
from hcloud.images import Image
from hcloud.servers import Server
from hcloud.ssh_keys import SSHKey

from core.hetzner.api import ApiClient, describe, is_transient
from core.resources import PROJECT
from core.validators import LABEL_VALUE_MAX
from core.waits import until

BUILDER_LABEL = f"{PROJECT}/builder"
SCOPE_LABEL = f"{PROJECT}/scope"
#: The scope of builds started with the CLI (Pulumi builds use ``<project>.<stack>``).
CLI_SCOPE = PROJECT
#: A builder older than this belongs to a build that cannot still be running: it
#: is well above the longest possible build (``pipeline.Limits.longest_build``).
STALE_AFTER = timedelta(hours=3)
CLEANUP_COMMAND = "python -m components.image_builder cleanup"

Kind = Literal["server", "ssh key", "snapshot"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Leftover:
    kind: Kind
    id: int
    name: str = field(default="", compare=False)
    created: datetime | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.kind} {self.id}" + (f" ({self.name})" if self.name else "")


def builder_scope(project: str, stack: str | None = None) -> str:
    """A valid label value naming whose builds these are: ``project.stack``, shortened if long."""
    name = f"{project}.{stack}" if stack else project
    value = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("._-") or "unnamed"
    if len(value) > LABEL_VALUE_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        value = f"{value[: LABEL_VALUE_MAX - 13].rstrip('._-')}-{digest}"
    return value


def builder_labels(run_id: str, scope: str) -> dict[str, str]:
    return {BUILDER_LABEL: run_id, SCOPE_LABEL: scope}


def find(client: ApiClient, selector: str) -> list[Leftover]:
    """Builder servers, keys and unfinished snapshots matching a label selector."""
    found: list[Leftover] = [
        Leftover("server", _id(server.id), server.name or "", server.created)
        for server in client.servers.get_all(label_selector=selector)
    ]
    found += [
        Leftover("ssh key", _id(key.id), key.name or "", key.created)
        for key in client.ssh_keys.get_all(label_selector=selector)
    ]
    found += [
        Leftover("snapshot", _id(image.id), image.description or "", image.created)
        for image in client.images.get_all(label_selector=selector, type=["snapshot"])
    ]
    return found


def remove(
    client: ApiClient, leftovers: list[Leftover], seconds: float, log: Log
) -> tuple[list[Leftover], list[Leftover]]:
    """Delete snapshots, then servers, then keys; returns (removed, still there).

    A delete refused because the resource is busy (``locked`` while an action runs,
    e.g. a snapshot being taken) is retried until ``seconds`` have passed in all.
    A second Ctrl-C stops the removal; what is left is returned, not lost.
    """
    order: dict[Kind, int] = {"snapshot": 0, "server": 1, "ssh key": 2}
    deadline = time.monotonic() + seconds
    removed: list[Leftover] = []
    try:
        for item in sorted(set(leftovers), key=lambda item: (order[item.kind], item.id)):
            try:
                until(
                    f"the delete of {item}",
                    max(0.0, deadline - time.monotonic()),
                    functools.partial(_delete, client, item),
                    client.poll,
                    retry_if=is_transient,
                )
            except Exception as error:
                log(f"could not delete {item}: {describe(error)}")
            else:
                log(f"deleted {item}")
                removed.append(item)
    except KeyboardInterrupt:
        log("removal interrupted")
    return removed, [item for item in leftovers if item not in removed]


def remove_stale(
    client: ApiClient, *, scope: str | None, older_than: timedelta, seconds: float, log: Log
) -> tuple[list[Leftover], list[Leftover]]:
    """Remove builders (of ``scope``, or of every scope) created more than ``older_than`` ago."""
    stale = find_stale(client, scope=scope, older_than=older_than)
    if not stale:
        return [], []
    return remove(client, stale, seconds, log)


def find_stale(client: ApiClient, *, scope: str | None, older_than: timedelta) -> list[Leftover]:
    """The builders ``remove_stale`` would delete (of ``scope``, or of every scope)."""
    selector = BUILDER_LABEL if scope is None else f"{BUILDER_LABEL},{SCOPE_LABEL}={scope}"
    cutoff = datetime.now(UTC) - older_than
    return [
        item
        for item in find(client, selector)
        if not older_than or (item.created is not None and item.created <= cutoff)
    ]


def _delete(client: ApiClient, item: Leftover) -> bool:
    """True once ``item`` is gone (a 404 counts as gone)."""
    try:
        if item.kind == "snapshot":
            client.images.delete(Image(id=item.id))
        elif item.kind == "server":
            client.servers.delete(Server(id=item.id))
        else:
            client.ssh_keys.delete(SSHKey(id=item.id))
    except APIException as error:
        if error.code != "not_found":
            raise
    return True


def _id(value: int | None) -> int:
    if value is None:
        raise RuntimeError("the Hetzner API answered without an id")
    return value
