"""Which cluster-autoscaler image runs, and what its Hetzner provider can read.

Sources (kubernetes/autoscaler): the first release whose
``cloudprovider/hetzner/hetzner_manager.go`` reads each setting (``git log -S`` and the
release tags); the chart's default ``image.tag`` in ``charts/cluster-autoscaler/values.yaml``
per chart tag; Cozystack's wrapper chart vendors chart 9.55.0
(``packages/system/cluster-autoscaler``); the newest patch release of each minor is the
newest ``cluster-autoscaler-1.X.Y`` tag (repository HEAD 55c37cd, 2026-08-22). The
autoscaler's README asks for the release built for the cluster's Kubernetes minor.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.releases import talos as talos_versions
from core.releases.talos import Version

IMAGE_REPOSITORY = "registry.k8s.io/autoscaling/cluster-autoscaler"
#: The first cluster-autoscaler minor whose Hetzner provider reads each setting.
FEATURE_SINCE: dict[str, tuple[int, int]] = {
    "HCLOUD_CLUSTER_CONFIG": (1, 29),
    "HCLOUD_CLUSTER_CONFIG_FILE": (1, 33),
    "defaultSubnetIPRange": (1, 35),
    # ``nodeConfigs.<pool>`` fields (``NodeConfig`` in hetzner_manager.go, absent in the
    # tag of the minor before; cluster-autoscaler-1.31.5 and 1.35.2 lack the later ones).
    "placementGroup": (1, 32),
    "subnetIPRange": (1, 35),
    "serverLabels": (1, 36),
}
#: The image each upstream chart version runs when ``image.tag`` is not set.
CHART_DEFAULT_IMAGE: dict[str, str] = {
    "9.55.0": "1.34.2",
    "9.56.0": "1.35.0",
    "9.57.0": "1.35.0",
    "9.58.0": "1.35.0",
    "9.59.0": "1.35.0",
}
#: The upstream chart this program installs with ``deploy: helm`` unless told otherwise,
#: and where it comes from (``autoscaler.chartRepository`` names a mirror).
DEFAULT_CHART_VERSION = "9.56.0"
DEFAULT_CHART_REPOSITORY = "https://kubernetes.github.io/autoscaler"
#: The upstream chart inside Cozystack's ``cozy-cluster-autoscaler`` package.
COZYSTACK_CHART_VERSION = "9.55.0"
#: The newest cluster-autoscaler release of each Kubernetes minor Talos 1.8-1.13 runs.
NEWEST_RELEASE_BY_MINOR: dict[tuple[int, int], str] = {
    (1, 26): "1.26.8",
    (1, 27): "1.27.8",
    (1, 28): "1.28.7",
    (1, 29): "1.29.5",
    (1, 30): "1.30.7",
    (1, 31): "1.31.5",
    (1, 32): "1.32.7",
    (1, 33): "1.33.6",
    (1, 34): "1.34.5",
    (1, 35): "1.35.2",
    (1, 36): "1.36.1",
}


@dataclass(frozen=True)
class AutoscalerImage:
    """The image the autoscaler will run and why."""

    #: ``image.tag`` for the values; None leaves the chart's default.
    tag: str | None
    #: The release that runs, when known (a chart version we have no table for: unknown).
    version: Version | None
    #: Where it comes from, for messages.
    origin: str

    def lacks(self, setting: str) -> bool:
        """Whether this image is known to predate ``setting`` (unknown images are trusted)."""
        return self.version is not None and self.version.minor_key < FEATURE_SINCE[setting]

    def too_old_for(self, setting: str, key: str) -> str:
        """Message: this image cannot read ``setting``, needed because of config ``key``."""
        since = FEATURE_SINCE[setting]
        return (
            f"the autoscaler image v{self.version} ({self.origin}) predates {setting}, read "
            f"from cluster-autoscaler {since[0]}.{since[1]}.0 on, which {key} needs"
        )


def parse_image_tag(tag: str) -> Version:
    """``v1.33.1`` or ``1.33.1``; ValueError naming the expected form."""
    try:
        return talos_versions.parse_kubernetes_version(tag)
    except ValueError:
        raise ValueError(f"{tag!r} is not a release tag like v1.33.1") from None


def autoscaler_image(
    image_tag: str | None,
    deploy: str,
    chart_version: str,
    kubernetes: Version | None,
) -> AutoscalerImage:
    """``imageTag`` if set; else the newest release of the cluster's Kubernetes minor;
    else (Kubernetes unknown) the chart's default. ``imageTag`` must be well-formed."""
    if image_tag is not None:
        version = parse_image_tag(image_tag)
        return AutoscalerImage(f"v{version}", version, f"autoscaler.imageTag {image_tag}")
    if kubernetes is not None:
        release = NEWEST_RELEASE_BY_MINOR.get(kubernetes.minor_key)
        if release is not None:
            origin = f"the newest release for Kubernetes {kubernetes.major}.{kubernetes.minor}"
            return AutoscalerImage(f"v{release}", parse_image_tag(release), origin)
    chart = COZYSTACK_CHART_VERSION if deploy == "package" else chart_version
    default = CHART_DEFAULT_IMAGE.get(chart)
    owner = "Cozystack's vendored chart" if deploy == "package" else "chart"
    return AutoscalerImage(
        None,
        parse_image_tag(default) if default else None,
        f"the default of {owner} {chart}",
    )
