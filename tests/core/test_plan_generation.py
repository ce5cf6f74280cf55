"""Each pool's generation: a short hash of what its nodes boot, and nothing else."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from core.config import ConfigError, parse_stack_config, sections_from_flat_config
from core.kubernetes.node_controller import GENERATION_LABEL
from core.plan import StackPlan, plan_stack
from core.talos.documents import load_documents

from tests.conftest import REPO, set_path, shipped_config

P = "hcloud-talos-autoscaler"


def plan_of(name: str, changes: dict[str, Any] | None = None) -> StackPlan:
    flat = shipped_config(name)
    for path, value in (changes or {}).items():
        section, *keys = path.split(".")
        set_path(flat[f"{P}:{section}"], keys, value)
    sections, token = sections_from_flat_config(flat)
    return plan_stack(parse_stack_config(sections, token, REPO))


def generations(name: str, changes: dict[str, Any] | None = None) -> dict[str, str]:
    plan = plan_of(name, changes)
    return plan.generations(plan.network.subnet)


def test_every_pool_config_carries_its_generation_label() -> None:
    plan = plan_of("prod")
    configs = plan.worker_configs(plan.network.subnet)
    for config in configs.values():
        (main, *_) = load_documents(config.yaml)
        assert main["machine"]["nodeLabels"][GENERATION_LABEL] == config.generation
        assert len(config.generation) == 10 and int(config.generation, 16) >= 0
    # Pools differ in labels, taints and architecture: so do their generations.
    assert len({config.generation for config in configs.values()}) == len(configs)
    assert generations("prod") == plan.generations(plan.network.subnet)  # stable


@pytest.mark.parametrize(
    "change",
    [
        {"talos.version": "v1.11.5"},
        {"talos.kubernetesVersion": "1.33.2"},
        {"talos.extensions": ["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools"]},
        {"talos.extensions": None, "talos.schematicId": "a" * 64},
        {"talos.nodeLabels.team": "platform"},
        {"talos.nodeAnnotations.note": "x"},
        {"talos.registryMirrors": {}},
        {"autoscaler.nodeGroups.0.instanceType": "cax21"},
        {"autoscaler.nodeGroups.0.labels": {"disk": "ssd"}},
        {"autoscaler.nodeGroups.0.taints": [{"key": "a", "value": "b", "effect": "NoSchedule"}]},
    ],
    ids=lambda change: next(iter(change)),
)
def test_what_a_node_boots_changes_the_generation(change: dict[str, Any]) -> None:
    assert generations("dev", change) != generations("dev")


@pytest.mark.parametrize(
    "change",
    [
        {"autoscaler.nodeGroups.0.minSize": 1},
        {"autoscaler.nodeGroups.0.maxSize": 3},
        {"autoscaler.extraArgs": {"scale-down-unneeded-time": "5m"}},
        {"autoscaler.smokeTest": {"replicas": 2}},
        {"autoscaler.serverCreationTimeout": 20},
        {"autoscaler.rollout": {"strategy": "none", "maxUnavailable": 3, "drainTimeout": 5}},
        {"autoscaler.providerId": "none"},
        {"image.labels": {"environment": "staging"}},
        {"image.location": "nbg1"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_what_does_not_change_a_node_keeps_the_generation(change: dict[str, Any]) -> None:
    assert generations("dev", change) == generations("dev")


def test_the_label_itself_is_not_part_of_the_hash() -> None:
    plan = plan_of("dev")
    (config,) = plan.worker_configs(plan.network.subnet).values()
    # A base config that already carries the label (copied from a running node) boots the
    # same: its value is replaced, never hashed.
    documents: list[dict[str, Any]] = copy.deepcopy(list(plan.stack.base_documents or []))
    documents[0].setdefault("machine", {}).setdefault("nodeLabels", {})[GENERATION_LABEL] = "old"
    relabelled = plan_of(
        "dev", {"talos.workerConfigFile": None, "talos.workerConfig": yaml.safe_dump_all(documents)}
    )
    (again,) = relabelled.worker_configs(relabelled.network.subnet).values()
    assert again.generation == config.generation


def test_a_rollout_setting_out_of_range_names_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        plan_of("dev", {"autoscaler.rollout": {"strategy": "rolling", "maxUnavailable": 0}})
    message = str(caught.value)
    assert "autoscaler.rollout.strategy" in message
    assert "autoscaler.rollout.maxUnavailable" in message


def test_an_existing_snapshot_is_what_its_pools_boot() -> None:
    """``image.existing``: the snapshot's id (its reference offline) stands for the image."""
    by_id = generations("dev", {"image.existing": {"amd64": 4711}})
    assert by_id != generations("dev")
    assert by_id != generations("dev", {"image.existing": {"amd64": 4712}})
