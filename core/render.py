"""Offline render: what a stack will create, from ``Pulumi.<stack>.yaml`` alone.

No Pulumi CLI, no credentials, no network: the stack file is validated with the
same model the program uses, and the plan is described from the same pure
builders the components call. Encrypted values are shown as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.network import PrivateNetworkArgs
from components.provider_id import provider_id_setter_manifests
from components.secrets import CREDENTIALS_KEY, CREDENTIALS_SECRET, TALOS_CONFIG_SECRET
from components.smoke_test import smoke_test_deployment, watch_nodes_command
from core import autoscaler_values as values
from core.autoscaler_values import DEPLOYMENT_NAME
from core.autoscaler_versions import IMAGE_REPOSITORY
from core.config import (
    Encrypted,
    Secret,
    StackConfig,
    load_stack_file,
    parse_stack_config,
    plaintext_secret_warnings,
    server_type_warnings,
    stack_file,
)
from core.hetzner import USER_DATA_LIMIT_BYTES
from core.image_builder.pipeline import BuildRequest, snapshot_labels
from core.image_builder.schematic import schematic_id_for
from core.provider_id_setter import NODE_GROUP_LABEL
from core.stack_warnings import stack_warnings
from core.talos_config import WorkerConfig, load_documents, redact, render_worker_configs
from core.verify import verification_commands


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
    sections, token = load_stack_file(project_dir, stack_name)
    stack = parse_stack_config(sections, token, project_dir, require_token=False)
    rendered = Rendered()
    rendered.line(f"stack {stack_name}: configuration is valid (nothing was contacted)")
    _token_notes(stack, rendered)
    rendered.warnings.extend(
        plaintext_secret_warnings(
            stack, lambda _key: False, stack_file(project_dir, stack_name).name
        )
    )
    rendered.warnings.extend(server_type_warnings(stack, None))
    _network(stack, rendered)
    schematic_id = stack.talos.schematic_id or schematic_id_for(stack.talos.extensions)
    _images(stack, schematic_id, rendered)
    configs = _worker_configs(stack, rendered, show_secrets=show_secrets)
    _secrets_and_autoscaler(stack, configs, rendered)
    return rendered


def secret_label(value: Secret | Encrypted | None, *, show_secrets: bool) -> str:
    """How a secret is shown: never its value unless asked for."""
    if value is None:
        return "not set"
    if isinstance(value, Encrypted):
        return "[encrypted in the stack file]"
    return value.reveal() if show_secrets else "[secret]"


def _token_notes(stack: StackConfig, rendered: Rendered) -> None:
    if stack.hcloud_token is None:
        rendered.warnings.append(
            "hcloud:token is not set in the stack file: set it with "
            "`pulumi config set --secret hcloud:token` (or export HCLOUD_TOKEN) before "
            "`pulumi up`"
        )


def _network(stack: StackConfig, rendered: Rendered) -> None:
    args = PrivateNetworkArgs.from_stack(stack)
    rendered.line()
    rendered.line('PrivateNetwork "network"')
    if args.existing is None:
        rendered.line(
            f"  hcloud.Network        network-network         name={args.name} "
            f"ipRange={args.ip_range}"
        )
        rendered.line(
            f"  hcloud.NetworkSubnet  network-subnet          type=cloud "
            f"zone={args.network_zone} ipRange={args.subnet}"
        )
    else:
        rendered.line(
            f"  (lookup)              existing network {args.existing!r}, subnet {args.subnet} "
            f"in zone {args.network_zone}"
        )
    if args.vswitch_id is not None:
        rendered.line(
            f"  hcloud.NetworkSubnet  network-vswitch-subnet  type=vswitch "
            f"vswitchId={args.vswitch_id} ipRange={args.vswitch_subnet}"
        )


def _images(stack: StackConfig, schematic_id: str, rendered: Rendered) -> None:
    rendered.line()
    source = (
        "talos.schematicId"
        if stack.talos.schematic_id
        else f"registered from extensions {', '.join(stack.talos.extensions)}"
    )
    rendered.line('TalosImage "talos-image"')
    rendered.line(f"  schematic {schematic_id} ({source})")
    for arch in stack.architectures:
        request = BuildRequest(
            talos_version=stack.talos.version,
            schematic_id=schematic_id,
            architecture=arch,
            location=stack.image.location,
            server_type=stack.image.builder_server_types[arch],
            factory_url=stack.talos.image_factory_url,
            extra_labels=dict(stack.image.labels),
        )
        labels = ",".join(f"{k}={v}" for k, v in snapshot_labels(request).items())
        rendered.line(
            f"  snapshot {arch:<6} talos-image-{arch}: built on a temporary {request.server_type} "
            f"in {request.location} from {request.image_url}"
        )
        rendered.line(f"                  labels {labels}")


def _worker_configs(
    stack: StackConfig, rendered: Rendered, *, show_secrets: bool
) -> dict[str, WorkerConfig] | None:
    rendered.line()
    rendered.line("Talos worker configs (user data of new servers)")
    if stack.base_worker_config is None:
        rendered.line("  talos.workerConfig is encrypted in the stack file: not rendered offline")
        return None
    configs = render_worker_configs(stack, stack.network.subnet)
    for pool, config in configs.items():
        name = f"worker-{pool}.yaml"
        rendered.files[name] = config.yaml if show_secrets else redact(config.yaml)
        user_data = config.user_data
        rendered.line(
            f"  {name:<28} {len(config.yaml.encode()):>6} bytes YAML, user data "
            f"{user_data.size:>6} of {USER_DATA_LIMIT_BYTES} bytes ({user_data.encoding})"
        )
        machine = load_documents(config.yaml)[0]["machine"]
        for field_name in ("nodeLabels", "nodeAnnotations"):
            pairs = ", ".join(f"{k}={v}" for k, v in (machine.get(field_name) or {}).items())
            rendered.line(f"    {field_name:<16} {pairs or '-'}")
    return configs


def _provider_id_setter(namespace: str, rendered: Rendered) -> None:
    manifests = provider_id_setter_manifests(namespace, CREDENTIALS_SECRET, CREDENTIALS_KEY)
    rendered.line(
        f'ProviderIdSetter "provider-id-setter" (namespace {namespace}): provider-id-setter.yaml'
    )
    for manifest in manifests:
        rendered.line(f"  {manifest['kind']:<19} {manifest['metadata']['name']}")
    container = manifests[-1]["spec"]["template"]["spec"]["containers"][0]
    rendered.line(f"  runs {' '.join(container['command'])} in {container['image']}")
    rendered.line(f"  Hetzner token from Secret {CREDENTIALS_SECRET} key {CREDENTIALS_KEY}")
    rendered.files["provider-id-setter.yaml"] = manifests_yaml(manifests)


def _autoscaled_servers(stack: StackConfig, rendered: Rendered) -> None:
    network = stack.network.existing or stack.network.name
    rendered.line('AutoscaledServers "autoscaled-servers" (deleted before the network)')
    for group in stack.autoscaler.node_groups:
        what = (
            "keeps them (autoscaler.keepServersOnDestroy)"
            if stack.autoscaler.keep_servers_on_destroy
            else "deletes them in network " + network + ", then their Nodes"
        )
        rendered.line(
            f"  PoolServers autoscaled-servers-{group.name}: servers labelled "
            f"{NODE_GROUP_LABEL}={group.name}; on destroy or the pool's removal {what}"
        )
    rendered.line()


class _ManifestDumper(yaml.SafeDumper):
    """Multi-line strings (the setter's script) as literal blocks, readable in review;
    shared sub-objects written out in full, never as YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def manifests_yaml(manifests: list[dict[str, Any]]) -> str:
    """Kubernetes objects as one multi-document YAML file for ``kubectl apply -f``."""
    return yaml.dump_all(manifests, Dumper=_ManifestDumper, sort_keys=False, width=1000)


def _secrets_and_autoscaler(
    stack: StackConfig, configs: dict[str, WorkerConfig] | None, rendered: Rendered
) -> None:
    settings = stack.autoscaler
    legacy = settings.config_format == "legacy"
    key = values.LEGACY_CLOUD_INIT_KEY if legacy else values.CLUSTER_CONFIG_KEY
    rendered.line()
    rendered.line(f'AutoscalerSecrets "autoscaler-secrets" (namespace {settings.namespace})')
    rendered.line(f"  Secret {CREDENTIALS_SECRET:<20} key {'token':<14} = the token [secret]")
    rendered.line(f"  Secret {TALOS_CONFIG_SECRET:<20} key {key:<14} = Talos config [secret]")

    image_ids = {arch: f"<{arch} snapshot id>" for arch in stack.architectures}
    image = stack.autoscaler_image
    as_file = False
    if configs is not None and not legacy:
        cluster_config = values.cluster_config(
            settings.node_groups,
            stack.talos.node_labels,
            image_ids,
            {pool: config.user_data.text for pool, config in configs.items()},
            values.pinned_subnet(stack.network.existing, stack.network.subnet, image),
        )
        as_file = values.cluster_config_secret(cluster_config).as_file
        for pool, node_config in cluster_config["nodeConfigs"].items():
            node_config["cloudInit"] = f"<user data of worker-{pool}.yaml>"
        note = " (mounted as a file: too large for an env var)" if as_file else ""
        rendered.line(f"  cluster config, decoded: cluster-config.json{note}")
        rendered.document("cluster-config.json", json.dumps(cluster_config, indent=2) + "\n")

    chart_values = values.autoscaler_values(
        values.ValuesInputs(
            settings=settings,
            image=image,
            network_name=stack.network.existing or stack.network.name,
            image_ids=image_ids,
            credentials_secret=CREDENTIALS_SECRET,
            talos_config_secret=TALOS_CONFIG_SECRET,
            config_hash="<sha256 of the Talos config and images>",
            cluster_config_as_file=as_file,
        )
    )
    rendered.line()
    rendered.line('ClusterAutoscaler "autoscaler"')
    manifest: dict[str, Any]
    if settings.deploy == "package":
        manifest = values.package_manifest(chart_values)
        rendered.line(f"  Package {values.PACKAGE_NAME} (cluster-scoped): package.yaml")
        rendered.document("package.yaml", yaml.safe_dump(manifest, sort_keys=False))
    else:
        manifest = values.helm_values(chart_values)
        version = settings.chart_version or values.DEFAULT_CHART_VERSION
        rendered.line(
            f"  Helm release {values.RELEASE_NAME}: chart {values.CHART_NAME} {version} from "
            f"{values.CHART_REPOSITORY} into {settings.namespace}: helm-values.yaml"
        )
        rendered.document("helm-values.yaml", yaml.safe_dump(manifest, sort_keys=False))
    running = f"v{image.version}" if image.version else "unknown"
    rendered.line(f"  image {IMAGE_REPOSITORY}:{image.tag or running} ({image.origin})")
    for group in settings.node_groups:
        rendered.line(
            f"  pool {group.name:<20} {group.instance_type:<7} {group.region:<5} "
            f"{group.min_size}..{group.max_size} ({group.architecture})"
        )

    rendered.line()
    if settings.provider_id == "setter":
        _provider_id_setter(settings.namespace, rendered)
        rendered.line()
    _autoscaled_servers(stack, rendered)
    rendered.warnings.extend(stack_warnings(stack, configs))
    pools = [group.name for group in settings.node_groups]
    if settings.smoke_test is not None:
        deployment = smoke_test_deployment(
            settings.namespace,
            settings.smoke_test.replicas,
            [] if legacy else pools,
            [taint for group in settings.node_groups for taint in group.taints],
        )
        rendered.files["smoke-test.yaml"] = yaml.safe_dump(deployment, sort_keys=False)
        rendered.line(f"SmokeTest: {settings.smoke_test.replicas} replicas; watch with:")
        rendered.line(f"  {watch_nodes_command(pools)}")
    rendered.line("Verify after `pulumi up`:")
    for command in verification_commands(
        settings.namespace, f"deployment/{DEPLOYMENT_NAME}", pools
    ).values():
        rendered.line(f"  {command}")
