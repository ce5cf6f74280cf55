"""Values of the cluster-autoscaler (Hetzner provider), for the Cozystack Package or Helm.

Pure Python. Facts about the provider come from kubernetes/autoscaler
``cluster-autoscaler/cloudprovider/hetzner/hetzner_manager.go``:
``HCLOUD_CLUSTER_CONFIG`` is base64 of a JSON object decoded into
``ClusterConfig{ImagesForArch{Arm64, Amd64}, DefaultSubnetIPRange, NodeConfigs
map[pool]{CloudInit, PlacementGroup, Taints, Labels}}`` (Go matches JSON keys
case-insensitively); ``HCLOUD_CLUSTER_CONFIG_FILE`` names a file holding the same JSON,
not base64; ``HCLOUD_CLOUD_INIT`` is base64 of the user data (legacy, with
``HCLOUD_IMAGE``); ``HCLOUD_PUBLIC_IPV4`` and ``HCLOUD_PUBLIC_IPV6`` both default to true.
Which image runs and what it reads: ``core.releases.autoscaler``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from core.config.model import (
    DEFAULT_PRIORITY_CLASS,
    AutoscalerSettings,
)
from core.config.problems import ConfigError, Problem
from core.hetzner.facts import Architecture
from core.pools import PoolPlan
from core.releases.autoscaler import COZYSTACK_CHART_VERSION, DEFAULT_CHART_VERSION, AutoscalerImage
from core.resources import PROJECT

PACKAGE_NAME = "cozystack.cluster-autoscaler-hetzner"
PACKAGE_COMPONENT = "cluster-autoscaler-hetzner"
#: Cozystack's release name; the Helm release reuses it so both share one Deployment name.
RELEASE_NAME = "cluster-autoscaler-hetzner"
#: The chart names its Deployment ``<release>-<cloudProvider>-cluster-autoscaler``;
#: the Helm release takes Cozystack's release name so both modes share one name.
DEPLOYMENT_NAME = f"{RELEASE_NAME}-hetzner-cluster-autoscaler"
CHART_NAME = "cluster-autoscaler"
__all__ = ["DEFAULT_CHART_VERSION"]

#: The Secrets the autoscaler reads (and the providerID setter reads the token from).
CREDENTIALS_SECRET = "hetzner-credentials"
CREDENTIALS_KEY = "token"
#: The key of ``autoscaler.providerIdToken`` (read-only) in the same Secret.
SETTER_CREDENTIALS_KEY = "read-token"
TALOS_CONFIG_SECRET = "talos-config"
#: The ``talos-config`` Secret's key: ``cluster-config``, or ``cloud-init`` (legacy).
CLUSTER_CONFIG_KEY = "cluster-config"
LEGACY_CLOUD_INIT_KEY = "cloud-init"
CLUSTER_CONFIG_MOUNT = "/etc/hcloud-cluster-config"
#: Linux refuses a single environment string ``NAME=value`` (with its terminating NUL)
#: above MAX_ARG_STRLEN (32 pages = 128 KiB): the pod fails with "argument list too long".
#: Above it the config is mounted as a file.
ENV_STRING_LIMIT_BYTES = 128 * 1024
CLUSTER_CONFIG_ENV = "HCLOUD_CLUSTER_CONFIG"
#: Kubernetes rejects Secrets above 1 MiB.
SECRET_LIMIT_BYTES = 1024 * 1024
CONFIG_HASH_ANNOTATION = f"{PROJECT}/config-sha256"

#: The autoscaler's leader-election lease. The chart's ClusterRole grants leases create
#: and get/update on this name (templates/clusterrole.yaml, every chart since 9.20), and
#: Cozystack's values-hetzner.yaml adds a leases rule of its own, which a Package list
#: would replace: so no ``rbac`` values unless a renamed lease needs one with Helm.
LEASE_NAME = "cluster-autoscaler"
LEASE_NAME_FLAG = "leader-elect-resource-name"
DEFAULT_EXTRA_ARGS: dict[str, str | int | bool] = {"enforce-node-group-min-size": True}
#: The chart's pod labels (``cluster-autoscaler.instance-name``): the same in both modes,
#: since the Package's release has the same name and the subchart the same name.
POD_SELECTOR = {
    "app.kubernetes.io/instance": RELEASE_NAME,
    "app.kubernetes.io/name": "hetzner-cluster-autoscaler",
}
#: Top-level keys of the chart's ``values.yaml``, the same in 9.55.0 (Cozystack's) and
#: 9.56.0; Helm ignores any other key (``tests/oracles`` compares both charts).
CHART_VALUE_KEYS = frozenset(
    {
        "additionalLabels", "affinity", "autoDiscovery", "autoscalingGroups",
        "autoscalingGroupsnamePrefix", "awsAccessKeyID", "awsRegion", "awsSecretAccessKey",
        "azureClientID", "azureClientSecret", "azureEnableForceDelete", "azureResourceGroup",
        "azureSubscriptionID", "azureTenantID", "azureUseManagedIdentityExtension",
        "azureUseWorkloadIdentityExtension", "azureUserAssignedIdentityID", "azureVMType",
        "civoApiKey", "civoApiUrl", "civoClusterID", "civoRegion", "cloudConfigPath",
        "cloudProvider", "clusterAPICloudConfigPath", "clusterAPIConfigMapsNamespace",
        "clusterAPIKubeconfigSecret", "clusterAPIMode", "clusterAPIWorkloadKubeconfigPath",
        "containerSecurityContext", "customArgs", "deployment", "dnsConfig", "dnsPolicy",
        "envFromConfigMap", "envFromSecret", "expanderPriorities", "extraArgs", "extraEnv",
        "extraEnvConfigMaps", "extraEnvSecrets", "extraObjects", "extraVolumeMounts",
        "extraVolumeSecrets", "extraVolumes", "fullnameOverride", "hostNetwork", "image",
        "initContainers", "kubeTargetVersionOverride", "kwokConfigMapName",
        "magnumCABundlePath", "magnumClusterName", "nameOverride", "nodeSelector",
        "podAnnotations", "podDisruptionBudget", "podLabels", "priorityClassName",
        "priorityConfigMapAnnotations", "prometheusRule", "rbac", "replicaCount", "resources",
        "revisionHistoryLimit", "secretKeyRefNameOverride", "securityContext", "service",
        "serviceMonitor", "tolerations", "topologySpreadConstraints", "updateStrategy", "vpa",
    }
)  # fmt: skip
#: Pods that select Linux nodes must find the label in the scale-from-zero template too;
#: the provider's template has no ``kubernetes.io/os`` (hetzner_node_group.go).
TEMPLATE_OS_LABELS = {"kubernetes.io/os": "linux"}


@dataclass(frozen=True)
class ClusterConfigSecret:
    """What the ``talos-config`` Secret holds for the cluster-config format."""

    value: str
    #: True when the JSON is mounted as a file instead of passed as an env var.
    as_file: bool
    #: The decoded JSON object, for render and tests.
    config: dict[str, Any]


def template_labels(pool: PoolPlan, node_labels: dict[str, str]) -> dict[str, str]:
    """The labels the autoscaler assumes a pool's next node has (scale from zero)."""
    return {**TEMPLATE_OS_LABELS, **node_labels, **pool.node_labels}


def cluster_config(
    pools: Sequence[PoolPlan],
    node_labels: dict[str, str],
    image_ids: dict[Architecture, str],
    user_data_by_pool: dict[str, str],
    pinned_subnet: str | None = None,
    placement_groups: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``HCLOUD_CLUSTER_CONFIG`` object: an image per architecture, a config per pool.

    ``imagesForArch`` is set for every architecture in use: an empty entry makes
    the provider pick the newest snapshot of the whole project. ``pinned_subnet``
    (``defaultSubnetIPRange``) attaches new servers to that cloud subnet of the network.
    ``placement_groups`` names each spread pool's placement group (ID or name; the
    provider exits at start when it does not exist). ``placementGroup`` and
    ``serverLabels`` appear only for pools that use them (the config layer refuses
    them for images that cannot read them).
    """
    groups_by_pool = placement_groups or {}
    missing_groups = [
        pool.name for pool in pools if pool.placement_group and not groups_by_pool.get(pool.name)
    ]
    if missing_groups:
        raise ValueError(f"no placement group for pool(s) {', '.join(missing_groups)}")
    architectures = sorted({pool.architecture for pool in pools})
    missing = [arch for arch in architectures if not image_ids.get(arch)]
    if missing:
        raise ValueError(f"no Talos image for architecture(s) {', '.join(missing)}")
    pin = {"defaultSubnetIPRange": pinned_subnet} if pinned_subnet else {}
    return {
        "imagesForArch": {arch: str(image_ids[arch]) for arch in architectures},
        **pin,
        "nodeConfigs": {
            pool.name: {
                "cloudInit": user_data_by_pool[pool.name],
                "labels": template_labels(pool, node_labels),
                "taints": [
                    {"key": taint.key, "value": taint.value, "effect": taint.effect}
                    for taint in pool.taints
                ],
                **({"placementGroup": groups_by_pool[pool.name]} if pool.placement_group else {}),
                **({"serverLabels": dict(pool.server_labels)} if pool.server_labels else {}),
                **({"subnetIPRange": pool.subnet} if pool.subnet else {}),
            }
            for pool in pools
        },
    }


def cluster_config_secret(config: dict[str, Any]) -> ClusterConfigSecret:
    """Base64 JSON for the env var; the raw JSON as a mounted file when too big for one."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    if env_string_bytes(CLUSTER_CONFIG_ENV, encoded) <= ENV_STRING_LIMIT_BYTES:
        return ClusterConfigSecret(value=encoded, as_file=False, config=config)
    if len(text.encode("utf-8")) > SECRET_LIMIT_BYTES:
        raise ConfigError(
            [
                Problem(
                    "autoscaler.nodeGroups",
                    f"the autoscaler cluster config is {len(text.encode('utf-8'))} bytes, above "
                    f"the {SECRET_LIMIT_BYTES}-byte limit of a Kubernetes Secret: use fewer pools "
                    "or a smaller Talos worker config",
                )
            ]
        )
    return ClusterConfigSecret(value=text, as_file=True, config=config)


def env_string_bytes(name: str, value: str) -> int:
    """What one environment variable takes in a process: ``NAME=value`` and a NUL."""
    return len(f"{name}={value}".encode()) + 1


def pinned_subnet(existing_network: str | None, subnet: str, image: AutoscalerImage) -> str | None:
    """The subnet new servers are attached to, when the network is someone else's.

    A network of ours has one cloud subnet; an existing one may have several in the
    zone, and without ``defaultSubnetIPRange`` Hetzner picks the address (FACTS 1.2).
    """
    if existing_network is None or image.lacks("defaultSubnetIPRange"):
        return None
    return subnet


@dataclass(frozen=True)
class TalosConfigSecret:
    """What the ``talos-config`` Secret holds and how the autoscaler reads it (the key:
    ``CLUSTER_CONFIG_KEY``, or ``LEGACY_CLOUD_INIT_KEY`` in the legacy format)."""

    #: The exact string the autoscaler reads (``stringData``).
    value: str
    #: cluster-config only: mounted as a file (see ``cluster_config_secret``).
    as_file: bool
    #: cluster-config only: the decoded object, for render and tests.
    cluster_config: dict[str, Any] | None
    #: ``config_fingerprint`` of the value and the image ids: rolls the autoscaler's pods.
    fingerprint: str


def talos_config_secret(
    settings: AutoscalerSettings,
    pools: Sequence[PoolPlan],
    node_labels: dict[str, str],
    image_ids: dict[Architecture, str],
    user_data_by_pool: dict[str, str],
    subnet_pin: str | None = None,
    placement_groups: Mapping[str, str] | None = None,
) -> TalosConfigSecret:
    """The ``talos-config`` Secret of either format, from each pool's user data and the images."""
    if settings.config_format == "legacy":
        # One config for every pool: the config layer refuses pool labels, taints and mixed
        # architectures in this format, so the pools' configs are identical.
        value = legacy_cloud_init(next(iter(user_data_by_pool.values())))
        return TalosConfigSecret(value, False, None, config_fingerprint(value, image_ids))
    secret = cluster_config_secret(
        cluster_config(
            pools,
            node_labels,
            image_ids,
            user_data_by_pool,
            subnet_pin,
            placement_groups,
        )
    )
    return TalosConfigSecret(
        secret.value,
        secret.as_file,
        secret.config,
        config_fingerprint(secret.value, image_ids),
    )


def config_fingerprint(talos_config_value: str, image_ids: Mapping[Any, str]) -> str:
    """sha256 of all the autoscaler hands new servers; its pods roll when it changes."""
    listing = json.dumps({"images": image_ids, "talosConfig": talos_config_value}, sort_keys=True)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def legacy_cloud_init(user_data: str) -> str:
    """``HCLOUD_CLOUD_INIT``: base64 of the user data (the provider decodes it once)."""
    return base64.b64encode(user_data.encode("utf-8")).decode("ascii")


def decode_cluster_config(env_value: str | None, file_content: str | None) -> dict[str, Any]:
    """Read the cluster config the way the provider does (for render and tests)."""
    if env_value:
        result: dict[str, Any] = json.loads(base64.b64decode(env_value, validate=True))
        return result
    if file_content is None:
        raise ValueError("neither HCLOUD_CLUSTER_CONFIG nor HCLOUD_CLUSTER_CONFIG_FILE content")
    parsed: dict[str, Any] = json.loads(file_content)
    return parsed


@dataclass(frozen=True)
class ValuesInputs:
    """Everything the values depend on, resolved from the other components' outputs."""

    settings: AutoscalerSettings
    pools: tuple[PoolPlan, ...]
    image: AutoscalerImage
    network_name: str
    image_ids: dict[Architecture, str]
    credentials_secret: str
    talos_config_secret: str
    config_hash: str
    #: cluster-config only: the config is mounted as a file (see ``cluster_config_secret``).
    cluster_config_as_file: bool = False


def rbac_values(settings: AutoscalerSettings) -> dict[str, Any]:
    """``rbac`` values only where the chart needs them (see ``LEASE_NAME``)."""
    lease = str(settings.extra_args.get(LEASE_NAME_FLAG, LEASE_NAME))
    if settings.deploy == "package" or lease == LEASE_NAME:
        return {}
    rule = {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": [lease],
        "verbs": ["get", "update"],
    }
    return {"rbac": {"additionalRules": [rule]}}


def autoscaling_group(pool: PoolPlan) -> dict[str, Any]:
    """A pool in the chart's vocabulary (also the ``nodeGroups`` stack output)."""
    return {
        "name": pool.name,
        "minSize": pool.min_size,
        "maxSize": pool.max_size,
        "instanceType": pool.instance_type,
        "region": pool.region,
    }


def autoscaler_values(inputs: ValuesInputs) -> dict[str, Any]:
    """Chart values (top level: the upstream chart; nested by ``package_manifest``)."""
    settings = inputs.settings
    env: dict[str, str] = {"HCLOUD_NETWORK": inputs.network_name}
    if settings.ssh_key:
        env["HCLOUD_SSH_KEY"] = settings.ssh_key
    if settings.firewall:
        env["HCLOUD_FIREWALL"] = settings.firewall
    env["HCLOUD_PUBLIC_IPV4"] = _flag(settings.public_ipv4)
    # The provider's default for IPv6 is true, whatever some docs say: always explicit.
    env["HCLOUD_PUBLIC_IPV6"] = _flag(settings.public_ipv6)
    env["HCLOUD_SERVER_CREATION_TIMEOUT"] = str(settings.server_creation_timeout)

    secrets: dict[str, dict[str, str]] = {
        "HCLOUD_TOKEN": {"name": inputs.credentials_secret, "key": CREDENTIALS_KEY}
    }
    values: dict[str, Any] = {}
    if settings.config_format == "legacy":
        (image_id,) = inputs.image_ids.values()
        env["HCLOUD_IMAGE"] = str(image_id)
        secrets["HCLOUD_CLOUD_INIT"] = {
            "name": inputs.talos_config_secret,
            "key": LEGACY_CLOUD_INIT_KEY,
        }
    elif inputs.cluster_config_as_file:
        env["HCLOUD_CLUSTER_CONFIG_FILE"] = f"{CLUSTER_CONFIG_MOUNT}/{CLUSTER_CONFIG_KEY}"
        values["extraVolumeSecrets"] = {
            "hcloud-cluster-config": {
                "name": inputs.talos_config_secret,
                "mountPath": CLUSTER_CONFIG_MOUNT,
            }
        }
    else:
        secrets["HCLOUD_CLUSTER_CONFIG"] = {
            "name": inputs.talos_config_secret,
            "key": CLUSTER_CONFIG_KEY,
        }

    values.update(
        {
            "autoscalingGroups": [autoscaling_group(pool) for pool in inputs.pools],
            "extraEnv": env,
            "extraEnvSecrets": secrets,
            "extraArgs": {
                **DEFAULT_EXTRA_ARGS,
                **settings.extra_args,
                **({"expander": "priority"} if settings.expander == "priority" else {}),
            },
            **rbac_values(settings),
            "podAnnotations": {CONFIG_HASH_ANNOTATION: inputs.config_hash},
        }
    )
    if inputs.cluster_config_as_file and inputs.image.lacks("HCLOUD_CLUSTER_CONFIG_FILE"):
        too_old = inputs.image.too_old_for("HCLOUD_CLUSTER_CONFIG_FILE", "a mounted config")
        raise ConfigError(
            [
                Problem(
                    "autoscaler.nodeGroups",
                    "the cluster config is too large for an environment variable and must be "
                    f"mounted as a file, but {too_old}: use fewer pools or a smaller Talos "
                    "worker config, or a newer Kubernetes",
                )
            ]
        )
    if inputs.image.tag is not None:
        values["image"] = {"tag": inputs.image.tag}
    return merge_values({**values, **release_values(settings, inputs.pools)}, settings.values)


def release_values(settings: AutoscalerSettings, pools: Sequence[PoolPlan]) -> dict[str, Any]:
    """How the autoscaler's pods run: replicas, placement, resources, priorities.

    Only what differs from the chart's defaults (one replica, ``system-cluster-critical``),
    so a stack that sets none of it keeps its values. With several replicas leader
    election (on in the chart) keeps one active; a PodDisruptionBudget lets a drain take
    one at a time and a spread over nodes keeps a node loss from taking them all.
    """
    found: dict[str, Any] = {}
    if settings.replicas > 1:
        found["replicaCount"] = settings.replicas
        found["podDisruptionBudget"] = {"maxUnavailable": 1}
        found["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": dict(POD_SELECTOR)},
            }
        ]
    if settings.resources is not None:
        found["resources"] = settings.resources.model_dump(exclude_defaults=True)
    if settings.node_selector:
        found["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        found["tolerations"] = [dict(toleration) for toleration in settings.tolerations]
    if settings.priority_class_name != DEFAULT_PRIORITY_CLASS:
        found["priorityClassName"] = settings.priority_class_name
    if settings.expander == "priority":
        found["expanderPriorities"] = expander_priorities(pools)
    return found


def expander_priorities(pools: Sequence[PoolPlan]) -> dict[str, list[str]]:
    """The chart's ``expanderPriorities``: priority -> anchored pool-name regexes.

    The chart writes them into the ``cluster-autoscaler-priority-expander`` ConfigMap;
    a pool without a priority gets the lowest, ``core.pools.LOWEST_PRIORITY``.
    """
    found: dict[int, list[str]] = {}
    for pool in pools:
        found.setdefault(pool.priority, []).append(f"^{pool.name}$")
    return {str(priority): found[priority] for priority in sorted(found, reverse=True)}


def merge_values(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``autoscaler.values`` over ours: maps merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def ignored_values_warning(settings: AutoscalerSettings) -> str | None:
    """``autoscaler.values`` keys no chart reads (Cozystack's vendored 9.55.0 or upstream's)."""
    unknown = sorted(set(settings.values) - CHART_VALUE_KEYS)
    if not unknown:
        return None
    where = (
        "the Package passes autoscaler.values to the upstream chart Cozystack vendors "
        f"({COZYSTACK_CHART_VERSION}, the wrapper's cluster-autoscaler subchart)"
        if settings.deploy == "package"
        else "the upstream chart"
    )
    return (
        f"autoscaler.values: {', '.join(unknown)} is not a value of the cluster-autoscaler "
        f"chart; {where}, which ignores it. Check the spelling against the chart's values.yaml"
    )


def helm_values(values: dict[str, Any]) -> dict[str, Any]:
    """The upstream chart needs the provider named."""
    return {"cloudProvider": "hetzner", **values}


def package_manifest(values: dict[str, Any]) -> dict[str, Any]:
    """The Cozystack ``Package``: cluster-scoped, values under the chart's subchart key."""
    return {
        "apiVersion": "cozystack.io/v1alpha1",
        "kind": "Package",
        "metadata": {"name": PACKAGE_NAME},
        "spec": {
            "variant": "default",
            "components": {PACKAGE_COMPONENT: {"values": {"cluster-autoscaler": values}}},
        },
    }


def subnet_pin_warning(
    existing_network: str | None, config_format: str, image: AutoscalerImage
) -> str | None:
    """Why new servers in an existing network may get an address outside the subnet."""
    if existing_network is None:
        return None
    if config_format == "legacy":
        reason = "configFormat legacy has no cluster config to carry defaultSubnetIPRange"
    elif image.lacks("defaultSubnetIPRange"):
        reason = image.too_old_for("defaultSubnetIPRange", "pinning the subnet")
    else:
        return None
    return (
        f"network.existing {existing_network!r}: new servers cannot be pinned to "
        f"network.subnet ({reason}); if that network has several cloud subnets in the zone, "
        "Hetzner may give a server an address outside network.subnet and its node registers "
        "no usable IP. Keep one cloud subnet in the zone, or use an autoscaler >= 1.35"
    )


def node_registration_warning(provider_id: str) -> str | None:
    """Why new nodes get deleted after 15 minutes when nothing sets ``spec.providerID``."""
    if provider_id == "setter":
        return None
    return (
        "autoscaler.providerId is none: this stack deploys nothing that sets spec.providerID "
        "(hcloud://<server-id>) on autoscaled nodes, and the autoscaler deletes nodes without "
        "it after --max-node-provision-time (15m). Keep none only if your own cloud controller "
        "sets it on nodes that Local CCM already initialized; otherwise remove the key to deploy "
        "the providerID setter (see docs/autoscaler.md, Node registration)"
    )


def _flag(value: bool) -> Literal["true", "false"]:
    return "true" if value else "false"
