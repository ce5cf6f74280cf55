"""The Talos worker config autoscaled servers boot with (guide step 3), built and checked.

Pure Python: takes the cluster's base worker config (``talm template`` or
``talosctl gen config`` output, one document before Talos 1.12, several after) and
patches what autoscaled nodes need. Every failure the guide's troubleshooting section
describes is caught here, at preview time, instead of on a VNC console.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.kubernetes.rollout import GENERATION_LABEL
from core.releases import talos as talos_versions
from core.talos.documents import document_name, dump_documents, load_documents, main_document
from core.talos.keys import deprecated_keys, talos_keys
from core.talos.problems import WorkerConfigError
from core.talos.spec import WorkerConfigSpec
from core.talos.user_data import UserData, encode_user_data
from core.talos.validation import (
    REMOVED_SECTIONS,
    shape_problems,
    validate_worker_documents,
    volume_warnings,
)

#: Talos 1.12 replaced ``machine.registries`` with ``RegistryMirrorConfig`` documents.
REGISTRY_DOCUMENTS_SINCE = (1, 12)

#: ``cloud-provider=external``: the providerID comes from the setter or a CCM, not the kubelet.
OWNED_KUBELET_ARGS = {"cloud-provider": "external"}

#: Hex digits of a pool's generation (``generation``).
GENERATION_LENGTH = 10


@dataclass(frozen=True)
class WorkerConfig:
    yaml: str
    user_data: UserData
    #: What the user should know but Talos accepts (deprecated keys, removed sections).
    warnings: tuple[str, ...] = ()
    #: The patched ``machine`` section, as written into ``yaml`` (for render).
    machine: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: What a node of the pool boots (``generation``); "" without a boot image.
    generation: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.yaml.encode("utf-8")).hexdigest()


def build_worker_config(
    base_config: str | Sequence[dict[str, Any]],
    spec: WorkerConfigSpec,
    source: str = "",
    written: dict[str, str] | None = None,
) -> WorkerConfig:
    """Patch the base worker config (YAML, or its documents parsed once) for autoscaled
    nodes and validate the result; ``written`` is shared by the pools of one stack
    (``dump_documents``).

    Raises WorkerConfigError listing every problem (``source`` names the pool
    and the config file or key in messages).
    """
    documents = (
        load_documents(base_config, source)
        if isinstance(base_config, str)
        else copy.deepcopy(list(base_config))
    )
    main = main_document(documents, source)
    shape = shape_problems(main)
    if shape:
        raise WorkerConfigError(source, shape)
    machine = main["machine"] = main.get("machine") or {}
    removed = [f"machine.{name}" for name in REMOVED_SECTIONS if machine.pop(name, None)]
    kubelet = machine["kubelet"] = machine.get("kubelet") or {}

    machine["nodeLabels"] = {**(machine.get("nodeLabels") or {}), **spec.node_labels}
    if spec.node_annotations:
        machine["nodeAnnotations"] = {
            **(machine.get("nodeAnnotations") or {}),
            **spec.node_annotations,
        }
    if spec.taints:
        extra_config = kubelet["extraConfig"] = kubelet.get("extraConfig") or {}
        extra_config["registerWithTaints"] = [
            {"key": taint.key, "value": taint.value, "effect": taint.effect}
            for taint in spec.taints
        ]
    kubelet["nodeIP"] = {"validSubnets": [spec.subnet]}
    # Values as given: Talos decodes scalars into its string args, and lists (1.13 ``Args``).
    kubelet["extraArgs"] = {**(kubelet.get("extraArgs") or {}), **OWNED_KUBELET_ARGS}
    if spec.kubernetes is not None:
        kubelet["image"] = talos_versions.kubelet_image(spec.kubernetes)
    dropped = [doc for doc in documents if _is_network_document(doc, spec.talos)]
    documents = [doc for doc in documents if not _is_network_document(doc, spec.talos)]
    documents = _place_registry_mirrors(documents, main, spec)
    machine["nodeLabels"].pop(GENERATION_LABEL, None)  # never part of its own hash
    found_generation = generation(documents, spec.boot_image) if spec.boot_image else ""
    if found_generation:
        machine["nodeLabels"][GENERATION_LABEL] = found_generation

    problems = validate_worker_documents(documents, spec)
    if problems:
        raise WorkerConfigError(source, problems)
    text = dump_documents(documents, written)
    warnings = [
        f"{', '.join(removed)} removed from the worker config {source}, as Cozystack's guide "
        "does: they describe the machine it was generated on (disk, interfaces, hostname), "
        "not a cloud server booting the snapshot"
    ] * bool(removed)
    if dropped:
        warnings.append(
            f"network documents {', '.join(map(document_name, dropped))} removed from the "
            f"worker config {source}: they describe the links, addresses and resolvers of "
            "the site the config was generated on; any link document turns off Talos's "
            "default DHCP, the only way a Hetzner server's private NIC gets its address (so "
            "the kubelet would find no IP in the private subnet and never start), and the "
            "site's resolvers and hosts are not reachable from Hetzner"
        )
    warnings += [
        f"{problem} (worker config {source})" for problem in deprecated_keys(documents, spec.talos)
    ]
    warnings += [f"{warning} (worker config {source})" for warning in volume_warnings(documents)]
    return WorkerConfig(
        yaml=text,
        user_data=encode_user_data(text, spec.talos, source),
        warnings=tuple(warnings),
        machine=machine,
        generation=found_generation,
    )


def generation(documents: list[dict[str, Any]], boot_image: str) -> str:
    """A short hash of what a node boots: its worker config (without the generation label)
    and its image. Anything else (autoscaler flags, pool sizes) leaves it alone."""
    canonical = json.dumps(documents, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{boot_image}\n{canonical}".encode()).hexdigest()[:GENERATION_LENGTH]


def _is_network_document(document: dict[str, Any], talos: talos_versions.Version) -> bool:
    """A network document of the machine the config came from (``talos_config_keys.json``
    lists them per minor, read from Talos's machinery). A HostnameConfig goes only with a
    fixed name (every autoscaled node would get it); ``auto`` names each node itself."""
    kind = document.get("kind")
    if kind == "HostnameConfig":
        return "hostname" in document
    return kind in talos_keys(talos).removed_network_kinds


def _place_registry_mirrors(
    documents: list[dict[str, Any]], main: dict[str, Any], spec: WorkerConfigSpec
) -> list[dict[str, Any]]:
    """Mirrors in ``machine.registries`` before Talos 1.12, as documents from 1.12 on."""
    if not spec.registry_mirrors:
        return documents
    if spec.talos.minor_key < REGISTRY_DOCUMENTS_SINCE:
        machine = main["machine"]
        registries = machine["registries"] = machine.get("registries") or {}
        mirrors = registries["mirrors"] = registries.get("mirrors") or {}
        for host, endpoints in spec.registry_mirrors.items():
            mirrors[host] = {"endpoints": list(endpoints)}
        return documents
    replaced = set(spec.registry_mirrors)
    kept = [
        doc
        for doc in documents
        if not (doc.get("kind") == "RegistryMirrorConfig" and doc.get("name") in replaced)
    ]
    for host, endpoints in spec.registry_mirrors.items():
        kept.append(
            {
                "apiVersion": "v1alpha1",
                "kind": "RegistryMirrorConfig",
                "name": host,
                "endpoints": [{"url": endpoint} for endpoint in endpoints],
            }
        )
    return kept


def worker_configs_sha256(configs: dict[str, WorkerConfig]) -> str:
    """One fingerprint of every pool's config: changes when nodes would boot differently."""
    listing = "".join(f"{pool}\t{configs[pool].sha256}\n" for pool in sorted(configs))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def worker_config_warnings(configs: dict[str, WorkerConfig]) -> list[str]:
    """Every pool's warnings, each once (pools share the base config)."""
    return list(
        dict.fromkeys(warning for config in configs.values() for warning in config.warnings)
    )
