"""hcloud-talos-autoscaler: the stack's plan (``core.plan``, the one ``render`` prints), then
each component from the plan and the outputs before it (README, "Architecture"). Bad input
stops the program before anything is registered."""

import gc
from pathlib import Path

import pulumi

from components.autoscaled_servers import AutoscaledServers, AutoscaledServersArgs
from components.autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from components.autoscaler_config import AutoscalerConfig
from components.engine_config import read_stack_plan
from components.network import PrivateNetwork
from components.node_controller import NodeController, NodeControllerArgs
from components.placement_groups import PlacementGroups
from components.provider_id import ProviderIdSetter, ProviderIdSetterArgs
from components.secrets import AutoscalerSecrets, AutoscalerSecretsArgs
from components.smoke_test import SmokeTest, SmokeTestArgs
from components.talos_image import TalosImage, TalosImageArgs
from core import resources as names

# What is loaded by now lives as long as the program (pulumi_kubernetes alone is hundreds of
# thousands of objects): kept out of the collector's full passes, which the evaluation
# otherwise triggers more often the more pools it declares (make bench).
gc.freeze()
plan = read_stack_plan(Path(__file__).parent)
network = PrivateNetwork(names.NETWORK.name, plan.network)
images = TalosImage(names.TALOS_IMAGE.name, TalosImageArgs.from_plan(plan))
groups = (
    PlacementGroups(names.PLACEMENT_GROUPS.name, plan.servers.placement_groups)
    if plan.servers.placement_groups
    else None
)
config = AutoscalerConfig(
    plan,
    subnet=network.subnet_ip_range,
    image_ids=images.image_ids,
    placement_group_ids=groups.ids if groups else None,
)
secrets_args = AutoscalerSecretsArgs.from_plan(plan, config.talos_config_value)
secrets = AutoscalerSecrets(names.AUTOSCALER_SECRETS.name, secrets_args)
# Destroy follows the dependencies: the autoscaler goes first, then each pool's servers
# (their records depend on the network and their placement groups), then the placement
# groups, the network and its subnets.
servers_args = AutoscaledServersArgs.from_plan(
    plan, network.network_id, secrets.namespace, groups.groups if groups else None
)
after_network = pulumi.ResourceOptions(depends_on=[network])
servers = AutoscaledServers(names.AUTOSCALED_SERVERS.name, servers_args, after_network)
values = config.chart_values(network.network_name, secrets)
autoscaler_args = ClusterAutoscalerArgs(plan.autoscaler, secrets.namespace, values)
after_inputs = pulumi.ResourceOptions(depends_on=[secrets, images, servers])
autoscaler = ClusterAutoscaler(names.CLUSTER_AUTOSCALER.name, autoscaler_args, after_inputs)
if plan.provider_id_setter:
    ProviderIdSetter(names.PROVIDER_ID_SETTER.name, ProviderIdSetterArgs.from_secrets(secrets))
controller_args = NodeControllerArgs.wired(
    plan.rollout, secrets, network.network_id, config.generations
)
NodeController(names.NODE_CONTROLLER.name, controller_args)
if plan.smoke_test is not None:
    smoke_test_args = SmokeTestArgs.from_plan(plan.smoke_test, secrets.namespace)
    after_autoscaler = pulumi.ResourceOptions(depends_on=[autoscaler])
    SmokeTest(names.SMOKE_TEST.name, smoke_test_args, after_autoscaler)

outputs = {
    "networkId": network.network_id,
    "networkName": network.network_name,
    "networkZone": network.network_zone,
    "subnetIpRange": network.subnet_ip_range,
    "imageIds": images.image_ids,
    "autoscalerNamespace": secrets.namespace,
    "credentialsSecret": secrets.credentials_reference,
    "talosConfigSecret": secrets.talos_config_reference,
    "workerConfigSha256": config.worker_configs_sha256,
    "poolGenerations": config.generations,
    "autoscalerRelease": autoscaler.release_name,
    "autoscalerLogsTarget": autoscaler.logs_target,
    **plan.outputs,  # nodeGroups, kubectl* commands, smokeTestWatch
}
for name, value in outputs.items():
    pulumi.export(name, value)
