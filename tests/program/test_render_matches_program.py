"""``render`` and the program describe one plan: what render shows is what the program registers.

For each stack below the stack file is rendered offline (secrets shown) and the program
runs under Pulumi mocks with the same config. Every resource render lists is registered
under that name, type and parent, and nothing else is; every file render writes equals
the registered inputs once the snapshot ids and the config hash (placeholders offline)
are filled in; the warnings and the verification commands are the same.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config.parse import read_stack_file
from core.plan import plan_stack
from core.render import (
    CONFIG_HASH_PLACEHOLDER,
    Rendered,
    image_id_placeholder,
    placement_group_placeholder,
    render_stack,
)
from core.talos.user_data import decode_user_data

from tests.conftest import REPO, MockRuntime, Registered, shipped_config
from tests.stand_ins.hetzner_api import TEST_TOKEN
from tests.support.manifest_paths import package_values

MAIN = REPO / "__main__.py"
P = "hcloud-talos-autoscaler"
SNAPSHOT_IDS = {"amd64": "5001", "arm64": "5002"}


def _every_option(flat: dict[str, Any]) -> None:
    flat[f"{P}:network"].update(vswitchId=9876, vswitchSubnet="10.100.1.0/24")
    flat[f"{P}:autoscaler"]["smokeTest"] = {"replicas": 2}


def _legacy(flat: dict[str, Any]) -> None:
    flat[f"{P}:autoscaler"].update(
        configFormat="legacy", providerId="none", smokeTest={"replicas": 2}
    )


def _existing_network(flat: dict[str, Any]) -> None:
    flat[f"{P}:network"] = {"existing": "shared-net"}
    flat[f"{P}:talos"].update(version="v1.12.11", kubernetesVersion="1.35.0")


def _prod_kept(flat: dict[str, Any]) -> None:
    flat[f"{P}:autoscaler"].update(
        keepServersOnDestroy=True,
        smokeTest={"replicas": 3},
        chartRepository="https://charts.example.internal/autoscaler",
    )


STACKS: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "dev": ("dev", lambda _: None),
    "prod": ("prod", lambda _: None),
    "dev, vSwitch, smoke test": ("dev", _every_option),
    "dev, legacy, no setter": ("dev", _legacy),
    "dev, existing network": ("dev", _existing_network),
    "prod, servers kept, smoke test, chart mirror": ("prod", _prod_kept),
}


def project_with(tmp_path: Path, stack: str, change: Callable[[dict[str, Any]], None]) -> Any:
    """A project folder with the stack file changed; returns the stack's config."""
    config = shipped_config(stack, token=None)
    change(config)
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("*.py"))
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))
    return config


def filled_in(document: Any, runtime: MockRuntime) -> Any:
    """The rendered document with the values only resources know: snapshot ids, config hash."""
    text = json.dumps(document)
    for arch, image_id in SNAPSHOT_IDS.items():
        text = text.replace(image_id_placeholder(arch), image_id)
    for group in runtime.by_type("hcloud:index/placementGroup:PlacementGroup"):
        text = text.replace(placement_group_placeholder(group.inputs["name"]), group.id)
    hashes = {value for resource in runtime.resources for value in _annotations(resource).values()}
    if CONFIG_HASH_PLACEHOLDER in text:
        (config_hash,) = hashes
        text = text.replace(CONFIG_HASH_PLACEHOLDER, config_hash)
    return json.loads(text)


def _annotations(resource: Registered) -> dict[str, str]:
    if resource.type == "kubernetes:helm.sh/v3:Release":
        found: dict[str, str] = resource.inputs["values"]["podAnnotations"]
        return found
    if resource.type.endswith(":Package"):
        annotations: dict[str, str] = package_values(resource.inputs)["podAnnotations"]
        return annotations
    return {}


def registered_child(runtime: MockRuntime, type_suffix: str, kind: str) -> Registered:
    (found,) = [
        resource
        for resource in runtime.resources
        if resource.type.endswith(type_suffix) and kind in resource.name
    ]
    return found


@pytest.mark.parametrize("variant", list(STACKS))
def test_render_shows_what_the_program_registers(
    pulumi_runtime: MockRuntime, tmp_path: Path, variant: str
) -> None:
    stack, change = STACKS[variant]
    config = project_with(tmp_path, stack, change)
    rendered: Rendered = render_stack(tmp_path, stack, show_secrets=True)
    plan = plan_stack(*read_stack_file(tmp_path, stack))
    pulumi_runtime.mocks.snapshot_ids = {
        f"talos-image-{arch}": image_id for arch, image_id in SNAPSHOT_IDS.items()
    }
    exports = pulumi_runtime.run(MAIN, {**config, "hcloud:token": TEST_TOKEN}, ["hcloud:token"])
    runtime = pulumi_runtime

    # The same resources: type, name and parent.
    names = {resource.urn: resource.name for resource in runtime.resources}
    registered = {(r.type, r.name, names.get(r.parent)) for r in runtime.resources}
    assert registered == {(r.type, r.name, r.parent) for r in plan.resources}
    first = rendered.report.index(
        "Pulumi resources (type and name, as `pulumi preview` lists them):"
    )
    last = rendered.report.index("Verify after `pulumi up`:")
    listed = [tuple(line.split()) for line in rendered.report[first + 1 : last]]
    assert sorted(listed) == sorted((r.type, r.name) for r in runtime.resources)

    # The same inputs: the autoscaler's values, Secrets, worker configs, setter, smoke test.
    if "package.yaml" in rendered.files:
        package = runtime.one("kubernetes:cozystack.io/v1alpha1:Package")
        manifest = filled_in(yaml.safe_load(rendered.files["package.yaml"]), runtime)
        assert {key: package.inputs[key] for key in manifest} == manifest
    else:
        release = runtime.one("kubernetes:helm.sh/v3:Release")
        helm_values = filled_in(yaml.safe_load(rendered.files["helm-values.yaml"]), runtime)
        assert release.inputs["values"] == helm_values
        assert release.inputs["version"] == plan.autoscaler.chart_version
        assert release.inputs["repositoryOpts"] == {"repo": plan.autoscaler.chart_repository}
    talos_config = next(
        s for s in runtime.by_type("kubernetes:core/v1:Secret") if "talos-config" in s.name
    )
    ((key, value),) = talos_config.inputs["stringData"].items()
    assert key == plan.secrets.talos_config_key
    workers = {
        name.removeprefix("worker-").removesuffix(".yaml"): text
        for name, text in rendered.files.items()
        if name.startswith("worker-")
    }
    assert set(workers) == set(plan.servers.pools)
    if key == "cloud-init":
        assert decode_user_data(base64.b64decode(value).decode()) in workers.values()
    else:
        cluster_config = json.loads(base64.b64decode(value))
        for pool, node_config in cluster_config["nodeConfigs"].items():
            assert decode_user_data(node_config["cloudInit"]) == workers[pool]
            node_config["cloudInit"] = f"<user data of worker-{pool}.yaml>"
        assert filled_in(json.loads(rendered.files["cluster-config.json"]), runtime) == (
            cluster_config
        )
    if plan.provider_id_setter:
        for document in yaml.safe_load_all(rendered.files["provider-id-setter.yaml"]):
            child = next(
                r
                for r in runtime.resources
                if r.type.endswith(f":{document['kind']}") and "provider-id-setter" in r.name
            )
            for field in set(document) - {"apiVersion", "kind"}:
                assert child.inputs[field] == document[field], (document["kind"], field)
    else:
        assert "provider-id-setter.yaml" not in rendered.files
    if plan.smoke_test is not None:
        deployment = registered_child(runtime, ":Deployment", "smoke-test")
        document = yaml.safe_load(rendered.files["smoke-test.yaml"])
        assert {"metadata": deployment.inputs["metadata"], "spec": deployment.inputs["spec"]} == {
            "metadata": document["metadata"],
            "spec": document["spec"],
        }
    for snapshot in plan.image.snapshots:
        inputs = runtime.named(f"talos-image-{snapshot.architecture}").inputs
        assert {key: inputs[key] for key in snapshot.properties()} == snapshot.properties()
    for record in runtime.by_type("pulumi-python:dynamic/autoscaler:PoolServers"):
        assert record.inputs["keep_servers"] is plan.servers.keep_servers

    # The same outputs, commands and warnings.
    assert {name: exports[name].value for name in plan.outputs} == plan.outputs
    verify = rendered.report[rendered.report.index("Verify after `pulumi up`:") + 1 :]
    assert [line.strip() for line in verify] == [
        exports[name].value for name in exports if name.startswith("kubectl")
    ]
    offline_only = "hcloud:token is not set in the stack file"
    assert [w for w in rendered.warnings if not w.startswith(offline_only)] == runtime.warnings
