"""The private network the autoscaled servers join (guide step 2)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pulumi
import pulumi_hcloud as hcloud

from core.config import ConfigError, Problem, StackConfig
from core.resources import PROJECT


@dataclass(frozen=True)
class PrivateNetworkArgs:
    """What the network component needs from the stack config."""

    name: str
    ip_range: str
    subnet: str
    network_zone: str
    existing: str | None = None
    vswitch_id: int | None = None
    vswitch_subnet: str | None = None
    labels: dict[str, str] = field(default_factory=lambda: {"managed-by": PROJECT})

    @classmethod
    def from_stack(cls, stack: StackConfig) -> PrivateNetworkArgs:
        network = stack.network
        return cls(
            name=network.name,
            ip_range=network.ip_range,
            subnet=network.subnet,
            network_zone=stack.network_zone,
            existing=network.existing,
            vswitch_id=network.vswitch_id,
            vswitch_subnet=network.vswitch_subnet,
        )


class PrivateNetwork(pulumi.ComponentResource):
    """An ``hcloud.Network`` with a cloud subnet, or a lookup of an existing network.

    Outputs feed the Talos config (``validSubnets``) and the autoscaler
    (``HCLOUD_NETWORK``), so both follow the network rather than a copied string.
    """

    network_id: pulumi.Output[str]
    network_name: pulumi.Output[str]
    ip_range: pulumi.Output[str]
    subnet_ip_range: pulumi.Output[str]
    network_zone: pulumi.Output[str]

    def __init__(
        self, name: str, args: PrivateNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hcloud-talos-autoscaler:index:PrivateNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        if args.existing is None:
            network = hcloud.Network(
                f"{name}-network",
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
                f"{name}-subnet",
                network_id=network_id.apply(int),
                type="cloud",
                network_zone=args.network_zone,
                ip_range=args.subnet,
                opts=child,
            )
            self.subnet_ip_range = subnet.ip_range
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
            self.subnet_ip_range = found.ip_range.apply(
                lambda ip_range: _existing_subnet(args.existing or "", ip_range, args.subnet)
            )

        if args.vswitch_id is not None:
            hcloud.NetworkSubnet(
                f"{name}-vswitch-subnet",
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


def _existing_subnet(existing: str, ip_range: str, subnet: str) -> str:
    """The configured subnet, checked against the range of the reused network."""
    inner, network = ipaddress.ip_network(subnet), ipaddress.ip_network(ip_range)
    if inner.version != network.version or not inner.subnet_of(network):  # type: ignore[arg-type]
        raise pulumi.RunError(
            str(
                ConfigError(
                    [
                        Problem(
                            "network.subnet",
                            f"{subnet} is not inside the range {ip_range} of the existing "
                            f"network {existing!r}; set network.subnet to that network's cloud "
                            "subnet",
                        )
                    ]
                )
            )
        )
    return subnet
