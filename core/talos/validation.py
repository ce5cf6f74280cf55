"""A worker config checked before any server boots it: its shape, the settings only a
control plane may carry, known keys and value types, the cluster's subnets, volumes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlparse

from core import validators
from core.redaction import shown
from core.releases import talos as talos_versions
from core.talos.documents import document_name, value_at
from core.talos.keys import unknown_keys, value_type_problems
from core.talos.node_labels import label_problem
from core.talos.problems import TalosProblem
from core.talos.spec import WorkerConfigSpec

#: Sections Cozystack's guide deletes from the worker config: what ``talm template`` or
#: ``talosctl`` discovered on an existing machine (its disk, its interfaces, its hostname)
#: is wrong for a cloud server booting the snapshot.
REMOVED_SECTIONS = ("install", "network")

#: Private keys that must never reach a worker (they belong to the control plane).
CONTROL_PLANE_KEYS = (
    "machine.ca.key",
    "cluster.ca.key",
    "cluster.aggregatorCA.key",
    "cluster.serviceAccount.key",
    "cluster.etcd.ca.key",
)

#: Paths the builder patches or reads: each must be a mapping when present.
MAPPING_PATHS = (
    "machine",
    "machine.kubelet",
    "machine.kubelet.extraArgs",
    "machine.kubelet.extraConfig",
    "machine.kubelet.nodeIP",
    "machine.nodeLabels",
    "machine.nodeAnnotations",
    "machine.registries",
    "machine.registries.mirrors",
    "cluster",
    "cluster.network",
    "cluster.controlPlane",
)

#: The cluster's own networks (``cluster.network.<field>``): lists of CIDRs.
CLUSTER_NETWORK_FIELDS = ("podSubnets", "serviceSubnets")

#: ... and each of these a list when present.
LIST_PATHS = tuple(f"cluster.network.{field}" for field in CLUSTER_NETWORK_FIELDS)

#: Volume documents that place a volume on a disk chosen by ``provisioning.diskSelector``.
VOLUME_DOCUMENTS = ("VolumeConfig", "UserVolumeConfig", "RawVolumeConfig", "SwapVolumeConfig")

#: CEL disk attributes that name one machine's disk: a Hetzner cloud server has one virtio
#: SCSI disk (``/dev/sda``), not the disk of the machine the base config was generated on.
MACHINE_DISK_ATTRIBUTES = re.compile(
    r"\bdisk\.(dev_path|serial|wwid|model|modalias|uuid|symlinks)\b"
)


def validate_worker_documents(
    documents: list[dict[str, Any]], spec: WorkerConfigSpec
) -> list[TalosProblem]:
    """Every reason the config would not boot, join, or get the right address."""
    talos = spec.talos
    problems = unknown_keys(documents, talos)
    main = next((doc for doc in documents if "kind" not in doc), {})
    shape = shape_problems(main)
    if shape:
        return problems + shape
    problems.extend(value_type_problems(documents, talos))
    machine = main.get("machine") or {}

    for key in machine.get("nodeLabels") or {}:
        label = label_problem(str(key))
        if label is not None:
            problems.append(TalosProblem(f"machine.nodeLabels.{key}", label))
    if machine.get("type") != "worker":
        problems.append(
            TalosProblem(
                "machine.type",
                f"is {shown(machine.get('type'))}; autoscaled nodes join as workers: use the "
                "worker.yaml of `talosctl gen config`, not controlplane.yaml",
            )
        )
    for path in CONTROL_PLANE_KEYS:
        if value_at(main, path):  # `talosctl gen config` writes `key: ""` on workers
            problems.append(
                TalosProblem(
                    path,
                    "is a control-plane private key and must not be handed to workers; use the "
                    "worker.yaml of `talosctl gen config` (it carries only the certificates)",
                )
            )
    problems.extend(_control_plane_only_settings(main))
    for path in ("machine.token", "cluster.token"):
        if not value_at(main, path):
            problems.append(TalosProblem(path, "is missing; the node cannot join without it"))
    endpoint = value_at(main, "cluster.controlPlane.endpoint")
    parsed = urlparse(str(endpoint or ""))
    if parsed.scheme != "https" or not parsed.hostname:
        problems.append(
            TalosProblem(
                "cluster.controlPlane.endpoint",
                f"is {shown(endpoint)}; it must be the https URL of the Kubernetes API, "
                "e.g. https://203.0.113.10:6443",
            )
        )

    image = str((machine.get("kubelet") or {}).get("image") or "")
    tag = image.rpartition(":")[2] if ":" in image else ""
    try:
        kubernetes = talos_versions.parse_kubernetes_version(tag)
        talos_versions.check_kubernetes_supported(talos, kubernetes)
    except ValueError as error:
        problems.append(
            TalosProblem(
                "machine.kubelet.image",
                f"{shown(image)}: {error} (on the node this fails as 'kubelet image is not "
                "valid'); "
                "set talos.kubernetesVersion",
            )
        )

    valid_subnets = value_at(main, "machine.kubelet.nodeIP.validSubnets")
    if valid_subnets != [spec.subnet]:
        problems.append(
            TalosProblem(
                "machine.kubelet.nodeIP.validSubnets",
                f"is {shown(valid_subnets)} but the private subnet is {spec.subnet}; nodes would "
                "register the wrong Internal IP",
            )
        )

    for conflict in cluster_subnet_conflicts([main], spec.network_ip_range):
        path = f"cluster.network.{conflict.field}"
        if conflict.kind == "not a CIDR":
            problems.append(TalosProblem(path, f"{shown(conflict.cidr)} is not a CIDR"))
        elif conflict.kind == "overlaps":
            problems.append(
                TalosProblem(
                    path, f"{conflict.cidr} overlaps the private network {spec.network_ip_range}"
                )
            )
    problems.extend(
        TalosProblem("machine.nodeLabels", problem)
        for problem in validators.kubernetes_label_problems(machine.get("nodeLabels") or {})
    )
    return problems


@dataclass(frozen=True)
class SubnetConflict:
    """A pod or service network of the cluster that is no CIDR list, no CIDR, or overlaps ours."""

    field: str
    cidr: Any
    kind: Literal["not a list", "not a CIDR", "overlaps"]


def cluster_subnet_conflicts(
    documents: Iterable[dict[str, Any]], network_ip_range: str
) -> list[SubnetConflict]:
    """The rule, once: ``cluster.network.podSubnets`` and ``serviceSubnets`` must be CIDRs
    disjoint from the private network, or nodes route cluster traffic into it (the
    guide's "wrong Internal IP": Talos' default service network holds 10.100.0.0/16)."""
    network = ipaddress.ip_network(network_ip_range)
    conflicts: list[SubnetConflict] = []
    for document in documents:
        for field_name in CLUSTER_NETWORK_FIELDS:
            entries = value_at(document, f"cluster.network.{field_name}") or []
            if not isinstance(entries, list):
                conflicts.append(SubnetConflict(field_name, entries, "not a list"))
                continue
            for cidr in entries:
                try:
                    other = ipaddress.ip_network(str(cidr), strict=False)
                except ValueError:
                    conflicts.append(SubnetConflict(field_name, cidr, "not a CIDR"))
                    continue
                if other.version == network.version and other.overlaps(network):
                    conflicts.append(SubnetConflict(field_name, cidr, "overlaps"))
    return conflicts


def shape_problems(main: dict[str, Any]) -> list[TalosProblem]:
    """The sections the builder patches must be maps (and lists where Talos has lists)."""
    problems = []
    for paths, wanted, kind in (
        (MAPPING_PATHS, dict, "a mapping (key: value)"),
        (LIST_PATHS, list, "a list"),
    ):
        for path in paths:
            value = value_at(main, path)
            if value is not None and not isinstance(value, wanted):
                problems.append(TalosProblem(path, f"must be {kind}, got {shown(value, path)}"))
    return problems


def _control_plane_only_settings(main: dict[str, Any]) -> list[TalosProblem]:
    """Settings Talos's own validation refuses on a worker (v1alpha1 ``Validate``).

    Talos also refuses a shared VIP on a worker's interfaces; ``machine.network`` is
    removed from worker configs, so none can reach a node.
    """
    problems = []
    cluster = main.get("cluster") or {}
    if isinstance(cluster, dict) and cluster.get("etcd") is not None:
        problems.append(
            TalosProblem(
                "cluster.etcd",
                "is only allowed on control plane machines (Talos refuses the worker config); "
                "remove it from the worker config",
            )
        )
    if value_at(main, "machine.features.kubernetesTalosAPIAccess.enabled") is True:
        problems.append(
            TalosProblem(
                "machine.features.kubernetesTalosAPIAccess",
                "can only be enabled on control plane machines (Talos refuses the worker "
                "config); enable it in the control-plane config instead",
            )
        )
    return problems


def volume_warnings(documents: list[dict[str, Any]]) -> list[str]:
    """Volume documents whose disk selector names a disk of the generating machine.

    They are kept (they carry the user's sizes and volumes), but a selector that matches no
    disk of the cloud server leaves the volume unprovisioned: for ``EPHEMERAL`` the kubelet
    never starts.
    """
    warnings = []
    for document in documents:
        if document.get("kind") not in VOLUME_DOCUMENTS:
            continue
        match = value_at(document, "provisioning.diskSelector.match")
        if isinstance(match, str) and MACHINE_DISK_ATTRIBUTES.search(match):
            warnings.append(
                f"{document_name(document)}: provisioning.diskSelector.match {shown(match)} "
                "names one machine's disk; a Hetzner cloud server has a single virtio disk "
                "(/dev/sda, matched by `system_disk`), so the volume may never be created"
            )
    return warnings
