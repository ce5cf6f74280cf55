"""Generate ``core/talos/config_keys.json`` from the official Talos JSON schemas.

The program must not need the schemas at run time, so the allowed key paths
per Talos minor and document kind are extracted once and committed; a test
regenerates them in memory and fails when the committed table is stale.

The schemas leave out fields that Talos still decodes (``docgen:nodoc``, mostly
deprecated): a config carried over from an older release keeps working, so they must
be accepted (with a warning), not refused as unknown. ``DECODED_OUTSIDE_SCHEMA`` lists
them per Talos minor, read from the Go types of that release (see ``RELEASE_READ``).

    python scripts/generate_talos_config_keys.py ../shared/reference/talos-schemas
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parents[1] / "core" / "talos" / "config_keys.json"
SCHEMA_NAME = re.compile(r"config\.schema\.v(\d+)\.(\d+)\.json$")
#: The legacy single document has no ``kind``; it is keyed by its version.
MAIN_DOCUMENT = "v1alpha1"

#: Kinds the official schemas (1.8-1.13) name differently from what Talos registers:
#: ``types/network/kubespan_endpoints.go`` ``KubespanEndpointsKind = "KubeSpanEndpointsConfig"``;
#: every loader refuses ``KubeSpanEndpoints`` as "not registered" (``make oracles`` checks both).
SCHEMA_KIND_FIXES = {"KubeSpanEndpoints": "KubeSpanEndpointsConfig"}

#: The release whose ``pkg/machinery/config/types/v1alpha1/v1alpha1_types.go``
#: (siderolabs/talos) was read for each minor; fields are named by their Go identifier.
RELEASE_READ = {
    "1.8": "v1.8.0",
    "1.9": "v1.9.0",
    "1.10": "v1.10.0",
    "1.11": "v1.11.6",
    "1.12": "v1.12.0",
    "1.13": "v1.13.0",
}


@dataclass(frozen=True)
class DecodedField:
    """A v1alpha1 field the Go types decode although the JSON schema leaves it out."""

    path: str
    #: The Go struct field in ``v1alpha1_types.go`` (``// docgen:nodoc`` above it).
    go_field: str
    #: What to use instead, from its ``Deprecated:`` comment.
    instead: str
    #: Older schemas that still documented the field's children: their keys are accepted
    #: below it (so a typo inside a deprecated section is still refused).
    children_from: tuple[str, ...] = ()


_SINCE_1_8 = (
    DecodedField("persist", "ConfigPersist", "remove it (not supported anymore)"),
    DecodedField(
        "cluster.allowSchedulingOnMasters",
        "AllowSchedulingOnMasters",
        "use cluster.allowSchedulingOnControlPlanes",
    ),
    DecodedField("cluster.etcd.subnet", "EtcdSubnet", "use cluster.etcd.advertisedSubnets"),
    DecodedField("machine.install.bootloader", "InstallBootloader", "remove it (it never worked)"),
    DecodedField("machine.network.interfaces[].cidr", "DeviceCIDR", "use addresses"),
    DecodedField("machine.network.interfaces[].vlans[].cidr", "VlanCIDR", "use addresses"),
)
_SINCE_1_10 = (
    DecodedField(
        "machine.disks", "MachineDisks", "use UserVolumeConfig documents", children_from=("1.9",)
    ),
    DecodedField(
        "machine.install.extensions",
        "InstallExtensions",
        "use an installer image with the extensions (Image Factory)",
        children_from=("1.9",),
    ),
)
_SINCE_1_11 = (
    DecodedField(
        "machine.systemDiskEncryption",
        "MachineSystemDiskEncryption",
        "use VolumeConfig documents",
        children_from=("1.10",),
    ),
)
_SINCE_1_12 = (
    DecodedField("machine.features.rbac", "RBAC", "remove it (undocumented since v1.12)"),
    DecodedField(
        "machine.features.stableHostname",
        "StableHostname",
        "use a HostnameConfig document with auto: stable",
    ),
    DecodedField(
        "machine.features.apidCheckExtKeyUsage",
        "ApidCheckExtKeyUsage",
        "remove it (undocumented since v1.12)",
    ),
    DecodedField(
        "cluster.apiServer.disablePodSecurityPolicy",
        "DisablePodSecurityPolicyConfig",
        "remove it (undocumented since v1.12)",
    ),
    DecodedField(
        "machine.install.extraKernelArgs",
        "InstallExtraKernelArgs",
        "build an installer with the kernel args (Image Factory)",
    ),
    DecodedField(
        "machine.time", "MachineTime", "use a TimeSyncConfig document", children_from=("1.11",)
    ),
    DecodedField(
        "machine.registries",
        "MachineRegistries",
        "use RegistryMirrorConfig documents (talos.registryMirrors writes them)",
        children_from=("1.11",),
    ),
)
#: Talos 1.12 keeps ``machine.network`` in its schema but drops the fields below.
_NETWORK_1_12 = (
    DecodedField("machine.network.hostname", "NetworkHostname", "use a HostnameConfig document"),
    DecodedField(
        "machine.network.interfaces",
        "NetworkInterfaces",
        "use the multi-document network config",
        children_from=("1.11",),
    ),
    DecodedField("machine.network.nameservers", "NameServers", "use a ResolverConfig document"),
    DecodedField("machine.network.searchDomains", "Searches", "use a ResolverConfig document"),
    DecodedField(
        "machine.network.extraHostEntries",
        "ExtraHostEntries",
        "use StaticHostConfig documents",
        children_from=("1.11",),
    ),
    DecodedField(
        "machine.network.disableSearchDomain",
        "NetworkDisableSearchDomain",
        "use a ResolverConfig document",
    ),
)
#: Talos 1.13 drops ``machine.network`` from its schema altogether.
_SINCE_1_13 = (
    DecodedField(
        "machine.network",
        "MachineNetwork",
        "use the multi-document network config",
        children_from=("1.11", "1.12"),
    ),
    DecodedField(
        "machine.env", "MachineEnv", "use an EnvironmentConfig document", children_from=("1.12",)
    ),
)

#: The release whose ``pkg/machinery/config/types/network`` (``*Kind`` constants) was read for
#: each minor with multi-document network config; the oracle suite checks the two lists
#: below against that package of the release its loader is built from.
NETWORK_KINDS_READ = {"1.12": "v1.12.7", "1.13": "v1.13.9"}
_LINKS_1_12 = (
    # Each is a NetworkCommonLinkConfig (or a DHCP config): one of them turns off the default
    # DHCP on every unconfigured link (container.go RunDefaultDHCPOperators).
    "LinkConfig",
    "LinkAliasConfig",
    "BondConfig",
    "BridgeConfig",
    "VLANConfig",
    "DummyLinkConfig",
    "WireguardConfig",
    "DHCPv4Config",
    "DHCPv6Config",
    # Addresses, names and resolvers of the site the config was generated on.
    "Layer2VIPConfig",
    "HCloudVIPConfig",
    "ResolverConfig",
    "StaticHostConfig",
    "HostnameConfig",
)
#: Network documents removed from worker configs (a ``HostnameConfig`` only with a fixed
#: ``hostname``: ``auto`` names each node itself) ...
REMOVED_NETWORK_KINDS = {
    "1.12": _LINKS_1_12,
    "1.13": (*_LINKS_1_12, "VRFConfig", "BlackholeRouteConfig", "RoutingRuleConfig"),
}
_KEPT_1_12 = (
    # Cluster-wide policy, not one machine's setup: firewall, KubeSpan, time sync, NIC tuning.
    "NetworkRuleConfig",
    "NetworkDefaultActionConfig",
    "KubeSpanEndpointsConfig",
    "TimeSyncConfig",
    "EthernetConfig",
)
#: ... and those kept.
KEPT_NETWORK_KINDS = {"1.12": _KEPT_1_12, "1.13": (*_KEPT_1_12, "KubeSpanConfig", "TCPProbeConfig")}


def network_documents(minor: str) -> dict[str, Any]:
    """The network document kinds removed and kept (both empty before multi-document network)."""
    if minor not in NETWORK_KINDS_READ:
        return {"removed": [], "kept": [], "source": ""}
    return {
        "removed": sorted(REMOVED_NETWORK_KINDS[minor]),
        "kept": sorted(KEPT_NETWORK_KINDS[minor]),
        "source": f"siderolabs/talos {NETWORK_KINDS_READ[minor]} "
        "pkg/machinery/config/types/network (*Kind constants)",
    }


#: Per Talos minor: the v1alpha1 fields its Go types decode and its JSON schema omits.
DECODED_OUTSIDE_SCHEMA: dict[str, tuple[DecodedField, ...]] = {
    "1.8": _SINCE_1_8,
    "1.9": _SINCE_1_8,
    "1.10": _SINCE_1_8 + _SINCE_1_10,
    "1.11": _SINCE_1_8 + _SINCE_1_10 + _SINCE_1_11,
    "1.12": _SINCE_1_8 + _SINCE_1_10 + _SINCE_1_11 + _SINCE_1_12 + _NETWORK_1_12,
    "1.13": _SINCE_1_8 + _SINCE_1_10 + _SINCE_1_11 + _SINCE_1_12 + _SINCE_1_13,
}


def key_paths(schema: dict[str, Any]) -> dict[str, list[str]]:
    """Document kind -> sorted allowed key paths (``a.b``, ``a[].b``, ``a.*`` for free maps)."""
    definitions = schema["$defs"]
    tables: dict[str, list[str]] = {}
    for choice in schema["oneOf"]:
        name = choice["$ref"].rsplit("/", 1)[-1]
        definition = definitions[name]
        kind_enum = definition.get("properties", {}).get("kind", {}).get("enum")
        kind = SCHEMA_KIND_FIXES.get(kind_enum[0], kind_enum[0]) if kind_enum else MAIN_DOCUMENT
        paths: set[str] = set()
        _walk(definition, "", definitions, paths, seen=())
        tables[kind] = sorted(paths)
    return dict(sorted(tables.items()))


def _walk(
    node: dict[str, Any],
    prefix: str,
    definitions: dict[str, Any],
    paths: set[str],
    seen: tuple[str, ...],
) -> None:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:  # recursive types: allow anything below
            paths.add(f"{prefix}.*")
            return
        _walk(definitions[name], prefix, definitions, paths, (*seen, name))
        return
    for combinator in ("oneOf", "anyOf", "allOf"):
        for option in node.get(combinator, []):
            _walk(option, prefix, definitions, paths, seen)
    if node.get("type") == "array" or "items" in node:
        items = node.get("items")
        if isinstance(items, dict):
            _walk(items, f"{prefix}[]", definitions, paths, seen)
        return
    properties = node.get("properties")
    if properties:
        for key, child in properties.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            _walk(child, path, definitions, paths, seen)
    free = node.get("additionalProperties") not in (None, False) or "patternProperties" in node
    if prefix and (free or (node.get("type") == "object" and not properties)):
        paths.add(f"{prefix}.*")


#: JSON schema types as Talos's YAML decoder sees them (``number`` takes integers too).
JSON_TYPES = ("object", "array", "string", "integer", "number", "boolean")


def value_types(schema: dict[str, Any]) -> dict[str, dict[str, dict[str, list[Any]]]]:
    """Document kind -> ``types`` (path -> JSON types allowed there) and ``enums`` (path ->
    allowed values); paths as in ``key_paths``, ``a.*`` being each value of a free-form map.

    A path reached through several schema branches takes the union of their types; a
    recursive type, or a node without a type, constrains nothing below it.
    """
    definitions = schema["$defs"]
    tables: dict[str, dict[str, dict[str, list[Any]]]] = {}
    for choice in schema["oneOf"]:
        name = choice["$ref"].rsplit("/", 1)[-1]
        definition = definitions[name]
        kind_enum = definition.get("properties", {}).get("kind", {}).get("enum")
        kind = SCHEMA_KIND_FIXES.get(kind_enum[0], kind_enum[0]) if kind_enum else MAIN_DOCUMENT
        types: dict[str, set[str]] = {}
        enums: dict[str, list[Any]] = {}
        for key, child in definition.get("properties", {}).items():
            if key != "kind":  # chooses the rules; SCHEMA_KIND_FIXES corrects the schemas' own
                _walk_types(child, key, definitions, types, enums, seen=(name,))
        tables[kind] = {
            "types": {path: sorted(types[path]) for path in sorted(types)},
            "enums": {path: enums[path] for path in sorted(enums)},
        }
    return dict(sorted(tables.items()))


def _walk_types(
    node: dict[str, Any],
    path: str,
    definitions: dict[str, Any],
    types: dict[str, set[str]],
    enums: dict[str, list[Any]],
    seen: tuple[str, ...],
) -> None:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            _walk_types(definitions[name], path, definitions, types, enums, (*seen, name))
        return
    options = [option for key in ("oneOf", "anyOf") for option in node.get(key, [])]
    for option in options:
        _walk_types(option, path, definitions, types, enums, seen)
    declared = node.get("type")
    found = [declared] if isinstance(declared, str) else list(declared or [])
    if "enum" in node and not found:
        found = sorted({_json_type(value) for value in node["enum"]})
    if "enum" in node:
        enums[path] = list(node["enum"])
    if found and all(name in JSON_TYPES for name in found):
        types.setdefault(path, set()).update(found)
    items = node.get("items")
    if isinstance(items, dict):
        _walk_types(items, f"{path}[]", definitions, types, enums, seen)
    for key, child in (node.get("properties") or {}).items():
        _walk_types(child, f"{path}.{key}", definitions, types, enums, seen)
    free = node.get("additionalProperties")
    values = [free] if isinstance(free, dict) else []
    values += list((node.get("patternProperties") or {}).values())
    for value in values:
        _walk_types(value, f"{path}.*", definitions, types, enums, seen)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return "number" if isinstance(value, float) else "string"


def decoded_outside_schema(
    minor: str, documents_by_minor: dict[str, dict[str, list[str]]]
) -> dict[str, dict[str, Any]]:
    """Deprecated field -> what to use instead and the key paths accepted at and below it."""
    table: dict[str, dict[str, Any]] = {}
    for decoded in DECODED_OUTSIDE_SCHEMA.get(minor, ()):
        paths = {decoded.path}
        for older in decoded.children_from:
            paths.update(
                path
                for path in documents_by_minor[older][MAIN_DOCUMENT]
                if path.startswith((f"{decoded.path}.", f"{decoded.path}[]"))
            )
        release = RELEASE_READ[minor]
        table[decoded.path] = {
            "instead": decoded.instead,
            "source": f"siderolabs/talos {release} v1alpha1_types.go {decoded.go_field}",
            "paths": sorted(paths),
        }
    return table


def generate(schema_dir: Path) -> dict[str, dict[str, Any]]:
    """Per Talos minor: ``documents`` (kind -> key paths), ``deprecated`` fields and
    ``values`` (kind -> value types and enums)."""
    documents: dict[str, dict[str, list[str]]] = {}
    values: dict[str, dict[str, dict[str, dict[str, list[Any]]]]] = {}
    for path in sorted(schema_dir.glob("config.schema.v*.json")):
        match = SCHEMA_NAME.search(path.name)
        if match:
            minor = f"{match.group(1)}.{match.group(2)}"
            schema = json.loads(path.read_text(encoding="utf-8"))
            documents[minor] = key_paths(schema)
            values[minor] = value_types(schema)
    minors = sorted(documents, key=lambda minor: tuple(map(int, minor.split("."))))
    return {
        minor: {
            "documents": documents[minor],
            "deprecated": decoded_outside_schema(minor, documents),
            "values": values[minor],
            "network_documents": network_documents(minor),
        }
        for minor in minors
    }


def main() -> int:
    default = Path("../shared/reference/talos-schemas")
    schema_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    tables = generate(schema_dir)
    OUTPUT.write_text(json.dumps(tables, indent=0, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT} ({', '.join(tables)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
