"""hcloud-talos-autoscaler: autoscaled Hetzner Cloud nodes for a Talos cluster.

Reads and validates the stack config (nothing is created from an invalid
stack), builds the components and exports what other stacks consume.
"""

from pathlib import Path

import pulumi

from components.config import ConfigError
from components.engine_config import read_stack_config
from components.network import PrivateNetwork, PrivateNetworkArgs

try:
    stack = read_stack_config(Path(__file__).parent)
except ConfigError as error:
    raise pulumi.RunError(str(error)) from None

network = PrivateNetwork("network", PrivateNetworkArgs.from_stack(stack))

pulumi.export("networkId", network.network_id)
pulumi.export("networkName", network.network_name)
pulumi.export("networkZone", network.network_zone)
pulumi.export("subnetIpRange", network.subnet_ip_range)
