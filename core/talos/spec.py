"""What one autoscaled pool's Talos worker config is built from, without the stack config
(``core.worker_configs`` fills it in from the stack)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.releases import talos as talos_versions


class Taint(Protocol):
    """A node taint as the stack config holds it (``core.config.Taint``)."""

    @property
    def key(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def effect(self) -> str: ...


@dataclass(frozen=True)
class WorkerConfigSpec:
    """What the stack decides about an autoscaled pool's Talos config."""

    talos: talos_versions.TalosVersion
    subnet: str
    network_ip_range: str
    #: The kubelet's release (``talos.kubernetesVersion``); None keeps the base config's.
    kubernetes: talos_versions.Version | None = None
    node_labels: dict[str, str] = field(default_factory=dict)
    node_annotations: dict[str, str] = field(default_factory=dict)
    taints: Sequence[Taint] = ()
    registry_mirrors: dict[str, list[str]] = field(default_factory=dict)
    #: The image the pool's servers boot (``boot_image``); with it the config carries its
    #: generation label.
    boot_image: str = ""
