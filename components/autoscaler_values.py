"""Values of the cluster-autoscaler (Hetzner provider), for the Cozystack Package or Helm.

Pure Python. Facts about the provider come from kubernetes/autoscaler
``cluster-autoscaler/cloudprovider/hetzner/hetzner_manager.go``:
``HCLOUD_CLUSTER_CONFIG`` is base64 of a JSON object decoded into
``ClusterConfig{ImagesForArch{Arm64, Amd64}, NodeConfigs map[pool]{CloudInit,
PlacementGroup, Taints, Labels}}`` (Go matches JSON keys case-insensitively);
``HCLOUD_CLUSTER_CONFIG_FILE`` names a file holding the same JSON, not base64;
``HCLOUD_CLOUD_INIT`` is base64 of the user data (legacy, with ``HCLOUD_IMAGE``);
``HCLOUD_PUBLIC_IPV4`` and ``HCLOUD_PUBLIC_IPV6`` both default to true.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from components import talos_versions
from components.config import AutoscalerSettings, ConfigError, NodeGroup, Problem
from components.hetzner import Architecture
from components.redaction import shown
from components.talos_config import pool_node_labels

PACKAGE_NAME = "cozystack.cluster-autoscaler-hetzner"
PACKAGE_COMPONENT = "cluster-autoscaler-hetzner"
#: Cozystack's release name; the Helm release reuses it so both share one Deployment name.
RELEASE_NAME = "cluster-autoscaler-hetzner"
CHART_NAME = "cluster-autoscaler"
CHART_REPOSITORY = "https://kubernetes.github.io/autoscaler"
#: Pinned default chart (kubernetes/autoscaler tag cluster-autoscaler-chart-9.56.0).
DEFAULT_CHART_VERSION = "9.56.0"

CREDENTIALS_KEY = "token"
CLUSTER_CONFIG_KEY = "cluster-config"
LEGACY_CLOUD_INIT_KEY = "cloud-init"
CLUSTER_CONFIG_MOUNT = "/etc/hcloud-cluster-config"
#: Linux refuses a single environment string above MAX_ARG_STRLEN (32 pages = 128 KiB):
#: the pod fails with "argument list too long". Above it the config is mounted as a file.
ENV_VALUE_LIMIT_BYTES = 128 * 1024
#: Kubernetes rejects Secrets above 1 MiB.
SECRET_LIMIT_BYTES = 1024 * 1024
CONFIG_HASH_ANNOTATION = "hcloud-talos-autoscaler/config-sha256"

#: The chart's ``rbac.additionalRules`` replaces its default list; the autoscaler's
#: leader election needs leases (the guide's step 5 adds this rule).
LEASES_RULE: dict[str, list[str]] = {
    "apiGroups": ["coordination.k8s.io"],
    "resources": ["leases"],
    "verbs": ["create", "get", "update"],
}
DEFAULT_EXTRA_ARGS: dict[str, str | int | bool] = {"enforce-node-group-min-size": True}

#: First cluster-autoscaler minor whose Hetzner provider reads each setting
#: (kubernetes/autoscaler hetzner provider history; kube-hetzner requires >= 1.33
#: for HCLOUD_CLUSTER_CONFIG_FILE).
FEATURE_SINCE: dict[str, tuple[int, int]] = {
    "HCLOUD_CLUSTER_CONFIG": (1, 28),
    "HCLOUD_CLUSTER_CONFIG_FILE": (1, 33),
}


@dataclass(frozen=True)
class ClusterConfigSecret:
    """What the ``talos-config`` Secret holds for the cluster-config format."""

    value: str
    #: True when the JSON is mounted as a file instead of passed as an env var.
    as_file: bool
    #: The decoded JSON object, for render and tests.
    config: dict[str, Any]


def cluster_config(
    node_groups: list[NodeGroup],
    node_labels: dict[str, str],
    image_ids: dict[Architecture, str],
    user_data_by_pool: dict[str, str],
) -> dict[str, Any]:
    """The ``HCLOUD_CLUSTER_CONFIG`` object: an image per architecture, a config per pool.

    ``imagesForArch`` is set for every architecture in use: an empty entry makes
    the provider pick the newest snapshot of the whole project.
    """
    architectures = sorted({group.architecture for group in node_groups})
    missing = [arch for arch in architectures if not image_ids.get(arch)]
    if missing:
        raise ValueError(f"no Talos image for architecture(s) {', '.join(missing)}")
    return {
        "imagesForArch": {arch: str(image_ids[arch]) for arch in architectures},
        "nodeConfigs": {
            group.name: {
                "cloudInit": user_data_by_pool[group.name],
                "labels": {**node_labels, **pool_node_labels(group)},
                "taints": [
                    {"key": taint.key, "value": taint.value, "effect": taint.effect}
                    for taint in group.taints
                ],
            }
            for group in node_groups
        },
    }


def cluster_config_secret(config: dict[str, Any]) -> ClusterConfigSecret:
    """Base64 JSON for the env var; the raw JSON as a mounted file when too big for one."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    if len(encoded) <= ENV_VALUE_LIMIT_BYTES:
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


def talos_config_secret_value(
    settings: AutoscalerSettings,
    node_labels: dict[str, str],
    image_ids: dict[Architecture, str],
    user_data_by_pool: dict[str, str],
) -> tuple[str, bool]:
    """What the ``talos-config`` Secret holds, and whether the autoscaler mounts it as a file."""
    if settings.config_format == "legacy":
        # One config for every pool: the config layer refuses pool labels, taints and mixed
        # architectures in this format, so the pools' configs are identical.
        return legacy_cloud_init(next(iter(user_data_by_pool.values()))), False
    secret = cluster_config_secret(
        cluster_config(settings.node_groups, node_labels, image_ids, user_data_by_pool)
    )
    return secret.value, secret.as_file


def config_fingerprint(talos_config_value: str, image_ids: dict[str, str]) -> str:
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
    kubernetes_version: str | None
    network_name: str
    image_ids: dict[Architecture, str]
    credentials_secret: str
    talos_config_secret: str
    config_hash: str
    #: cluster-config only: the config is mounted as a file (see ``cluster_config_secret``).
    cluster_config_as_file: bool = False


def image_tag(settings: AutoscalerSettings, kubernetes_version: str | None) -> str | None:
    """The autoscaler image tag: ``imageTag``, checked against the cluster's minor.

    The autoscaler's minor must equal Kubernetes' minor (its scheduler simulation
    is built from that release). Raises ConfigError naming ``autoscaler.imageTag``.
    """
    if settings.image_tag is None:
        return None

    def refuse(message: str) -> ConfigError:
        return ConfigError([Problem("autoscaler.imageTag", message)])

    try:
        tag = talos_versions.parse_kubernetes_version(settings.image_tag)
    except ValueError:
        raise refuse(f"{shown(settings.image_tag)} is not a release tag like v1.33.1") from None
    if kubernetes_version is not None:
        kubernetes = talos_versions.parse_kubernetes_version(kubernetes_version)
        if tag.minor_key != kubernetes.minor_key:
            raise refuse(
                f"{settings.image_tag} does not match Kubernetes {kubernetes}: use a "
                f"v{kubernetes.major}.{kubernetes.minor}.x autoscaler image"
            )
    for setting, since in FEATURE_SINCE.items():
        needed = setting == "HCLOUD_CLUSTER_CONFIG" and settings.config_format == "cluster-config"
        if needed and tag.minor_key < since:
            raise refuse(
                f"{settings.image_tag} predates {setting} (cluster-autoscaler "
                f"v{since[0]}.{since[1]}); use a newer image or configFormat legacy"
            )
    return f"v{tag}"


def autoscaling_group(group: NodeGroup) -> dict[str, Any]:
    """A pool in the chart's vocabulary (also the ``nodeGroups`` stack output)."""
    return {
        "name": group.name,
        "minSize": group.min_size,
        "maxSize": group.max_size,
        "instanceType": group.instance_type,
        "region": group.region,
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
            "autoscalingGroups": [autoscaling_group(group) for group in settings.node_groups],
            "extraEnv": env,
            "extraEnvSecrets": secrets,
            "extraArgs": {**DEFAULT_EXTRA_ARGS, **settings.extra_args},
            "rbac": {"additionalRules": [LEASES_RULE]},
            "podAnnotations": {CONFIG_HASH_ANNOTATION: inputs.config_hash},
        }
    )
    tag = image_tag(settings, inputs.kubernetes_version)
    if tag is not None:
        values["image"] = {"tag": tag}
    return values


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


def node_registration_warning(provider_id_controller: bool) -> str | None:
    """Why new nodes get deleted after 15 minutes when nothing sets ``spec.providerID``."""
    if provider_id_controller:
        return None
    return (
        "nothing sets spec.providerID (hcloud://<server-id>) on autoscaled Talos nodes, so the "
        "autoscaler counts them as unregistered and deletes them after --max-node-provision-time "
        "(15m): set autoscaler.providerIdController: true, or run a cloud controller manager "
        "that sets it (see README, Node registration)"
    )


def _flag(value: bool) -> Literal["true", "false"]:
    return "true" if value else "false"
