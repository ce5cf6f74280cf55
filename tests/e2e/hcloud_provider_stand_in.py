"""A STAND-IN for the hcloud Pulumi provider plugin: ``Network``, ``NetworkSubnet`` and the
``getNetwork`` invoke, talking to the Hetzner Cloud API emulator. Not the real provider.

Why it exists: the real plugin (``github.com/pulumi/pulumi-hcloud/provider``, a Terraform
bridge of ``github.com/hetznercloud/terraform-provider-hcloud``) cannot be built here — the
Go module proxy refuses both modules (scripts/toolchain.toml, README "End-to-end tests").
The program needs a provider for its network, so the engine starts this one, installed in
the test's private PULUMI_HOME as plugin ``hcloud`` at the version the SDK asks for.

What it keeps of the real one (pulumi-hcloud 1.43.3 = terraform-provider-hcloud v1.66.x,
``internal/network/resource.go``, ``resource_subnet.go``, ``data_source.go``,
``hcloud/provider.go``): the schema's names and types; ``token`` must be 64 characters,
``HCLOUD_TOKEN``/``HCLOUD_ENDPOINT`` are the fallbacks; a network's ``ipRange`` forces a
replacement while ``name``, ``labels`` and ``exposeRoutesToVswitch`` are updated in place;
every subnet input forces a replacement; a subnet's id is ``<network id>-<ip range>``; a
subnet delete retries while the network is busy or has servers attached and, when servers
stay attached, leaves the subnet to the network's delete with a warning; a network or
subnet gone from the API is dropped at refresh. Not kept: every other resource, delete
protection, the bridge's ``__defaults`` bookkeeping, and the real retry count (50 tries
with unbounded backoff; 5 here).

The engine starts it as ``pulumi-resource-hcloud <engine address>``; it prints its port.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from hcloud import APIException, Client
from hcloud.networks import Network, NetworkSubnet
from hcloud.placement_groups import PlacementGroup
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, plugin_pb2, provider_pb2
from pulumi.runtime.proto.provider_pb2_grpc import (
    ResourceProviderServicer,
    add_ResourceProviderServicer_to_server,
)

#: The version pulumi-hcloud's SDK asks the engine for (its pulumi-plugin.json).
VERSION = "1.43.3"
NETWORK = "hcloud:index/network:Network"
SUBNET = "hcloud:index/networkSubnet:NetworkSubnet"
PLACEMENT_GROUP = "hcloud:index/placementGroup:PlacementGroup"
GET_NETWORK = "hcloud:index/getNetwork:getNetwork"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")
#: terraform-provider-hcloud's own check of the token (hcloud/provider.go).
TOKEN_PROBLEM = "entered token is invalid (must be exactly 64 characters long)"
SUBNET_TYPES = ("cloud", "server", "vswitch")
DELETE_TRIES = 5


@dataclass(frozen=True)
class Field:
    """One input of a resource: its type, whether it is required, its default."""

    kind: type
    required: bool = False
    default: Any = None
    replaces: bool = False


SCHEMAS: dict[str, dict[str, Field]] = {
    NETWORK: {
        "name": Field(str, required=True),
        "ipRange": Field(str, required=True, replaces=True),
        "labels": Field(dict),
        "deleteProtection": Field(bool, default=False),
        "exposeRoutesToVswitch": Field(bool, default=False),
    },
    SUBNET: {
        "networkId": Field(int, required=True, replaces=True),
        "type": Field(str, required=True, replaces=True),
        "networkZone": Field(str, required=True, replaces=True),
        "ipRange": Field(str, required=True, replaces=True),
        "vswitchId": Field(int, replaces=True),
    },
    PLACEMENT_GROUP: {
        "name": Field(str, required=True),
        "type": Field(str, required=True, replaces=True),
        "labels": Field(dict),
    },
}


def plain(value: struct_pb2.Struct | None) -> dict[str, Any]:
    """A property map as Python values: secrets unwrapped, unknowns kept as ``UNKNOWN``."""
    if value is None:
        return {}
    result: dict[str, Any] = _unwrap(json_format.MessageToDict(value))
    return result


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG[0]) == SECRET_SIG[1]:
            return _unwrap(value.get("value"))
        return {key: _unwrap(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_unwrap(inner) for inner in value]
    return value


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update({key: value for key, value in values.items() if value is not None})
    return message


def type_name(urn: str) -> str:
    return urn.split("::")[2].rsplit("$", 1)[-1]


def check_inputs(token: str, news: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Defaults applied and the schema's rules checked, as the provider's Check does."""
    schema = SCHEMAS[token]
    inputs = dict(news)
    failures: list[tuple[str, str]] = []
    for name in sorted(set(inputs) - set(schema)):
        failures.append((name, f"{name} is not an input of {token}"))
    for name, field in schema.items():
        value = inputs.get(name)
        if value is None:
            if field.required:
                failures.append((name, f"Missing required argument {name}"))
            elif field.default is not None:
                inputs[name] = field.default
            continue
        if value == UNKNOWN:
            continue
        if field.kind is int and isinstance(value, float) and value.is_integer():
            inputs[name] = int(value)
        elif not isinstance(value, field.kind) or isinstance(value, bool) is not (
            field.kind is bool
        ):
            failures.append((name, f"{name} must be a {field.kind.__name__}, not {value!r}"))
    ip_range = inputs.get("ipRange")
    if token == NETWORK and isinstance(ip_range, str) and not _is_cidr(ip_range):
        problem = f'expected "ip_range" to be a valid IPv4 Value, got {ip_range}'
        failures.append(("ipRange", problem))
    kind = inputs.get("type")
    if token == SUBNET and kind not in (*SUBNET_TYPES, UNKNOWN, None):
        failures.append(("type", f"expected type to be one of {list(SUBNET_TYPES)}, got {kind}"))
    return inputs, failures


def _is_cidr(text: str) -> bool:
    if text == UNKNOWN:
        return True  # not known before another resource exists: the create checks it
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _int(value: Any) -> int:
    return int(float(value))


class HcloudProviderStandIn(ResourceProviderServicer):
    """The gRPC ResourceProvider the engine talks to (see the module docstring)."""

    def __init__(self, engine_address: str | None) -> None:
        self.token = os.environ.get("HCLOUD_TOKEN", "")
        self.endpoint = os.environ.get("HCLOUD_ENDPOINT", "https://api.hetzner.cloud/v1")
        self.engine = (
            engine_pb2_grpc.EngineStub(grpc.insecure_channel(engine_address))
            if engine_address
            else None
        )

    # ---- plugin and configuration -------------------------------------------------------
    def GetPluginInfo(self, request: empty_pb2.Empty, context: Any) -> plugin_pb2.PluginInfo:
        return plugin_pb2.PluginInfo(version=VERSION)

    def CheckConfig(self, request: Any, context: Any) -> provider_pb2.CheckResponse:
        news = plain(request.news)
        token = news.get("token") or os.environ.get("HCLOUD_TOKEN", "")
        failures = []
        if token and token != UNKNOWN and len(token) != 64:
            failures.append(provider_pb2.CheckFailure(property="token", reason=TOKEN_PROBLEM))
        return provider_pb2.CheckResponse(inputs=request.news, failures=failures)

    def DiffConfig(self, request: Any, context: Any) -> provider_pb2.DiffResponse:
        olds, news = plain(request.olds), plain(request.news)
        changed = sorted(key for key in set(olds) | set(news) if olds.get(key) != news.get(key))
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME
            if changed
            else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=changed,
        )

    def Configure(self, request: Any, context: Any) -> provider_pb2.ConfigureResponse:
        args = plain(request.args)
        variables = dict(request.variables)
        self.token = args.get("token") or variables.get("hcloud:config:token") or self.token
        self.endpoint = (
            args.get("endpoint") or variables.get("hcloud:config:endpoint") or self.endpoint
        )
        return provider_pb2.ConfigureResponse(acceptSecrets=True, supportsPreview=False)

    def Cancel(self, request: empty_pb2.Empty, context: Any) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    def client(self) -> Client:
        return Client(self.token, api_endpoint=self.endpoint, poll_interval=0.5)

    def warn(self, urn: str, message: str) -> None:
        if self.engine is not None:
            self.engine.Log(
                engine_pb2.LogRequest(severity=engine_pb2.WARNING, message=message, urn=urn)
            )

    # ---- resources ------------------------------------------------------------------------
    def Check(self, request: Any, context: Any) -> provider_pb2.CheckResponse:
        inputs, failures = check_inputs(type_name(request.urn), plain(request.news))
        return provider_pb2.CheckResponse(
            inputs=struct(inputs),
            failures=[provider_pb2.CheckFailure(property=p, reason=r) for p, r in failures],
        )

    def Diff(self, request: Any, context: Any) -> provider_pb2.DiffResponse:
        schema = SCHEMAS[type_name(request.urn)]
        olds, news = plain(request.olds), plain(request.news)
        detailed: dict[str, provider_pb2.PropertyDiff] = {}
        for name, field in schema.items():
            old, new = olds.get(name), news.get(name)
            if name == "labels":
                old, new = old or {}, new or {}
            if old == new and new != UNKNOWN:
                continue
            kind = (
                provider_pb2.PropertyDiff.UPDATE_REPLACE
                if field.replaces
                else (provider_pb2.PropertyDiff.UPDATE)
            )
            detailed[name] = provider_pb2.PropertyDiff(kind=kind, inputDiff=True)
        replaces = [name for name in detailed if schema[name].replaces]
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME
            if detailed
            else provider_pb2.DiffResponse.DIFF_NONE,
            replaces=replaces,
            diffs=list(detailed),
            detailedDiff=detailed,
            hasDetailedDiff=True,
            deleteBeforeReplace=False,
        )

    def Create(self, request: Any, context: Any) -> provider_pb2.CreateResponse:
        token, inputs = type_name(request.urn), plain(request.properties)
        return self._answer(
            context, lambda: self._create(token, inputs), provider_pb2.CreateResponse
        )

    def Read(self, request: Any, context: Any) -> provider_pb2.ReadResponse:
        token = type_name(request.urn)
        found = self._answer(context, lambda: self._read(token, request.id), None)
        if found is None:  # gone: the engine drops it from the state
            return provider_pb2.ReadResponse(id="")
        resource_id, outputs = found
        return provider_pb2.ReadResponse(
            id=resource_id, properties=struct(outputs), inputs=request.inputs
        )

    def Update(self, request: Any, context: Any) -> provider_pb2.UpdateResponse:
        token, olds, news = type_name(request.urn), plain(request.olds), plain(request.news)
        if token not in (NETWORK, PLACEMENT_GROUP):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{token} has no updatable inputs")

        def update() -> tuple[str, dict[str, Any]]:
            client = self.client()
            if token == PLACEMENT_GROUP:
                group = PlacementGroup(id=int(request.id))
                client.placement_groups.update(
                    group, name=news.get("name"), labels=news.get("labels") or {}
                )
                return self._read_placement_group(client, request.id)
            changes = {
                api: news.get(name)
                for name, api in (
                    ("name", "name"),
                    ("labels", "labels"),
                    ("exposeRoutesToVswitch", "expose_routes_to_vswitch"),
                )
                if olds.get(name) != news.get(name)
            }
            if changes:
                client.networks.update(Network(id=int(request.id)), **changes)
            return self._read_network(client, request.id)

        _, outputs = self._answer(context, update, None)
        return provider_pb2.UpdateResponse(properties=struct(outputs))

    def Delete(self, request: Any, context: Any) -> empty_pb2.Empty:
        token = type_name(request.urn)
        self._answer(context, lambda: self._delete(token, request.urn, request.id), None)
        return empty_pb2.Empty()

    def Invoke(self, request: Any, context: Any) -> provider_pb2.InvokeResponse:
        if request.tok != GET_NETWORK:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"the stand-in has no {request.tok}")
        args = plain(request.args)
        network = self._answer(context, lambda: self._lookup(args), None)
        return provider_pb2.InvokeResponse(**{"return": struct(network)})

    # ---- the Hetzner calls ------------------------------------------------------------------
    def _answer(self, context: Any, call: Callable[[], Any], response: Any) -> Any:
        """The call's result; an API error aborts the gRPC call with its message."""
        try:
            result = call()
        except APIException as error:
            context.abort(grpc.StatusCode.UNKNOWN, f"{error.message} ({error.code})")
        except LookupError as error:
            context.abort(grpc.StatusCode.UNKNOWN, str(error))
        if response is None:
            return result
        resource_id, outputs = result
        return response(id=resource_id, properties=struct(outputs))

    def _create(self, token: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        client = self.client()
        if inputs.get("deleteProtection"):
            raise LookupError("the hcloud stand-in does not support deleteProtection")
        if token == PLACEMENT_GROUP:
            group = client.placement_groups.create(
                name=inputs["name"], type=inputs["type"], labels=inputs.get("labels") or None
            ).placement_group
            return self._read_placement_group(client, str(group.id))
        if token == NETWORK:
            created = client.networks.create(
                name=inputs["name"],
                ip_range=inputs["ipRange"],
                labels=inputs.get("labels") or None,
                expose_routes_to_vswitch=inputs.get("exposeRoutesToVswitch", False),
            )
            return self._read_network(client, str(created.id))
        network_id = _int(inputs["networkId"])
        subnet = NetworkSubnet(
            type=inputs["type"],
            ip_range=str(ipaddress.ip_network(inputs["ipRange"], strict=False)),
            network_zone=inputs["networkZone"],
            vswitch_id=_int(inputs["vswitchId"]) if inputs.get("vswitchId") else None,
        )
        client.networks.add_subnet(Network(id=network_id), subnet).wait_until_finished()
        found = self._read_subnet(client, f"{network_id}-{subnet.ip_range}")
        if found is None:
            raise LookupError(f"subnet {subnet.ip_range} of network {network_id} vanished")
        return found

    def _read(self, token: str, resource_id: str) -> tuple[str, dict[str, Any]] | None:
        client = self.client()
        try:
            if token == NETWORK:
                return self._read_network(client, resource_id)
            if token == PLACEMENT_GROUP:
                return self._read_placement_group(client, resource_id)
            return self._read_subnet(client, resource_id)
        except APIException as error:
            if error.code == "not_found":
                return None
            raise

    def _read_network(self, client: Client, resource_id: str) -> tuple[str, dict[str, Any]]:
        network = client.networks.get_by_id(int(resource_id))
        return str(network.id), _network_outputs(network)

    def _read_placement_group(self, client: Client, resource_id: str) -> tuple[str, dict[str, Any]]:
        group = client.placement_groups.get_by_id(int(resource_id))
        outputs = {
            "name": group.name,
            "type": group.type,
            "labels": group.labels or {},
            "servers": list(group.servers or []),
        }
        return str(group.id), outputs

    def _read_subnet(self, client: Client, resource_id: str) -> tuple[str, dict[str, Any]] | None:
        network_id, _, ip_range = resource_id.partition("-")
        network = client.networks.get_by_id(int(network_id))
        for subnet in network.subnets or []:
            if subnet.ip_range == ip_range:
                outputs = {
                    "networkId": network.id,
                    "type": subnet.type,
                    "networkZone": subnet.network_zone,
                    "ipRange": subnet.ip_range,
                    "gateway": subnet.gateway,
                    "vswitchId": subnet.vswitch_id if subnet.type == "vswitch" else None,
                }
                return resource_id, outputs
        return None

    def _delete(self, token: str, urn: str, resource_id: str) -> None:
        client = self.client()
        if token == PLACEMENT_GROUP:
            try:
                client.placement_groups.delete(PlacementGroup(id=int(resource_id)))
            except APIException as error:
                if error.code != "not_found":
                    raise
            return
        if token == NETWORK:
            try:
                client.networks.delete(Network(id=int(resource_id)))
            except APIException as error:
                if error.code != "not_found":
                    raise
            return
        network_id, _, ip_range = resource_id.partition("-")
        for attempt in range(DELETE_TRIES):
            try:
                action = client.networks.delete_subnet(
                    Network(id=int(network_id)),
                    NetworkSubnet(type="cloud", ip_range=ip_range, network_zone=""),
                )
            except APIException as error:
                if error.code == "not_found":
                    return
                attached = error.code == "service_error" and (
                    "servers are attached" in error.message
                    or "network has attached resources" in error.message
                )
                if error.code not in ("conflict", "locked") and not attached:
                    raise
                if attempt + 1 < DELETE_TRIES:
                    time.sleep(2**attempt)
                    continue
                if attached:
                    self.warn(
                        urn,
                        f"Network Subnet ({resource_id}) has still resources attached. We assume "
                        "that the network will be deleted fully, removing from state",
                    )
                    return
                raise
            action.wait_until_finished()
            return

    def _lookup(self, args: dict[str, Any]) -> dict[str, Any]:
        client = self.client()
        if args.get("id"):
            network = client.networks.get_by_id(_int(args["id"]))
        elif args.get("name"):
            found = client.networks.get_by_name(args["name"])
            if found is None:
                raise LookupError(f"no network found with name {args['name']}")
            network = found
        elif args.get("withSelector"):
            matching = client.networks.get_all(label_selector=args["withSelector"])
            if len(matching) != 1:
                many = "more than one network" if matching else "no network"
                raise LookupError(f"{many} found for selector {args['withSelector']!r}")
            network = matching[0]
        else:
            raise LookupError("please specify an id, a name or a selector to lookup the network")
        outputs = _network_outputs(network)
        return {
            **outputs,
            "id": network.id,
            "mostRecent": args.get("mostRecent"),
            "withSelector": args.get("withSelector"),
        }


def _network_outputs(network: Any) -> dict[str, Any]:
    return {
        "name": network.name,
        "ipRange": network.ip_range,
        "labels": dict(network.labels or {}),
        "deleteProtection": bool((network.protection or {}).get("delete")),
        "exposeRoutesToVswitch": bool(network.expose_routes_to_vswitch),
    }


def main() -> None:
    engine = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add_ResourceProviderServicer_to_server(HcloudProviderStandIn(engine), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
