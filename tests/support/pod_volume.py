"""An in-cluster helper's pod on this machine, as the kubelet would lay it out: its ConfigMap
volume's files where the volume puts them (each key at its ``items`` path, or under its own
name without ``items``), its container's command (``python`` is this interpreter) run in its
``workingDir``, the pod's paths mapped to the folders here.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any


def projected(data: Mapping[str, str], source: Mapping[str, Any]) -> dict[str, str]:
    """What a volume's ``configMap`` ``source`` puts where: relative path -> text of ``data``
    (the ConfigMap's). With ``items`` only the listed keys (a missing one fails the pod's
    start), each at its path; without, every key under its own name."""
    items = source.get("items")
    paths = {key: key for key in data} if items is None else {i["key"]: i["path"] for i in items}
    files: dict[str, str] = {}
    for key, path in paths.items():
        assert key in data, f"volume item {key!r} is not in the ConfigMap"
        assert not PurePosixPath(path).is_absolute() and ".." not in path.split("/"), path
        files[path] = data[key]
    return files


def write_config_map_volume(
    data: Mapping[str, str], source: Mapping[str, Any], folder: Path
) -> None:
    """The volume ``source`` of the ConfigMap ``data``, written into ``folder``."""
    for path, text in projected(data, source).items():
        file = folder.joinpath(*path.split("/"))
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)


@dataclass(frozen=True)
class LaidOutPod:
    #: Mount path in the pod -> its folder here.
    mounts: dict[str, Path]
    #: The container's command, here.
    command: list[str]
    #: Its working directory, here (None: the image's, never ours to rely on).
    cwd: Path | None

    def local(self, text: str) -> str:
        """A path of the pod, here."""
        return local_path(self.mounts, text)


def local_path(mounts: Mapping[str, Path], text: str) -> str:
    """A path of the pod (``mounts``: mount path -> folder here), here."""
    for mount, folder in mounts.items():
        if text.startswith(mount):
            return str(folder) + text[len(mount) :]
    return text


def lay_out_container(
    pod_spec: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str]], root: Path
) -> LaidOutPod:
    """The pod's only container with its ConfigMap volumes (name -> data) under ``root``."""
    (container,) = pod_spec["containers"]
    volumes = {volume["name"]: volume for volume in pod_spec.get("volumes") or []}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        source = volumes[mount["name"]]["configMap"]
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True)
        write_config_map_volume(config_maps[source["name"]], source, folder)
        mounts[mount["mountPath"]] = folder
    command = [
        sys.executable if word == "python" else local_path(mounts, word)
        for word in container["command"]
    ]
    working_dir = container.get("workingDir")
    cwd = Path(local_path(mounts, working_dir)) if working_dir else None
    return LaidOutPod(mounts, command, cwd)


def lay_out_helper(manifests: list[dict[str, Any]], root: Path) -> LaidOutPod:
    """The pod of an in-cluster helper's objects (``core.autoscaler.manifests``: its ConfigMap
    first, its Deployment last), laid out under ``root``."""
    config_map, *_, deployment = manifests
    assert (config_map["kind"], deployment["kind"]) == ("ConfigMap", "Deployment")
    data = {config_map["metadata"]["name"]: config_map["data"]}
    return lay_out_container(deployment["spec"]["template"]["spec"], data, root)
