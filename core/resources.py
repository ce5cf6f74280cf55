"""The project's name, and the type tokens and names of everything the program registers.

One table for the components (which name their children with it), ``plan`` and
``render`` (which list what a stack creates) and the tests (which compare both with what
the engine registers). Names and types are part of every existing stack's state: a
changed one replaces the resource (``tests/program/test_resource_identity.py`` pins them).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The Pulumi project, the namespace of its config keys and the ``managed-by`` label value.
PROJECT = "hcloud-talos-autoscaler"
#: The label key naming what created a Hetzner resource (snapshots carry it too).
MANAGED_BY_LABEL = "managed-by"
#: The labels of what the stack creates in Hetzner (the network, the placement groups).
MANAGED_LABELS = {MANAGED_BY_LABEL: PROJECT}


@dataclass(frozen=True)
class Component:
    """A ComponentResource: its type token, and the name the program gives its one instance."""

    kind: str
    name: str

    @property
    def type(self) -> str:
        return f"{PROJECT}:index:{self.kind}"


@dataclass(frozen=True)
class Child:
    """A resource a component registers, named ``<component>-<part>``."""

    type: str
    part: str

    def name(self, component: str) -> str:
        return f"{component}-{self.part}"


NETWORK = Component("PrivateNetwork", "network")
HCLOUD_NETWORK = Child("hcloud:index/network:Network", "network")
CLOUD_SUBNET = Child("hcloud:index/networkSubnet:NetworkSubnet", "subnet")
VSWITCH_SUBNET = Child("hcloud:index/networkSubnet:NetworkSubnet", "vswitch-subnet")


def pool_subnet(cidr: str) -> Child:
    """A cloud subnet of pools with their own ``subnet``, named after its range."""
    return Child(CLOUD_SUBNET.type, f"subnet-{cidr.replace('.', '-').replace('/', '-')}")


TALOS_IMAGE = Component("TalosImage", "talos-image")
#: ``TalosSnapshot`` (``components/image_builder/provider.py``), one per architecture.
SNAPSHOT_TYPE = "pulumi-python:dynamic:Resource"

AUTOSCALER_SECRETS = Component("AutoscalerSecrets", "autoscaler-secrets")
NAMESPACE = Child("kubernetes:core/v1:Namespace", "namespace")
CREDENTIALS_SECRET = Child("kubernetes:core/v1:Secret", "credentials")
TALOS_CONFIG_SECRET = Child("kubernetes:core/v1:Secret", "talos-config")

AUTOSCALED_SERVERS = Component("AutoscaledServers", "autoscaled-servers")
#: ``PoolServers`` (``components/server_sweep/provider.py``), one per pool.
POOL_RECORD_TYPE = "pulumi-python:dynamic/autoscaler:PoolServers"

#: Only in stacks with a ``placementGroup: spread`` pool: a group per such pool.
PLACEMENT_GROUPS = Component("PlacementGroups", "placement-groups")
PLACEMENT_GROUP_TYPE = "hcloud:index/placementGroup:PlacementGroup"

CLUSTER_AUTOSCALER = Component("ClusterAutoscaler", "autoscaler")
PACKAGE = Child("kubernetes:cozystack.io/v1alpha1:Package", "package")
HELM_RELEASE = Child("kubernetes:helm.sh/v3:Release", "release")

PROVIDER_ID_SETTER = Component("ProviderIdSetter", "provider-id-setter")
NODE_CONTROLLER = Component("NodeController", "node-controller")
#: What each in-cluster helper (the providerID setter, the node controller) registers, in
#: the order of ``core.autoscaler.manifests``' objects: ConfigMap, ServiceAccount, ClusterRole,
#: ClusterRoleBinding, Deployment.
HELPER_CHILDREN = (
    Child("kubernetes:core/v1:ConfigMap", "script"),
    Child("kubernetes:core/v1:ServiceAccount", "account"),
    Child("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", "role"),
    Child("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", "binding"),
    Child("kubernetes:apps/v1:Deployment", "deployment"),
)

SMOKE_TEST = Component("SmokeTest", "smoke-test")
SMOKE_TEST_DEPLOYMENT = Child("kubernetes:apps/v1:Deployment", "deployment")


def snapshot(architecture: str) -> Child:
    return Child(SNAPSHOT_TYPE, architecture)


def pool_record(pool: str) -> Child:
    return Child(POOL_RECORD_TYPE, pool)


def placement_group(pool: str) -> Child:
    return Child(PLACEMENT_GROUP_TYPE, pool)
