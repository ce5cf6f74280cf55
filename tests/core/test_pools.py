"""The plan's per-pool record (``core.pools``): what it holds for a stack of two pools."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from core import resources
from core.plan import plan_stack
from core.pools import INSTANCE_TYPE_LABEL, LOWEST_PRIORITY, PoolPlan
from core.releases.talos import TalosVersion, Version

from tests.support.stack_config import VALID, parse


def two_pools() -> dict[str, Any]:
    """An amd64 pool with every per-pool setting and a plain arm64 pool."""
    sections = copy.deepcopy(VALID)
    sections["talos"].update(
        nodeLabels={"topology.kubernetes.io/zone": "hetzner"},
        nodeAnnotations={"kilo.squat.ai/location": "hetzner"},
    )
    sections["autoscaler"].update(
        expander="priority",
        nodeGroups=[
            {
                "name": "x86",
                "minSize": 1,
                "maxSize": 5,
                "instanceType": "CPX22",
                "region": "fsn1",
                "labels": {"tier": "web"},
                "taints": [{"key": "dedicated", "value": "web", "effect": "NoSchedule"}],
                "nodeAnnotations": {"example.com/owner": "web"},
                "placementGroup": "spread",
                "priority": 20,
            },
            {"name": "arm", "minSize": 0, "maxSize": 3, "instanceType": "cax21", "region": "nbg1"},
        ],
    )
    return sections


def test_each_pool_is_decided_once_with_what_comes_after_the_plan_needs() -> None:
    plan = plan_stack(parse(two_pools()))
    x86, arm = plan.pools
    assert isinstance(x86, PoolPlan)
    assert (x86.name, x86.instance_type, x86.region, x86.architecture) == (
        "x86",
        "cpx22",
        "fsn1",
        "amd64",
    )
    assert (arm.name, arm.instance_type, arm.region, arm.architecture) == (
        "arm",
        "cax21",
        "nbg1",
        "arm64",
    )
    assert (x86.min_size, x86.max_size, arm.min_size, arm.max_size) == (1, 5, 0, 3)
    assert x86.node_labels == {
        "hcloud/node-group": "x86",
        "topology.kubernetes.io/region": "fsn1",
        INSTANCE_TYPE_LABEL: "cpx22",
        "tier": "web",
    }
    assert x86.node_annotations == {"example.com/owner": "web"}
    assert [(t.key, t.value, t.effect) for t in x86.taints] == [("dedicated", "web", "NoSchedule")]
    assert arm.taints == () and arm.node_annotations == {}
    assert (x86.priority, arm.priority) == (20, LOWEST_PRIORITY)
    assert x86.placement_group is not None and arm.placement_group is None
    assert x86.placement_group.name == "x86-spread"
    assert x86.placement_group.labels == {
        "managed-by": resources.PROJECT,
        "hcloud/node-group": "x86",
    }
    assert plan.servers.placement_groups == (x86.placement_group,)
    assert plan.servers.pools == ("x86", "arm")


def test_a_pools_worker_spec_is_the_stacks_settings_and_the_pools_own() -> None:
    plan = plan_stack(parse(two_pools()))
    x86, arm = plan.pools
    spec = x86.worker_spec
    assert spec.talos == TalosVersion(1, 11, 6) and spec.talos.text == "v1.11.6"
    assert spec.kubernetes == Version(1, 33, 1)
    assert spec.subnet == plan.network.subnet and spec.network_ip_range == plan.network.ip_range
    assert spec.node_labels == {"topology.kubernetes.io/zone": "hetzner", **x86.node_labels}
    assert spec.node_annotations == {
        "kilo.squat.ai/location": "hetzner",
        "example.com/owner": "web",
    }
    assert list(spec.taints) == list(x86.taints)
    assert spec.boot_image == x86.boot_image
    # Once the network's subnet output resolves, the spec follows it (the pool has none).
    assert x86.worker_spec_in("10.1.0.0/24").subnet == "10.1.0.0/24"
    assert arm.worker_spec.node_labels["hcloud/node-group"] == "arm"


def test_a_pool_boots_its_architectures_snapshot_and_carries_its_generation() -> None:
    plan = plan_stack(parse(two_pools()))
    x86, arm = plan.pools
    snapshots = {snapshot.architecture: snapshot for snapshot in plan.image.snapshots}
    assert set(snapshots) == {"amd64", "arm64"}
    for pool in (x86, arm):
        snapshot = snapshots[pool.architecture]
        assert snapshot.schematic_id in pool.boot_image and pool.architecture in pool.boot_image
        assert "talos v1.11.6" in pool.boot_image
    assert x86.boot_image != arm.boot_image
    assert plan.generations(plan.network.subnet) == {"x86": x86.generation, "arm": arm.generation}
    assert x86.generation and arm.generation and x86.generation != arm.generation


def test_the_generation_is_unknown_while_the_base_config_is_encrypted() -> None:
    plan = plan_stack(parse(two_pools()))
    unreadable = plan_stack(replace(plan.stack, base_worker_config=None, base_documents=None))
    assert [pool.generation for pool in unreadable.pools] == [None, None]
    assert [pool.worker_spec for pool in unreadable.pools] == [
        pool.worker_spec for pool in plan.pools
    ]


def test_the_pools_records_name_the_resources_the_plan_lists() -> None:
    plan = plan_stack(parse(two_pools()))
    listed = {(resource.type, resource.name) for resource in plan.resources}
    for pool in plan.pools:
        record = pool.servers_record
        assert (record.type, record.name(resources.AUTOSCALED_SERVERS.name)) in listed
    x86 = plan.pools[0]
    assert x86.placement_group is not None
    group = x86.placement_group.resource
    assert (group.type, group.name(resources.PLACEMENT_GROUPS.name)) in listed


def test_the_outputs_and_values_list_the_planned_pools() -> None:
    plan = plan_stack(parse(two_pools()))
    assert [group["name"] for group in plan.outputs["nodeGroups"]] == ["x86", "arm"]
    assert plan.outputs["nodeGroups"][0] == {
        "name": "x86",
        "minSize": 1,
        "maxSize": 5,
        "instanceType": "cpx22",
        "region": "fsn1",
    }
    chart = plan.chart_values(
        network_name="net",
        image_ids={"amd64": "1", "arm64": "2"},
        credentials_secret="c",
        talos_config_secret="t",
        talos_config_as_file=False,
        config_hash="h",
    )
    assert chart["autoscalingGroups"] == plan.outputs["nodeGroups"]
    assert chart["expanderPriorities"] == {"20": ["^x86$"], str(LOWEST_PRIORITY): ["^arm$"]}


def test_legacy_pools_boot_one_config_without_pool_labels_or_taints() -> None:
    sections = copy.deepcopy(VALID)
    sections["autoscaler"]["configFormat"] = "legacy"
    plan = plan_stack(parse(sections))
    (pool,) = plan.pools
    assert pool.worker_spec.node_labels == {}
    assert list(pool.worker_spec.taints) == []
    assert pool.node_labels["hcloud/node-group"] == "workers-fsn1"  # the record still knows
