"""The Hetzner Cloud API emulator's networks, driven by the official ``hcloud`` library.

The end-to-end tests create the program's network and subnet in the emulator (through the
hcloud provider stand-in), so its networks follow the public API: unique names, label
selectors and pagination, subnets inside the network and disjoint, a subnet with servers
attached refused, a deleted network detaching its servers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from hcloud import APIException, Client
from hcloud.networks import Network, NetworkSubnet

from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator


@pytest.fixture
def client(hetzner_api: HetznerEmulator) -> Client:
    return Client(TEST_TOKEN, api_endpoint=hetzner_api.endpoint, poll_interval=0.01)


def cloud_subnet(ip_range: str) -> NetworkSubnet:
    return NetworkSubnet(type="cloud", ip_range=ip_range, network_zone="eu-central")


def ident(network: Network) -> int:
    assert network.id is not None
    return network.id


def subnets(client: Client, network_id: int) -> list[NetworkSubnet]:
    return list(client.networks.get_by_id(network_id).subnets or [])


def test_a_network_is_created_found_by_name_and_label_and_updated(client: Client) -> None:
    created = client.networks.create(
        name="cozystack-vswitch",
        ip_range="10.100.0.0/16",
        subnets=[cloud_subnet("10.100.0.0/24")],
        labels={"managed-by": "hcloud-talos-autoscaler"},
    )
    for index in range(3):  # more than a page (2) of other networks
        client.networks.create(name=f"other-{index}", ip_range=f"10.{index}.0.0/16")

    found = client.networks.get_by_name("cozystack-vswitch")
    assert found is not None and found.id == created.id
    (subnet,) = subnets(client, ident(found))
    assert (subnet.type, subnet.ip_range, subnet.network_zone) == (
        "cloud",
        "10.100.0.0/24",
        "eu-central",
    )
    assert subnet.gateway == "10.100.0.1"
    labelled = client.networks.get_all(label_selector="managed-by=hcloud-talos-autoscaler")
    assert [network.id for network in labelled] == [created.id]
    assert len(client.networks.get_all()) == 4

    client.networks.update(Network(id=ident(created)), name="renamed", labels={"team": "a"})
    renamed = client.networks.get_by_id(ident(created))
    assert (renamed.name, renamed.labels) == ("renamed", {"team": "a"})


def test_names_are_unique_and_ranges_checked(client: Client) -> None:
    client.networks.create(name="net", ip_range="10.100.0.0/16")
    with pytest.raises(APIException) as duplicate:
        client.networks.create(name="net", ip_range="10.101.0.0/16")
    assert duplicate.value.code == "uniqueness_error"
    with pytest.raises(APIException) as bad_range:
        client.networks.create(name="bad", ip_range="not-a-range")
    assert bad_range.value.code == "invalid_input"


def test_subnets_are_added_inside_the_network_and_deleted(client: Client) -> None:
    network = client.networks.create(name="net", ip_range="10.100.0.0/16")
    client.networks.add_subnet(network, cloud_subnet("10.100.1.0/24")).wait_until_finished()
    for outside in ("10.200.0.0/24", "10.100.1.128/25"):  # outside, overlapping
        with pytest.raises(APIException) as refused:
            client.networks.add_subnet(network, cloud_subnet(outside))
        assert refused.value.code == "invalid_input"
    assert [subnet.ip_range for subnet in subnets(client, ident(network))] == ["10.100.1.0/24"]

    client.networks.delete_subnet(network, cloud_subnet("10.100.1.0/24")).wait_until_finished()
    assert subnets(client, ident(network)) == []
    with pytest.raises(APIException) as gone:
        client.networks.delete_subnet(network, cloud_subnet("10.100.1.0/24"))
    assert gone.value.code == "not_found"


def test_a_subnet_with_servers_attached_is_refused_and_a_deleted_network_detaches_them(
    hetzner_api: HetznerEmulator, client: Client
) -> None:
    network = client.networks.create(
        name="net", ip_range="10.100.0.0/16", subnets=[cloud_subnet("10.100.0.0/24")]
    )
    client.networks.add_subnet(network, cloud_subnet("10.100.1.0/24")).wait_until_finished()
    server_id = hetzner_api.add_server(
        "workers-fsn1-1",
        {"hcloud/node-group": "workers-fsn1"},
        private_ips={ident(network): "10.100.0.2"},
    )
    attached = client.networks.get_by_id(ident(network)).servers or []
    assert [server.id for server in attached] == [server_id]

    with pytest.raises(APIException) as refused:
        client.networks.delete_subnet(network, cloud_subnet("10.100.0.0/24"))
    assert refused.value.code == "service_error"
    assert "network has attached resources" in refused.value.message
    # A subnet without servers goes.
    client.networks.delete_subnet(network, cloud_subnet("10.100.1.0/24")).wait_until_finished()

    client.networks.delete(network)
    with pytest.raises(APIException) as deleted:
        client.networks.get_by_id(ident(network))
    assert deleted.value.code == "not_found"
    server = client.servers.get_by_id(server_id)
    assert server.private_net == []  # detached, still running
    assert server.status == "running"


def test_a_network_changing_is_a_conflict(hetzner_api: HetznerEmulator, client: Client) -> None:
    """While an action runs on a network, a change answers ``409 conflict`` (which the
    libraries retry); asked without a retrying client here."""
    hetzner_api.action_seconds["add_subnet"] = 30.0
    network = client.networks.create(name="net", ip_range="10.100.0.0/16")
    client.networks.add_subnet(network, cloud_subnet("10.100.1.0/24"))
    request = urllib.request.Request(
        f"{hetzner_api.endpoint}/networks/{network.id}/actions/add_subnet",
        data=json.dumps(
            {"type": "cloud", "ip_range": "10.100.2.0/24", "network_zone": "eu-central"}
        ).encode(),
        headers={"Authorization": f"Bearer {TEST_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as busy:
        urllib.request.urlopen(request, timeout=10)
    assert busy.value.code == 409
    assert json.loads(busy.value.read())["error"]["code"] == "conflict"


def get_json(hetzner_api: HetznerEmulator, path: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{hetzner_api.endpoint}{path}", headers={"Authorization": f"Bearer {TEST_TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_actions_are_listed_by_id_and_status_as_hcloud_go_waits_for_them(
    hetzner_api: HetznerEmulator, client: Client
) -> None:
    """The real hcloud provider (hcloud-go's WaitFor) polls the list endpoint
    ``GET /actions?id=..&page=1&sort=status&sort=id``, not ``GET /actions/{id}``."""
    hetzner_api.action_seconds["add_subnet"] = 30.0
    network = client.networks.create(name="net", ip_range="10.100.0.0/16")
    running = client.networks.add_subnet(network, cloud_subnet("10.100.1.0/24")).id
    other = client.networks.create(name="other", ip_range="10.101.0.0/16")
    hetzner_api.action_seconds["add_subnet"] = 0.0
    done = client.networks.add_subnet(other, cloud_subnet("10.101.1.0/24")).id
    unasked = client.networks.add_subnet(other, cloud_subnet("10.101.2.0/24")).id

    status, body = get_json(
        hetzner_api, f"/actions?id={running}&id={done}&page=1&sort=status&sort=id"
    )
    assert status == 200
    # "running" sorts before "success"; the action not asked for is not listed.
    assert [(a["id"], a["status"]) for a in body["actions"]] == [
        (running, "running"),
        (done, "success"),
    ]
    assert body["meta"]["pagination"]["total_entries"] == 2
    status, body = get_json(hetzner_api, f"/actions?id={done}&id={unasked}&status=running")
    assert (status, body["actions"]) == (200, [])
    status, body = get_json(hetzner_api, f"/actions?id={running}&sort=nonsense")
    assert (status, body["error"]["code"]) == (400, "invalid_input")
