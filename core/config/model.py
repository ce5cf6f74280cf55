"""The stack configuration model: the four sections and their fields, each checked alone.

The same model serves the Pulumi program (``components/engine_config.py`` reads the
decrypted stack config through the engine) and the offline ``render`` command (reads
``Pulumi.<stack>.yaml``, where secrets stay encrypted). Rules that need several sections
are in ``rules``; how pydantic's errors become problem lines, in ``problems``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetPydanticSchema,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import core_schema

from core import validators
from core.config.secrets import Secret, SecretValue, as_secret
from core.hetzner import facts as hetzner
from core.hetzner.facts import NODE_GROUP_LABEL, Architecture
from core.redaction import shown
from core.releases import talos as talos_versions
from core.releases.autoscaler import (
    DEFAULT_CHART_REPOSITORY,
    DEFAULT_CHART_VERSION,
    AutoscalerImage,
    autoscaler_image,
)
from core.resources import MANAGED_BY_LABEL, PROJECT
from core.talos.node_labels import label_problems

__all__ = ["PROJECT"]

#: Top-level keys of the project namespace (``hcloud-talos-autoscaler:<key>``).
SECTIONS = ("talos", "network", "image", "autoscaler")
#: The guest agent Hetzner needs, and the extensions whose kernel modules Cozystack's worker
#: template always loads (``drbd``, ``zfs``, ``spl``; ``core.talos.extensions``).
DEFAULT_EXTENSIONS = ("siderolabs/qemu-guest-agent", "siderolabs/drbd", "siderolabs/zfs")
POOL_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
#: Server names are ``<pool>-<16 hex>``; hostnames stop at 63 characters.
POOL_NAME_MAX_LENGTH = 46
#: Helm renders numbers from 10^6 on as 1e+06, which the autoscaler's ``--nodes`` cannot parse.
POOL_SIZE_MAX = 999_999
#: An ``extraArgs`` key: a flag name, optionally with the chart's ``_suffix``.
EXTRA_ARG_PATTERN = re.compile(r"^-{0,2}[a-z0-9]+(-[a-z0-9]+)*(_[A-Za-z0-9_-]*)?$")
DEFAULT_BUILDER_SERVER_TYPES: dict[Architecture, str] = {"amd64": "cx23", "arm64": "cax11"}


class SnapshotLabel(StrEnum):
    """Labels every snapshot gets from the builder (``image_builder.pipeline.snapshot_labels``)."""

    OS = "os"
    TALOS_VERSION = "talos-version"
    TALOS_SCHEMATIC = "talos-schematic"
    ARCH = "arch"
    MANAGED_BY = MANAGED_BY_LABEL


SNAPSHOT_IDENTITY_LABELS = tuple(label.value for label in SnapshotLabel)
DEFAULT_FACTORY_URL = "https://factory.talos.dev"
SCHEMATIC_ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")
HTTP_URL = re.compile(r"^https?://[^/\s]+")
#: Helm chart versions are SemVer (``9.56.0``, ``9.56.0-rc.1``).
CHART_VERSION = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
#: Cozystack's PackageSource installs the Package's release here, whatever the Package says.
COZYSTACK_NAMESPACE = "cozy-cluster-autoscaler-hetzner"
#: ``image.writeTimeout``: minutes the download and write of the image may take. The
#: maximum keeps the longest build below the age at which builders count as leftovers.
WRITE_TIMEOUT_MINUTES = 30
WRITE_TIMEOUT_MAX_MINUTES = 60
#: Kubernetes counts replicas in int32.
INT32_MAX = 2**31 - 1
#: A spread placement group holds at most this many servers (Hetzner; the provider refuses
#: a group whose pools' maxSize sum is larger, ``hetzner_cloud_provider.go``).
SPREAD_GROUP_MAX_SERVERS = 10
#: Kubernetes priority class names are DNS subdomains; the chart's default is this one.
DEFAULT_PRIORITY_CLASS = "system-cluster-critical"
#: Hetzner refuses smaller subnets.
SMALLEST_SUBNET_PREFIX = 30
#: The autoscaler waits for a new server this many minutes at most (a day).
SERVER_CREATION_TIMEOUT_MAX = 24 * 60
#: Flags of the autoscaler the chart or this program sets; ``extraArgs`` may not override them.
OWNED_FLAGS: dict[str, str] = {
    "cloud-provider": "the chart sets to hetzner",
    "namespace": "the chart sets to the release namespace (autoscaler.namespace)",
    "nodes": "the chart renders from autoscaler.nodeGroups",
    "cloud-config": "is unused by the Hetzner provider (its config comes from the Secrets)",
    "node-group-auto-discovery": "would add pools outside autoscaler.nodeGroups",
    "kubeconfig": "would point the autoscaler at another cluster than the one it runs in",
}


SecretField = Annotated[Any, AfterValidator(as_secret)]


class ConfigModel(BaseModel):
    """Stack-config objects: camelCase keys, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        arbitrary_types_allowed=True,
    )


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as error:
        reason = shown(str(error)) if len(str(error)) > 80 else str(error)
        raise ValueError(
            f"{shown(value)} is not a network in CIDR form like 10.100.0.0/24 ({reason})"
        ) from None


Cidr = Annotated[str, AfterValidator(_cidr)]


def _network_range(value: str) -> str:
    problem = validators.private_ipv4_network_problem(value)
    if problem:
        raise ValueError(problem)
    return value


NetworkRange = Annotated[str, AfterValidator(_cidr), AfterValidator(_network_range)]


def _one_line(value: str) -> str:
    problem = validators.control_character_problem(value)
    if problem:
        raise ValueError(problem)
    return value


#: A name rendered into the autoscaler's environment (``value: "..."`` in the chart).
ChartString = Annotated[str, AfterValidator(_one_line)]


def _hetzner_labels(labels: dict[str, str]) -> dict[str, str]:
    problems = validators.hetzner_label_problems(labels)
    if problems:
        raise ValueError("; ".join(problems))
    return labels


#: A label map that ends up on Hetzner resources.
HetznerLabels = Annotated[dict[str, str], AfterValidator(_hetzner_labels)]


def _catalogue(info: ValidationInfo) -> hetzner.Catalogue:
    """The server types to check against: the live list at preview, else the built-in table."""
    context = info.context or {}
    catalogue = context.get("catalogue")
    return catalogue if isinstance(catalogue, hetzner.Catalogue) else hetzner.BUILT_IN_CATALOGUE


def check_location(value: str) -> str:
    """``image.location`` (and the CLI's ``--location``): a Hetzner Cloud location."""
    location = value.lower()
    if location not in hetzner.NETWORK_ZONE_BY_LOCATION:
        known = ", ".join(hetzner.NETWORK_ZONE_BY_LOCATION)
        raise ValueError(f"{shown(value)} is not a Hetzner Cloud location; use one of {known}")
    return location


Location = Annotated[str, AfterValidator(check_location)]


def _node_labels(labels: dict[str, str]) -> dict[str, str]:
    problems = validators.kubernetes_label_problems(labels)
    problems += label_problems(
        {
            key: value
            for key, value in labels.items()
            if not validators.kubernetes_label_key_problem(key)
        }
    )
    if problems:
        raise ValueError("; ".join(problems))
    return labels


#: Labels a Talos node sets on itself: Kubernetes' syntax and what NodeRestriction lets a
#: node set (see ``node_labels``).
NodeLabels = Annotated[dict[str, str], AfterValidator(_node_labels)]


def _annotations(annotations: dict[str, str]) -> dict[str, str]:
    problems = [
        problem
        for key in annotations
        if (problem := validators.kubernetes_label_key_problem(key)) is not None
    ]
    if problems:
        raise ValueError("; ".join(problems))
    return annotations


def _label_selector(labels: dict[str, str]) -> dict[str, str]:
    problems = validators.kubernetes_label_problems(labels)
    if problems:
        raise ValueError("; ".join(problems))
    return labels


#: Labels a pod selects nodes by (any valid label, NodeRestriction does not apply).
NodeLabelSelector = Annotated[dict[str, str], AfterValidator(_label_selector)]


#: Annotations of a node: keys follow the label-key rules, values are free text.
KubernetesAnnotations = Annotated[dict[str, str], AfterValidator(_annotations)]


class Taint(ConfigModel):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

    @field_validator("key")
    @classmethod
    def _taint_key(cls, key: str) -> str:
        problem = validators.kubernetes_label_key_problem(key)
        if problem:
            raise ValueError(problem.replace("label key", "taint key", 1))
        return key

    @field_validator("value")
    @classmethod
    def _taint_value(cls, value: str, info: ValidationInfo) -> str:
        problem = validators.kubernetes_label_value_problem(info.data.get("key", "taint"), value)
        if problem:
            raise ValueError(problem.replace("label", "taint", 1))
        return value


class NodeGroup(ConfigModel):
    """One autoscaled pool, in the guide's vocabulary (``autoscalingGroups``)."""

    name: str
    min_size: int = Field(ge=0, le=POOL_SIZE_MAX)
    max_size: int = Field(ge=0, le=POOL_SIZE_MAX)
    instance_type: str = Field(min_length=1)
    region: Location
    labels: NodeLabels = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    #: ``machine.nodeAnnotations`` of this pool, over ``talos.nodeAnnotations`` (Kilo location).
    node_annotations: KubernetesAnnotations = Field(default_factory=dict)
    #: ``spread``: a Hetzner placement group of this pool puts its servers on different hosts.
    placement_group: Literal["spread"] | None = None
    #: Hetzner labels of the pool's servers (``serverLabels``, cost attribution).
    server_labels: HetznerLabels = Field(default_factory=dict)
    #: The pool's own cloud subnet of the network (``subnetIPRange``); else ``network.subnet``.
    subnet: Cidr | None = None
    #: ``expander: priority``: a higher number is tried first; pools without one come last.
    priority: int | None = Field(default=None, ge=1, le=INT32_MAX)

    @field_validator("name")
    @classmethod
    def _pool_name(cls, name: str) -> str:
        if not POOL_NAME_PATTERN.match(name):
            raise ValueError(
                f"{shown(name)} is not a valid pool name: use lower-case letters, digits and '-' "
                "(servers are named <pool>-<hex> and must be valid hostnames)"
            )
        if len(name) > POOL_NAME_MAX_LENGTH:
            raise ValueError(
                f"{shown(name)} is {len(name)} characters long; pool names are at most "
                f"{POOL_NAME_MAX_LENGTH} so that <pool>-<16 hex> stays a valid hostname"
            )
        return name

    @field_validator("instance_type")
    @classmethod
    def _server_type(cls, instance_type: str, info: ValidationInfo) -> str:
        problem = _catalogue(info).server_type_problem(instance_type)
        if problem:
            raise ValueError(problem)
        return instance_type.lower()

    @model_validator(mode="after")
    def _orderable_in_region(self, info: ValidationInfo) -> NodeGroup:
        problem = _catalogue(info).server_type_problem(self.instance_type, self.region)
        if problem:
            raise ValueError(f"instanceType {problem}")
        return self

    @field_validator("max_size")
    @classmethod
    def _sizes(cls, max_size: int, info: ValidationInfo) -> int:
        min_size = info.data.get("min_size")
        if min_size is not None and min_size > max_size:
            raise ValueError(
                f"maxSize {max_size} is smaller than minSize {min_size}; set minSize <= maxSize"
            )
        return max_size

    @field_validator("server_labels")
    @classmethod
    def _own_server_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        if NODE_GROUP_LABEL in labels:
            raise ValueError(
                f"{NODE_GROUP_LABEL} is set by the autoscaler (it marks the pool's "
                "servers); use other keys"
            )
        return labels

    @model_validator(mode="after")
    def _spread_group_size(self) -> NodeGroup:
        if self.placement_group == "spread" and self.max_size > SPREAD_GROUP_MAX_SERVERS:
            raise ValueError(
                f"placementGroup spread holds at most {SPREAD_GROUP_MAX_SERVERS} servers but "
                f"maxSize is {self.max_size}; lower maxSize to {SPREAD_GROUP_MAX_SERVERS} or "
                "split the pool"
            )
        return self

    @property
    def architecture(self) -> Architecture:
        return hetzner.architecture_of(self.instance_type)

    @property
    def network_zone(self) -> str:
        return hetzner.network_zone_of(self.region)


def _parsed_from_text(parse: Any) -> GetPydanticSchema:
    """A version field: a string, checked as any string is, then parsed once by ``parse``."""
    return GetPydanticSchema(
        lambda _source, _handler: core_schema.no_info_after_validator_function(
            parse, core_schema.str_schema()
        )
    )


#: ``talos.version``, parsed where the config is read and carried from there.
TalosVersionField = Annotated[
    talos_versions.TalosVersion, _parsed_from_text(talos_versions.supported_talos_version)
]
#: ``talos.kubernetesVersion``, likewise.
KubernetesVersionField = Annotated[
    talos_versions.Version, _parsed_from_text(talos_versions.parse_kubernetes_version)
]


class TalosSettings(ConfigModel):
    version: TalosVersionField
    kubernetes_version: KubernetesVersionField | None = None
    schematic_id: str | None = None
    extensions: list[str] = Field(default_factory=lambda: list(DEFAULT_EXTENSIONS))
    worker_config_file: str | None = None
    worker_config: SecretField | None = None
    node_labels: NodeLabels = Field(default_factory=dict)
    #: ``machine.nodeAnnotations``: Kilo's location and keepalive (Cozystack's guide).
    node_annotations: KubernetesAnnotations = Field(default_factory=dict)
    registry_mirrors: dict[str, list[str]] = Field(default_factory=dict)
    image_factory_url: str = DEFAULT_FACTORY_URL

    @field_validator("kubernetes_version")
    @classmethod
    def _kubernetes_version(
        cls, kubernetes: talos_versions.Version | None, info: ValidationInfo
    ) -> talos_versions.Version | None:
        if kubernetes is not None and "version" in info.data:
            talos_versions.check_kubernetes_supported(info.data["version"], kubernetes)
        return kubernetes

    @field_validator("schematic_id")
    @classmethod
    def _schematic(cls, schematic_id: str | None) -> str | None:
        return None if schematic_id is None else check_schematic_id(schematic_id)

    @field_validator("image_factory_url")
    @classmethod
    def _factory_url(cls, url: str) -> str:
        return check_factory_url(url)

    @field_validator("registry_mirrors")
    @classmethod
    def _mirrors(cls, mirrors: dict[str, list[str]]) -> dict[str, list[str]]:
        for host, endpoints in mirrors.items():
            if not endpoints:
                raise ValueError(f"mirror {shown(host)} has no endpoints; list at least one URL")
            for endpoint in endpoints:
                if not HTTP_URL.match(endpoint):
                    raise ValueError(
                        f"endpoint {shown(endpoint)} of mirror {shown(host)} is not an http(s) URL"
                    )
        return mirrors

    @model_validator(mode="after")
    def _sources(self) -> TalosSettings:
        if self.schematic_id and "extensions" in self.model_fields_set:
            raise ValueError(
                "both schematicId and extensions are set; keep schematicId (extensions are "
                "only used to register a schematic) or remove it"
            )
        if (self.worker_config_file is None) == (self.worker_config is None):
            raise ValueError(
                "set exactly one of workerConfigFile (path to the worker.yaml from "
                "`talosctl gen config`) or the secret workerConfig "
                "(`pulumi config set --secret --path talos.workerConfig < worker.yaml`)"
            )
        return self


def check_talos_version(version: str) -> str:
    """The CLI's ``--talos-version``: a Talos release this program knows (as ``talos.version``)."""
    talos_versions.supported_talos_version(version)
    return version


def check_schematic_id(schematic_id: str) -> str:
    """``talos.schematicId`` (and the CLI's ``--schematic-id``)."""
    if not SCHEMATIC_ID_PATTERN.match(schematic_id):
        raise ValueError(
            f"{shown(schematic_id)} is not an Image Factory schematic id (64 lower-case hex "
            "characters, as shown by factory.talos.dev)"
        )
    return schematic_id


def check_factory_url(url: str) -> str:
    """``talos.imageFactoryUrl`` (and the CLI's ``--factory-url``), without a trailing ``/``."""
    if not HTTP_URL.match(url):
        raise ValueError(f"{shown(url)} is not an http(s) URL like {DEFAULT_FACTORY_URL}")
    return url.rstrip("/")


class NetworkSettings(ConfigModel):
    name: ChartString = Field(default="cozystack-vswitch", min_length=1)
    ip_range: NetworkRange = "10.100.0.0/16"
    subnet: Cidr = "10.100.0.0/24"
    network_zone: str | None = None
    existing: ChartString | None = Field(default=None, min_length=1)
    vswitch_id: int | None = Field(default=None, gt=0)
    #: The range of the Robot vSwitch subnet, required with ``vswitchId``.
    vswitch_subnet: Cidr | None = None

    @field_validator("network_zone")
    @classmethod
    def _zone(cls, zone: str | None) -> str | None:
        if zone is not None and zone not in hetzner.NETWORK_ZONES:
            zones = ", ".join(sorted(hetzner.NETWORK_ZONES))
            raise ValueError(f"{shown(zone)} is not a network zone; use one of {zones}")
        return zone

    @field_validator("subnet", "vswitch_subnet")
    @classmethod
    def _inside_range(cls, subnet: str | None, info: ValidationInfo) -> str | None:
        ip_range = info.data.get("ip_range")
        if subnet is None or ip_range is None:
            return subnet
        network, inner = ipaddress.ip_network(ip_range), ipaddress.ip_network(subnet)
        if inner.version != network.version or not inner.subnet_of(network):  # type: ignore[arg-type]
            raise ValueError(
                f"{subnet} is not inside ipRange {ip_range}; pick a range within the network's"
            )
        if inner.prefixlen > SMALLEST_SUBNET_PREFIX:
            raise ValueError(
                f"{subnet} is smaller than Hetzner's minimum subnet size "
                f"/{SMALLEST_SUBNET_PREFIX}; use a /24 like 10.100.0.0/24"
            )
        return subnet

    @model_validator(mode="after")
    def _vswitch(self) -> NetworkSettings:
        if (self.vswitch_id is None) != (self.vswitch_subnet is None):
            raise ValueError(
                "vswitchId and vswitchSubnet go together: the Robot vSwitch subnet needs its own "
                "range inside ipRange (e.g. 10.100.1.0/24); set both or neither"
            )
        if self.vswitch_subnet is not None and ipaddress.ip_network(self.vswitch_subnet).overlaps(
            ipaddress.ip_network(self.subnet)
        ):
            raise ValueError(
                f"vswitchSubnet {self.vswitch_subnet} overlaps subnet {self.subnet}; the Robot "
                "vSwitch needs a range of its own inside ipRange"
            )
        return self


def check_preferences(value: str | list[str]) -> str | list[str]:
    """One value, or an ordered list of distinct ones (the first preferred)."""
    if isinstance(value, list):
        if not value:
            raise ValueError("is an empty list; give one value or several in order of preference")
        repeated = sorted({item for item in value if value.count(item) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once")
    return value


def _existing_snapshot(value: int | str) -> int | str:
    """A snapshot id (a positive number), or a Hetzner label selector."""
    if isinstance(value, int) or value.strip().isdigit():
        if int(value) <= 0:
            raise ValueError(f"{value} is not a snapshot id; give its id or a label selector")
        return int(value)
    if not value.strip() or any(character.isspace() for character in value.strip(" ,")):
        raise ValueError(
            f"{shown(value)} is neither a snapshot id nor a label selector like "
            "os=talos,talos-version=v1.11.6"
        )
    return value.strip()


def preferences(value: str | list[str]) -> tuple[str, ...]:
    """``image.location`` or a builder type entry as the ordered tuple of candidates."""
    return (value,) if isinstance(value, str) else tuple(value)


class ImageSettings(ConfigModel):
    #: Where the builder runs: one location, or several tried in order when Hetzner has no
    #: capacity.
    location: Annotated[Location | list[Location], AfterValidator(check_preferences)] = "fsn1"
    #: Per architecture one server type, or several tried in order.
    builder_server_types: dict[
        Architecture, Annotated[str | list[str], AfterValidator(check_preferences)]
    ] = Field(default_factory=lambda: dict(DEFAULT_BUILDER_SERVER_TYPES), validate_default=True)
    labels: HetznerLabels = Field(default_factory=dict)
    write_timeout: int = WRITE_TIMEOUT_MINUTES
    #: Per architecture a snapshot made elsewhere (its id, or a label selector): not built,
    #: never deleted by this stack.
    existing: dict[Architecture, Annotated[int | str, AfterValidator(_existing_snapshot)]] = Field(
        default_factory=dict
    )

    @property
    def locations(self) -> tuple[str, ...]:
        return preferences(self.location)

    def server_types(self, arch: Architecture) -> tuple[str, ...]:
        return preferences(self.builder_server_types[arch])

    @field_validator("builder_server_types")
    @classmethod
    def _builder_types(
        cls, server_types: dict[Architecture, str | list[str]], info: ValidationInfo
    ) -> dict[Architecture, str | list[str]]:
        location = info.data.get("location")
        locations = preferences(location) if location is not None else (None,)
        problems = [
            f"{arch}: {problem}"
            for arch, names in server_types.items()
            for problem in builder_server_type_problems(
                arch, preferences(names), _catalogue(info), locations
            )
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return {
            arch: names.lower() if isinstance(names, str) else [name.lower() for name in names]
            for arch, names in server_types.items()
        }

    @field_validator("labels")
    @classmethod
    def _own_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return check_own_snapshot_labels(labels)

    @field_validator("write_timeout")
    @classmethod
    def _write_timeout(cls, minutes: int) -> int:
        return check_write_timeout(minutes)


def builder_server_type_problems(
    arch: Architecture,
    names: tuple[str, ...],
    catalogue: hetzner.Catalogue | None,
    locations: tuple[str | None, ...] = (None,),
) -> list[str]:
    """Why builder server types cannot write an ``arch`` image: not orderable in any of the
    ``locations`` (the build skips the others), or of the other architecture. Without a
    ``catalogue`` (the image-build CLI) the build asks Hetzner's live list instead."""
    problems = []
    for name in names:
        if catalogue is not None:
            found = [catalogue.server_type_problem(name, where) for where in locations]
            if all(found):
                problems.append(str(found[0]))
                continue
        if hetzner.architecture_of(name) != arch:
            problems.append(
                f"{name!r} is an {hetzner.architecture_of(name)} server type; an {arch} image "
                "must be written from a server of the same architecture"
            )
    return problems


def check_own_snapshot_labels(labels: dict[str, str]) -> dict[str, str]:
    """``image.labels`` (and the CLI's ``--label``): none of the snapshot's identity labels."""
    taken = sorted(set(labels) & set(SNAPSHOT_IDENTITY_LABELS))
    if taken:
        raise ValueError(
            f"{', '.join(taken)} identify the snapshot and are set by this program "
            f"({', '.join(SNAPSHOT_IDENTITY_LABELS)}); use other keys"
        )
    return labels


def check_write_timeout(minutes: int) -> int:
    """``image.writeTimeout`` (and the CLI's ``--write-timeout``): 5 to 60 minutes."""
    if not 5 <= minutes <= WRITE_TIMEOUT_MAX_MINUTES:
        raise ValueError(
            f"is {minutes} minutes; set 5 to {WRITE_TIMEOUT_MAX_MINUTES} (a longer build could "
            "not be told apart from the leftovers of a killed one)"
        )
    return minutes


class SmokeTestSettings(ConfigModel):
    replicas: int = Field(ge=1, le=INT32_MAX)


def _toleration(toleration: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(toleration) - TOLERATION_FIELDS)
    if unknown:
        raise ValueError(
            f"{', '.join(map(shown, unknown))} is not a toleration field; use "
            f"{', '.join(sorted(TOLERATION_FIELDS))}"
        )
    if toleration.get("operator", "Equal") not in ("Equal", "Exists"):
        raise ValueError(f"operator {shown(str(toleration['operator']))} is not Equal or Exists")
    for field in ("key", "value", "effect", "operator"):
        if field in toleration and not isinstance(toleration[field], str):
            raise ValueError(f"{field} must be a string")
    exists = toleration.get("operator") == "Exists"
    if exists and toleration.get("value"):
        raise ValueError("operator Exists takes no value; remove value or use operator Equal")
    if not toleration.get("key") and not exists:
        raise ValueError("a toleration without a key must have operator Exists (tolerates all)")
    effect = toleration.get("effect")
    if effect is not None and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise ValueError(
            f"effect {shown(str(effect))} is not NoSchedule, PreferNoSchedule or NoExecute"
        )
    return toleration


TOLERATION_FIELDS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})
#: A Kubernetes toleration as the pod spec has it (e.g. to run on control-plane nodes).
Toleration = Annotated[dict[str, Any], AfterValidator(_toleration)]


def _quantity(value: str | int | float) -> str | int | float:
    if isinstance(value, str) and not QUANTITY.match(value):
        raise ValueError(f"{shown(value)} is not a Kubernetes quantity like 100m, 300Mi or 1")
    return value


#: Kubernetes resource quantities (``resource.Quantity``).
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")
Quantity = Annotated[str | int | float, AfterValidator(_quantity)]


class ResourceRequirements(ConfigModel):
    """The autoscaler container's ``resources``."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class RolloutSettings(ConfigModel):
    """How running nodes of an outdated generation are replaced (docs/upgrades.md)."""

    strategy: Literal["replace", "none"] = "replace"
    #: Nodes of the stack drained at once.
    max_unavailable: int = Field(default=1, ge=1, le=1000)
    #: Minutes a drain may take before the node is uncordoned and left.
    drain_timeout: int = Field(default=10, ge=1, le=1440)


class AutoscalerSettings(ConfigModel):
    deploy: Literal["package", "helm"] = "package"
    namespace: str = COZYSTACK_NAMESPACE
    node_groups: list[NodeGroup] = Field(min_length=1)
    ssh_key: ChartString | None = Field(default=None, min_length=1)
    firewall: ChartString | None = Field(default=None, min_length=1)
    public_ipv4: bool = Field(default=True, alias="publicIPv4")
    public_ipv6: bool = Field(default=False, alias="publicIPv6")
    server_creation_timeout: int = Field(default=10, ge=1, le=SERVER_CREATION_TIMEOUT_MAX)
    config_format: Literal["cluster-config", "legacy"] = "cluster-config"
    chart_version: str | None = None
    #: A mirror of the upstream chart repository (air-gapped clusters); ``deploy: helm``.
    chart_repository: str | None = None
    image_tag: str | None = None
    extra_args: dict[str, str | int | bool] = Field(default_factory=dict)
    token: SecretField | None = None
    provider_id: Literal["setter", "none"] = "setter"
    smoke_test: SmokeTestSettings | None = None
    #: Leave the autoscaler's servers (and Nodes) when the stack or a pool is removed.
    keep_servers_on_destroy: bool = False
    #: A read-only Hetzner token for the providerID setter (it only reads servers).
    provider_id_token: SecretField | None = None
    #: Autoscaler pods; leader election keeps one active, the others take over on a node loss.
    replicas: int = Field(default=1, ge=1, le=INT32_MAX)
    resources: ResourceRequirements | None = None
    node_selector: NodeLabelSelector = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class_name: str = DEFAULT_PRIORITY_CLASS
    #: ``priority``: the priority expander, from the pools' ``priority``.
    expander: Literal["priority"] | None = None
    #: Any chart values, merged last (maps merge key by key, anything else replaces).
    values: dict[str, Any] = Field(default_factory=dict)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)

    @field_validator("priority_class_name")
    @classmethod
    def _priority_class(cls, name: str) -> str:
        problem = validators.dns_subdomain_problem(name)
        if problem:
            raise ValueError(f"{problem} (priority class names are DNS subdomains)")
        return name

    @model_validator(mode="after")
    def _priorities(self) -> AutoscalerSettings:
        with_priority = [group.name for group in self.node_groups if group.priority is not None]
        if with_priority and self.expander != "priority":
            raise ValueError(
                f"pools {', '.join(with_priority)} have a priority, which only the priority "
                "expander reads: set autoscaler.expander: priority, or remove the priorities"
            )
        if self.expander == "priority" and "expander" in self.extra_args:
            raise ValueError(
                "expander is set twice (autoscaler.expander and extraArgs.expander); keep "
                "autoscaler.expander: priority and remove extraArgs.expander"
            )
        return self

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, namespace: str) -> str:
        problem = validators.dns_label_problem(namespace)
        if problem:
            raise ValueError(f"{problem} (Kubernetes namespaces are DNS labels)")
        return namespace

    @field_validator("node_groups")
    @classmethod
    def _unique_pools(cls, groups: list[NodeGroup]) -> list[NodeGroup]:
        names = [group.name for group in groups]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"pool names must be unique; duplicated: {', '.join(duplicated)}")
        return groups

    @field_validator("namespace")
    @classmethod
    def _package_namespace(cls, namespace: str, info: ValidationInfo) -> str:
        if info.data.get("deploy", "package") == "package" and namespace != COZYSTACK_NAMESPACE:
            raise ValueError(
                f"is {namespace!r}, but with deploy: package Cozystack installs the autoscaler "
                f"in {COZYSTACK_NAMESPACE} whatever the Package says (its PackageSource fixes "
                "the namespace), and the autoscaler reads its Secrets from there: remove "
                f"namespace (or set {COZYSTACK_NAMESPACE}), or use deploy: helm to choose one"
            )
        return namespace

    @field_validator("chart_version")
    @classmethod
    def _chart_version(cls, version: str | None, info: ValidationInfo) -> str | None:
        if version is None:
            return None
        if info.data.get("deploy", "package") == "package":
            raise ValueError(
                "is set, but with deploy: package Cozystack installs the chart it ships: "
                "remove chartVersion, or use deploy: helm"
            )
        if not CHART_VERSION.match(version):
            raise ValueError(
                f"{shown(version)} is not a chart version like {DEFAULT_CHART_VERSION} (the "
                "cluster-autoscaler-chart-* releases of kubernetes/autoscaler)"
            )
        return version

    @field_validator("chart_repository")
    @classmethod
    def _chart_repository(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is None:
            return None
        if info.data.get("deploy", "package") == "package":
            raise ValueError(
                "is set, but with deploy: package Cozystack installs the chart it ships: "
                "remove chartRepository, or use deploy: helm"
            )
        if not HTTP_URL.match(url):
            raise ValueError(
                f"{shown(url)} is not an http(s) URL of a Helm chart repository like "
                f"{DEFAULT_CHART_REPOSITORY} (the folder holding index.yaml)"
            )
        return url.rstrip("/")

    @field_validator("extra_args")
    @classmethod
    def _extra_args(cls, extra_args: dict[str, str | int | bool]) -> dict[str, str | int | bool]:
        problems = validators.owned_flag_problems(extra_args, OWNED_FLAGS)
        for key, value in extra_args.items():
            if not EXTRA_ARG_PATTERN.match(key):
                problems.append(
                    f"{shown(key)} is not an autoscaler flag name (lower-case words joined by "
                    "'-', e.g. scale-down-unneeded-time)"
                )
                continue
            problem = validators.control_character_problem(str(value))
            if problem:
                problems.append(f"{key}: {problem}")
        if problems:
            raise ValueError("; ".join(problems))
        return extra_args

    @property
    def architectures(self) -> list[Architecture]:
        return sorted({group.architecture for group in self.node_groups})


@dataclass(frozen=True)
class StackConfig:
    """The validated stack: the four sections, the token and the base worker config."""

    talos: TalosSettings
    network: NetworkSettings
    image: ImageSettings
    autoscaler: AutoscalerSettings
    hcloud_token: SecretValue | None
    #: The base worker config YAML, or None when it is encrypted (offline render).
    base_worker_config: Secret | None
    #: Its YAML documents, parsed once when it was read (None with it).
    base_documents: tuple[dict[str, Any], ...] | None = None

    @property
    def network_zone(self) -> str:
        if self.network.network_zone:
            return self.network.network_zone
        return self.autoscaler.node_groups[0].network_zone

    @property
    def architectures(self) -> list[Architecture]:
        return self.autoscaler.architectures

    @property
    def worker_config_key(self) -> str:
        """The config key the base worker config comes from, as messages name it."""
        return "talos.workerConfigFile" if self.talos.worker_config_file else "talos.workerConfig"

    @property
    def autoscaler_token(self) -> SecretValue | None:
        """The token the autoscaler uses: its own if set, else the provider's."""
        return self.autoscaler.token or self.hcloud_token

    @cached_property
    def kubernetes_version(self) -> talos_versions.Version | None:
        """``talos.kubernetesVersion``, else the base worker config's kubelet (if readable)."""
        if self.talos.kubernetes_version is not None:
            return self.talos.kubernetes_version
        for document in self.base_documents or ():
            image = str(((document.get("machine") or {}).get("kubelet") or {}).get("image") or "")
            with contextlib.suppress(ValueError):
                return talos_versions.parse_kubernetes_version(image.rpartition(":")[2])
        return None

    @cached_property
    def autoscaler_image(self) -> AutoscalerImage:
        """The autoscaler image this stack runs (checked by ``parse_stack_config``)."""
        return autoscaler_image(
            self.autoscaler.image_tag,
            self.autoscaler.deploy,
            self.autoscaler.chart_version or DEFAULT_CHART_VERSION,
            self.kubernetes_version,
        )
