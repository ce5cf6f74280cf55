"""The Talos worker config autoscaled servers boot with (guide step 3), built and checked.

Pure Python: takes the cluster's base worker config (``talm template`` or
``talosctl gen config`` output, one document before Talos 1.12, several after) and
patches what autoscaled nodes need. Every failure the guide's troubleshooting section
describes is caught here, at preview time, instead of on a VNC console.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import yaml

from core import redaction, safe_yaml, talos_versions, validators
from core.errors import InputError, bounded
from core.hetzner import NODE_GROUP_LABEL, USER_DATA_LIMIT_BYTES
from core.node_controller import GENERATION_LABEL
from core.node_labels import label_problem
from core.redaction import shown

if TYPE_CHECKING:  # the stack config's own rules use this module: no import cycle
    from core.config.model import NodeGroup, StackConfig, Taint

MAIN_DOCUMENT = "v1alpha1"
#: A base worker config far above this cannot fit Hetzner's 32 KiB user data even gzipped.
WORKER_CONFIG_LIMITS = safe_yaml.Limits(max_bytes=1024 * 1024)
#: Talos 1.12 replaced ``machine.registries`` with ``RegistryMirrorConfig`` documents.
REGISTRY_DOCUMENTS_SINCE = (1, 12)
#: Talos on Hetzner decodes base64 user data (then un-gzips it) only from v1.9.0
#: (siderolabs/talos commit ccbd5aed, platform/hcloud/hcloud.go).
GZIP_USER_DATA_SINCE = (1, 9)
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
REDACTED = redaction.REDACTED
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
#: Names a node's pool, like the autoscaler's own node templates do.
#: The autoscaler's scale-from-zero template carries it (FACTS §1.5): real nodes must too.
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
#: ``cloud-provider=external``: the providerID comes from the setter or a CCM, not the kubelet.
OWNED_KUBELET_ARGS = {"cloud-provider": "external"}
#: Volume documents that place a volume on a disk chosen by ``provisioning.diskSelector``.
VOLUME_DOCUMENTS = ("VolumeConfig", "UserVolumeConfig", "RawVolumeConfig", "SwapVolumeConfig")
#: CEL disk attributes that name one machine's disk: a Hetzner cloud server has one virtio
#: SCSI disk (``/dev/sda``), not the disk of the machine the base config was generated on.
MACHINE_DISK_ATTRIBUTES = re.compile(
    r"\bdisk\.(dev_path|serial|wwid|model|modalias|uuid|symlinks)\b"
)
#: Booleans Talos's YAML decoder (go-yaml v3, ``decode.go`` ``scalar``) reads from strings.
YAML_BOOLEAN_WORDS = frozenset(
    form
    for word in ("y", "yes", "on", "n", "no", "off")
    for form in (word, word.title(), word.upper())
)
#: Hex digits of a pool's generation (``generation``).
GENERATION_LENGTH = 10


@dataclass(frozen=True)
class WorkerConfigSpec:
    """What the stack decides about an autoscaled pool's Talos config."""

    talos_version: str
    subnet: str
    network_ip_range: str
    kubernetes_version: str | None = None
    node_labels: dict[str, str] = field(default_factory=dict)
    node_annotations: dict[str, str] = field(default_factory=dict)
    taints: list[Taint] = field(default_factory=list)
    registry_mirrors: dict[str, list[str]] = field(default_factory=dict)
    #: The image the pool's servers boot (``boot_image``); with it the config carries its
    #: generation label.
    boot_image: str = ""

    @property
    def talos(self) -> talos_versions.Version:
        return talos_versions.parse_talos_version(self.talos_version)


@dataclass(frozen=True)
class TalosProblem:
    """One thing wrong with a Talos config: the key path in the document and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return bounded(f"{self.path}: {self.message}" if self.path else self.message)


class WorkerConfigError(InputError):
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
    main = _main_document(documents, source)
    shape = _shape_problems(main)
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
    if spec.kubernetes_version:
        kubernetes = talos_versions.parse_kubernetes_version(spec.kubernetes_version)
        kubelet["image"] = talos_versions.kubelet_image(kubernetes)
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
            f"network documents {', '.join(map(_document_name, dropped))} removed from the "
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


def load_documents(text: str, source: str = "") -> list[dict[str, Any]]:
    """Parse a (multi-document) Talos config; YAML errors give line and column."""
    try:
        documents = safe_yaml.load_all(text, WORKER_CONFIG_LIMITS)
    except safe_yaml.YamlError as error:
        raise WorkerConfigError(
            source, [TalosProblem("", f"failed to load config: {error}")]
        ) from None
    if not all(isinstance(doc, dict) for doc in documents):
        raise WorkerConfigError(
            source, [TalosProblem("", "failed to load config: every document must be a mapping")]
        )
    return documents


def dump_documents(documents: list[dict[str, Any]], written: dict[str, str] | None = None) -> str:
    """Deterministic YAML: same documents, same bytes.

    ``written`` remembers the YAML of top-level sections across calls: the pools' configs
    differ only in ``machine``, and the (pure-Python, byte-stable) dumper is most of a
    build's time. A block mapping's YAML is its sections' YAML one after the other, except
    when a value is shared (written once with an anchor): such documents are dumped whole.
    """
    return "---\n".join(_dump_document(document, written) for document in documents)


def _dump_document(document: dict[str, Any], written: dict[str, str] | None) -> str:
    if written is None or not document or _shares_values(document):
        return _dump(document)
    sections = []
    for key, value in document.items():
        seen = repr((key, value))  # types and order included: equal text, equal YAML
        if seen not in written:
            written[seen] = _dump({key: value})
        sections.append(written[seen])
    return "".join(sections)


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)


def _shares_values(node: Any) -> bool:
    """Whether a map or list occurs twice (YAML aliases load so; the dumper anchors it)."""
    seen: set[int] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, dict | list):
            if id(current) in seen:
                return True
            seen.add(id(current))
            pending.extend(current.values() if isinstance(current, dict) else current)
    return False


def encode_user_data(text: str, talos: talos_versions.Version, source: str = "") -> UserData:
    """Plain YAML when it fits Hetzner's limit, else base64(gzip(YAML)), else an error.

    Talos decodes base64(gzip) user data on Hetzner only from v1.9: before, a config
    that does not fit as plain YAML is an error, not a server that never boots.
    """
    plain = UserData(text=text, encoding="plain")
    if plain.size <= USER_DATA_LIMIT_BYTES:
        return plain
    if talos.minor_key < GZIP_USER_DATA_SINCE:
        raise WorkerConfigError(
            source,
            [
                TalosProblem(
                    "",
                    f"is {plain.size} bytes; Hetzner accepts at most {USER_DATA_LIMIT_BYTES} "
                    f"bytes of user data, and Talos v{talos.major}.{talos.minor} cannot read it "
                    "compressed (Talos decodes base64(gzip) user data on Hetzner from v1.9): "
                    "remove inline manifests or large files, or use Talos v1.9 or newer",
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
    shape = _shape_problems(main)
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

    valid_subnets = _get(main, "machine.kubelet.nodeIP.validSubnets")
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
            entries = _get(document, f"cluster.network.{field_name}") or []
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


def _shape_problems(main: dict[str, Any]) -> list[TalosProblem]:
    """The sections the builder patches must be maps (and lists where Talos has lists)."""
    problems = []
    for paths, wanted, kind in (
        (MAPPING_PATHS, dict, "a mapping (key: value)"),
        (LIST_PATHS, list, "a list"),
    ):
        for path in paths:
            value = _get(main, path)
            if value is not None and not isinstance(value, wanted):
                problems.append(TalosProblem(path, f"must be {kind}, got {shown(value, path)}"))
    return problems


@dataclass(frozen=True)
class DeprecatedField:
    """A field Talos still decodes although its schema for that minor leaves it out."""

    path: str
    instead: str
    #: The field and the keys accepted below it.
    paths: frozenset[str]


@dataclass(frozen=True)
class ValueRules:
    """What one document kind's values must be: JSON types and enums by path pattern."""

    types: dict[str, frozenset[str]]
    enums: dict[str, tuple[Any, ...]]
    #: Every pattern with a rule at or below it (where the walk must go on).
    reaching: frozenset[str]


@dataclass(frozen=True)
class TalosKeys:
    """What a Talos minor accepts: key paths per document kind, deprecated fields, value
    types, and which network documents worker configs lose."""

    documents: dict[str, frozenset[str]]
    deprecated: tuple[DeprecatedField, ...]
    values: dict[str, ValueRules] = field(default_factory=dict)
    removed_network_kinds: frozenset[str] = frozenset()

    def allowed(self, kind: str) -> frozenset[str] | None:
        paths = self.documents.get(kind)
        if paths is None or kind != MAIN_DOCUMENT:
            return paths
        return paths.union(*(field.paths for field in self.deprecated))


def talos_keys(talos: talos_versions.Version) -> TalosKeys:
    """The keys of a Talos minor (our committed table, generated from schemas and Go types)."""
    return _talos_keys_table()[f"{talos.major}.{talos.minor}"]


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
    if _get(main, "machine.features.kubernetesTalosAPIAccess.enabled") is True:
        problems.append(
            TalosProblem(
                "machine.features.kubernetesTalosAPIAccess",
                "can only be enabled on control plane machines (Talos refuses the worker "
                "config); enable it in the control-plane config instead",
            )
        )
    return problems


@cache
def _talos_keys_table() -> dict[str, TalosKeys]:
    text = resources.files("core").joinpath("talos_config_keys.json").read_text("utf-8")
    return {
        minor: TalosKeys(
            documents={kind: frozenset(paths) for kind, paths in table["documents"].items()},
            deprecated=tuple(
                DeprecatedField(path, entry["instead"], frozenset(entry["paths"]))
                for path, entry in table["deprecated"].items()
            ),
            values={kind: _value_rules(rules) for kind, rules in table["values"].items()},
            removed_network_kinds=frozenset(table["network_documents"]["removed"]),
        )
        for minor, table in json.loads(text).items()
    }


def _value_rules(rules: dict[str, dict[str, list[Any]]]) -> ValueRules:
    patterns = {*rules["types"], *rules["enums"]}
    reaching = {
        pattern[:end]
        for pattern in patterns
        for end in [match.start() for match in re.finditer(r"[.\[]", pattern)] + [len(pattern)]
    }
    return ValueRules(
        types={path: frozenset(types) for path, types in rules["types"].items()},
        enums={path: tuple(values) for path, values in rules["enums"].items()},
        reaching=frozenset(reaching),
    )


#: How a type is named in problems.
TYPE_NAMES = {
    "object": "a mapping (key: value)",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
}
#: Enums not judged here: ``machine.type`` has its own worker rule; a worker ignores its CNI
#: (Talos validates ``cluster.network.cni`` on control planes only, v1alpha1_validation.go).
ENUMS_NOT_CHECKED = frozenset({"machine.type", "cluster.network.cni.name"})


def value_type_problems(
    documents: list[dict[str, Any]], talos: talos_versions.Version
) -> list[TalosProblem]:
    """Values of the wrong type (Talos decodes strictly and refuses the whole config at
    boot) or outside an enum, per the JSON schema of the Talos minor."""
    keys = talos_keys(talos)
    problems: list[TalosProblem] = []
    for document in documents:
        kind = str(document.get("kind", MAIN_DOCUMENT))
        rules = keys.values.get(kind)
        if rules is None:
            continue
        prefix = "" if kind == MAIN_DOCUMENT else f"{kind}: "
        for key, value in document.items():
            _check_value(value, _path_part(key), str(key), rules, prefix, problems)
    return problems


def _check_value(
    value: Any, path: str, pattern: str, rules: ValueRules, prefix: str, found: list[TalosProblem]
) -> None:
    if pattern not in rules.reaching or value is None:
        return
    expected = rules.types.get(pattern)
    if expected is not None and not _decodes_as(value, expected):
        wanted = " or ".join(TYPE_NAMES[name] for name in sorted(expected))
        found.append(
            TalosProblem(
                f"{prefix}{path}",
                f"must be {wanted}, got {shown(value, path)} (Talos would refuse the whole "
                "config when decoding it)",
            )
        )
        return
    allowed = rules.enums.get(pattern)
    if allowed is not None and pattern not in ENUMS_NOT_CHECKED and value not in allowed:
        found.append(
            TalosProblem(
                f"{prefix}{path}",
                f"is {shown(value, path)}; Talos accepts only "
                f"{', '.join(json.dumps(option) for option in allowed)}",
            )
        )
        return
    if isinstance(value, dict):
        for key, child in value.items():
            named = f"{pattern}.{key}"
            child_pattern = named if named in rules.reaching else f"{pattern}.*"
            _check_value(child, f"{path}.{_path_part(key)}", child_pattern, rules, prefix, found)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _check_value(child, f"{path}[{index}]", f"{pattern}[]", rules, prefix, found)


def _decodes_as(value: Any, expected: frozenset[str]) -> bool:
    """Whether Talos's YAML decoder (go-yaml v3, ``decode.go`` ``scalar``) takes the value
    for one of the JSON types: any scalar into a string, a whole or float number into an
    integer, the YAML 1.1 words into a boolean."""
    if isinstance(value, dict):
        return "object" in expected
    if isinstance(value, list):
        return "array" in expected
    if "string" in expected:
        return True
    if isinstance(value, bool):
        return "boolean" in expected
    if isinstance(value, int | float):
        return bool(expected & {"integer", "number"})
    return "boolean" in expected and value in YAML_BOOLEAN_WORDS


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
        match = _get(document, "provisioning.diskSelector.match")
        if isinstance(match, str) and MACHINE_DISK_ATTRIBUTES.search(match):
            warnings.append(
                f"{_document_name(document)}: provisioning.diskSelector.match {shown(match)} "
                "names one machine's disk; a Hetzner cloud server has a single virtio disk "
                "(/dev/sda, matched by `system_disk`), so the volume may never be created"
            )
    return warnings


def deprecated_keys(documents: list[dict[str, Any]], talos: talos_versions.Version) -> list[str]:
    """One message per deprecated field present (the outermost, when they nest)."""
    main = next((doc for doc in documents if "kind" not in doc), {})
    present = {_pattern(parts) for _, parts in _key_paths(main)}
    found = [field for field in talos_keys(talos).deprecated if field.path in present]
    return [
        f"{field.path}: deprecated; Talos v{talos.major}.{talos.minor} still accepts it but "
        f"its schema no longer lists it: {field.instead}"
        for field in found
        if not any(
            other is not field and field.path.startswith((f"{other.path}.", f"{other.path}["))
            for other in found
        )
    ]


def _unknown_keys(
    documents: list[dict[str, Any]], talos: talos_versions.Version
) -> list[TalosProblem]:
    keys = talos_keys(talos)
    problems: list[TalosProblem] = []
    for document in documents:
        kind = str(document.get("kind", MAIN_DOCUMENT))
        allowed = keys.allowed(kind)
        if allowed is None:
            problems.append(
                TalosProblem(
                    "kind",
                    f"document kind {kind!r} does not exist in Talos v{talos.major}.{talos.minor}",
                )
            )
            continue
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
            name = _path_part(key)
            key_path = f"{path}.{name}" if path else name
            found.append((key_path, (*parts, str(key))))
            found.extend(_key_paths(value, key_path, (*parts, str(key))))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_key_paths(value, f"{path}[{index}]", (*parts, "[]")))
    return found


def _path_part(key: Any) -> str:
    """A key as a path shows it; empty, odd or huge keys are quoted and shortened."""
    text = str(key)
    if text and len(text) <= 64 and re.fullmatch(r"[\w./-]+", text):
        return text
    return shown(text)


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


def _is_network_document(document: dict[str, Any], talos: talos_versions.Version) -> bool:
    """A network document of the machine the config came from (``talos_config_keys.json``
    lists them per minor, read from Talos's machinery). A HostnameConfig goes only with a
    fixed name (every autoscaled node would get it); ``auto`` names each node itself."""
    kind = document.get("kind")
    if kind == "HostnameConfig":
        return "hostname" in document
    return kind in talos_keys(talos).removed_network_kinds


def _document_name(document: dict[str, Any]) -> str:
    name = document.get("name")
    return f"{document.get('kind')} {shown(name)}" if name else str(document.get("kind"))


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


def _get(document: dict[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def redact(text: str) -> str:
    """The config with every secret replaced, for display (the rule: ``redaction``)."""
    return dump_documents([redaction.redact(doc) for doc in load_documents(text)])


def pool_worker_spec(
    stack: StackConfig, group: NodeGroup, subnet: str, boot_image: str = ""
) -> WorkerConfigSpec:
    """One pool's spec: stack-wide Talos settings plus the pool's labels and taints.

    The legacy format hands one config to every pool, so it carries no pool labels.
    """
    legacy = stack.autoscaler.config_format == "legacy"
    return WorkerConfigSpec(
        talos_version=stack.talos.version,
        kubernetes_version=stack.talos.kubernetes_version,
        subnet=group.subnet or subnet,
        network_ip_range=stack.network.ip_range,
        node_labels=dict(stack.talos.node_labels)
        if legacy
        else {**stack.talos.node_labels, **pool_node_labels(group)},
        node_annotations={**stack.talos.node_annotations, **group.node_annotations},
        taints=[] if legacy else list(group.taints),
        registry_mirrors=stack.talos.registry_mirrors,
        boot_image=boot_image,
    )


def pool_node_labels(group: NodeGroup) -> dict[str, str]:
    """Labels a pool's nodes carry beyond ``talos.nodeLabels``.

    The same labels go into the Talos config (so real nodes have them) and into
    the autoscaler's node templates (so scale-from-zero simulation matches):
    the pool name, its region and server type (pods select on them), and the pool's own
    labels.
    """
    return {
        NODE_GROUP_LABEL: group.name,
        "topology.kubernetes.io/region": group.region,
        INSTANCE_TYPE_LABEL: group.instance_type,
        **group.labels,
    }


def render_worker_configs(
    stack: StackConfig, subnet: str, boot_images: Mapping[str, str] | None = None
) -> dict[str, WorkerConfig]:
    """The worker config of every pool (the base config must be readable); with each pool's
    boot image (``StackPlan.boot_images``) it carries the pool's generation label."""
    if stack.base_documents is None:
        raise ValueError("the base worker config is encrypted; it cannot be rendered offline")
    written: dict[str, str] = {}
    return {
        group.name: build_worker_config(
            stack.base_documents,
            pool_worker_spec(stack, group, subnet, (boot_images or {}).get(group.name, "")),
            source=f"of pool {group.name} (from {stack.worker_config_key})",
            written=written,
        )
        for group in stack.autoscaler.node_groups
    }


def worker_configs_sha256(configs: dict[str, WorkerConfig]) -> str:
    """One fingerprint of every pool's config: changes when nodes would boot differently."""
    listing = "".join(f"{pool}\t{configs[pool].sha256}\n" for pool in sorted(configs))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def worker_config_warnings(configs: dict[str, WorkerConfig]) -> list[str]:
    """Every pool's warnings, each once (pools share the base config)."""
    return list(
        dict.fromkeys(warning for config in configs.values() for warning in config.warnings)
    )
