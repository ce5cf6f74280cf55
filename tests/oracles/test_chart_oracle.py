"""What Helm really renders from the values the program produces (both deploy modes).

The values come from the program itself, run under the Pulumi mocks with the shipped
stacks: the Package's component values (rendered as Cozystack's operator does, with the
wrapper chart and the PackageSource's values files) and the Helm release's values (with the
upstream chart). The assertions are on the rendered Kubernetes objects, against the
program's own outputs and registered Secrets, never on the values we wrote.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import engine_config
from core.autoscaler.values import CONFIG_HASH_ANNOTATION, config_fingerprint
from core.plan import StackPlan

from tests.conftest import REPO, MockRuntime
from tests.oracles.oracle_tools import (
    PACKAGE_SOURCE,
    UPSTREAM_CHART,
    WRAPPER_CHART,
    helm_template,
    reference,
)
from tests.stand_ins.hetzner_api import TEST_TOKEN
from tests.support.program import HELM, K8S_SECRET, MAIN, PACKAGE, dev_config

AUTOSCALER = "hcloud-talos-autoscaler:autoscaler"


def prod_config() -> dict[str, Any]:
    flat = yaml.safe_load((REPO / "Pulumi.prod.yaml").read_text())["config"]
    return {**flat, "hcloud:token": TEST_TOKEN}


def many_pools(count: int) -> dict[str, Any]:
    """The dev stack with enough pools that the cluster config no longer fits an env var."""
    config = copy.deepcopy(dev_config())
    template = config[AUTOSCALER]["nodeGroups"][0]
    config[AUTOSCALER]["nodeGroups"] = [
        {**template, "name": f"workers-{index:02d}"} for index in range(count)
    ]
    # Every pool's servers need an address in the subnet.
    config["hcloud-talos-autoscaler:network"] = {"subnet": "10.100.0.0/20"}
    return config


def legacy() -> dict[str, Any]:
    config = copy.deepcopy(dev_config())
    config[AUTOSCALER]["configFormat"] = "legacy"
    return config


@dataclass
class Program:
    """What one run of the program registered and exported, as plain values."""

    config: dict[str, Any]
    exports: dict[str, Any]
    runtime: MockRuntime

    def secret(self, name: str, namespace: str) -> dict[str, str]:
        for resource in self.runtime.by_type(K8S_SECRET):
            metadata = resource.inputs["metadata"]
            if metadata["name"] == name and metadata["namespace"] == namespace:
                assert resource.is_secret("stringData"), f"Secret {name} is not marked secret"
                data: dict[str, str] = resource.inputs["stringData"]
                return data
        raise AssertionError(f"the program registers no Secret {namespace}/{name}")


def run_program(runtime: MockRuntime, config: dict[str, Any]) -> Program:
    exports = runtime.run(MAIN, config)
    return Program(config, {name: e.value for name, e in exports.items()}, runtime)


# ---- rendering as Cozystack's operator and as `helm.v3.Release` do ---------------------------


def render_package(program: Program, tmp_path: Path) -> list[dict[str, Any]]:
    """The Package's component, installed the way the operator does (FACTS §3).

    The operator picks the PackageSource named like the Package, the Package's variant and
    the component of the same key, and installs the component's chart with its values files
    and then the Package's component values on top.
    """
    package = program.runtime.one(PACKAGE).inputs
    source = yaml.safe_load(reference(PACKAGE_SOURCE).read_text())
    assert package["metadata"]["name"] == source["metadata"]["name"]
    variant = next(
        v for v in source["spec"]["variants"] if v["name"] == package["spec"].get("variant")
    )
    ((component_name, component),) = package["spec"]["components"].items()
    installed = next(c for c in variant["components"] if c["name"] == component_name)
    assert installed["path"] == "system/cluster-autoscaler"  # the wrapper chart we hold
    values_file = tmp_path / "package-values.yaml"
    values_file.write_text(yaml.safe_dump(component["values"]))
    return helm_template(
        WRAPPER_CHART,
        installed["install"]["releaseName"],
        installed["install"]["namespace"],
        [WRAPPER_CHART / name for name in installed["valuesFiles"]] + [values_file],
    )


def render_release(program: Program, tmp_path: Path) -> list[dict[str, Any]]:
    """The upstream chart with exactly the values the program passes to ``helm.v3.Release``."""
    (release,) = [
        r.inputs for r in program.runtime.by_type(HELM) if r.inputs["chart"] == "cluster-autoscaler"
    ]
    chart = yaml.safe_load(reference(UPSTREAM_CHART / "Chart.yaml").read_text())
    assert release["version"] == chart["version"], "the oracle chart must be the pinned version"
    values_file = tmp_path / "release-values.json"
    values_file.write_text(json.dumps(release["values"]))
    return helm_template(UPSTREAM_CHART, release["name"], release["namespace"], [values_file])


# ---- what must be true of the rendered objects -----------------------------------------------


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def container_env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item for item in container.get("env", [])}


def flags(deployment: dict[str, Any]) -> list[str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return [*container.get("command", []), *container.get("args", [])]


def secret_ref(env: dict[str, dict[str, Any]], name: str) -> tuple[str, str]:
    assert name in env, f"{name} is not in the autoscaler's environment"
    ref = env[name]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def check_autoscaler(program: Program, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything issue 17 asks of the rendered Deployment; returns it for the caller."""
    exports = program.exports
    settings = program.config[AUTOSCALER]
    deployment = one(objects, "Deployment")
    namespace = exports["autoscalerNamespace"]
    assert f"deployment/{deployment['metadata']['name']}" == exports["autoscalerLogsTarget"]
    assert deployment["metadata"]["namespace"] == namespace

    rendered_flags = flags(deployment)
    assert "--cloud-provider=hetzner" in rendered_flags
    expected_nodes = [
        f"--nodes={g['minSize']}:{g['maxSize']}:{g['instanceType']}:{g['region']}:{g['name']}"
        for g in exports["nodeGroups"]
    ]
    assert [flag for flag in rendered_flags if flag.startswith("--nodes=")] == expected_nodes
    assert [g["name"] for g in exports["nodeGroups"]] == [g["name"] for g in settings["nodeGroups"]]
    assert "--enforce-node-group-min-size=true" in rendered_flags
    for flag, value in (settings.get("extraArgs") or {}).items():
        assert f"--{flag}={value}" in rendered_flags

    env = container_env(deployment)
    credentials = exports["credentialsSecret"]
    assert secret_ref(env, "HCLOUD_TOKEN") == (credentials["name"], credentials["key"])
    assert credentials["namespace"] == namespace
    token = program.secret(credentials["name"], namespace)[credentials["key"]]
    assert token == program.config["hcloud:token"]

    assert env["HCLOUD_NETWORK"]["value"] == exports["networkName"]
    assert env["HCLOUD_PUBLIC_IPV4"]["value"] == str(settings["publicIPv4"]).lower()
    assert env["HCLOUD_PUBLIC_IPV6"]["value"] == str(settings["publicIPv6"]).lower()
    timeout = str(settings["serverCreationTimeout"])
    assert env["HCLOUD_SERVER_CREATION_TIMEOUT"]["value"] == timeout
    if settings.get("firewall"):
        assert env["HCLOUD_FIREWALL"]["value"] == settings["firewall"]

    talos = exports["talosConfigSecret"]
    assert talos["namespace"] == namespace
    talos_value = program.secret(talos["name"], namespace)[talos["key"]]
    pod = deployment["spec"]["template"]
    annotation = pod["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    assert annotation == config_fingerprint(talos_value, exports["imageIds"])
    return deployment


def check_cluster_config(program: Program, deployment: dict[str, Any], *, as_file: bool) -> None:
    """The autoscaler finds every pool's config and an image per architecture in use."""
    env = container_env(deployment)
    talos = program.exports["talosConfigSecret"]
    value = program.secret(talos["name"], talos["namespace"])[talos["key"]]
    if as_file:
        assert "HCLOUD_CLUSTER_CONFIG" not in env
        path = env["HCLOUD_CLUSTER_CONFIG_FILE"]["value"]
        spec = deployment["spec"]["template"]["spec"]
        volume = next(
            v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == talos["name"]
        )
        (container,) = spec["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        assert path == f"{mount['mountPath']}/{talos['key']}"  # each Secret key is one file
        decoded = json.loads(value)  # the file holds plain JSON, not base64
    else:
        assert "HCLOUD_CLUSTER_CONFIG_FILE" not in env
        assert secret_ref(env, "HCLOUD_CLUSTER_CONFIG") == (talos["name"], talos["key"])
        decoded = json.loads(base64.b64decode(value, validate=True))
    pools = [group["name"] for group in program.exports["nodeGroups"]]
    assert sorted(decoded["nodeConfigs"]) == sorted(pools)
    assert decoded["imagesForArch"] == program.exports["imageIds"]


def leases_create_grants(objects: list[dict[str, Any]]) -> list[str]:
    """Every rule, in every Role and ClusterRole rendered, that lets the autoscaler create a lease."""
    grants = []
    for role in objects:
        if role["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in role.get("rules") or []:
            if (
                "coordination.k8s.io" in rule.get("apiGroups", [])
                and "leases" in rule.get("resources", [])
                and {"create", "*"} & set(rule.get("verbs", []))
            ):
                grants.append(f"{role['kind']}/{role['metadata']['name']}: {rule}")
    return grants


# ---- the tests -------------------------------------------------------------------------------


PACKAGE_VARIANTS = {
    "cluster-config inline": (dev_config, False),
    "cluster-config as a mounted file": (lambda: many_pools(48), True),
}


@pytest.mark.parametrize("variant", PACKAGE_VARIANTS)
def test_package_renders_the_autoscaler_the_program_describes(
    variant: str, pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    make_config, as_file = PACKAGE_VARIANTS[variant]
    program = run_program(pulumi_runtime, make_config())
    objects = render_package(program, tmp_path)
    deployment = check_autoscaler(program, objects)
    check_cluster_config(program, deployment, as_file=as_file)


def test_package_in_legacy_format_renders_the_guide_shape(
    pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    program = run_program(pulumi_runtime, legacy())
    deployment = check_autoscaler(program, render_package(program, tmp_path))
    env = container_env(deployment)
    talos = program.exports["talosConfigSecret"]
    assert secret_ref(env, "HCLOUD_CLOUD_INIT") == (talos["name"], talos["key"])
    assert program.secret(talos["name"], talos["namespace"])[talos["key"]]
    (image_id,) = program.exports["imageIds"].values()
    assert env["HCLOUD_IMAGE"]["value"] == image_id
    assert "HCLOUD_CLUSTER_CONFIG" not in env
    assert "HCLOUD_CLUSTER_CONFIG_FILE" not in env


def test_helm_release_renders_the_autoscaler_the_program_describes(
    pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    program = run_program(pulumi_runtime, prod_config())
    deployment = check_autoscaler(program, render_release(program, tmp_path))
    check_cluster_config(program, deployment, as_file=False)
    assert set(program.exports["imageIds"]) == {"amd64", "arm64"}
    assert len({g["region"] for g in program.exports["nodeGroups"]}) == 2


def test_the_helm_release_grants_leases_exactly_once(
    pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    """The chart's ClusterRole already grants leader election its lease (FACTS §2)."""
    program = run_program(pulumi_runtime, prod_config())
    grants = leases_create_grants(render_release(program, tmp_path))
    assert len(grants) == 1, "leases granted more than once:\n" + "\n".join(grants)


def test_the_package_adds_no_lease_grant_to_cozystacks_own(
    pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    """With the Package, the lease rules are exactly those Cozystack installs without it.

    Cozystack's values-hetzner.yaml appends a leases rule of its own to the chart's (which
    already grants the lease): the result grants it more than once, Cozystack's doing. The
    current official guide's Package lists no ``rbac``; a Package list would replace
    Cozystack's, so the program adds none (FACTS §2-3).
    """
    program = run_program(pulumi_runtime, dev_config())
    ours = leases_create_grants(render_package(program, tmp_path))
    source = yaml.safe_load(reference(PACKAGE_SOURCE).read_text())
    (installed,) = [
        component
        for variant in source["spec"]["variants"]
        for component in variant["components"]
        if component["path"] == "system/cluster-autoscaler"
    ]
    cozystack_alone = leases_create_grants(
        helm_template(
            WRAPPER_CHART,
            installed["install"]["releaseName"],
            installed["install"]["namespace"],
            [WRAPPER_CHART / name for name in installed["valuesFiles"]],
        )
    )
    assert ours, "nothing grants the autoscaler its lease"
    assert ours == cozystack_alone
    ((_, component),) = program.runtime.one(PACKAGE).inputs["spec"]["components"].items()
    assert "rbac" not in component["values"]["cluster-autoscaler"]  # would replace Cozystack's


@pytest.mark.parametrize("mode", ["package", "helm"])
def test_the_autoscaler_image_matches_the_kubernetes_minor(
    mode: str, pulumi_runtime: MockRuntime, tmp_path: Path
) -> None:
    """CA README: run the autoscaler built for the cluster's Kubernetes minor (FACTS §1.6)."""
    if mode == "package":
        program = run_program(pulumi_runtime, dev_config())
        objects = render_package(program, tmp_path)
    else:
        program = run_program(pulumi_runtime, prod_config())
        objects = render_release(program, tmp_path)
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    tag = container["image"].rpartition(":")[2]
    kubernetes = program.config["hcloud-talos-autoscaler:talos"]["kubernetesVersion"]
    assert tag.lstrip("v").split(".")[:2] == kubernetes.split(".")[:2], (
        f"autoscaler image {container['image']} for Kubernetes {kubernetes}"
    )


# ---- each check can fail: deliberately wrong outputs are caught -------------------------------


def test_a_wrong_secret_key_in_the_values_is_caught(
    pulumi_runtime: MockRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values that point HCLOUD_TOKEN at a key the Secret does not have."""
    monkeypatch.setattr("core.autoscaler.values.CREDENTIALS_KEY", "hcloud-token")
    program = run_program(pulumi_runtime, dev_config())
    with pytest.raises(AssertionError, match="hcloud-token"):
        check_autoscaler(program, render_package(program, tmp_path))


def test_a_logs_target_that_is_not_the_rendered_deployment_is_caught(
    pulumi_runtime: MockRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_plan = engine_config.plan_stack

    def wrong_logs_target(*args: Any, **kwargs: Any) -> StackPlan:
        plan = real_plan(*args, **kwargs)
        wrong = "deployment/cluster-autoscaler-hetzner"
        return dataclasses.replace(
            plan, autoscaler=dataclasses.replace(plan.autoscaler, logs_target=wrong)
        )

    monkeypatch.setattr(engine_config, "plan_stack", wrong_logs_target)
    program = run_program(pulumi_runtime, prod_config())
    with pytest.raises(AssertionError, match="deployment/cluster-autoscaler-hetzner"):
        check_autoscaler(program, render_release(program, tmp_path))
