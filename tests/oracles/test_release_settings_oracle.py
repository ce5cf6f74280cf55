"""What the charts render from the release settings of issue 25 (replicas, PDB, placement,
resources, priority class, chart values, the priority expander), in both deploy modes.

The values come from the program under the Pulumi mocks; Helm renders the upstream chart
(``deploy: helm``) and Cozystack's wrapper chart with its values files (``deploy: package``).
Each assertion is on the rendered objects: a PDB or a spread whose selector does not select
the autoscaler's pods, or a priority ConfigMap the chart does not write, fails here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import MockRuntime
from tests.oracles.test_chart_oracle import (
    AUTOSCALER,
    flags,
    one,
    prod_config,
    render_package,
    render_release,
    run_program,
)
from tests.support.program import dev_config

RELEASE_SETTINGS: dict[str, Any] = {
    "replicas": 2,
    "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
    "tolerations": [
        {
            "key": "node-role.kubernetes.io/control-plane",
            "operator": "Exists",
            "effect": "NoSchedule",
        }
    ],
    "resources": {"requests": {"cpu": "100m", "memory": "300Mi"}, "limits": {"memory": "600Mi"}},
    "expander": "priority",
    "values": {"revisionHistoryLimit": 5},
}


def package_config() -> dict[str, Any]:
    """The dev stack (Cozystack Package) with prod's release settings and two priorities."""
    config = copy.deepcopy(dev_config())
    settings = config[AUTOSCALER]
    settings.update(copy.deepcopy(RELEASE_SETTINGS), priorityClassName="platform-critical")
    template = settings["nodeGroups"][0]
    settings["nodeGroups"] = [
        {**template, "priority": 20},
        {**template, "name": "workers-nbg1", "region": "nbg1", "maxSize": 5},
    ]
    settings["nodeGroups"][0]["maxSize"] = 5
    return config


def check_release_settings(
    objects: list[dict[str, Any]], *, priority_class: str, priorities: dict[int, list[str]]
) -> None:
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]
    pod_labels = pod["metadata"]["labels"]
    assert spec["replicas"] == 2
    assert spec["revisionHistoryLimit"] == 5
    assert pod["spec"]["priorityClassName"] == priority_class
    assert pod["spec"]["nodeSelector"] == RELEASE_SETTINGS["nodeSelector"]
    assert pod["spec"]["tolerations"] == RELEASE_SETTINGS["tolerations"]
    (container,) = pod["spec"]["containers"]
    assert container["resources"] == RELEASE_SETTINGS["resources"]
    (spread,) = pod["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["labelSelector"]["matchLabels"].items() <= pod_labels.items()

    budget = one(objects, "PodDisruptionBudget")
    assert budget["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    assert "--expander=priority" in flags(deployment)
    (config_map,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap"
        and o["metadata"]["name"] == "cluster-autoscaler-priority-expander"
    ]
    # The autoscaler reads this name in its own namespace (expander/priority).
    assert config_map["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert yaml.safe_load(config_map["data"]["priorities"]) == priorities
    # ... and may read it: the chart's Role names it when the expander is priority.
    role = one(objects, "Role")
    assert any(
        "cluster-autoscaler-priority-expander" in rule.get("resourceNames", [])
        and "get" in rule["verbs"]
        for rule in role["rules"]
    )


def test_the_helm_release_renders_the_release_settings(
    pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    program = run_program(pulumi_runtime, prod_config())
    check_release_settings(
        render_release(program, tmp_path),
        priority_class="system-cluster-critical",
        priorities={20: ["^general-fsn1$"], 10: ["^general-nbg1$"], 0: ["^arm-fsn1$"]},
    )


def test_the_package_renders_the_release_settings(
    pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    program = run_program(pulumi_runtime, package_config())
    check_release_settings(
        render_package(program, tmp_path),
        priority_class="platform-critical",
        priorities={20: ["^workers-fsn1$"], 0: ["^workers-nbg1$"]},
    )


@pytest.mark.parametrize("mode", ["package", "helm"])
def test_one_replica_keeps_the_charts_defaults(
    pulumi_runtime: MockRuntime, tmp_path: Path, mode: str
) -> None:
    """Without the new keys the charts render what they did: one replica, the default class."""
    config = dev_config() if mode == "package" else prod_config()
    for key in ("replicas", "expander", "nodeSelector", "tolerations", "resources", "values"):
        config[AUTOSCALER].pop(key, None)
    for group in config[AUTOSCALER]["nodeGroups"]:
        group.pop("priority", None)
    program = run_program(pulumi_runtime, config)
    render = render_package if mode == "package" else render_release
    objects = render(program, tmp_path)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["template"]["spec"]["priorityClassName"] == "system-cluster-critical"
    assert "topologySpreadConstraints" not in deployment["spec"]["template"]["spec"]
    assert not [
        o for o in objects if o["kind"] == "ConfigMap" and "priority" in o["metadata"]["name"]
    ]
