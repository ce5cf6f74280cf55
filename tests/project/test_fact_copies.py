"""Facts typed a second time where the program's own cannot be imported: in the in-cluster
scripts (they run alone from a ConfigMap, standard library only) and in ``Pulumi.yaml``.
Each copy equals the program's."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.autoscaler.manifests import CONTROLLER_NAME
from core.hetzner.access import DEFAULT_ENDPOINT
from core.hetzner.facts import NODE_GROUP_LABEL
from core.kubernetes import client, node_controller
from core.resources import PROJECT


def test_the_setter_matches_the_pool_label_the_program_gives_servers_and_nodes() -> None:
    assert client.NODE_GROUP_LABEL == NODE_GROUP_LABEL


def test_the_scripts_fall_back_to_the_public_api_the_program_falls_back_to() -> None:
    assert client.DEFAULT_HCLOUD_ENDPOINT == DEFAULT_ENDPOINT
    env = {"HCLOUD_TOKEN": "t", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    assert client.PodAccess.from_environment(env).hcloud_endpoint == DEFAULT_ENDPOINT


def test_the_node_controllers_names_are_the_projects() -> None:
    for key in (
        node_controller.GENERATION_LABEL,
        node_controller.DRAINING_ANNOTATION,
        node_controller.DRAIN_FAILED_ANNOTATION,
    ):
        assert key.startswith(f"{PROJECT}/"), key
    assert f"{PROJECT}-{CONTROLLER_NAME}" == node_controller.COMPONENT


def test_the_pulumi_project_is_the_projects_name() -> None:
    project = yaml.safe_load((Path(__file__).resolve().parents[2] / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT
