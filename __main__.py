"""hcloud-talos-autoscaler: autoscaled Hetzner Cloud nodes for a Talos cluster.

Reads and validates the stack config (nothing is created from an invalid
stack), builds the components, wires them by outputs and exports what other
stacks consume. Bad input stops the program with a ``pulumi.RunError``: the
engine prints its message (the same as ``render`` prints) and no traceback.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pulumi

from components.autoscaled_servers import AutoscaledServers, AutoscaledServersArgs
from components.autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from components.engine_config import read_hcloud_endpoint, read_stack_config
from components.network import PrivateNetwork, PrivateNetworkArgs
from components.provider_id import ProviderIdSetter, ProviderIdSetterArgs
from components.secrets import AutoscalerSecrets, AutoscalerSecretsArgs
from components.smoke_test import SmokeTest, SmokeTestArgs, watch_nodes_command
from components.talos_image import TalosImage, TalosImageArgs
from core import autoscaler_values as values
from core.autoscaler_values import DEPLOYMENT_NAME
from core.config import reveal
from core.errors import InputError
from core.image_builder.schematic import schematic_id_for
from core.stack_warnings import stack_warnings
from core.talos_config import WorkerConfig, render_worker_configs, worker_configs_sha256
from core.verify import verification_commands

Result = TypeVar("Result")


def stops_cleanly(function: Callable[..., Result]) -> Callable[..., Result]:
    """Bad input found while outputs resolve stops the program like bad input found first."""

    def checked(*args: Any) -> Result:
        try:
            return function(*args)
        except InputError as error:
            raise pulumi.RunError(str(error)) from None

    return checked


try:
    stack, warnings = read_stack_config(Path(__file__).parent)
    schematic_id = stack.talos.schematic_id or schematic_id_for(stack.talos.extensions)
    # Validate the worker configs and the autoscaler image before any resource is
    # registered; the wired configs below are built again from the network's output.
    checked_configs = render_worker_configs(stack, stack.network.subnet)
    autoscaler_image = stack.autoscaler_image
except InputError as error:
    raise pulumi.RunError(str(error)) from None
for warning in warnings:
    pulumi.log.warn(warning)

for warning in stack_warnings(stack, checked_configs):
    pulumi.log.warn(warning)

hcloud_token = pulumi.Output.secret(reveal(stack.hcloud_token))
autoscaler_token = pulumi.Output.secret(reveal(stack.autoscaler_token))
settings = stack.autoscaler
legacy = settings.config_format == "legacy"

network = PrivateNetwork("network", PrivateNetworkArgs.from_stack(stack))
images = TalosImage(
    "talos-image",
    TalosImageArgs.from_stack(stack, schematic_id, hcloud_token, read_hcloud_endpoint()),
)

worker_configs: pulumi.Output[dict[str, WorkerConfig]] = pulumi.Output.secret(
    network.subnet_ip_range.apply(
        stops_cleanly(lambda subnet: render_worker_configs(stack, subnet))
    )
)


secret_content = pulumi.Output.all(worker_configs, images.image_ids, network.subnet_ip_range).apply(
    stops_cleanly(
        lambda resolved: values.talos_config_secret_value(
            settings,
            stack.talos.node_labels,
            resolved[1],
            {pool: config.user_data.text for pool, config in resolved[0].items()},
            values.pinned_subnet(stack.network.existing, resolved[2], autoscaler_image),
        )
    )
)
secrets = AutoscalerSecrets(
    "autoscaler-secrets",
    AutoscalerSecretsArgs(
        namespace=settings.namespace,
        hcloud_token=autoscaler_token,
        talos_config_key=values.LEGACY_CLOUD_INIT_KEY if legacy else values.CLUSTER_CONFIG_KEY,
        talos_config_value=pulumi.Output.secret(secret_content.apply(lambda content: content[0])),
        retain_namespace=settings.deploy == "package",
    ),
)

# A fingerprint of everything the autoscaler hands to new servers: changing the
# Talos config or an image rolls the autoscaler pods.
config_hash = pulumi.Output.unsecret(
    pulumi.Output.all(secret_content, images.image_ids).apply(
        lambda resolved: values.config_fingerprint(resolved[0][0], resolved[1])
    )
)
chart_values = pulumi.Output.all(
    network=network.network_name,
    image_ids=images.image_ids,
    credentials=secrets.credentials_secret_name,
    talos_config=secrets.talos_config_secret_name,
    as_file=pulumi.Output.unsecret(secret_content.apply(lambda content: content[1])),
    config_hash=config_hash,
).apply(
    stops_cleanly(
        lambda resolved: values.autoscaler_values(
            values.ValuesInputs(
                settings=settings,
                image=autoscaler_image,
                network_name=resolved["network"],
                image_ids=resolved["image_ids"],
                credentials_secret=resolved["credentials"],
                talos_config_secret=resolved["talos_config"],
                config_hash=resolved["config_hash"],
                cluster_config_as_file=resolved["as_file"],
            )
        )
    )
)
pools = [group.name for group in settings.node_groups]
# Destroy order by dependencies: the autoscaler goes first (it depends on the servers'
# records), then each pool's servers are deleted (their records depend on the network),
# then the network and its subnets.
servers = AutoscaledServers(
    "autoscaled-servers",
    AutoscaledServersArgs(
        pools=pools,
        network_id=network.network_id,
        namespace=secrets.namespace,
        keep_servers=settings.keep_servers_on_destroy,
        hcloud_token=hcloud_token,
    ),
    pulumi.ResourceOptions(depends_on=[network]),
)
autoscaler = ClusterAutoscaler(
    "autoscaler",
    ClusterAutoscalerArgs(
        deploy=settings.deploy,
        namespace=secrets.namespace,
        values=chart_values,
        chart_version=settings.chart_version or values.DEFAULT_CHART_VERSION,
    ),
    pulumi.ResourceOptions(depends_on=[secrets, images, servers]),
)

if settings.provider_id == "setter":
    ProviderIdSetter(
        "provider-id-setter",
        ProviderIdSetterArgs(
            namespace=secrets.namespace,
            credentials_secret=secrets.credentials_secret_name,
            credentials_key=secrets.credentials_secret_key,
        ),
    )

if settings.smoke_test is not None:
    SmokeTest(
        "smoke-test",
        SmokeTestArgs(
            namespace=secrets.namespace,
            replicas=settings.smoke_test.replicas,
            pools=[] if legacy else pools,
            taints=[taint for group in settings.node_groups for taint in group.taints],
        ),
        pulumi.ResourceOptions(depends_on=[autoscaler]),
    )
    pulumi.export("smokeTestWatch", watch_nodes_command(pools))

pulumi.export("networkId", network.network_id)
pulumi.export("networkName", network.network_name)
pulumi.export("networkZone", network.network_zone)
pulumi.export("subnetIpRange", network.subnet_ip_range)
pulumi.export("imageIds", images.image_ids)
pulumi.export("autoscalerNamespace", secrets.namespace)
pulumi.export("nodeGroups", [values.autoscaling_group(group) for group in settings.node_groups])
pulumi.export(
    "credentialsSecret",
    {
        "namespace": secrets.namespace,
        "name": secrets.credentials_secret_name,
        "key": secrets.credentials_secret_key,
    },
)
pulumi.export(
    "talosConfigSecret",
    {
        "namespace": secrets.namespace,
        "name": secrets.talos_config_secret_name,
        "key": secrets.talos_config_secret_key,
    },
)
pulumi.export(
    "workerConfigSha256", pulumi.Output.unsecret(worker_configs.apply(worker_configs_sha256))
)
pulumi.export("autoscalerRelease", autoscaler.release_name)
pulumi.export("autoscalerLogsTarget", autoscaler.logs_target)
for name, command in verification_commands(
    settings.namespace, f"deployment/{DEPLOYMENT_NAME}", pools
).items():
    pulumi.export(name, command)
