"""Versions are parsed once, where the config is read, into a type the rest carries."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import pytest

from core.config.parse import read_stack_file
from core.plan import plan_stack
from core.releases import talos as talos_versions
from core.releases.talos import TalosVersion, Version
from core.render import render_stack

from tests.conftest import REPO
from tests.support.stack_config import VALID, parse, problems_of


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the Talos and Kubernetes version parsers run from now on."""
    counts: Counter[str] = Counter()
    talos, kubernetes = talos_versions.parse_talos_version, talos_versions.parse_kubernetes_version

    def count_talos(text: str) -> TalosVersion:
        counts[text] += 1
        return talos(text)

    def count_kubernetes(text: str) -> Version:
        counts[text] += 1
        return kubernetes(text)

    monkeypatch.setattr(talos_versions, "parse_talos_version", count_talos)
    monkeypatch.setattr(talos_versions, "parse_kubernetes_version", count_kubernetes)
    return counts


def test_the_config_holds_the_parsed_versions() -> None:
    stack = parse(VALID)
    assert stack.talos.version == TalosVersion(1, 11, 6)
    assert stack.talos.version.text == "v1.11.6" and str(stack.talos.version) == "1.11.6"
    assert stack.talos.kubernetes_version == Version(1, 33, 1)
    (snapshot,) = plan_stack(stack).image.snapshots
    assert snapshot.properties()["talos_version"] == "v1.11.6"  # stack state: the text


def test_a_plan_of_three_pools_parses_each_configured_version_once(parses: Counter[str]) -> None:
    """``Pulumi.prod.yaml``: three pools, both architectures; reading, planning, rendering."""
    stack, warnings = read_stack_file(REPO, "prod")
    plan = plan_stack(stack, warnings)
    assert len(plan.pools) == 3
    plan.worker_configs(plan.network.subnet)
    assert parses[stack.talos.version.text] == 1
    # Kubernetes versions parsed after the config: each built config's kubelet image (its
    # check reads the document) and the autoscaler's release tag, not the pools' specs.
    kubernetes = sum(count for text, count in parses.items() if text != stack.talos.version.text)
    assert kubernetes == len(plan.pools) + 1, parses


def test_render_parses_talos_version_once(parses: Counter[str]) -> None:
    talos = read_stack_file(REPO, "dev")[0].talos.version.text
    parses.clear()
    render_stack(REPO, "dev")
    assert parses[talos] == 1, parses


def test_bad_versions_are_reported_as_before(tmp_path: Path) -> None:
    sections = copy.deepcopy(VALID)
    sections["talos"].update(version="v1.7.0", kubernetesVersion="1.33")
    assert problems_of(sections) == [
        "hcloud-talos-autoscaler:talos.version: Talos v1.7.0 is not supported by this program; "
        f"supported minors: {talos_versions.supported_talos_minors()}",
        "hcloud-talos-autoscaler:talos.kubernetesVersion: '1.33' is not a Kubernetes version of "
        "the form X.Y.Z (e.g. 1.33.1)",
    ]
    sections["talos"].update(version=11.6, kubernetesVersion="1.29.0")
    (problem,) = problems_of(sections)
    assert problem.startswith("hcloud-talos-autoscaler:talos.version: got ")
    assert problem.endswith("Input should be a valid string")
