"""Rules across sections of a valid-looking stack, and what a valid stack still warns about.

Each section validates its own fields (``model``); these rules need several sections, the
base worker config or the autoscaler image that follows from them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from core import validators
from core.config.model import PROJECT, SMALLEST_SUBNET_PREFIX, StackConfig
from core.config.problems import Problem
from core.config.secrets import Secret
from core.hetzner import facts as hetzner
from core.redaction import shown
from core.talos.extensions import needed_extensions
from core.talos.validation import cluster_subnet_conflicts

#: Hetzner Cloud API tokens are 64 characters; the hcloud provider refuses any other length
#: ("entered token is invalid (must be exactly 64 characters long)", hcloud/provider.go).
HCLOUD_TOKEN_LENGTH = 64


def cross_section_problems(stack: StackConfig) -> list[Problem]:
    """Every problem that needs more than one section (each section is valid on its own)."""
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
        if arch not in stack.image.builder_server_types and arch not in stack.image.existing:
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
            per_pool = (
                group.node_annotations
                or group.placement_group
                or group.server_labels
                or group.subnet
            )
            if group.labels or group.taints or per_pool:
                problems.append(
                    Problem(
                        f"autoscaler.nodeGroups[{index}]",
                        f"pool {group.name} has labels/taints (or nodeAnnotations, "
                        "placementGroup, serverLabels, subnet), which the legacy format cannot "
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
    wanted = sum(group.max_size for group in groups if group.subnet in (None, stack.network.subnet))
    if wanted > capacity:
        problems.append(
            Problem(
                "autoscaler.nodeGroups",
                f"the pools may grow to {wanted} servers (sum of maxSize) but subnet "
                f"{stack.network.subnet} holds {capacity}; lower maxSize or use a larger "
                "network.subnet",
            )
        )

    problems.extend(_pool_subnet_problems(stack))
    problems.extend(_cluster_network_problems(stack))
    problems.extend(_autoscaler_image_problems(stack))
    problems.extend(_token_problems(stack))
    problems.extend(_extension_problems(stack))
    return problems


def _token_problems(stack: StackConfig) -> list[Problem]:
    """A readable token of the wrong length: the provider would refuse it at ``pulumi up``."""
    return [
        Problem(
            key,
            f"is {len(token.reveal())} characters long; a Hetzner Cloud API token has "
            f"{HCLOUD_TOKEN_LENGTH} (Cloud Console > Security > API tokens): set the whole "
            f"token with `{command}`",
        )
        for key, token, command in (
            ("hcloud:token", stack.hcloud_token, "pulumi config set --secret hcloud:token"),
            (
                "autoscaler.token",
                stack.autoscaler.token,
                "pulumi config set --secret --path autoscaler.token",
            ),
            (
                "autoscaler.providerIdToken",
                stack.autoscaler.provider_id_token,
                "pulumi config set --secret --path autoscaler.providerIdToken",
            ),
        )
        if isinstance(token, Secret) and len(token.reveal()) != HCLOUD_TOKEN_LENGTH
    ]


def _extension_problems(stack: StackConfig) -> list[Problem]:
    """Kernel modules the base config loads that the image's extensions do not provide."""
    if stack.talos.schematic_id is not None:
        return []  # unknown offline: ``extension_warnings``
    have = set(stack.talos.extensions)
    return [
        Problem(
            "talos.extensions",
            f"the base worker config ({stack.worker_config_key}) loads kernel module {module}, "
            f"which only the {extension} extension provides, and talos.extensions lacks it: "
            f"add {extension} to talos.extensions (or remove {module} from "
            "machine.kernel.modules); without it Talos retries the load forever and what "
            "needs the module cannot run on the node",
        )
        for module, extension in needed_extensions(stack.base_documents or ()).items()
        if extension not in have
    ]


def extension_warnings(stack: StackConfig) -> list[str]:
    """With ``talos.schematicId`` the extensions are unknown offline: name what it must hold."""
    if stack.talos.schematic_id is None:
        return []
    needed = needed_extensions(stack.base_documents or ())
    return [
        f"the base worker config ({stack.worker_config_key}) loads kernel module {module}, "
        f"which only the {extension} extension provides: make sure schematic "
        f"{stack.talos.schematic_id[:12]}… includes it (factory.talos.dev shows a schematic's "
        "extensions)"
        for module, extension in needed.items()
    ]


def pool_size_warnings(stack: StackConfig) -> list[str]:
    """A pool that may never have a node is almost always a typo for a larger maxSize."""
    return [
        f"autoscaler.nodeGroups[{index}] (pool {group.name}) has maxSize 0: the autoscaler "
        "never creates a server in it; raise maxSize, or remove the pool"
        for index, group in enumerate(stack.autoscaler.node_groups)
        if group.max_size == 0
    ]


def _pool_subnet_problems(stack: StackConfig) -> list[Problem]:
    """A pool's own subnet: a cloud subnet inside the network, apart from the others."""
    network = stack.network
    ip_range = ipaddress.ip_network(network.ip_range)
    others = {network.subnet: "network.subnet"}
    if network.vswitch_subnet is not None:
        others[network.vswitch_subnet] = "network.vswitchSubnet"
    problems: list[Problem] = []
    for index, group in enumerate(stack.autoscaler.node_groups):
        if group.subnet is None or group.subnet == network.subnet:
            continue
        key = f"autoscaler.nodeGroups[{index}].subnet"
        subnet = ipaddress.ip_network(group.subnet)
        # A reused network's range is known only at preview (network.ipRange is not used).
        outside = subnet.version != ip_range.version or not subnet.subnet_of(ip_range)  # type: ignore[arg-type]
        if network.existing is None and outside:
            problems.append(
                Problem(key, f"{group.subnet} is not inside network.ipRange {network.ip_range}")
            )
            continue
        if subnet.prefixlen > SMALLEST_SUBNET_PREFIX:
            problems.append(
                Problem(
                    key,
                    f"{group.subnet} is smaller than Hetzner's minimum subnet size "
                    f"/{SMALLEST_SUBNET_PREFIX}",
                )
            )
            continue
        clash = [
            f"{name} {other}"
            for other, name in others.items()
            if other != group.subnet and subnet.overlaps(ipaddress.ip_network(other))
        ]
        if clash:
            problems.append(
                Problem(
                    key,
                    f"{group.subnet} overlaps {clash[0]}; give the pool a range of its own "
                    "inside network.ipRange (or the same one)",
                )
            )
            continue
        if group.subnet in others:
            continue  # a subnet shared by pools is checked once, at its first pool
        others[group.subnet] = f"the subnet of pool {group.name}"
        wanted = sum(g.max_size for g in stack.autoscaler.node_groups if g.subnet == group.subnet)
        capacity = validators.usable_addresses(group.subnet)
        if wanted > capacity:
            problems.append(
                Problem(
                    key,
                    f"the pools in {group.subnet} may grow to {wanted} servers (sum of maxSize) "
                    f"but it holds {capacity}; lower maxSize or use a larger subnet",
                )
            )
    return problems


#: The pool key that needs a provider setting of another name.
POOL_KEYS = {"subnetIPRange": "subnet"}


def _autoscaler_image_problems(stack: StackConfig) -> list[Problem]:
    """The image must be a release, of the cluster's minor, and read the config format."""
    settings = stack.autoscaler
    try:
        image = stack.autoscaler_image
    except ValueError as error:
        return [Problem("autoscaler.imageTag", str(error))]
    cluster = stack.kubernetes_version
    if (
        settings.image_tag is not None
        and cluster is not None
        and image.version is not None
        and image.version.minor_key != cluster.minor_key
    ):
        return [
            Problem(
                "autoscaler.imageTag",
                f"{settings.image_tag} does not match Kubernetes {cluster}: the autoscaler "
                "simulates scheduling with its own Kubernetes release, so use a "
                f"v{cluster.major}.{cluster.minor}.x image (or remove imageTag: the newest "
                "one is chosen)",
            )
        ]
    pool_problems = [
        Problem(
            f"autoscaler.nodeGroups[{index}].{POOL_KEYS.get(setting, setting)}",
            f"{image.too_old_for(setting, f'pool {group.name}')}; remove "
            f"{POOL_KEYS.get(setting, setting)}, or use "
            "a newer Kubernetes and autoscaler",
        )
        for index, group in enumerate(settings.node_groups)
        for setting, used in (
            ("placementGroup", group.placement_group is not None),
            ("serverLabels", bool(group.server_labels)),
            ("subnetIPRange", group.subnet is not None),
        )
        if used and image.lacks(setting)
    ]
    if pool_problems:
        return pool_problems
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


def _cluster_network_problems(stack: StackConfig) -> list[Problem]:
    """The base config's pod and service networks must be CIDR lists disjoint from ours."""
    key = stack.worker_config_key
    problems: list[Problem] = []
    for conflict in cluster_subnet_conflicts(stack.base_documents or (), stack.network.ip_range):
        field = f"cluster.network.{conflict.field}"
        if conflict.kind == "not a list":
            problems.append(Problem(key, f"{field} must be a list of CIDRs"))
        elif conflict.kind == "not a CIDR":
            problems.append(Problem(key, f"{field} entry {shown(conflict.cidr)} is not a CIDR"))
        else:
            problems.append(
                Problem(
                    "network.ipRange",
                    f"{stack.network.ip_range} overlaps the cluster's {conflict.field} "
                    f"{conflict.cidr} (from {key}); choose a network range that is disjoint "
                    "from the pod and service networks",
                )
            )
    return problems


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
        "autoscaler.providerIdToken",
        f"{PROJECT}:autoscaler",
        "pulumi config set --secret --path autoscaler.providerIdToken",
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
        "autoscaler.providerIdToken": stack.autoscaler.provider_id_token,
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
    used |= {
        name
        for arch in stack.architectures
        if arch not in stack.image.existing
        for name in stack.image.server_types(arch)
    }
    return [
        f"server type {name} is being retired by Hetzner ({catalogue.source}); move to a current "
        "type (`hcloud server-type list`) before it can no longer be ordered"
        for name in sorted(used & catalogue.deprecated)
    ]
