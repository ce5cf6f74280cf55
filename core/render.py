"""Offline render: what a stack will create, from ``Pulumi.<stack>.yaml`` alone.

No Pulumi CLI, no credentials, no network: the stack file is validated with the same
model the program uses, and this module only formats the stack's plan (``plan``), the
same plan the program declares its components from. Values that exist only once
resources do (snapshot ids, the config hash) are shown as placeholders; encrypted values
as encrypted.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core import resources
from core.autoscaler import values
from core.autoscaler.manifests import (
    manifests_yaml,
    node_controller_manifests,
    provider_id_setter_manifests,
    smoke_test_deployment,
)
from core.config.parse import read_stack_file
from core.hetzner.facts import NODE_GROUP_LABEL, USER_DATA_LIMIT_BYTES
from core.plan import StackPlan, plan_stack
from core.releases.autoscaler import IMAGE_REPOSITORY
from core.talos.documents import redact
from core.talos.worker_config import WorkerConfig

#: What render shows for the values that exist only once the snapshots do.
CONFIG_HASH_PLACEHOLDER = "<sha256 of the Talos config and images>"


def image_id_placeholder(architecture: str) -> str:
    return f"<{architecture} snapshot id>"


@dataclass
class Rendered:
    """The text report and the files written next to it."""

    report: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def line(self, text: str = "") -> None:
        self.report.append(text)

    def document(self, name: str, text: str) -> None:
        """Write ``text`` to the file ``name`` and print it, indented, in the report."""
        self.files[name] = text
        self.report.extend(f"    {line}" for line in text.splitlines())


def render_stack(project_dir: Path, stack_name: str, *, show_secrets: bool = False) -> Rendered:
    """Validate the stack file and describe everything the stack will create.

    Raises ConfigError (every problem at once) on an invalid stack.
    """
    plan = plan_stack(*read_stack_file(project_dir, stack_name))
    rendered = Rendered(warnings=list(plan.warnings))
    rendered.line(f"stack {stack_name}: configuration is valid (nothing was contacted)")
    _network(plan, rendered)
    _images(plan, rendered)
    configs = _worker_configs(plan, rendered, show_secrets=show_secrets)
    _placement_groups(plan, rendered)
    _secrets_and_autoscaler(plan, configs, rendered)
    if plan.provider_id_setter:
        _provider_id_setter(plan, rendered)
        rendered.line()
    _node_controller(plan, rendered)
    _autoscaled_servers(plan, rendered)
    _smoke_test_and_verification(plan, rendered)
    return rendered


def _network(plan: StackPlan, rendered: Rendered) -> None:
    network = plan.network
    component = resources.NETWORK.name
    rendered.line()
    rendered.line(f'{resources.NETWORK.kind} "{component}"')
    if network.existing is None:
        rendered.line(
            f"  hcloud.Network        {resources.HCLOUD_NETWORK.name(component):<23} "
            f"name={network.name} ipRange={network.ip_range}"
        )
        rendered.line(
            f"  hcloud.NetworkSubnet  {resources.CLOUD_SUBNET.name(component):<23} type=cloud "
            f"zone={network.network_zone} ipRange={network.subnet}"
        )
        for cidr in network.pool_subnets:
            rendered.line(
                f"  hcloud.NetworkSubnet  {resources.pool_subnet(cidr).name(component):<23} "
                f"type=cloud zone={network.network_zone} ipRange={cidr} (pools' own subnet)"
            )
    else:
        rendered.line(
            f"  (lookup)              existing network {network.existing!r}, subnet "
            f"{network.subnet} in zone {network.network_zone}"
        )
        for cidr in network.pool_subnets:
            rendered.line(f"  (must exist)          its cloud subnet {cidr} (pools' own subnet)")
    if network.vswitch_id is not None:
        rendered.line(
            f"  hcloud.NetworkSubnet  {resources.VSWITCH_SUBNET.name(component):<23} "
            f"type=vswitch vswitchId={network.vswitch_id} ipRange={network.vswitch_subnet}"
        )


def _images(plan: StackPlan, rendered: Rendered) -> None:
    component = resources.TALOS_IMAGE.name
    rendered.line()
    rendered.line(f'{resources.TALOS_IMAGE.kind} "{component}"')
    rendered.line(f"  schematic {plan.image.schematic_id} ({plan.image.schematic_source})")
    for snapshot in plan.image.snapshots:
        arch = snapshot.architecture
        labels = ",".join(f"{k}={v}" for k, v in snapshot.labels.items())
        rendered.line(
            f"  snapshot {arch:<6} {resources.snapshot(arch).name(component)}: built on a "
            f"temporary {snapshot.server_type} in {snapshot.location} from {snapshot.image_url}"
        )
        if snapshot.fallback_locations or snapshot.fallback_server_types:
            types = ", ".join((snapshot.server_type, *snapshot.fallback_server_types))
            locations = ", ".join((snapshot.location, *snapshot.fallback_locations))
            rendered.line(f"                  when Hetzner has no capacity: {types} in {locations}")
    for existing in plan.image.existing:
        rendered.line(
            f"  snapshot {existing.architecture:<6} image.existing {existing.reference} (not "
            "built, never deleted; looked up at preview: must be available and "
            f"{existing.architecture})"
        )
        rendered.line(f"                  labels {labels}")


def _worker_configs(
    plan: StackPlan, rendered: Rendered, *, show_secrets: bool
) -> dict[str, WorkerConfig] | None:
    rendered.line()
    rendered.line("Talos worker configs (user data of new servers)")
    if plan.stack.base_documents is None:
        rendered.line("  talos.workerConfig is encrypted in the stack file: not rendered offline")
        return None
    configs = plan.worker_configs(plan.network.subnet)
    for pool in plan.pools:
        config = configs[pool.name]
        name = f"worker-{pool.name}.yaml"
        rendered.files[name] = config.yaml if show_secrets else redact(config.yaml)
        user_data = config.user_data
        rendered.line(
            f"  {name:<28} {len(config.yaml.encode()):>6} bytes YAML, user data "
            f"{user_data.size:>6} of {USER_DATA_LIMIT_BYTES} bytes ({user_data.encoding})"
        )
        for field_name in ("nodeLabels", "nodeAnnotations"):
            pairs = ", ".join(f"{k}={v}" for k, v in (config.machine.get(field_name) or {}).items())
            rendered.line(f"    {field_name:<16} {pairs or '-'}")
        rendered.line(f"    {'generation':<16} {config.generation} (boots {pool.boot_image})")
    return configs


def placement_group_placeholder(name: str) -> str:
    return f"<id of placement group {name}>"


def _placement_groups(plan: StackPlan, rendered: Rendered) -> None:
    if not plan.servers.placement_groups:
        return
    component = resources.PLACEMENT_GROUPS.name
    rendered.line()
    rendered.line(f'{resources.PLACEMENT_GROUPS.kind} "{component}" (deleted after the servers)')
    for group in plan.servers.placement_groups:
        labels = ",".join(f"{key}={value}" for key, value in group.labels.items())
        rendered.line(
            f"  hcloud.PlacementGroup {group.resource.name(component)}: "
            f"{group.name} type={group.type} labels={labels} (pool {group.pool})"
        )


def _secrets_and_autoscaler(
    plan: StackPlan, configs: dict[str, WorkerConfig] | None, rendered: Rendered
) -> None:
    secrets, autoscaler = plan.secrets, plan.autoscaler
    rendered.line()
    rendered.line(
        f'{resources.AUTOSCALER_SECRETS.kind} "{resources.AUTOSCALER_SECRETS.name}" '
        f"(namespace {secrets.namespace})"
    )
    rendered.line(
        f"  Secret {secrets.credentials_secret:<20} key {secrets.credentials_key:<14} "
        "= the token [secret]"
    )
    rendered.line(
        f"  Secret {secrets.talos_config_secret:<20} key {secrets.talos_config_key:<14} "
        "= Talos config [secret]"
    )
    if secrets.setter_credentials_key != secrets.credentials_key:
        rendered.line(
            f"  Secret {secrets.credentials_secret:<20} key {secrets.setter_credentials_key:<14} "
            "= the providerID setter's read-only token [secret]"
        )

    image_ids = {
        snapshot.architecture: image_id_placeholder(snapshot.architecture)
        for snapshot in plan.image.snapshots
    }
    image_ids |= {
        existing.architecture: str(existing.reference)
        if isinstance(existing.reference, int)
        else image_id_placeholder(existing.architecture)
        for existing in plan.image.existing
    }
    as_file = False
    if configs is not None:
        placement_groups = {
            group.pool: placement_group_placeholder(group.name)
            for group in plan.servers.placement_groups
        }
        talos_config = plan.talos_config(configs, image_ids, plan.network.subnet, placement_groups)
        as_file = talos_config.as_file
        if talos_config.cluster_config is not None:
            shown = copy.deepcopy(talos_config.cluster_config)
            for pool, node_config in shown["nodeConfigs"].items():
                node_config["cloudInit"] = f"<user data of worker-{pool}.yaml>"
            note = " (mounted as a file: too large for an env var)" if as_file else ""
            rendered.line(f"  cluster config, decoded: cluster-config.json{note}")
            rendered.document("cluster-config.json", json.dumps(shown, indent=2) + "\n")

    chart_values = plan.chart_values(
        network_name=plan.network.shown_name,
        image_ids=image_ids,
        credentials_secret=secrets.credentials_secret,
        talos_config_secret=secrets.talos_config_secret,
        talos_config_as_file=as_file,
        config_hash=CONFIG_HASH_PLACEHOLDER,
    )
    rendered.line()
    rendered.line(f'{resources.CLUSTER_AUTOSCALER.kind} "{resources.CLUSTER_AUTOSCALER.name}"')
    if autoscaler.deploy == "package":
        rendered.line(f"  Package {values.PACKAGE_NAME} (cluster-scoped): package.yaml")
        manifest = values.package_manifest(chart_values)
        rendered.document("package.yaml", yaml.safe_dump(manifest, sort_keys=False))
    else:
        rendered.line(
            f"  Helm release {values.RELEASE_NAME}: chart {values.CHART_NAME} "
            f"{autoscaler.chart_version} from {autoscaler.chart_repository} into "
            f"{autoscaler.namespace}: helm-values.yaml"
        )
        helm_values = values.helm_values(chart_values)
        rendered.document("helm-values.yaml", yaml.safe_dump(helm_values, sort_keys=False))
    image = autoscaler.image
    running = f"v{image.version}" if image.version else "unknown"
    rendered.line(f"  image {IMAGE_REPOSITORY}:{image.tag or running} ({image.origin})")
    settings = plan.stack.autoscaler
    if settings.replicas > 1:
        rendered.line(
            f"  {settings.replicas} replicas (leader election), PodDisruptionBudget "
            "maxUnavailable 1, spread over nodes (kubernetes.io/hostname)"
        )
    for pool in plan.pools:
        priority = f" priority {pool.priority}" if settings.expander == "priority" else ""
        rendered.line(
            f"  pool {pool.name:<20} {pool.instance_type:<7} {pool.region:<5} "
            f"{pool.min_size}..{pool.max_size} ({pool.architecture}){priority}"
        )
    if settings.expander == "priority":
        rendered.line(
            "  expander priority: the chart's ConfigMap cluster-autoscaler-priority-expander "
            "holds the pools' priorities (expanderPriorities)"
        )
    rendered.line()


def _provider_id_setter(plan: StackPlan, rendered: Rendered) -> None:
    secrets = plan.secrets
    manifests = provider_id_setter_manifests(
        secrets.namespace, secrets.credentials_secret, secrets.setter_credentials_key
    )
    rendered.line(
        f'{resources.PROVIDER_ID_SETTER.kind} "{resources.PROVIDER_ID_SETTER.name}" '
        f"(namespace {secrets.namespace}): provider-id-setter.yaml"
    )
    for manifest in manifests:
        rendered.line(f"  {manifest['kind']:<19} {manifest['metadata']['name']}")
    container = manifests[-1]["spec"]["template"]["spec"]["containers"][0]
    rendered.line(f"  runs {' '.join(container['command'])} in {container['image']}")
    rendered.line(
        f"  Hetzner token from Secret {secrets.credentials_secret} key "
        f"{secrets.setter_credentials_key}"
    )
    rendered.files["provider-id-setter.yaml"] = manifests_yaml(manifests)


def _node_controller(plan: StackPlan, rendered: Rendered) -> None:
    secrets, rollout = plan.secrets, plan.rollout
    generations = {
        pool.name: "<generation>" if pool.generation is None else pool.generation
        for pool in plan.pools
    }
    network = f"<id of network {plan.network.shown_name}>"
    manifests = node_controller_manifests(
        secrets.namespace,
        secrets.credentials_secret,
        secrets.credentials_key,
        rollout.controller_config(network, generations),
    )
    rendered.line(
        f'{resources.NODE_CONTROLLER.kind} "{resources.NODE_CONTROLLER.name}" '
        f"(namespace {secrets.namespace}): node-controller.yaml"
    )
    for manifest in manifests:
        rendered.line(f"  {manifest['kind']:<19} {manifest['metadata']['name']}")
    what = (
        f"replaces nodes of an outdated generation, {rollout.max_unavailable} at a time, "
        f"each drain given {rollout.drain_timeout_minutes} min"
        if rollout.strategy == "replace"
        else "strategy none: replaces no node (paused)"
    )
    rendered.line(f"  rollout: {what}")
    rendered.line(
        f"  Hetzner token from Secret {secrets.credentials_secret} key {secrets.credentials_key}"
        " (deletes servers)"
    )
    rendered.files["node-controller.yaml"] = manifests_yaml(manifests)
    rendered.line()


def _autoscaled_servers(plan: StackPlan, rendered: Rendered) -> None:
    component = resources.AUTOSCALED_SERVERS.name
    rendered.line(f'{resources.AUTOSCALED_SERVERS.kind} "{component}" (deleted before the network)')
    what = (
        "keeps them (autoscaler.keepServersOnDestroy)"
        if plan.servers.keep_servers
        else f"deletes them in network {plan.network.shown_name}, then their Nodes"
    )
    for pool in plan.pools:
        rendered.line(
            f"  PoolServers {pool.servers_record.name(component)}: servers labelled "
            f"{NODE_GROUP_LABEL}={pool.name}; on destroy or the pool's removal {what}"
        )
    rendered.line()


def _smoke_test_and_verification(plan: StackPlan, rendered: Rendered) -> None:
    smoke_test = plan.smoke_test
    if smoke_test is not None:
        deployment = smoke_test_deployment(
            plan.secrets.namespace, smoke_test.replicas, smoke_test.pools, smoke_test.taints
        )
        rendered.files["smoke-test.yaml"] = yaml.safe_dump(deployment, sort_keys=False)
        rendered.line(f"SmokeTest: {smoke_test.replicas} replicas; watch with:")
        rendered.line(f"  {smoke_test.watch_command}")
    rendered.line("Pulumi resources (type and name, as `pulumi preview` lists them):")
    for resource in plan.resources:
        indent = "    " if resource.parent else "  "
        rendered.line(f"{indent}{resource.type}  {resource.name}")
    rendered.line("Verify after `pulumi up`:")
    for command in plan.verification.values():
        rendered.line(f"  {command}")
