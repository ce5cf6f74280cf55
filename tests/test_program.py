"""The whole program (``__main__.py``) under Pulumi mocks, with the dev stack's config."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest
import yaml
from conftest import REPO, MockRuntime

MAIN = REPO / "__main__.py"
NETWORK = "hcloud:index/network:Network"
SUBNET = "hcloud:index/networkSubnet:NetworkSubnet"
COMPONENT = "hcloud-talos-autoscaler:index:PrivateNetwork"


def dev_config() -> dict[str, Any]:
    """The shipped dev stack's config, plus a token as `pulumi config set --secret` would."""
    flat = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
    return {**flat, "hcloud:token": "test-token"}


def test_dev_stack_registers_network_and_subnet_under_the_component(
    pulumi_runtime: MockRuntime,
) -> None:
    exports = pulumi_runtime.run(MAIN, dev_config())

    component = pulumi_runtime.one(COMPONENT)
    network = pulumi_runtime.one(NETWORK)
    subnet = pulumi_runtime.one(SUBNET)
    assert pulumi_runtime.parent_of(network) is component
    assert pulumi_runtime.parent_of(subnet) is component
    assert network.name == "network-network"
    assert network.inputs["name"] == "cozystack-vswitch"
    assert network.inputs["ipRange"] == "10.100.0.0/16"
    assert subnet.inputs == {
        "networkId": int(network.id),
        "type": "cloud",
        "networkZone": "eu-central",
        "ipRange": "10.100.0.0/24",
    }
    assert {
        name: exports[name].value for name in exports if name.startswith(("network", "subnet"))
    } == {
        "networkId": network.id,
        "networkName": "cozystack-vswitch",
        "networkZone": "eu-central",
        "subnetIpRange": "10.100.0.0/24",
    }


def test_existing_network_is_looked_up_not_created(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:network"] = {"existing": "shared-net"}
    exports = pulumi_runtime.run(MAIN, config)

    assert pulumi_runtime.by_type(NETWORK) == []
    assert pulumi_runtime.by_type(SUBNET) == []
    assert pulumi_runtime.mocks.calls == [
        ("hcloud:index/getNetwork:getNetwork", {"name": "shared-net"})
    ]
    assert exports["networkId"].value == "4711"
    assert exports["networkName"].value == "shared-net"
    assert exports["subnetIpRange"].value == "10.100.0.0/24"


def test_existing_network_by_id(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:network"] = {"existing": "4711"}
    pulumi_runtime.run(MAIN, config)
    assert pulumi_runtime.mocks.calls == [("hcloud:index/getNetwork:getNetwork", {"id": 4711})]


def test_vswitch_subnet_is_attached_when_configured(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:network"] = {
        "vswitchId": 9876,
        "vswitchSubnet": "10.100.1.0/24",
    }
    pulumi_runtime.run(MAIN, config)

    network = pulumi_runtime.one(NETWORK)
    assert network.inputs["exposeRoutesToVswitch"] is True
    vswitch = next(s for s in pulumi_runtime.by_type(SUBNET) if s.inputs["type"] == "vswitch")
    assert vswitch.inputs == {
        "networkId": int(network.id),
        "type": "vswitch",
        "vswitchId": 9876,
        "networkZone": "eu-central",
        "ipRange": "10.100.1.0/24",
    }


def test_invalid_stack_registers_nothing(pulumi_runtime: MockRuntime) -> None:
    config = copy.deepcopy(dev_config())
    config["hcloud-talos-autoscaler:network"] = {"subnet": "10.200.0.0/24"}
    config["hcloud-talos-autoscaler:autoscaler"]["nodeGroups"][0]["region"] = "mars"
    with pytest.raises(pulumi.RunError) as caught:
        pulumi_runtime.run(MAIN, config)
    message = str(caught.value)
    assert "hcloud-talos-autoscaler:network.subnet: 10.200.0.0/24 is not inside ipRange" in message
    assert "hcloud-talos-autoscaler:autoscaler.nodeGroups[0].region: 'mars'" in message
    assert pulumi_runtime.resources == []


def test_token_can_come_from_the_environment(
    pulumi_runtime: MockRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = dev_config()
    del config["hcloud:token"]
    with pytest.raises(pulumi.RunError, match="hcloud:token: is not set"):
        pulumi_runtime.run(MAIN, config)
    monkeypatch.setenv("HCLOUD_TOKEN", "from-env")
    exports = pulumi_runtime.run(MAIN, config)
    assert exports["networkName"].value == "cozystack-vswitch"
