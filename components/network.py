"""The private network the autoscaled servers join (guide step 2)."""

from __future__ import annotations

import pulumi
import pulumi_hcloud as hcloud

from components.engine_config import stops_cleanly
from core import resources
from core.plan import NetworkPlan


class PrivateNetwork(pulumi.ComponentResource):
    """An ``hcloud.Network`` with a cloud subnet (and one per pool subnet), or a lookup of an
    existing network (whose cloud subnets the pools' subnets must be).

    Outputs feed the Talos config (``validSubnets``) and the autoscaler
    (``HCLOUD_NETWORK``), so both follow the network rather than a copied string.
    """

    network_id: pulumi.Output[str]
    network_name: pulumi.Output[str]
    ip_range: pulumi.Output[str]
    subnet_ip_range: pulumi.Output[str]
    network_zone: pulumi.Output[str]

    def __init__(
        self, name: str, args: NetworkPlan, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(resources.NETWORK.type, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        if args.existing is None:
            network = hcloud.Network(
                resources.HCLOUD_NETWORK.name(name),
                name=args.name,
                ip_range=args.ip_range,
                labels=args.labels,
                expose_routes_to_vswitch=args.vswitch_id is not None,
                opts=child,
            )
            network_id = network.id
            self.network_name = network.name
            self.ip_range = network.ip_range
            subnet = hcloud.NetworkSubnet(
                resources.CLOUD_SUBNET.name(name),
                network_id=network_id.apply(int),
                type="cloud",
                network_zone=args.network_zone,
                ip_range=args.subnet,
                opts=child,
            )
            self.subnet_ip_range = subnet.ip_range
            for cidr in args.pool_subnets:
                hcloud.NetworkSubnet(
                    resources.pool_subnet(cidr).name(name),
                    network_id=network_id.apply(int),
                    type="cloud",
                    network_zone=args.network_zone,
                    ip_range=cidr,
                    opts=child,
                )
        else:
            # network.existing is an ID when it is all digits, else a name.
            by_id = args.existing.isdigit()
            found = hcloud.get_network_output(
                id=int(args.existing) if by_id else None,
                name=None if by_id else args.existing,
                opts=pulumi.InvokeOutputOptions(parent=self),
            )
            network_id = found.id.apply(str)
            self.network_name = found.name
            self.ip_range = found.ip_range
            self.subnet_ip_range = found.ip_range.apply(stops_cleanly(args.existing_subnet))

        if args.vswitch_id is not None:
            hcloud.NetworkSubnet(
                resources.VSWITCH_SUBNET.name(name),
                network_id=network_id.apply(int),
                type="vswitch",
                vswitch_id=args.vswitch_id,
                network_zone=args.network_zone,
                ip_range=args.vswitch_subnet,
                opts=child,
            )

        self.network_id = network_id
        self.network_zone = pulumi.Output.from_input(args.network_zone)
        self.register_outputs(
            {
                "networkId": self.network_id,
                "networkName": self.network_name,
                "ipRange": self.ip_range,
                "subnetIpRange": self.subnet_ip_range,
                "networkZone": self.network_zone,
            }
        )
