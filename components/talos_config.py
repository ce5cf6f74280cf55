"""The Talos worker config autoscaled servers boot with (guide step 3), built and checked.

Pure Python: takes the cluster's base worker config (``talosctl gen config``
output, one document before Talos 1.12, several after) and patches what
autoscaled nodes need. Every failure the guide's troubleshooting section
describes is caught here, at preview time, instead of on a VNC console.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal
from urllib.parse import urlparse

import yaml

from components import talos_versions
from components.config import NodeGroup, StackConfig, Taint
from components.hetzner import USER_DATA_LIMIT_BYTES

MAIN_DOCUMENT = "v1alpha1"
#: Talos decodes base64 user data on Hetzner (and so base64(gzip)) from 1.9 on (FACTS §4.4).
GZIP_USER_DATA_SINCE = (1, 9)
#: Talos 1.12 replaced ``machine.registries`` with ``RegistryMirrorConfig`` documents.
REGISTRY_DOCUMENTS_SINCE = (1, 12)
#: Private keys that must never reach a worker (they belong to the control plane).
CONTROL_PLANE_KEYS = (
    "machine.ca.key",
    "cluster.ca.key",
    "cluster.aggregatorCA.key",
    "cluster.serviceAccount.key",
    "cluster.etcd.ca.key",
)
#: Values hidden by ``redact``: tokens, private keys, shared secrets.
SECRET_FIELDS = frozenset(
    {"token", "key", "secret", "secretboxEncryptionSecret", "aescbcEncryptionSecret"}
)
REDACTED = "<redacted>"
#: Names a node's pool, like the autoscaler's own node templates do.
NODE_GROUP_LABEL = "hcloud/node-group"
#: Keys Talos still decodes but its JSON schema leaves out (``talosctl gen config``
#: wrote ``persist: true`` for years; the field is deprecated and ignored).
ACCEPTED_OUTSIDE_SCHEMA = frozenset({"persist"})


@dataclass(frozen=True)
class WorkerConfigSpec:
    """What the stack decides about an autoscaled pool's Talos config."""

    talos_version: str
    schematic_id: str
    image_factory_url: str
    subnet: str
    network_ip_range: str
    kubernetes_version: str | None = None
    node_labels: dict[str, str] = field(default_factory=dict)
    taints: list[Taint] = field(default_factory=list)
    registry_mirrors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def talos(self) -> talos_versions.Version:
        return talos_versions.parse_talos_version(self.talos_version)

    @property
    def installer_image(self) -> str:
        host = urlparse(self.image_factory_url).netloc
        return f"{host}/installer/{self.schematic_id}:{self.talos_version}"


@dataclass(frozen=True)
class TalosProblem:
    """One thing wrong with a Talos config: the key path in the document and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class WorkerConfigError(ValueError):
    """The worker config would not boot or join; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[TalosProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"the Talos worker config {source} has {len(problems)} problem(s):\n{lines}"
        )


@dataclass(frozen=True)
class UserData:
    """What Hetzner hands the server: the YAML, or base64(gzip(YAML)) when it is too big."""

    text: str
    encoding: Literal["plain", "gzip+base64"]

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8"))


@dataclass(frozen=True)
class WorkerConfig:
    yaml: str
    user_data: UserData

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.yaml.encode("utf-8")).hexdigest()


def build_worker_config(base_config: str, spec: WorkerConfigSpec, source: str = "") -> WorkerConfig:
    """Patch the base worker config for autoscaled nodes and validate the result.

    Raises WorkerConfigError listing every problem (``source`` names the pool
    and the config file or key in messages).
    """
    documents = load_documents(base_config, source)
    main = _main_document(documents, source)
    machine = main.setdefault("machine", {})
    kubelet = machine.setdefault("kubelet", {})

    machine["nodeLabels"] = {**(machine.get("nodeLabels") or {}), **spec.node_labels}
    if spec.taints:
        extra_config = kubelet.setdefault("extraConfig", {})
        extra_config["registerWithTaints"] = [
            {"key": taint.key, "value": taint.value, "effect": taint.effect}
            for taint in spec.taints
        ]
    kubelet["nodeIP"] = {"validSubnets": [spec.subnet]}
    extra_args = {key: str(value) for key, value in (kubelet.get("extraArgs") or {}).items()}
    extra_args["cloud-provider"] = "external"
    kubelet["extraArgs"] = extra_args
    if spec.kubernetes_version:
        kubernetes = talos_versions.parse_kubernetes_version(spec.kubernetes_version)
        kubelet["image"] = talos_versions.kubelet_image(kubernetes)
    machine.setdefault("install", {})["image"] = spec.installer_image
    network = machine.get("network")
    if isinstance(network, dict):
        network.pop("hostname", None)
    documents = [doc for doc in documents if not _is_static_hostname_document(doc)]
    documents = _place_registry_mirrors(documents, main, spec)

    problems = validate_worker_documents(documents, spec)
    if problems:
        raise WorkerConfigError(source, problems)
    text = dump_documents(documents)
    return WorkerConfig(yaml=text, user_data=encode_user_data(text, source, spec.talos))


def load_documents(text: str, source: str = "") -> list[dict[str, Any]]:
    """Parse a (multi-document) Talos config; YAML errors give line and column."""
    try:
        loaded = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise WorkerConfigError(
            source, [TalosProblem("", f"failed to load config: {problem}{where}")]
        ) from None
    documents = [doc for doc in loaded if doc is not None]
    if not all(isinstance(doc, dict) for doc in documents):
        raise WorkerConfigError(
            source, [TalosProblem("", "failed to load config: every document must be a mapping")]
        )
    return documents


def dump_documents(documents: list[dict[str, Any]]) -> str:
    """Deterministic YAML: same documents, same bytes."""
    return "---\n".join(
        yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)
        for doc in documents
    )


def encode_user_data(
    text: str, source: str = "", talos: talos_versions.Version | None = None
) -> UserData:
    """Plain YAML when it fits Hetzner's limit, else base64(gzip(YAML)), else an error.

    Talos reads base64 user data on Hetzner only from 1.9 on: 1.8 gets plain YAML or an error.
    """
    plain = UserData(text=text, encoding="plain")
    if plain.size <= USER_DATA_LIMIT_BYTES:
        return plain
    if talos is not None and talos.minor_key < GZIP_USER_DATA_SINCE:
        raise WorkerConfigError(
            source,
            [
                TalosProblem(
                    "",
                    f"is {plain.size} bytes; Hetzner accepts at most {USER_DATA_LIMIT_BYTES} "
                    f"bytes of user data, and Talos v{talos.major}.{talos.minor} cannot read it "
                    "compressed (base64 user data needs Talos 1.9+): remove inline manifests or "
                    "large files from the worker config, or use a newer Talos",
                )
            ],
        )
    compressed = gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)
    packed = UserData(text=base64.b64encode(compressed).decode("ascii"), encoding="gzip+base64")
    if packed.size <= USER_DATA_LIMIT_BYTES:
        return packed
    raise WorkerConfigError(
        source,
        [
            TalosProblem(
                "",
                f"is {plain.size} bytes ({packed.size} bytes even gzip+base64 encoded); Hetzner "
                f"accepts at most {USER_DATA_LIMIT_BYTES} bytes of user data: remove inline "
                "manifests or large files from the worker config",
            )
        ],
    )


def decode_user_data(text: str) -> str:
    """The YAML inside user data, as Talos reads it (plain or base64(gzip))."""
    try:
        return gzip.decompress(base64.b64decode(text, validate=True)).decode("utf-8")
    except (ValueError, OSError):
        return text


def validate_worker_documents(
    documents: list[dict[str, Any]], spec: WorkerConfigSpec
) -> list[TalosProblem]:
    """Every reason the config would not boot, join, or get the right address."""
    talos = spec.talos
    problems = _unknown_keys(documents, talos)
    main = next((doc for doc in documents if "kind" not in doc), {})
    machine = main.get("machine") or {}

    if machine.get("type") != "worker":
        problems.append(
            TalosProblem(
                "machine.type",
                f"is {machine.get('type')!r}; autoscaled nodes join as workers: use the "
                "worker.yaml of `talosctl gen config`, not controlplane.yaml",
            )
        )
    for path in CONTROL_PLANE_KEYS:
        if _get(main, path):  # `talosctl gen config` writes `key: ""` on workers
            problems.append(
                TalosProblem(
                    path,
                    "is a control-plane private key and must not be handed to workers; use the "
                    "worker.yaml of `talosctl gen config` (it carries only the certificates)",
                )
            )
    problems.extend(_control_plane_only_settings(main))
    for path in ("machine.token", "cluster.token"):
        if not _get(main, path):
            problems.append(TalosProblem(path, "is missing; the node cannot join without it"))
    endpoint = _get(main, "cluster.controlPlane.endpoint")
    parsed = urlparse(str(endpoint or ""))
    if parsed.scheme != "https" or not parsed.hostname:
        problems.append(
            TalosProblem(
                "cluster.controlPlane.endpoint",
                f"is {endpoint!r}; it must be the https URL of the Kubernetes API, "
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
                f"{image!r}: {error} (on the node this fails as 'kubelet image is not valid'); "
                "set talos.kubernetesVersion",
            )
        )

    valid_subnets = _get(main, "machine.kubelet.nodeIP.validSubnets")
    if valid_subnets != [spec.subnet]:
        problems.append(
            TalosProblem(
                "machine.kubelet.nodeIP.validSubnets",
                f"is {valid_subnets!r} but the private subnet is {spec.subnet}; nodes would "
                "register the wrong Internal IP",
            )
        )

    network = ipaddress.ip_network(spec.network_ip_range)
    for field_name in ("podSubnets", "serviceSubnets"):
        for cidr in _get(main, f"cluster.network.{field_name}") or []:
            try:
                other = ipaddress.ip_network(str(cidr), strict=False)
            except ValueError:
                problems.append(
                    TalosProblem(f"cluster.network.{field_name}", f"{cidr!r} is not a CIDR")
                )
                continue
            if other.version == network.version and other.overlaps(network):
                problems.append(
                    TalosProblem(
                        f"cluster.network.{field_name}",
                        f"{cidr} overlaps the private network {spec.network_ip_range}",
                    )
                )
    return problems


def _control_plane_only_settings(main: dict[str, Any]) -> list[TalosProblem]:
    """Settings Talos's own validation refuses on a worker (v1alpha1 ``Validate``)."""
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
    if _get(main, "machine.features.kubernetesTalosAPIAccess.enabled") is True:
        problems.append(
            TalosProblem(
                "machine.features.kubernetesTalosAPIAccess",
                "can only be enabled on control plane machines (Talos refuses the worker "
                "config); enable it in the control-plane config instead",
            )
        )
    interfaces = _get(main, "machine.network.interfaces") or []
    for index, interface in enumerate(interfaces if isinstance(interfaces, list) else []):
        if not isinstance(interface, dict):
            continue
        vlans = interface.get("vlans") or []
        holders = [(f"machine.network.interfaces[{index}]", interface)] + [
            (f"machine.network.interfaces[{index}].vlans[{inner}]", vlan)
            for inner, vlan in enumerate(vlans if isinstance(vlans, list) else [])
            if isinstance(vlan, dict)
        ]
        for path, holder in holders:
            if holder.get("vip") is not None:
                problems.append(
                    TalosProblem(
                        f"{path}.vip",
                        "a shared virtual IP is not allowed on non-controlplane nodes (Talos "
                        "refuses the worker config); remove it",
                    )
                )
    return problems


def allowed_paths(talos: talos_versions.Version) -> dict[str, frozenset[str]]:
    """Document kind -> allowed key paths for a Talos minor (from our committed table)."""
    return _allowed_paths_table()[f"{talos.major}.{talos.minor}"]


@cache
def _allowed_paths_table() -> dict[str, dict[str, frozenset[str]]]:
    text = resources.files("components").joinpath("talos_config_keys.json").read_text("utf-8")
    return {
        minor: {kind: frozenset(paths) for kind, paths in kinds.items()}
        for minor, kinds in json.loads(text).items()
    }


def _unknown_keys(
    documents: list[dict[str, Any]], talos: talos_versions.Version
) -> list[TalosProblem]:
    tables = allowed_paths(talos)
    problems: list[TalosProblem] = []
    for document in documents:
        kind = str(document.get("kind", MAIN_DOCUMENT))
        allowed = tables.get(kind)
        if allowed is None:
            problems.append(
                TalosProblem(
                    "kind",
                    f"document kind {kind!r} does not exist in Talos v{talos.major}.{talos.minor}",
                )
            )
            continue
        if kind == MAIN_DOCUMENT:
            allowed = allowed | ACCEPTED_OUTSIDE_SCHEMA
        prefix = "" if kind == MAIN_DOCUMENT else f"{kind}: "
        reported_parts: list[tuple[str, ...]] = []
        for path, parts in _key_paths(document):
            if any(parts[: len(done)] == done for done in reported_parts):
                continue
            if not _is_allowed(parts, allowed):
                reported_parts.append(parts)
                problems.append(
                    TalosProblem(f"{prefix}{path}", _unknown_key_message(parts, allowed, talos))
                )
    return problems


def _key_paths(
    node: Any, path: str = "", parts: tuple[str, ...] = ()
) -> list[tuple[str, tuple[str, ...]]]:
    """(printable path, parts) of every key; list items become ``[]`` parts."""
    found: list[tuple[str, tuple[str, ...]]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            key_path = f"{path}.{key}" if path else str(key)
            found.append((key_path, (*parts, str(key))))
            found.extend(_key_paths(value, key_path, (*parts, str(key))))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_key_paths(value, f"{path}[{index}]", (*parts, "[]")))
    return found


def _pattern(parts: tuple[str, ...]) -> str:
    """Table form of a path: ``machine.kubelet.extraMounts[].source``."""
    text = ""
    for part in parts:
        text = f"{text}[]" if part == "[]" else (f"{text}.{part}" if text else part)
    return text


def _is_allowed(parts: tuple[str, ...], allowed: frozenset[str]) -> bool:
    """Listed in the table, or below a free-form map (``prefix.*``)."""
    if _pattern(parts) in allowed:
        return True
    return any(f"{_pattern(parts[:end])}.*" in allowed for end in range(len(parts) - 1, 0, -1))


def _unknown_key_message(
    parts: tuple[str, ...], allowed: frozenset[str], talos: talos_versions.Version
) -> str:
    key = parts[-1]
    homes = sorted(
        candidate.rsplit(".", 1)[0] for candidate in allowed if candidate.endswith(f".{key}")
    )
    where = f"; `{key}` goes under `{homes[0]}`" if homes else ""
    return (
        f"unknown key for Talos v{talos.major}.{talos.minor} (Talos would fail with "
        f"'unknown keys found during decoding'){where}"
    )


def _main_document(documents: list[dict[str, Any]], source: str) -> dict[str, Any]:
    for document in documents:
        if "kind" not in document:
            return document
    raise WorkerConfigError(
        source, [TalosProblem("", "has no v1alpha1 document (version: v1alpha1, machine, cluster)")]
    )


def _is_static_hostname_document(document: dict[str, Any]) -> bool:
    """A HostnameConfig with a fixed name would give every autoscaled node the same name."""
    return document.get("kind") == "HostnameConfig" and "hostname" in document


def _place_registry_mirrors(
    documents: list[dict[str, Any]], main: dict[str, Any], spec: WorkerConfigSpec
) -> list[dict[str, Any]]:
    """Mirrors in ``machine.registries`` before Talos 1.12, as documents from 1.12 on."""
    if not spec.registry_mirrors:
        return documents
    if spec.talos.minor_key < REGISTRY_DOCUMENTS_SINCE:
        registries = main["machine"].setdefault("registries", {})
        mirrors = registries.setdefault("mirrors", {})
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


def _get(document: dict[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def redact(text: str) -> str:
    """The config with tokens, private keys and shared secrets replaced, for display."""
    return dump_documents([_redacted(doc) for doc in load_documents(text)])


def _redacted(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: REDACTED if key in SECRET_FIELDS and value else _redacted(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_redacted(item) for item in node]
    return node


def pool_worker_spec(
    stack: StackConfig, group: NodeGroup, schematic_id: str, subnet: str
) -> WorkerConfigSpec:
    """One pool's spec: stack-wide Talos settings plus the pool's labels and taints.

    The legacy format hands one config to every pool, so it carries no pool labels.
    """
    legacy = stack.autoscaler.config_format == "legacy"
    return WorkerConfigSpec(
        talos_version=stack.talos.version,
        kubernetes_version=stack.talos.kubernetes_version,
        schematic_id=schematic_id,
        image_factory_url=stack.talos.image_factory_url,
        subnet=subnet,
        network_ip_range=stack.network.ip_range,
        node_labels=dict(stack.talos.node_labels)
        if legacy
        else {**stack.talos.node_labels, **pool_node_labels(group)},
        taints=[] if legacy else list(group.taints),
        registry_mirrors=stack.talos.registry_mirrors,
    )


def pool_node_labels(group: NodeGroup) -> dict[str, str]:
    """Labels a pool's nodes carry beyond ``talos.nodeLabels``.

    The same labels go into the Talos config (so real nodes have them) and into
    the autoscaler's node templates (so scale-from-zero simulation matches):
    the pool name, its region (pods select on it), and the pool's own labels.
    """
    return {
        NODE_GROUP_LABEL: group.name,
        "topology.kubernetes.io/region": group.region,
        **group.labels,
    }


def render_worker_configs(
    stack: StackConfig, schematic_id: str, subnet: str
) -> dict[str, WorkerConfig]:
    """The worker config of every pool (the base config must be readable)."""
    if stack.base_worker_config is None:
        raise ValueError("the base worker config is encrypted; it cannot be rendered offline")
    source_key = (
        "talos.workerConfigFile" if stack.talos.worker_config_file else "talos.workerConfig"
    )
    return {
        group.name: build_worker_config(
            stack.base_worker_config.reveal(),
            pool_worker_spec(stack, group, schematic_id, subnet),
            source=f"of pool {group.name} (from {source_key})",
        )
        for group in stack.autoscaler.node_groups
    }


def worker_configs_sha256(configs: dict[str, WorkerConfig]) -> str:
    """One fingerprint of every pool's config: changes when nodes would boot differently."""
    listing = "".join(f"{pool}\t{configs[pool].sha256}\n" for pool in sorted(configs))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()
