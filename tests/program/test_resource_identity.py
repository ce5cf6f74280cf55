"""What existing stacks recorded must keep matching: URNs, and the pickled dynamic providers.

A changed type token, resource name or parent gives a new URN, and the engine would
replace the resource (a new network, a rebuilt snapshot, servers swept). The dynamic
providers are pickled into the state by reference (module and class name) and unpickled
by ``refresh`` and ``destroy``: their module paths are part of every existing state.
"""

from __future__ import annotations

import base64
import pickle
from typing import Any

import pytest

from tests.conftest import REPO, MockRuntime, shipped_config

MAIN = REPO / "__main__.py"
P = "hcloud-talos-autoscaler"
PREFIX = f"urn:pulumi:dev::{P}::"


def dev_with_every_option() -> dict[str, Any]:
    config = shipped_config("dev")
    config[f"{P}:network"].update(vswitchId=9876, vswitchSubnet="10.100.1.0/24")
    config[f"{P}:autoscaler"]["smokeTest"] = {"replicas": 2}
    return config


#: ``<parent type>$<type>::<name>`` of every resource, as the stacks registered them before
#: the layout changed (issue 16). The Stack parent is ``pulumi:pulumi:Stack``.
C = f"{P}:index"
COMMON = [
    f"{C}:AutoscalerSecrets$kubernetes:core/v1:Namespace::autoscaler-secrets-namespace",
    f"{C}:AutoscalerSecrets$kubernetes:core/v1:Secret::autoscaler-secrets-credentials",
    f"{C}:AutoscalerSecrets$kubernetes:core/v1:Secret::autoscaler-secrets-talos-config",
    f"{C}:PrivateNetwork$hcloud:index/network:Network::network-network",
    f"{C}:PrivateNetwork$hcloud:index/networkSubnet:NetworkSubnet::network-subnet",
    f"{C}:ProviderIdSetter$kubernetes:apps/v1:Deployment::provider-id-setter-deployment",
    f"{C}:ProviderIdSetter$kubernetes:core/v1:ConfigMap::provider-id-setter-script",
    f"{C}:ProviderIdSetter$kubernetes:core/v1:ServiceAccount::provider-id-setter-account",
    f"{C}:ProviderIdSetter$kubernetes:rbac.authorization.k8s.io/v1:ClusterRole::"
    "provider-id-setter-role",
    f"{C}:ProviderIdSetter$kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding::"
    "provider-id-setter-binding",
    f"{C}:TalosImage$pulumi-python:dynamic:Resource::talos-image-amd64",
    f"{C}:NodeController$kubernetes:apps/v1:Deployment::node-controller-deployment",
    f"{C}:NodeController$kubernetes:core/v1:ConfigMap::node-controller-script",
    f"{C}:NodeController$kubernetes:core/v1:ServiceAccount::node-controller-account",
    f"{C}:NodeController$kubernetes:rbac.authorization.k8s.io/v1:ClusterRole::node-controller-role",
    f"{C}:NodeController$kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding::"
    "node-controller-binding",
    f"pulumi:pulumi:Stack${C}:NodeController::node-controller",
    f"pulumi:pulumi:Stack${C}:AutoscaledServers::autoscaled-servers",
    f"pulumi:pulumi:Stack${C}:AutoscalerSecrets::autoscaler-secrets",
    f"pulumi:pulumi:Stack${C}:ClusterAutoscaler::autoscaler",
    f"pulumi:pulumi:Stack${C}:PrivateNetwork::network",
    f"pulumi:pulumi:Stack${C}:ProviderIdSetter::provider-id-setter",
    f"pulumi:pulumi:Stack${C}:TalosImage::talos-image",
]
RECORD = f"{C}:AutoscaledServers$pulumi-python:dynamic/autoscaler:PoolServers::autoscaled-servers"
PACKAGE = f"{C}:ClusterAutoscaler$kubernetes:cozystack.io/v1alpha1:Package::autoscaler-package"
URNS: dict[str, list[str]] = {
    "dev": sorted([*COMMON, f"{RECORD}-workers-fsn1", PACKAGE]),
    "prod": sorted(
        [
            *COMMON,
            f"{RECORD}-arm-fsn1",
            f"{RECORD}-general-fsn1",
            f"{RECORD}-general-nbg1",
            f"{C}:ClusterAutoscaler$kubernetes:helm.sh/v3:Release::autoscaler-release",
            f"{C}:TalosImage$pulumi-python:dynamic:Resource::talos-image-arm64",
            # New with issue 25 (placementGroup: spread); the URNs above are unchanged.
            f"pulumi:pulumi:Stack${C}:PlacementGroups::placement-groups",
            f"{C}:PlacementGroups$hcloud:index/placementGroup:PlacementGroup::"
            "placement-groups-general-fsn1",
        ]
    ),
    "dev with vSwitch and smoke test": sorted(
        [
            *COMMON,
            f"{RECORD}-workers-fsn1",
            PACKAGE,
            f"{C}:PrivateNetwork$hcloud:index/networkSubnet:NetworkSubnet::network-vswitch-subnet",
            f"{C}:SmokeTest$kubernetes:apps/v1:Deployment::smoke-test-deployment",
            f"pulumi:pulumi:Stack${C}:SmokeTest::smoke-test",
        ]
    ),
}
CONFIGS = {
    "dev": lambda: shipped_config("dev"),
    "prod": lambda: shipped_config("prod"),
    "dev with vSwitch and smoke test": dev_with_every_option,
}


@pytest.mark.parametrize("variant", sorted(URNS))
def test_the_stacks_register_the_urns_existing_state_holds(
    pulumi_runtime: MockRuntime, variant: str
) -> None:
    pulumi_runtime.run(MAIN, CONFIGS[variant]())
    registered = sorted(r.urn.removeprefix(PREFIX) for r in pulumi_runtime.resources)
    assert registered == URNS[variant]


#: Dynamic resource type -> (module, class) the state's ``__provider`` pickle names.
PICKLED = {
    "pulumi-python:dynamic:Resource": (
        "components.image_builder.provider",
        "TalosSnapshotProvider",
    ),
    "pulumi-python:dynamic/autoscaler:PoolServers": (
        "components.server_sweep.provider",
        "PoolServersProvider",
    ),
}


def test_the_dynamic_providers_are_pickled_under_the_module_paths_existing_state_names(
    pulumi_runtime: MockRuntime,
) -> None:
    pulumi_runtime.run(MAIN, shipped_config("prod"))
    for type_, (module, name) in PICKLED.items():
        resources = pulumi_runtime.by_type(type_)
        assert resources, type_
        for resource in resources:
            raw = base64.b64decode(resource.inputs["__provider"])
            assert module.encode() in raw and name.encode() in raw
            provider = pickle.loads(raw)
            assert (type(provider).__module__, type(provider).__name__) == (module, name)
