"""The stack plan: everything a stack creates, decided once from its validated config.

``plan_stack`` is the one place where facts are derived from the config: the network's
arguments, a snapshot request per architecture, each pool's record (``pools``: what comes
after the plan reads instead of ``autoscaler.nodeGroups``), its Talos worker config and
user data, the Secrets' names and keys, the autoscaler's release, the providerID setter,
each pool's destroy-sweep record, the smoke test, the verification commands, the
warnings, and the name and type of every resource (``resources``). ``render`` formats a
plan; the program (``__main__.py``) declares its components from one.

Values that exist only once resources do — the subnet, the snapshot ids, the network's
name — are parameters of the small pure functions at the end (``worker_configs``,
``talos_config``, ``chart_values``): the components call them with their outputs, render
with the configured values and placeholders.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core import resources
from core.autoscaler import values
from core.config import ConfigError, Problem, StackConfig, Taint, reveal
from core.hetzner.access import DEFAULT_ENDPOINT
from core.hetzner.facts import NODE_GROUP_LABEL, Architecture, architecture_of
from core.image_builder.identity import image_url, snapshot_labels
from core.image_builder.schematic import schematic_id_for
from core.pools import PlacementGroupPlan, PoolPlan, plan_pools
from core.releases.autoscaler import (
    DEFAULT_CHART_REPOSITORY,
    DEFAULT_CHART_VERSION,
    AutoscalerImage,
)
from core.resources import MANAGED_LABELS, Child, Component
from core.talos.worker_config import WorkerConfig, worker_config_warnings
from core.worker_configs import generations, render_worker_configs


@dataclass(frozen=True)
class PlannedResource:
    """A resource the stack registers: type token, name, and its component's name."""

    type: str
    name: str
    #: The component it belongs to; None for the components themselves.
    parent: str | None = None


@dataclass(frozen=True)
class NetworkPlan:
    """The private network: created (``name``) or looked up (``existing``), with its subnets."""

    name: str
    ip_range: str
    subnet: str
    network_zone: str
    existing: str | None = None
    vswitch_id: int | None = None
    vswitch_subnet: str | None = None
    labels: dict[str, str] = field(default_factory=lambda: dict(MANAGED_LABELS))
    #: The pools' own cloud subnets (``nodeGroups[].subnet`` other than ``subnet``).
    pool_subnets: tuple[str, ...] = ()

    @property
    def shown_name(self) -> str:
        """The network as messages name it before it exists (the lookup's ID or name)."""
        return self.existing or self.name

    def existing_subnet(self, ip_range: str) -> str:
        """The configured subnet, checked against the range of the reused network."""
        inner, network = ipaddress.ip_network(self.subnet), ipaddress.ip_network(ip_range)
        if inner.version != network.version or not inner.subnet_of(network):  # type: ignore[arg-type]
            raise ConfigError(
                [
                    Problem(
                        "network.subnet",
                        f"{self.subnet} is not inside the range {ip_range} of the existing "
                        f"network {self.existing!r}; set network.subnet to that network's cloud "
                        "subnet",
                    )
                ]
            )
        return self.subnet


@dataclass(frozen=True)
class SnapshotPlan:
    """One architecture's Talos snapshot: what the ``TalosSnapshot`` resource builds."""

    architecture: Architecture
    talos_version: str
    schematic_id: str
    #: Registered with the factory before the build when the schematic comes from them.
    extensions: tuple[str, ...]
    location: str
    server_type: str
    factory_url: str
    extra_labels: dict[str, str]
    #: The pools' server types of this architecture: the snapshot's disk must fit each.
    must_fit_server_types: tuple[str, ...]
    #: Minutes the download and write of the image may take.
    write_timeout: int
    #: Further builder locations and server types, tried in order when Hetzner has no capacity.
    fallback_locations: tuple[str, ...] = ()
    fallback_server_types: tuple[str, ...] = ()

    @property
    def image_url(self) -> str:
        return image_url(self)

    @property
    def labels(self) -> dict[str, str]:
        """The finished snapshot's labels."""
        return snapshot_labels(self)

    def properties(self) -> dict[str, Any]:
        """The resource's inputs that come from the stack config (stable keys: they are state)."""
        return {
            "talos_version": self.talos_version,
            "schematic_id": self.schematic_id,
            "extensions": list(self.extensions),
            "architecture": self.architecture,
            "location": self.location,
            "server_type": self.server_type,
            "factory_url": self.factory_url,
            "extra_labels": dict(self.extra_labels),
            "must_fit_server_types": list(self.must_fit_server_types),
            "write_timeout": self.write_timeout,
            # Only when set, so the state of stacks with one location and type stays as it was.
            **(
                {"fallback_locations": list(self.fallback_locations)}
                if self.fallback_locations
                else {}
            ),
            **(
                {"fallback_server_types": list(self.fallback_server_types)}
                if self.fallback_server_types
                else {}
            ),
        }


@dataclass(frozen=True)
class ExistingSnapshot:
    """``image.existing``: a snapshot made elsewhere; its id once looked up (None offline)."""

    architecture: Architecture
    #: The id or label selector of the stack config.
    reference: int | str
    image_id: int | None = None


@dataclass(frozen=True)
class ImagePlan:
    schematic_id: str
    #: Where the schematic comes from, for render.
    schematic_source: str
    #: The snapshots this stack builds (the architectures without ``image.existing``).
    snapshots: tuple[SnapshotPlan, ...]
    existing: tuple[ExistingSnapshot, ...] = ()

    @property
    def existing_ids(self) -> dict[str, str]:
        """The looked-up ids of ``image.existing`` (``imageIds`` beside the built ones)."""
        return {
            item.architecture: str(item.image_id)
            for item in self.existing
            if item.image_id is not None
        }


@dataclass(frozen=True)
class SecretsPlan:
    namespace: str
    #: Key of the Talos config in the ``talos-config`` Secret (by config format).
    talos_config_key: str
    #: Cozystack's operator also manages the namespace: keep it when the stack goes.
    retain_namespace: bool
    credentials_secret: str = values.CREDENTIALS_SECRET
    credentials_key: str = values.CREDENTIALS_KEY
    talos_config_secret: str = values.TALOS_CONFIG_SECRET
    #: The key of the providerID setter's token: ``autoscaler.providerIdToken`` if set.
    setter_credentials_key: str = values.CREDENTIALS_KEY


@dataclass(frozen=True)
class ServersPlan:
    """The ``PoolServers`` records whose delete sweeps each pool's servers."""

    pools: tuple[str, ...]
    #: ``autoscaler.keepServersOnDestroy``: record only, delete nothing.
    keep_servers: bool
    #: The pools' placement groups, deleted after the pool's servers.
    placement_groups: tuple[PlacementGroupPlan, ...] = ()


@dataclass(frozen=True)
class AutoscalerPlan:
    deploy: str
    namespace: str
    chart_version: str
    #: The Helm chart repository (``deploy: helm``): upstream's, or a mirror.
    chart_repository: str
    image: AutoscalerImage
    #: ``deployment/<name>``: the chart's Deployment in either mode.
    logs_target: str = f"deployment/{values.DEPLOYMENT_NAME}"


@dataclass(frozen=True)
class RolloutPlan:
    """How the node controller replaces nodes of an outdated generation."""

    strategy: str = "replace"
    max_unavailable: int = 1
    drain_timeout_minutes: int = 10

    def controller_config(self, network_id: int | str, generations: Mapping[str, str]) -> str:
        """The controller's ``config.json``: the stack's network and each pool's generation."""
        return json.dumps(
            {
                # render shows a placeholder: the id exists once the network does
                "networkId": int(network_id) if str(network_id).isdecimal() else network_id,
                "pools": dict(sorted(generations.items())),
                "strategy": self.strategy,
                "maxUnavailable": self.max_unavailable,
                "drainTimeoutSeconds": self.drain_timeout_minutes * 60,
            },
            indent=2,
        )


@dataclass(frozen=True)
class SmokeTestPlan:
    replicas: int
    #: The pools its pods are pinned to (none in legacy format: nodes carry no pool label).
    pools: list[str]
    taints: list[Taint]
    #: The command that watches nodes appear (the ``smokeTestWatch`` output).
    watch_command: str


@dataclass(frozen=True)
class StackPlan:
    stack: StackConfig
    network: NetworkPlan
    image: ImagePlan
    secrets: SecretsPlan
    servers: ServersPlan
    autoscaler: AutoscalerPlan
    #: ``autoscaler.providerId: setter``.
    provider_id_setter: bool
    smoke_test: SmokeTestPlan | None
    #: Guide step 7: ``kubectl`` commands with this stack's names (outputs ``kubectl*``).
    verification: dict[str, str]
    warnings: tuple[str, ...]
    resources: tuple[PlannedResource, ...]
    #: The Hetzner API URL of the hcloud provider (and of the snapshot builds).
    hcloud_endpoint: str = DEFAULT_ENDPOINT
    _worker_configs: dict[str, dict[str, WorkerConfig]] = field(
        default_factory=dict, compare=False, repr=False
    )
    rollout: RolloutPlan = field(default_factory=RolloutPlan)
    #: Every pool, in ``autoscaler.nodeGroups`` order: what comes after the plan reads them here.
    pools: tuple[PoolPlan, ...] = ()

    @property
    def outputs(self) -> dict[str, Any]:
        """The stack outputs known from the config alone."""
        found: dict[str, Any] = {
            "nodeGroups": [values.autoscaling_group(pool) for pool in self.pools],
            **self.verification,
        }
        if self.smoke_test is not None:
            found["smokeTestWatch"] = self.smoke_test.watch_command
        return found

    @property
    def hcloud_token(self) -> str:
        """``hcloud:token`` in plain text (decrypted by the engine; components mark it secret)."""
        return reveal(self.stack.hcloud_token)

    @property
    def autoscaler_token(self) -> str:
        return reveal(self.stack.autoscaler_token)

    @property
    def setter_token(self) -> str | None:
        """``autoscaler.providerIdToken`` in plain text, if set (read-only Hetzner access)."""
        token = self.stack.autoscaler.provider_id_token
        return None if token is None else reveal(token)

    def worker_configs(self, subnet: str) -> dict[str, WorkerConfig]:
        """Every pool's Talos worker config for nodes in ``subnet``; built once per subnet.

        Raises WorkerConfigError; ValueError when the base config is encrypted (offline).
        """
        if subnet not in self._worker_configs:
            self._worker_configs[subnet] = render_worker_configs(self.stack, self.pools, subnet)
        return self._worker_configs[subnet]

    def generations(self, subnet: str) -> dict[str, str]:
        """Each pool's current generation (the ``poolGenerations`` output)."""
        return generations(self.worker_configs(subnet))

    def talos_config(
        self,
        worker_configs: Mapping[str, WorkerConfig],
        image_ids: Mapping[Architecture, str],
        subnet: str,
        placement_groups: Mapping[str, str] | None = None,
    ) -> values.TalosConfigSecret:
        """The ``talos-config`` Secret: each pool's user data, the snapshots' ids and the
        placement groups' ids."""
        stack = self.stack
        return values.talos_config_secret(
            stack.autoscaler,
            self.pools,
            stack.talos.node_labels,
            dict(image_ids),
            {pool: config.user_data.text for pool, config in worker_configs.items()},
            values.pinned_subnet(stack.network.existing, subnet, self.autoscaler.image),
            placement_groups,
        )

    def chart_values(
        self,
        *,
        network_name: str,
        image_ids: Mapping[Architecture, str],
        credentials_secret: str,
        talos_config_secret: str,
        talos_config_as_file: bool,
        config_hash: str,
    ) -> dict[str, Any]:
        """The autoscaler's chart values (the Package nests them; Helm adds the provider)."""
        return values.autoscaler_values(
            values.ValuesInputs(
                settings=self.stack.autoscaler,
                pools=self.pools,
                image=self.autoscaler.image,
                network_name=network_name,
                image_ids=dict(image_ids),
                credentials_secret=credentials_secret,
                talos_config_secret=talos_config_secret,
                config_hash=config_hash,
                cluster_config_as_file=talos_config_as_file,
            )
        )


def plan_stack(
    stack: StackConfig,
    warnings: Sequence[str] = (),
    *,
    hcloud_endpoint: str = DEFAULT_ENDPOINT,
    existing_images: Mapping[Architecture, int] | None = None,
) -> StackPlan:
    """The plan of a validated stack; ``warnings`` are its source's (plain-text secrets, ...).

    With a readable base worker config, every pool's config is built and checked here
    (WorkerConfigError), so a bad one stops the program before any resource exists.
    """
    settings = stack.autoscaler
    legacy = settings.config_format == "legacy"
    image = _image_plan(stack, existing_images or {})
    planned = plan_pools(stack, _boot_image_by_architecture(image))
    pools = [pool.name for pool in planned]
    network = NetworkPlan(
        name=stack.network.name,
        ip_range=stack.network.ip_range,
        subnet=stack.network.subnet,
        network_zone=stack.network_zone,
        existing=stack.network.existing,
        vswitch_id=stack.network.vswitch_id,
        vswitch_subnet=stack.network.vswitch_subnet,
        pool_subnets=tuple(
            dict.fromkeys(
                pool.subnet
                for pool in planned
                if pool.subnet is not None and pool.subnet != stack.network.subnet
            )
        ),
    )
    smoke_test = (
        None
        if settings.smoke_test is None
        else SmokeTestPlan(
            replicas=settings.smoke_test.replicas,
            pools=[] if legacy else pools,
            taints=[taint for pool in planned for taint in pool.taints],
            watch_command=watch_nodes_command(pools),
        )
    )
    autoscaler = AutoscalerPlan(
        deploy=settings.deploy,
        namespace=settings.namespace,
        chart_version=settings.chart_version or DEFAULT_CHART_VERSION,
        chart_repository=settings.chart_repository or DEFAULT_CHART_REPOSITORY,
        image=stack.autoscaler_image,
    )
    secrets = SecretsPlan(
        namespace=settings.namespace,
        talos_config_key=values.LEGACY_CLOUD_INIT_KEY if legacy else values.CLUSTER_CONFIG_KEY,
        retain_namespace=settings.deploy == "package",
        **(
            {"setter_credentials_key": values.SETTER_CREDENTIALS_KEY}
            if settings.provider_id_token is not None
            else {}
        ),
    )
    servers = ServersPlan(
        pools=tuple(pools),
        keep_servers=settings.keep_servers_on_destroy,
        placement_groups=tuple(
            pool.placement_group for pool in planned if pool.placement_group is not None
        ),
    )
    setter = settings.provider_id == "setter"
    # Built and checked now, so that a bad worker config stops the program before any
    # resource exists; the components get them again from the subnet's output (cached).
    configs = (
        {network.subnet: render_worker_configs(stack, planned, network.subnet)}
        if stack.base_documents is not None
        else {}
    )
    if configs:
        found = generations(configs[network.subnet])
        planned = tuple(replace(pool, generation=found[pool.name]) for pool in planned)
    return StackPlan(
        stack=stack,
        network=network,
        image=image,
        secrets=secrets,
        servers=servers,
        autoscaler=autoscaler,
        provider_id_setter=setter,
        smoke_test=smoke_test,
        verification=verification_commands(settings.namespace, autoscaler.logs_target, pools),
        warnings=(*warnings, *_stack_warnings(stack, autoscaler, configs.get(network.subnet))),
        resources=_resources(network, image, planned, servers, autoscaler, setter, smoke_test),
        hcloud_endpoint=hcloud_endpoint,
        _worker_configs=configs,
        rollout=RolloutPlan(
            strategy=settings.rollout.strategy,
            max_unavailable=settings.rollout.max_unavailable,
            drain_timeout_minutes=settings.rollout.drain_timeout,
        ),
        pools=planned,
    )


def _boot_image_by_architecture(image: ImagePlan) -> dict[Architecture, str]:
    """Each snapshot as what identifies its contents: a built one by Talos version,
    schematic and architecture, an ``image.existing`` one by its id (its reference offline)."""
    by_arch = {
        snapshot.architecture: (
            f"talos {snapshot.talos_version} schematic {snapshot.schematic_id} "
            f"{snapshot.architecture}"
        )
        for snapshot in image.snapshots
    }
    for existing in image.existing:
        found = existing.image_id if existing.image_id is not None else existing.reference
        by_arch[existing.architecture] = f"snapshot {found} {existing.architecture}"
    return by_arch


def _image_plan(stack: StackConfig, existing_ids: Mapping[Architecture, int]) -> ImagePlan:
    talos = stack.talos
    schematic_id = talos.schematic_id or schematic_id_for(talos.extensions)
    instance_types = sorted({group.instance_type for group in stack.autoscaler.node_groups})
    return ImagePlan(
        schematic_id=schematic_id,
        schematic_source=(
            "talos.schematicId"
            if talos.schematic_id
            else f"registered from extensions {', '.join(talos.extensions)}"
        ),
        snapshots=tuple(
            SnapshotPlan(
                architecture=arch,
                talos_version=talos.version.text,
                schematic_id=schematic_id,
                extensions=() if talos.schematic_id else tuple(talos.extensions),
                location=stack.image.locations[0],
                server_type=stack.image.server_types(arch)[0],
                fallback_locations=stack.image.locations[1:],
                fallback_server_types=stack.image.server_types(arch)[1:],
                factory_url=talos.image_factory_url,
                extra_labels=dict(stack.image.labels),
                must_fit_server_types=tuple(
                    name for name in instance_types if architecture_of(name) == arch
                ),
                write_timeout=stack.image.write_timeout,
            )
            for arch in stack.architectures
            if arch not in stack.image.existing
        ),
        existing=tuple(
            ExistingSnapshot(arch, stack.image.existing[arch], existing_ids.get(arch))
            for arch in stack.architectures
            if arch in stack.image.existing
        ),
    )


def _stack_warnings(
    stack: StackConfig, autoscaler: AutoscalerPlan, configs: Mapping[str, WorkerConfig] | None
) -> list[str]:
    """Worker config notes (deprecated keys, removed sections), then the autoscaler's."""
    found = worker_config_warnings(dict(configs)) if configs is not None else []
    found += [
        warning
        for warning in (
            values.subnet_pin_warning(
                stack.network.existing, stack.autoscaler.config_format, autoscaler.image
            ),
            values.node_registration_warning(stack.autoscaler.provider_id),
            values.ignored_values_warning(stack.autoscaler),
        )
        if warning
    ]
    return found


def _resources(
    network: NetworkPlan,
    image: ImagePlan,
    pools: Sequence[PoolPlan],
    servers: ServersPlan,
    autoscaler: AutoscalerPlan,
    provider_id_setter: bool,
    smoke_test: SmokeTestPlan | None,
) -> tuple[PlannedResource, ...]:
    """Every component and child the program registers, named as the components name them."""

    def component(which: Component, *children: Child) -> list[PlannedResource]:
        return [
            PlannedResource(which.type, which.name),
            *(
                PlannedResource(child.type, child.name(which.name), which.name)
                for child in children
            ),
        ]

    found = component(
        resources.NETWORK,
        *([resources.HCLOUD_NETWORK, resources.CLOUD_SUBNET] if network.existing is None else []),
        *([resources.VSWITCH_SUBNET] if network.vswitch_id is not None else []),
        *(
            resources.pool_subnet(cidr)
            for cidr in (network.pool_subnets if network.existing is None else ())
        ),
    )
    found += component(
        resources.TALOS_IMAGE,
        *(resources.snapshot(snapshot.architecture) for snapshot in image.snapshots),
    )
    found += component(
        resources.AUTOSCALER_SECRETS,
        resources.NAMESPACE,
        resources.CREDENTIALS_SECRET,
        resources.TALOS_CONFIG_SECRET,
    )
    if servers.placement_groups:
        found += component(
            resources.PLACEMENT_GROUPS,
            *(group.resource for group in servers.placement_groups),
        )
    found += component(resources.AUTOSCALED_SERVERS, *(pool.servers_record for pool in pools))
    found += component(
        resources.CLUSTER_AUTOSCALER,
        resources.PACKAGE if autoscaler.deploy == "package" else resources.HELM_RELEASE,
    )
    if provider_id_setter:
        found += component(resources.PROVIDER_ID_SETTER, *resources.HELPER_CHILDREN)
    found += component(resources.NODE_CONTROLLER, *resources.HELPER_CHILDREN)
    if smoke_test is not None:
        found += component(resources.SMOKE_TEST, resources.SMOKE_TEST_DEPLOYMENT)
    return tuple(found)


def verification_commands(namespace: str, logs_target: str, pools: list[str]) -> dict[str, str]:
    """Guide step 7: the exact ``kubectl`` commands for this stack's real names (outputs).

    Good looks like: nodes of the pools appear, their InternalIP lies in the
    private subnet, they carry the pool and location labels (and Kilo annotations),
    and PROVIDER-ID is ``hcloud://<server-id>``.
    """
    selector = pools_selector(pools)
    return {
        "kubectlLogs": f"kubectl -n {namespace} logs {logs_target} -f",
        "kubectlNodes": f"kubectl get nodes -l '{selector}' -o wide",
        "kubectlNodeLabels": f"kubectl get nodes -l '{selector}' --show-labels",
        "kubectlProviderIds": (
            f"kubectl get nodes -l '{selector}' -o custom-columns="
            "NAME:.metadata.name,PROVIDER-ID:.spec.providerID,"
            "INTERNAL-IP:'.status.addresses[?(@.type==\"InternalIP\")].address'"
        ),
    }


def pools_selector(pools: list[str]) -> str:
    """The label selector of the pools' nodes."""
    return f"{NODE_GROUP_LABEL} in ({','.join(pools)})"


def watch_nodes_command(pools: list[str]) -> str:
    """The command that shows autoscaled nodes appearing."""
    return f"kubectl get nodes -l '{pools_selector(pools)}' -o wide --watch"
