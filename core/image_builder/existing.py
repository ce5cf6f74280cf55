"""``image.existing``: snapshots made elsewhere, looked up by id or label selector.

Each must exist, be ``available`` and have its architecture; a selector picks the newest
snapshot that does. The stack only reads them: they are no resources of it, so nothing of
it ever deletes them.
"""

from __future__ import annotations

from collections.abc import Mapping

from hcloud import APIException
from hcloud.images import BoundImage

from core.config import Problem
from core.hetzner.api import ApiClient, describe
from core.hetzner.facts import HETZNER_ARCHITECTURE, Architecture


def find_existing(
    client: ApiClient, existing: Mapping[Architecture, int | str]
) -> tuple[dict[Architecture, int], list[Problem]]:
    """The id of each architecture's snapshot, and a problem for each that is not usable."""
    found: dict[Architecture, int] = {}
    problems: list[Problem] = []
    for arch, reference in sorted(existing.items()):
        key = f"image.existing.{arch}"
        try:
            image_id, problem = (
                _by_id(client, arch, reference)
                if isinstance(reference, int)
                else _by_selector(client, arch, reference)
            )
        except Exception as error:
            problems.append(Problem(key, f"could not be looked up: {describe(error)}"))
            continue
        if problem:
            problems.append(Problem(key, problem))
        elif image_id is not None:
            found[arch] = image_id
    return found, problems


def _by_id(client: ApiClient, arch: Architecture, image_id: int) -> tuple[int | None, str]:
    try:
        image = client.images.get_by_id(image_id)
    except APIException as error:
        if error.code == "not_found":
            return None, f"snapshot {image_id} does not exist in this Hetzner project"
        raise
    return image_id, _unusable(image, arch)


def _by_selector(client: ApiClient, arch: Architecture, selector: str) -> tuple[int | None, str]:
    matches = client.images.get_all(label_selector=selector, type=["snapshot"])
    usable = [image for image in matches if not _unusable(image, arch)]
    if usable:
        newest = max(usable, key=lambda image: (image.created, image.id or 0))
        return newest.id, ""
    why = "; ".join(f"{image.id}: {_unusable(image, arch)}" for image in matches[:5])
    return None, (
        f"no available {arch} snapshot matches {selector!r}"
        + (f" ({why})" if why else "")
        + "; label one, or remove the entry to build it"
    )


def _unusable(image: BoundImage, arch: Architecture) -> str:
    """Why ``image`` cannot boot this architecture's servers now; "" if it can."""
    if image.type not in ("snapshot", None):
        return f"image {image.id} is a {image.type} image, not a snapshot"
    if image.architecture != HETZNER_ARCHITECTURE[arch]:
        return f"snapshot {image.id} is for {image.architecture}, not {arch}"
    if image.status != "available":
        return f"snapshot {image.id} is {image.status!r}, not available"
    return ""
