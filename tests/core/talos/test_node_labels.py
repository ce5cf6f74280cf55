"""Node labels a worker cannot carry, refused in the base config with the reason."""

from __future__ import annotations

import pytest

from core.talos.node_labels import label_problem
from core.talos.problems import WorkerConfigError
from core.talos.worker_config import build_worker_config

from tests.support.worker_config import base_for, spec


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("node-role.kubernetes.io/worker", "is refused by the NodeRestriction admission plugin"),
        ("kilo.squat.ai/location", "is a Kilo annotation, not a label"),
    ],
)
def test_a_base_config_label_the_node_cannot_carry_is_refused(label: str, reason: str) -> None:
    base = base_for(11).replace(
        "  certSANs: []\n", f"  certSANs: []\n  nodeLabels:\n    {label}: x\n", 1
    )
    with pytest.raises(WorkerConfigError) as caught:
        build_worker_config(base, spec(11))
    assert [str(p) for p in caught.value.problems if reason in p.message] == [
        f"machine.nodeLabels.{label}: {label_problem(label)}"
    ]
