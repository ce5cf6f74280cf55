"""The hcloud provider STAND-IN keeps what the program relies on of the real provider.

Checked against terraform-provider-hcloud v1.66.1 (what pulumi-hcloud 1.43.3 bridges): the
64-character token, which inputs replace and which update, the subnet's id, the lookup's
errors, a refused subnet delete dropped with a warning, a vanished network dropped at refresh.
Driven directly (no engine) against the Hetzner API emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e import hcloud_provider_stand_in as stand_in
from e2e.hcloud_provider_stand_in import (
    NETWORK,
    PLACEMENT_GROUP,
    SUBNET,
    HcloudProviderStandIn,
    plain,
    struct,
)
from image_builder.stand_ins import HetznerEmulator
from pulumi.runtime.proto import provider_pb2

TOKEN = "t" * 64
NETWORK_URN = f"urn:pulumi:e2e::p::c${NETWORK}::network"
SUBNET_URN = f"urn:pulumi:e2e::p::c${SUBNET}::subnet"


class Aborted(Exception):
    pass


class Context:
    """What a gRPC servicer is handed: ``abort`` ends the call with a status."""

    def abort(self, code: Any, details: str) -> None:
        raise Aborted(details)


@pytest.fixture
def hetzner(tmp_path: Path) -> Iterator[HetznerEmulator]:
    with HetznerEmulator(tmp_path / "keys", token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
def provider(hetzner: HetznerEmulator) -> HcloudProviderStandIn:
    provider = HcloudProviderStandIn(None)
    provider.Configure(
        provider_pb2.ConfigureRequest(args=struct({"token": TOKEN, "endpoint": hetzner.endpoint})),
        Context(),
    )
    return provider


def create(
    provider: HcloudProviderStandIn, urn: str, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    checked = provider.Check(provider_pb2.CheckRequest(urn=urn, news=struct(inputs)), Context())
    assert list(checked.failures) == []
    created = provider.Create(
        provider_pb2.CreateRequest(urn=urn, properties=checked.inputs), Context()
    )
    return created.id, plain(created.properties)


def test_the_token_must_have_64_characters(provider: HcloudProviderStandIn) -> None:
    checked = provider.CheckConfig(
        provider_pb2.CheckRequest(news=struct({"token": "short"})), Context()
    )
    assert [(f.property, f.reason) for f in checked.failures] == [
        ("token", "entered token is invalid (must be exactly 64 characters long)")
    ]


def test_a_network_replaces_on_ip_range_and_updates_in_place(
    provider: HcloudProviderStandIn, hetzner: HetznerEmulator
) -> None:
    inputs = {"name": "net", "ipRange": "10.100.0.0/16", "labels": {"managed-by": "x"}}
    network_id, outputs = create(provider, NETWORK_URN, inputs)
    assert outputs == {**inputs, "deleteProtection": False, "exposeRoutesToVswitch": False}

    def diff(**changes: Any) -> provider_pb2.DiffResponse:
        request = provider_pb2.DiffRequest(
            id=network_id,
            urn=NETWORK_URN,
            olds=struct(outputs),
            news=struct({**outputs, **changes}),  # checked inputs
        )
        return provider.Diff(request, Context())

    assert diff().changes == provider_pb2.DiffResponse.DIFF_NONE
    assert list(diff(ipRange="10.101.0.0/16").replaces) == ["ipRange"]
    renamed = diff(name="renamed", labels={})
    assert list(renamed.replaces) == [] and set(renamed.diffs) == {"name", "labels"}

    updated = provider.Update(
        provider_pb2.UpdateRequest(
            id=network_id,
            urn=NETWORK_URN,
            olds=struct(outputs),
            news=struct({**inputs, "name": "renamed"}),
        ),
        Context(),
    )
    assert plain(updated.properties)["name"] == "renamed"
    assert hetzner.state.networks[int(network_id)]["name"] == "renamed"


def test_a_subnet_is_named_after_its_network_and_range_and_never_updated(
    provider: HcloudProviderStandIn,
) -> None:
    network_id, _ = create(provider, NETWORK_URN, {"name": "net", "ipRange": "10.100.0.0/16"})
    inputs = {
        "networkId": int(network_id),
        "type": "cloud",
        "networkZone": "eu-central",
        "ipRange": "10.100.0.0/24",
    }
    subnet_id, outputs = create(provider, SUBNET_URN, inputs)
    assert subnet_id == f"{network_id}-10.100.0.0/24"
    assert outputs["gateway"] == "10.100.0.1"
    request = provider_pb2.DiffRequest(
        id=subnet_id,
        urn=SUBNET_URN,
        olds=struct(outputs),
        news=struct({**inputs, "networkZone": "us-east"}),
    )
    assert list(provider.Diff(request, Context()).replaces) == ["networkZone"]
    checked = provider.Check(
        provider_pb2.CheckRequest(urn=SUBNET_URN, news=struct({**inputs, "type": "lan"})), Context()
    )
    assert [f.property for f in checked.failures] == ["type"]


def test_get_network_finds_by_id_name_or_selector(
    provider: HcloudProviderStandIn, hetzner: HetznerEmulator
) -> None:
    network_id = hetzner.add_network("shared-net", "10.100.0.0/16", {"team": "a"})

    def invoke(**args: Any) -> dict[str, Any]:
        answer = provider.Invoke(
            provider_pb2.InvokeRequest(tok=stand_in.GET_NETWORK, args=struct(args)), Context()
        )
        return plain(getattr(answer, "return"))

    assert invoke(name="shared-net")["id"] == network_id
    assert invoke(id=network_id)["ipRange"] == "10.100.0.0/16"
    assert invoke(withSelector="team=a")["name"] == "shared-net"
    with pytest.raises(Aborted, match="no network found with name missing"):
        invoke(name="missing")


def test_a_subnet_with_servers_attached_is_dropped_with_a_warning(
    provider: HcloudProviderStandIn, hetzner: HetznerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stand_in.time, "sleep", lambda _: None)
    warnings: list[str] = []
    monkeypatch.setattr(provider, "warn", lambda _urn, message: warnings.append(message))
    network_id, _ = create(provider, NETWORK_URN, {"name": "net", "ipRange": "10.100.0.0/16"})
    subnet_id, outputs = create(
        provider,
        SUBNET_URN,
        {
            "networkId": int(network_id),
            "type": "cloud",
            "networkZone": "eu-central",
            "ipRange": "10.100.0.0/24",
        },
    )
    hetzner.add_server("workers-1", {}, private_ips={int(network_id): "10.100.0.2"})
    provider.Delete(
        provider_pb2.DeleteRequest(id=subnet_id, urn=SUBNET_URN, properties=struct(outputs)),
        Context(),
    )
    assert warnings == [
        f"Network Subnet ({subnet_id}) has still resources attached. We assume that the network will be deleted fully, removing from state"
    ]
    deletes = [path for method, path in hetzner.state.requests if path.endswith("delete_subnet")]
    assert len(deletes) == stand_in.DELETE_TRIES


def test_a_vanished_network_is_dropped_at_refresh(
    provider: HcloudProviderStandIn, hetzner: HetznerEmulator
) -> None:
    network_id, outputs = create(provider, NETWORK_URN, {"name": "net", "ipRange": "10.100.0.0/16"})
    del hetzner.state.networks[int(network_id)]
    read = provider.Read(
        provider_pb2.ReadRequest(id=network_id, urn=NETWORK_URN, properties=struct(outputs)),
        Context(),
    )
    assert read.id == ""


def test_a_placement_group_replaces_on_type_updates_name_and_labels_and_is_deleted(
    provider: HcloudProviderStandIn, hetzner: HetznerEmulator
) -> None:
    urn = f"urn:pulumi:e2e::p::c${PLACEMENT_GROUP}::group"
    inputs = {"name": "pool-spread", "type": "spread", "labels": {"managed-by": "x"}}
    group_id, outputs = create(provider, urn, inputs)
    assert outputs == {**inputs, "servers": []}
    assert hetzner.state.placement_groups[int(group_id)]["name"] == "pool-spread"

    changed = {**inputs, "type": "other", "labels": {"managed-by": "y"}}
    diff = provider.Diff(
        provider_pb2.DiffRequest(urn=urn, id=group_id, olds=struct(outputs), news=struct(changed)),
        Context(),
    )
    assert list(diff.replaces) == ["type"]
    assert sorted(diff.diffs) == ["labels", "type"]

    updated = provider.Update(
        provider_pb2.UpdateRequest(
            urn=urn,
            id=group_id,
            olds=struct(outputs),
            news=struct({**inputs, "name": "renamed", "labels": {"a": "b"}}),
        ),
        Context(),
    )
    assert plain(updated.properties)["name"] == "renamed"
    assert hetzner.state.placement_groups[int(group_id)]["labels"] == {"a": "b"}

    provider.Delete(provider_pb2.DeleteRequest(urn=urn, id=group_id), Context())
    assert hetzner.state.placement_groups == {}
    # Gone already (deleted by hand): the delete succeeds, a refresh drops it.
    provider.Delete(provider_pb2.DeleteRequest(urn=urn, id=group_id), Context())
    read = provider.Read(provider_pb2.ReadRequest(urn=urn, id=group_id), Context())
    assert read.id == ""
