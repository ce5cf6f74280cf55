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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
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

from components import hetzner, talos_versions
from components.autoscaler_versions import DEFAULT_CHART_VERSION, AutoscalerImage, autoscaler_image
from components.hetzner import Architecture
from components.node_labels import label_problems

PROJECT = "hcloud-talos-autoscaler"
#: Top-level keys of the project namespace (``hcloud-talos-autoscaler:<key>``).
SECTIONS = ("talos", "network", "image", "autoscaler")
DEFAULT_EXTENSIONS = ("siderolabs/qemu-guest-agent",)
POOL_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
#: Server names are ``<pool>-<16 hex>``; hostnames stop at 63 characters.
POOL_NAME_MAX_LENGTH = 46
DEFAULT_BUILDER_SERVER_TYPES: dict[Architecture, str] = {"amd64": "cx23", "arm64": "cax11"}
SCHEMATIC_ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")
#: Cozystack's PackageSource installs the Package's release here, whatever the Package says.
COZYSTACK_NAMESPACE = "cozy-cluster-autoscaler-hetzner"
#: ``image.writeTimeout``: minutes the download and write of the image may take. The
#: maximum keeps the longest build below the age at which builders count as leftovers.
WRITE_TIMEOUT_MINUTES = 30
WRITE_TIMEOUT_MAX_MINUTES = 60


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
    raise ValueError("must be a non-empty string, set with `pulumi config set --secret`")


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
        raise ValueError(
            f"{value!r} is not a network in CIDR form like 10.100.0.0/24 ({error})"
        ) from None


Cidr = Annotated[str, AfterValidator(_cidr)]


def _location(value: str) -> str:
    location = value.lower()
    if location not in hetzner.NETWORK_ZONE_BY_LOCATION:
        known = ", ".join(hetzner.NETWORK_ZONE_BY_LOCATION)
        raise ValueError(f"{value!r} is not a Hetzner Cloud location; use one of {known}")
    return location


Location = Annotated[str, AfterValidator(_location)]


def _node_labels(labels: dict[str, str]) -> dict[str, str]:
    problems = label_problems(labels)
    if problems:
        raise ValueError("; ".join(problems))
    return labels


#: Labels a Talos node sets on itself (see ``node_labels``).
NodeLabels = Annotated[dict[str, str], AfterValidator(_node_labels)]


class Taint(_Model):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodeGroup(_Model):
    """One autoscaled pool, in the guide's vocabulary (``autoscalingGroups``)."""

    name: str
    min_size: int = Field(ge=0)
    max_size: int = Field(ge=0)
    instance_type: str = Field(min_length=1)
    region: Location
    labels: NodeLabels = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _pool_name(cls, name: str) -> str:
        if not POOL_NAME_PATTERN.match(name):
            raise ValueError(
                f"{name!r} is not a valid pool name: use lower-case letters, digits and '-' "
                "(servers are named <pool>-<hex> and must be valid hostnames)"
            )
        if len(name) > POOL_NAME_MAX_LENGTH:
            raise ValueError(
                f"{name!r} is {len(name)} characters long; pool names are at most "
                f"{POOL_NAME_MAX_LENGTH} so that <pool>-<16 hex> stays a valid hostname"
            )
        return name

    @field_validator("instance_type")
    @classmethod
    def _lower_type(cls, instance_type: str) -> str:
        return instance_type.lower()

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
    node_annotations: dict[str, str] = Field(default_factory=dict)
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
                f"{schematic_id!r} is not an Image Factory schematic id (64 lower-case hex "
                "characters, as shown by factory.talos.dev)"
            )
        return schematic_id

    @field_validator("image_factory_url")
    @classmethod
    def _factory_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"{url!r} is not an http(s) URL like https://factory.talos.dev")
        return url.rstrip("/")

    @field_validator("registry_mirrors")
    @classmethod
    def _mirrors(cls, mirrors: dict[str, list[str]]) -> dict[str, list[str]]:
        for host, endpoints in mirrors.items():
            if not endpoints:
                raise ValueError(f"mirror {host!r} has no endpoints; list at least one URL")
            for endpoint in endpoints:
                if not re.match(r"^https?://[^/\s]+", endpoint):
                    raise ValueError(
                        f"endpoint {endpoint!r} of mirror {host!r} is not an http(s) URL"
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
    name: str = "cozystack-vswitch"
    ip_range: Cidr = "10.100.0.0/16"
    subnet: Cidr = "10.100.0.0/24"
    network_zone: str | None = None
    existing: str | None = None
    vswitch_id: int | None = Field(default=None, gt=0)
    #: The range of the Robot vSwitch subnet, required with ``vswitchId``.
    vswitch_subnet: Cidr | None = None

    @field_validator("network_zone")
    @classmethod
    def _zone(cls, zone: str | None) -> str | None:
        if zone is not None and zone not in hetzner.NETWORK_ZONES:
            zones = ", ".join(sorted(hetzner.NETWORK_ZONES))
            raise ValueError(f"{zone!r} is not a network zone; use one of {zones}")
        return zone

    @field_validator("subnet", "vswitch_subnet")
    @classmethod
    def _inside_range(cls, subnet: str | None, info: ValidationInfo) -> str | None:
        ip_range = info.data.get("ip_range")
        if subnet is None or ip_range is None:
            return subnet
        if not ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network(ip_range)):  # type: ignore[arg-type]
            raise ValueError(
                f"{subnet} is not inside ipRange {ip_range}; pick a range within the network's"
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
        default_factory=lambda: dict(DEFAULT_BUILDER_SERVER_TYPES)
    )
    labels: dict[str, str] = Field(default_factory=dict)
    write_timeout: int = WRITE_TIMEOUT_MINUTES

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
    replicas: int = Field(ge=1)


class AutoscalerSettings(_Model):
    deploy: Literal["package", "helm"] = "package"
    namespace: str = COZYSTACK_NAMESPACE
    node_groups: list[NodeGroup] = Field(min_length=1)
    ssh_key: str | None = None
    firewall: str | None = None
    public_i_pv4: bool = Field(default=True, alias="publicIPv4")
    public_i_pv6: bool = Field(default=False, alias="publicIPv6")
    server_creation_timeout: int = Field(default=10, ge=1)
    config_format: Literal["cluster-config", "legacy"] = "cluster-config"
    chart_version: str | None = None
    image_tag: str | None = None
    extra_args: dict[str, str | int | bool] = Field(default_factory=dict)
    token: SecretField | None = None
    provider_id: Literal["setter", "none"] = "setter"
    smoke_test: SmokeTest | None = None
    #: Leave the autoscaler's servers (and Nodes) when the stack or a pool is removed.
    keep_servers_on_destroy: bool = False

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
            return self.message
        key = self.key if ":" in self.key else f"{PROJECT}:{self.key}"
        return f"{key}: {self.message}"


class ConfigError(ValueError):
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
) -> StackConfig:
    """Validate the project's config sections and return the typed stack config.

    ``sections`` maps the keys of the project namespace (``talos``, ``network``,
    ...) to their values; ``hcloud_token`` is ``hcloud:token`` (or the
    ``HCLOUD_TOKEN`` environment variable). Raises ConfigError listing every
    problem found.
    """
    problems: list[Problem] = []
    for key in sections:
        if key not in _SECTION_MODELS:
            problems.append(Problem(key, _unknown_key_message(key, SECTIONS)))

    parsed: dict[str, Any] = {}
    for key, model in _SECTION_MODELS.items():
        raw = sections.get(key)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            problems.append(Problem(key, f"must be an object of settings, got {raw!r}"))
            continue
        raw = _without_removed_keys(key, raw, problems)
        try:
            parsed[key] = model.model_validate(raw)
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
        token = _as_secret(hcloud_token)

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
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            problems.append(
                Problem(
                    "talos.workerConfigFile",
                    f"cannot read {path} ({error.strerror}); give a path relative to the "
                    "project directory of the worker.yaml from `talosctl gen config`",
                )
            )
            return None
        secret = Secret(text)
        key = "talos.workerConfigFile"
    elif isinstance(talos.worker_config, Secret):
        secret = talos.worker_config
        key = "talos.workerConfig"
    else:
        return None
    try:
        documents = [doc for doc in yaml.safe_load_all(secret.reveal()) if doc is not None]
    except yaml.YAMLError as error:
        problems.append(Problem(key, f"is not valid YAML ({_yaml_position(error)})"))
        return None
    if not documents or not all(isinstance(doc, dict) for doc in documents):
        problems.append(Problem(key, "must be a Talos machine config (YAML mapping documents)"))
        return None
    return secret


def _yaml_position(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or "syntax error"
    if mark is None:
        return str(problem)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def worker_config_documents(text: str) -> list[dict[str, Any]]:
    """The YAML documents of a Talos config (one before v1.12, several after)."""
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


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
        cluster_network = (document.get("cluster") or {}).get("network") or {}
        for field in ("podSubnets", "serviceSubnets"):
            for cidr in cluster_network.get(field) or []:
                try:
                    other = ipaddress.ip_network(str(cidr), strict=False)
                except ValueError:
                    problems.append(
                        Problem(key, f"cluster.network.{field} entry {cidr!r} is not a CIDR")
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
        path = _key_path(section, detail["loc"])
        if detail["type"] == "extra_forbidden":
            owner = _model_at(model, detail["loc"][:-1])
            known = [field.alias or name for name, field in owner.model_fields.items()]
            message = _unknown_key_message(str(detail["loc"][-1]), known)
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
    if detail["type"] in {"literal_error", "greater_than_equal", "greater_than", "too_short"} or (
        "type" in detail["type"] or "parsing" in detail["type"]
    ):
        return f"got {value!r}: {message}"
    return message


def _key_path(section: str, loc: tuple[Any, ...]) -> str:
    path = section
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in {"function-after[_as_secret(), any]"}:
            continue
        else:
            path += f".{part}"
    return path


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
        namespace, _, key = full_key.partition(":")
        if namespace != PROJECT:
            continue
        if isinstance(value, str):
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        sections[key] = value
    return sections, flat.get("hcloud:token")


def load_stack_file(project_dir: Path, stack: str) -> tuple[dict[str, Any], Any]:
    """Read ``Pulumi.<stack>.yaml`` without the Pulumi CLI (secrets stay encrypted)."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError(
            [Problem("", f"cannot read stack file {path} ({error.strerror}); is --stack right?")]
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(
            [Problem("", f"{path} is not valid YAML ({_yaml_position(error)})")]
        ) from None
    flat = document.get("config") or {}
    if not isinstance(flat, Mapping):
        raise ConfigError([Problem("", f"{path}: 'config' must be a mapping of keys to values")])
    return sections_from_flat_config(flat)
