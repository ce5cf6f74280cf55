"""Where the tests read values in the manifests the program registers, spelled out once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def package_values(package: Mapping[str, Any]) -> dict[str, Any]:
    """The chart values a Cozystack ``Package`` carries (under the chart's subchart key)."""
    values: dict[str, Any] = package["spec"]["components"]["cluster-autoscaler-hetzner"]["values"][
        "cluster-autoscaler"
    ]
    return values


def pod_spec(deployment: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def required_node_terms(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The node selector terms a pod must match to be scheduled."""
    affinity = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    terms: list[dict[str, Any]] = affinity["nodeSelectorTerms"]
    return terms


def required_anti_affinity(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    terms: list[dict[str, Any]] = pod["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    return terms
