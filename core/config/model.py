"""The stack configuration: one typed model, validated before any resource exists.

The same model serves the Pulumi program (``__main__.py`` reads the decrypted
stack config through the engine) and the offline ``render`` command (reads
``Pulumi.<stack>.yaml`` directly, where secrets stay encrypted). Every problem
is reported at once, each naming the config key, the bad value and the fix.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from core import hetzner, safe_yaml, talos_versions, validators
from core.autoscaler_versions import DEFAULT_CHART_VERSION, AutoscalerImage, autoscaler_image
from core.errors import InputError, bounded
from core.hetzner import Architecture
from core.node_labels import label_problems
from core.redaction import shown

PROJECT = "hcloud-talos-autoscaler"
#: Top-level keys of the project namespace (``hcloud-talos-autoscaler:<key>``).
SECTIONS = ("talos", "network", "image", "autoscaler")
DEFAULT_EXTENSIONS = ("siderolabs/qemu-guest-agent",)
POOL_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
#: Server names are ``<pool>-<16 hex>``; hostnames stop at 63 characters.
POOL_NAME_MAX_LENGTH = 46
#: Helm renders numbers from 10^6 on as 1e+06, which the autoscaler's ``--nodes`` cannot parse.
POOL_SIZE_MAX = 999_999
#: An ``extraArgs`` key: a flag name, optionally with the chart's ``_suffix``.
EXTRA_ARG_PATTERN = re.compile(r"^-{0,2}[a-z0-9]+(-[a-z0-9]+)*(_[A-Za-z0-9_-]*)?$")
DEFAULT_BUILDER_SERVER_TYPES: dict[Architecture, str] = {"amd64": "cx23", "arm64": "cax11"}
#: Labels every snapshot gets from the image builder (``image_builder.pipeline.snapshot_labels``).
SNAPSHOT_IDENTITY_LABELS = ("os", "talos-version", "talos-schematic", "arch", "managed-by")
SCHEMATIC_ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")
#: Cozystack's PackageSource installs the Package's release here, whatever the Package says.
COZYSTACK_NAMESPACE = "cozy-cluster-autoscaler-hetzner"
#: ``image.writeTimeout``: minutes the download and write of the image may take. The
#: maximum keeps the longest build below the age at which builders count as leftovers.
WRITE_TIMEOUT_MINUTES = 30
WRITE_TIMEOUT_MAX_MINUTES = 60
#: A stack file is small; an encrypted worker config in it is the largest value.
STACK_FILE_LIMITS = safe_yaml.Limits(max_bytes=4 * 1024 * 1024)
#: A base worker config far above this cannot fit Hetzner's 32 KiB user data even gzipped.
WORKER_CONFIG_LIMITS = safe_yaml.Limits(max_bytes=1024 * 1024)
#: Kubernetes counts replicas in int32.
INT32_MAX = 2**31 - 1
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


class Encrypted:
    """A ``{secure: ...}`` value from a stack file: present, but not readable offline."""

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return "[encrypted]"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Encrypted) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)


class Secret:
    """A decrypted secret value; its repr never shows the value."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "[secret]"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


SecretValue = Secret | Encrypted


def reveal(value: SecretValue | None) -> str:
    """The plain text of a secret the Pulumi engine decrypted (never an offline one)."""
    if not isinstance(value, Secret):
        raise ValueError("secret value is not available (missing, or encrypted offline)")
    return value.reveal()


def _as_secret(value: Any) -> SecretValue:
    if isinstance(value, Secret | Encrypted):
        return value
    if isinstance(value, Mapping) and set(value) == {"secure"}:
        return Encrypted(str(value["secure"]))
    if isinstance(value, str) and value:
        return Secret(value)
    raise ValueError(
        f"must be a non-empty string (got {_kind(value)}); set it with `pulumi config set --secret`"
    )


def _kind(value: Any) -> str:
    """What a value is, without showing it (it may be a secret)."""
    if value is None or value == "":
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


SecretField = Annotated[Any, AfterValidator(_as_secret)]


class _Model(BaseModel):
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


def _location(value: str) -> str:
    location = value.lower()
    if location not in hetzner.NETWORK_ZONE_BY_LOCATION:
        known = ", ".join(hetzner.NETWORK_ZONE_BY_LOCATION)
        raise ValueError(f"{shown(value)} is not a Hetzner Cloud location; use one of {known}")
    return location


Location = Annotated[str, AfterValidator(_location)]


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


#: Annotations of a node: keys follow the label-key rules, values are free text.
KubernetesAnnotations = Annotated[dict[str, str], AfterValidator(_annotations)]


class Taint(_Model):
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


class NodeGroup(_Model):
    """One autoscaled pool, in the guide's vocabulary (``autoscalingGroups``)."""

    name: str
    min_size: int = Field(ge=0, le=POOL_SIZE_MAX)
    max_size: int = Field(ge=0, le=POOL_SIZE_MAX)
    instance_type: str = Field(min_length=1)
    region: Location
    labels: NodeLabels = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)

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

    @property
    def architecture(self) -> Architecture:
        return hetzner.architecture_of(self.instance_type)

    @property
    def network_zone(self) -> str:
        return hetzner.network_zone_of(self.region)


class TalosSettings(_Model):
    version: str
    kubernetes_version: str | None = None
    schematic_id: str | None = None
    extensions: list[str] = Field(default_factory=lambda: list(DEFAULT_EXTENSIONS))
    worker_config_file: str | None = None
    worker_config: SecretField | None = None
    node_labels: NodeLabels = Field(default_factory=dict)
    #: ``machine.nodeAnnotations``: Kilo's location and keepalive (Cozystack's guide).
    node_annotations: KubernetesAnnotations = Field(default_factory=dict)
    registry_mirrors: dict[str, list[str]] = Field(default_factory=dict)
    image_factory_url: str = "https://factory.talos.dev"

    @field_validator("version")
    @classmethod
    def _talos_version(cls, version: str) -> str:
        talos_versions.check_talos_supported(talos_versions.parse_talos_version(version))
        return version

    @field_validator("kubernetes_version")
    @classmethod
    def _kubernetes_version(cls, version: str | None, info: ValidationInfo) -> str | None:
        if version is None:
            return None
        kubernetes = talos_versions.parse_kubernetes_version(version)
        if "version" in info.data:
            talos = talos_versions.parse_talos_version(info.data["version"])
            talos_versions.check_kubernetes_supported(talos, kubernetes)
        return str(kubernetes)

    @field_validator("schematic_id")
    @classmethod
    def _schematic(cls, schematic_id: str | None) -> str | None:
        if schematic_id is not None and not SCHEMATIC_ID_PATTERN.match(schematic_id):
            raise ValueError(
                f"{shown(schematic_id)} is not an Image Factory schematic id (64 lower-case hex "
                "characters, as shown by factory.talos.dev)"
            )
        return schematic_id

    @field_validator("image_factory_url")
    @classmethod
    def _factory_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"{shown(url)} is not an http(s) URL like https://factory.talos.dev")
        return url.rstrip("/")

    @field_validator("registry_mirrors")
    @classmethod
    def _mirrors(cls, mirrors: dict[str, list[str]]) -> dict[str, list[str]]:
        for host, endpoints in mirrors.items():
            if not endpoints:
                raise ValueError(f"mirror {shown(host)} has no endpoints; list at least one URL")
            for endpoint in endpoints:
                if not re.match(r"^https?://[^/\s]+", endpoint):
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

    @property
    def talos_version(self) -> talos_versions.Version:
        return talos_versions.parse_talos_version(self.version)


class NetworkSettings(_Model):
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


class ImageSettings(_Model):
    location: Location = "fsn1"
    builder_server_types: dict[Architecture, str] = Field(
        default_factory=lambda: dict(DEFAULT_BUILDER_SERVER_TYPES), validate_default=True
    )
    labels: HetznerLabels = Field(default_factory=dict)
    write_timeout: int = WRITE_TIMEOUT_MINUTES

    @field_validator("builder_server_types")
    @classmethod
    def _builder_types(
        cls, server_types: dict[Architecture, str], info: ValidationInfo
    ) -> dict[Architecture, str]:
        catalogue = _catalogue(info)
        problems = [
            f"{arch}: {problem}"
            for arch, server_type in server_types.items()
            if (problem := catalogue.server_type_problem(server_type, info.data.get("location")))
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return {arch: server_type.lower() for arch, server_type in server_types.items()}

    @field_validator("labels")
    @classmethod
    def _own_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        taken = sorted(set(labels) & set(SNAPSHOT_IDENTITY_LABELS))
        if taken:
            raise ValueError(
                f"{', '.join(taken)} identify the snapshot and are set by this program "
                f"({', '.join(SNAPSHOT_IDENTITY_LABELS)}); use other keys"
            )
        return labels

    @field_validator("write_timeout")
    @classmethod
    def _write_timeout(cls, minutes: int) -> int:
        return check_write_timeout(minutes)

    @model_validator(mode="after")
    def _builder_architectures(self) -> ImageSettings:
        for arch, server_type in self.builder_server_types.items():
            if hetzner.architecture_of(server_type) != arch:
                raise ValueError(
                    f"builderServerTypes.{arch} is {server_type!r}, an "
                    f"{hetzner.architecture_of(server_type)} server type; a {arch} image must be "
                    "written from a server of the same architecture"
                )
        return self


def check_write_timeout(minutes: int) -> int:
    """``image.writeTimeout`` (and the CLI's ``--write-timeout``): 5 to 60 minutes."""
    if not 5 <= minutes <= WRITE_TIMEOUT_MAX_MINUTES:
        raise ValueError(
            f"is {minutes} minutes; set 5 to {WRITE_TIMEOUT_MAX_MINUTES} (a longer build could "
            "not be told apart from the leftovers of a killed one)"
        )
    return minutes


class SmokeTest(_Model):
    replicas: int = Field(ge=1, le=INT32_MAX)


class AutoscalerSettings(_Model):
    deploy: Literal["package", "helm"] = "package"
    namespace: str = COZYSTACK_NAMESPACE
    node_groups: list[NodeGroup] = Field(min_length=1)
    ssh_key: ChartString | None = Field(default=None, min_length=1)
    firewall: ChartString | None = Field(default=None, min_length=1)
    public_i_pv4: bool = Field(default=True, alias="publicIPv4")
    public_i_pv6: bool = Field(default=False, alias="publicIPv6")
    server_creation_timeout: int = Field(default=10, ge=1, le=SERVER_CREATION_TIMEOUT_MAX)
    config_format: Literal["cluster-config", "legacy"] = "cluster-config"
    chart_version: str | None = None
    image_tag: str | None = None
    extra_args: dict[str, str | int | bool] = Field(default_factory=dict)
    token: SecretField | None = None
    provider_id: Literal["setter", "none"] = "setter"
    smoke_test: SmokeTest | None = None
    #: Leave the autoscaler's servers (and Nodes) when the stack or a pool is removed.
    keep_servers_on_destroy: bool = False

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
    def public_ipv4(self) -> bool:
        return self.public_i_pv4

    @property
    def public_ipv6(self) -> bool:
        return self.public_i_pv6

    @property
    def architectures(self) -> list[Architecture]:
        return sorted({group.architecture for group in self.node_groups})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the stack config."""

    key: str
    message: str

    def __str__(self) -> str:
        if not self.key:
            return bounded(self.message)
        key = (
            self.key if self.key.startswith(("hcloud:", f"{PROJECT}:")) else f"{PROJECT}:{self.key}"
        )
        return bounded(f"{key}: {self.message}")


class ConfigError(InputError):
    """The stack config is invalid; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"the stack configuration has {len(problems)} problem(s):\n{lines}")


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

    @property
    def network_zone(self) -> str:
        if self.network.network_zone:
            return self.network.network_zone
        return self.autoscaler.node_groups[0].network_zone

    @property
    def architectures(self) -> list[Architecture]:
        return self.autoscaler.architectures

    @property
    def autoscaler_token(self) -> SecretValue | None:
        """The token the autoscaler uses: its own if set, else the provider's."""
        return self.autoscaler.token or self.hcloud_token

    @property
    def kubernetes_version(self) -> str | None:
        """``talos.kubernetesVersion``, else the base worker config's kubelet (if readable)."""
        if self.talos.kubernetes_version is not None:
            return self.talos.kubernetes_version
        if self.base_worker_config is None:
            return None
        for document in worker_config_documents(self.base_worker_config.reveal()):
            image = str(((document.get("machine") or {}).get("kubelet") or {}).get("image") or "")
            with contextlib.suppress(ValueError):
                return str(talos_versions.parse_kubernetes_version(image.rpartition(":")[2]))
        return None

    @property
    def autoscaler_image(self) -> AutoscalerImage:
        """The autoscaler image this stack runs (checked by ``parse_stack_config``)."""
        return autoscaler_image(
            self.autoscaler.image_tag,
            self.autoscaler.deploy,
            self.autoscaler.chart_version or DEFAULT_CHART_VERSION,
            self.kubernetes_version,
        )


#: Keys that existed in earlier releases: a stack that still sets one is told what replaced it.
REMOVED_KEYS: dict[str, str] = {
    "autoscaler.providerIdController": (
        "was removed: the Talos CCM it deployed cannot set spec.providerID next to Cozystack's "
        "Local CCM (which removes the uninitialized taint first). Delete the key: "
        "autoscaler.providerId: setter (the default) deploys the providerID setter instead; "
        "use providerId: none only when your own cloud controller sets spec.providerID"
    ),
}

#: Secret settings: the key as messages show it, its top-level config key, and the
#: command that stores it encrypted.
SECRET_SETTINGS = (
    ("hcloud:token", "hcloud:token", "pulumi config set --secret hcloud:token"),
    (
        "autoscaler.token",
        f"{PROJECT}:autoscaler",
        "pulumi config set --secret --path autoscaler.token",
    ),
    (
        "talos.workerConfig",
        f"{PROJECT}:talos",
        "pulumi config set --secret --path talos.workerConfig < worker.yaml",
    ),
)


def plaintext_secret_warnings(
    stack: StackConfig, is_encrypted: Callable[[str], bool], source: str
) -> list[str]:
    """A warning for each secret setting stored in plain text in ``source``.

    ``is_encrypted`` answers for a top-level config key (the engine knows which
    keys were set with ``--secret``); values read offline are plain text when
    they are not ``{secure: ...}``.
    """
    values = {
        "hcloud:token": stack.hcloud_token,
        "autoscaler.token": stack.autoscaler.token,
        "talos.workerConfig": stack.talos.worker_config,
    }
    warnings = []
    for shown_key, config_key, command in SECRET_SETTINGS:
        if isinstance(values[shown_key], Secret) and not is_encrypted(config_key):
            warnings.append(
                f"{shown_key} is stored in plain text in {source}: anyone who can read the file "
                f"or its history has it. Encrypt it with `{command}` (this replaces the value "
                "with `secure: ...`), then rotate the secret, since the plain text stays in the "
                "history"
            )
    return warnings


def server_type_warnings(stack: StackConfig, catalogue: hetzner.Catalogue | None) -> list[str]:
    """Server types that still exist but are being retired: new servers may soon be refused."""
    catalogue = catalogue or hetzner.BUILT_IN_CATALOGUE
    used = {group.instance_type for group in stack.autoscaler.node_groups}
    used |= {stack.image.builder_server_types[arch] for arch in stack.architectures}
    return [
        f"server type {name} is being retired by Hetzner ({catalogue.source}); move to a current "
        "type (`hcloud server-type list`) before it can no longer be ordered"
        for name in sorted(used & catalogue.deprecated)
    ]


_SECTION_MODELS: dict[str, type[_Model]] = {
    "talos": TalosSettings,
    "network": NetworkSettings,
    "image": ImageSettings,
    "autoscaler": AutoscalerSettings,
}


def parse_stack_config(
    sections: Mapping[str, Any],
    hcloud_token: Any,
    base_dir: Path,
    *,
    require_token: bool = True,
    catalogue: hetzner.Catalogue | None = None,
) -> StackConfig:
    """Validate the project's config sections and return the typed stack config.

    ``sections`` maps the keys of the project namespace (``talos``, ``network``,
    ...) to their values; ``hcloud_token`` is ``hcloud:token`` (or the
    ``HCLOUD_TOKEN`` environment variable). Server types are checked against
    ``catalogue`` (the live list at preview) or the built-in table. Raises
    ConfigError listing every problem found.
    """
    problems: list[Problem] = []
    for key in sections:
        if key not in _SECTION_MODELS:
            problems.append(Problem(_key_part(key), _unknown_key_message(key, SECTIONS)))

    context = {"catalogue": catalogue or hetzner.BUILT_IN_CATALOGUE}
    parsed: dict[str, Any] = {}
    for key, model in _SECTION_MODELS.items():
        raw = sections.get(key)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            problems.append(
                Problem(key, f"must be an object of settings (key: value), got {_kind(raw)}")
            )
            continue
        shape = _shape_problem(raw)
        if shape:
            problems.append(Problem(key, shape))
            continue
        raw = _without_removed_keys(key, raw, problems)
        try:
            parsed[key] = model.model_validate(raw, context=context)
        except ValidationError as error:
            problems.extend(_problems_from(error, key, model))

    token: SecretValue | None = None
    if hcloud_token is None or hcloud_token == "":
        if require_token:
            problems.append(
                Problem(
                    "hcloud:token",
                    "is not set: run `pulumi config set --secret hcloud:token` "
                    "(or export HCLOUD_TOKEN)",
                )
            )
    else:
        try:
            token = _as_secret(hcloud_token)
        except ValueError as error:
            problems.append(Problem("hcloud:token", str(error)))

    base_worker_config: Secret | None = None
    if "talos" in parsed:
        base_worker_config = _load_worker_config(parsed["talos"], base_dir, problems)

    if len(parsed) == len(_SECTION_MODELS):
        stack = StackConfig(
            talos=parsed["talos"],
            network=parsed["network"],
            image=parsed["image"],
            autoscaler=parsed["autoscaler"],
            hcloud_token=token,
            base_worker_config=base_worker_config,
        )
        problems.extend(_cross_section_problems(stack))
    if problems:
        raise ConfigError(problems)
    return stack


def _without_removed_keys(
    section: str, raw: Mapping[str, Any], problems: list[Problem]
) -> dict[str, Any]:
    """The section without keys of earlier releases; each one found becomes a problem."""
    kept = dict(raw)
    for path, message in REMOVED_KEYS.items():
        owner, _, key = path.partition(".")
        if owner == section and key in kept:
            del kept[key]
            problems.append(Problem(path, message))
    return kept


def _load_worker_config(
    talos: TalosSettings, base_dir: Path, problems: list[Problem]
) -> Secret | None:
    if talos.worker_config_file is not None:
        path = base_dir / talos.worker_config_file
        key = "talos.workerConfigFile"
        try:
            text = safe_yaml.read_text(path, WORKER_CONFIG_LIMITS)
        except OSError as error:
            problems.append(
                Problem(
                    key,
                    f"cannot read {path} ({error.strerror}); give a path relative to the "
                    "project directory of the worker.yaml from `talosctl gen config`",
                )
            )
            return None
        except safe_yaml.YamlError as error:
            problems.append(Problem(key, f"{path} {error}"))
            return None
        secret = Secret(text)
    elif isinstance(talos.worker_config, Secret):
        secret = talos.worker_config
        key = "talos.workerConfig"
    else:
        return None
    try:
        documents = worker_config_documents(secret.reveal(), strict=True)
    except safe_yaml.YamlError as error:
        problems.append(Problem(key, f"is not valid YAML: {error}"))
        return None
    if not documents:
        problems.append(Problem(key, "must be a Talos machine config (YAML mapping documents)"))
        return None
    return secret


def worker_config_documents(text: str, *, strict: bool = False) -> list[dict[str, Any]]:
    """The YAML documents of a Talos config (one before v1.12, several after).

    Raises safe_yaml.YamlError; with ``strict`` also when a document is not a mapping.
    """
    documents = safe_yaml.load_all(text, WORKER_CONFIG_LIMITS)
    if strict and not all(isinstance(doc, dict) for doc in documents):
        raise safe_yaml.YamlError("every document must be a mapping (key: value)")
    return [doc for doc in documents if isinstance(doc, dict)]


def _cross_section_problems(stack: StackConfig) -> list[Problem]:
    problems: list[Problem] = []
    groups = stack.autoscaler.node_groups

    zones: dict[str, list[str]] = {}
    for group in groups:
        zones.setdefault(group.network_zone, []).append(f"{group.name} ({group.region})")
    if len(zones) > 1:
        spread = "; ".join(f"{zone}: {', '.join(names)}" for zone, names in sorted(zones.items()))
        problems.append(
            Problem(
                "autoscaler.nodeGroups",
                f"pools span several network zones ({spread}); one subnet serves one zone, so "
                "keep every pool's region in one zone or run one stack per zone",
            )
        )
    elif stack.network.network_zone and stack.network.network_zone not in zones:
        problems.append(
            Problem(
                "network.networkZone",
                f"is {stack.network.network_zone!r} but the pools are in {next(iter(zones))}; "
                "remove networkZone to derive it from the pools' regions",
            )
        )

    for arch in stack.architectures:
        if arch not in stack.image.builder_server_types:
            pools = ", ".join(g.name for g in groups if g.architecture == arch)
            problems.append(
                Problem(
                    f"image.builderServerTypes.{arch}",
                    f"is missing but pools {pools} need an {arch} image; add an {arch} builder "
                    f"server type (e.g. {'cax11' if arch == 'arm64' else 'cx23'})",
                )
            )

    if stack.autoscaler.config_format == "legacy":
        if len(stack.architectures) > 1:
            problems.append(
                Problem(
                    "autoscaler.configFormat",
                    "legacy hands one image to every pool, but the pools mix amd64 and arm64; "
                    "use configFormat cluster-config",
                )
            )
        for index, group in enumerate(groups):
            if group.labels or group.taints:
                problems.append(
                    Problem(
                        f"autoscaler.nodeGroups[{index}]",
                        f"pool {group.name} has labels/taints, which the legacy format cannot "
                        "carry (one config for all pools); use configFormat cluster-config or "
                        "move the labels to talos.nodeLabels",
                    )
                )

    smoke_test = stack.autoscaler.smoke_test
    pool_capacity = sum(group.max_size for group in groups)
    # Pinned to the pools (not in legacy format), one pod per node.
    pinned = smoke_test is not None and stack.autoscaler.config_format != "legacy"
    if pinned and smoke_test is not None and smoke_test.replicas > pool_capacity:
        problems.append(
            Problem(
                "autoscaler.smokeTest.replicas",
                f"{smoke_test.replicas} is more than the pools can hold (sum of maxSize: "
                f"{pool_capacity}; one pod per node): the extra pods would stay Pending "
                "forever; lower replicas or raise maxSize",
            )
        )

    capacity = validators.usable_addresses(stack.network.subnet)
    wanted = sum(group.max_size for group in groups)
    if wanted > capacity:
        problems.append(
            Problem(
                "autoscaler.nodeGroups",
                f"the pools may grow to {wanted} servers (sum of maxSize) but subnet "
                f"{stack.network.subnet} holds {capacity}; lower maxSize or use a larger "
                "network.subnet",
            )
        )

    if stack.base_worker_config is not None:
        problems.extend(_cluster_network_overlaps(stack))
    problems.extend(_autoscaler_image_problems(stack))
    return problems


def _autoscaler_image_problems(stack: StackConfig) -> list[Problem]:
    """The image must be a release, of the cluster's minor, and read the config format."""
    settings = stack.autoscaler
    try:
        image = stack.autoscaler_image
    except ValueError as error:
        return [Problem("autoscaler.imageTag", str(error))]
    kubernetes = stack.kubernetes_version
    if settings.image_tag is not None and kubernetes is not None and image.version is not None:
        cluster = talos_versions.parse_kubernetes_version(kubernetes)
        if image.version.minor_key != cluster.minor_key:
            return [
                Problem(
                    "autoscaler.imageTag",
                    f"{settings.image_tag} does not match Kubernetes {cluster}: the autoscaler "
                    "simulates scheduling with its own Kubernetes release, so use a "
                    f"v{cluster.major}.{cluster.minor}.x image (or remove imageTag: the newest "
                    "one is chosen)",
                )
            ]
    if settings.config_format == "cluster-config" and image.lacks("HCLOUD_CLUSTER_CONFIG"):
        key = "autoscaler.imageTag" if settings.image_tag else "autoscaler.configFormat"
        return [
            Problem(
                key,
                f"{image.too_old_for('HCLOUD_CLUSTER_CONFIG', 'configFormat cluster-config')}; "
                "use configFormat legacy, or a newer Kubernetes and autoscaler",
            )
        ]
    return []


def _cluster_network_overlaps(stack: StackConfig) -> list[Problem]:
    assert stack.base_worker_config is not None
    key = "talos.workerConfigFile" if stack.talos.worker_config_file else "talos.workerConfig"
    network = ipaddress.ip_network(stack.network.ip_range)
    problems: list[Problem] = []
    for document in worker_config_documents(stack.base_worker_config.reveal()):
        cluster = document.get("cluster")
        cluster_network = cluster.get("network") if isinstance(cluster, dict) else None
        if not isinstance(cluster_network, dict):
            continue
        for field in ("podSubnets", "serviceSubnets"):
            entries = cluster_network.get(field) or []
            if not isinstance(entries, list):
                problems.append(Problem(key, f"cluster.network.{field} must be a list of CIDRs"))
                continue
            for cidr in entries:
                try:
                    other = ipaddress.ip_network(str(cidr), strict=False)
                except ValueError:
                    problems.append(
                        Problem(key, f"cluster.network.{field} entry {shown(cidr)} is not a CIDR")
                    )
                    continue
                if other.version == network.version and other.overlaps(network):
                    problems.append(
                        Problem(
                            "network.ipRange",
                            f"{stack.network.ip_range} overlaps the cluster's {field} {cidr} "
                            f"(from {key}); choose a network range that is disjoint from the "
                            "pod and service networks",
                        )
                    )
    return problems


def _unknown_key_message(key: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}known keys: {', '.join(known)}"


def _problems_from(error: ValidationError, section: str, model: type[BaseModel]) -> list[Problem]:
    problems = []
    for detail in error.errors():
        loc = tuple(
            _alias_of(model, detail["loc"][:index], part)
            for index, part in enumerate(detail["loc"])
        )
        path = _key_path(section, loc)
        if detail["type"] == "extra_forbidden":
            owner = _model_at(model, detail["loc"][:-1])
            known = [field.alias or name for name, field in owner.model_fields.items()]
            message = _unknown_key_message(_key_part(detail["loc"][-1]), known)
        else:
            message = _message(detail, path)
        problems.append(Problem(path, message))
    return problems


_MISSING = {
    "talos.version": "is required: the Talos release of the cluster, e.g. v1.11.6",
    "autoscaler.nodeGroups": (
        "is required: list at least one pool {name, minSize, maxSize, instanceType, region}"
    ),
}


def _message(detail: Any, path: str) -> str:
    message = str(detail["msg"])
    if detail["type"] == "missing":
        return _MISSING.get(path, "is required")
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = detail.get("input")
    if detail["type"] in {
        "literal_error",
        "greater_than_equal",
        "greater_than",
        "less_than_equal",
        "too_short",
        "too_long",
    } or ("type" in detail["type"] or "parsing" in detail["type"]):
        return f"got {shown(value, path)}: {message}"
    return message


def _key_path(section: str, loc: tuple[Any, ...]) -> str:
    path = section
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part.startswith("function-"):
            continue  # pydantic's name for a validator step, not a key
        else:
            path += f".{_key_part(part)}"
    return path


def _key_part(part: Any) -> str:
    """A key as a path shows it: a huge or binary key is shortened."""
    text = str(part)
    if len(text) <= 64 and text.isprintable():
        return text
    return shown(part)


def _shape_problem(value: Any) -> str | None:
    """Config values arrive as JSON from the engine, unbounded: refuse absurd nesting or size."""
    limits = STACK_FILE_LIMITS
    stack: list[tuple[Any, int]] = [(value, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > limits.max_depth:
            return f"is nested deeper than {limits.max_depth} levels"
        if count > limits.max_nodes:
            return f"holds more than {limits.max_nodes} values"
        if isinstance(node, Mapping):
            stack.extend((inner, depth + 1) for inner in node.values())
        elif isinstance(node, list):
            stack.extend((inner, depth + 1) for inner in node)
    return None


def _alias_of(model: type[BaseModel], parents: tuple[Any, ...], part: Any) -> Any:
    """The stack key of a field pydantic names by its Python name (a validated default)."""
    if not isinstance(part, str):
        return part
    field = _model_at(model, parents).model_fields.get(part)
    return field.alias if field is not None and field.alias else part


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    current: type[BaseModel] = model
    for part in loc:
        if isinstance(part, int):
            continue
        for name, field in current.model_fields.items():
            if part in {name, field.alias}:
                inner = _model_in(field.annotation)
                if inner is not None:
                    current = inner
                break
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def sections_from_flat_config(flat: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """Split ``namespace:key`` config into the project's sections and ``hcloud:token``.

    Values arrive as objects from a stack file and as JSON text from the Pulumi
    engine; both are accepted. Keys of other namespaces (``kubernetes:``, ...)
    belong to their providers and are left alone.
    """
    sections: dict[str, Any] = {}
    for full_key, value in flat.items():
        if not isinstance(full_key, str):
            raise ConfigError(
                [Problem("", f"config key {shown(full_key)} is not a string; quote it")]
            )
        namespace, _, key = full_key.partition(":")
        if namespace != PROJECT:
            continue
        if isinstance(value, str) and len(value) <= STACK_FILE_LIMITS.max_bytes:
            with contextlib.suppress(json.JSONDecodeError, RecursionError):
                value = json.loads(value)
        sections[key] = value
    return sections, flat.get("hcloud:token")


def stack_file(project_dir: Path, stack: str) -> Path:
    """``Pulumi.<stack>.yaml`` of a stack name Pulumi accepts (``org/`` parts dropped)."""
    problem = validators.stack_name_problem(stack)
    if problem:
        raise ConfigError([Problem("", f"--stack: {problem}")])
    return project_dir / f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"


def load_stack_file(project_dir: Path, stack: str) -> tuple[dict[str, Any], Any]:
    """Read ``Pulumi.<stack>.yaml`` without the Pulumi CLI (secrets stay encrypted)."""
    path = stack_file(project_dir, stack)
    try:
        text = safe_yaml.read_text(path, STACK_FILE_LIMITS)
        document = safe_yaml.load_one(text, STACK_FILE_LIMITS)
    except OSError as error:
        raise ConfigError(
            [Problem("", f"cannot read stack file {path} ({error.strerror}); is --stack right?")]
        ) from None
    except safe_yaml.YamlError as error:
        raise ConfigError([Problem("", f"{path} {error}")]) from None
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise ConfigError(
            [Problem("", f"{path} must be a mapping with a 'config' key, got {_kind(document)}")]
        )
    flat = document.get("config") or {}
    if not isinstance(flat, Mapping):
        raise ConfigError([Problem("", f"{path}: 'config' must be a mapping of keys to values")])
    for key in flat:
        if not isinstance(key, str):
            raise ConfigError([Problem("", f"{path}: config key {shown(key)} is not a string")])
    return sections_from_flat_config(flat)
