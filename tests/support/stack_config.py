"""A valid stack config's sections, and the ways tests change and parse them."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from core.config import AutoscalerSettings, ConfigError, parse_stack_config
from core.plan import plan_stack
from core.pools import PoolPlan

from tests.conftest import REPO, set_path
from tests.stand_ins.hetzner_api import TEST_TOKEN

VALID: dict[str, Any] = {
    "talos": {
        "version": "v1.11.6",
        "kubernetesVersion": "1.33.1",
        "workerConfigFile": "examples/worker.yaml",
    },
    "network": {},
    "image": {},
    "autoscaler": {
        "nodeGroups": [
            {
                "name": "workers-fsn1",
                "minSize": 0,
                "maxSize": 3,
                "instanceType": "cpx22",
                "region": "fsn1",
            }
        ]
    },
}


def parse(sections: dict[str, Any], token: Any = TEST_TOKEN) -> Any:
    return parse_stack_config(sections, token, REPO)


def problems_of(sections: dict[str, Any], token: Any = TEST_TOKEN) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(sections, token)
    return [str(problem) for problem in caught.value.problems]


def changed(path: str, value: Any) -> dict[str, Any]:
    """VALID with one key (dotted, list indexes as numbers) set; None deletes it."""
    sections = copy.deepcopy(VALID)
    set_path(sections, path.split("."), value)
    return sections


def pools_of(settings: AutoscalerSettings) -> tuple[PoolPlan, ...]:
    """The plan's pool records for ``settings`` in the VALID stack (the cross-section rules,
    e.g. the autoscaler release a pool setting needs, are not applied)."""
    return plan_stack(dataclasses.replace(parse(VALID), autoscaler=settings)).pools


def autoscaler_settings(**changes: Any) -> AutoscalerSettings:
    """Autoscaler settings with pools p0, p1, ... (``pools``: each one's changes) and
    ``changes``."""
    pool = {"name": "a", "minSize": 0, "maxSize": 10, "instanceType": "cpx22", "region": "fsn1"}
    pools = changes.pop("pools", [{}])
    raw = {"nodeGroups": [{**pool, "name": f"p{i}", **p} for i, p in enumerate(pools)], **changes}
    return AutoscalerSettings.model_validate(raw)
