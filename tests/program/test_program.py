"""The whole program (``__main__.py``) under Pulumi mocks, with the dev stack's config."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pulumi
import pytest
import yaml

from core.autoscaler.values import CONFIG_HASH_ANNOTATION, config_fingerprint
from core.config import parse_stack_config, sections_from_flat_config
from core.plan import plan_stack
from core.talos.worker_config import WorkerConfig, worker_configs_sha256

from tests.conftest import REPO, MockRuntime, shipped_config
from tests.stand_ins.hetzner_api import TEST_TOKEN
from tests.support.manifest_paths import package_values, pod_spec, required_node_terms
from tests.support.pod_volume import projected
from tests.support.program import HELM, K8S_SECRET, MAIN, OUTPUT_CONTRACT, PACKAGE, dev_config

NETWORK = "hcloud:index/network:Network"
SUBNET = "hcloud:index/networkSubnet:NetworkSubnet"
COMPONENT = "hcloud-talos-autoscaler:index:PrivateNetwork"


def test_dev_stack_registers_network_and_subnet_under_the_component(
    pulumi_runtime: MockRuntime,
) -> None:
    exports = pulumi_runtime.run(MAIN, dev_config())

    component = pulumi_runtime.one(COMPONENT)
    network = pulumi_runtime.one(NETWORK)
    subnet = pulumi_runtime.one(SUBNET)
    assert pulumi_runtime.parent_of(network) is component
    assert pulumi_runtime.parent_of(subnet) is component
    assert network.name == "network-network"
    assert network.inputs["name"] == "cozystack-vswitch"
    assert network.inputs["ipRange"] == "10.100.0.0/16"
    assert subnet.inputs == {
        "networkId": int(network.id),
        "type": "cloud",
        "networkZone": "eu-central",
        "ipRange": "10.100.0.0/24",
    }
    assert {
        name: exports[name].value for name in exports if name.startswith(("network", "subnet"))
    } == {
        "networkId": network.id,
        "networkName": "cozystack-vswitch",
        "networkZone": "eu-central",
        "subnetIpRange": "10.100.0.0/24",
    }


def test_existing_network_is_looked_up_not_created(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:network"] = {"existing": "shared-net"}
    exports = pulumi_runtime.run(MAIN, config)

    assert pulumi_runtime.by_type(NETWORK) == []
    assert pulumi_runtime.by_type(SUBNET) == []
    assert pulumi_runtime.mocks.calls == [
        ("hcloud:index/getNetwork:getNetwork", {"name": "shared-net"})
    ]
    assert exports["networkId"].value == "4711"
    assert exports["networkName"].value == "shared-net"
    assert exports["subnetIpRange"].value == "10.100.0.0/24"


def test_existing_network_by_id(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:network"] = {"existing": "4711"}
    pulumi_runtime.run(MAIN, config)
    assert pulumi_runtime.mocks.calls == [("hcloud:index/getNetwork:getNetwork", {"id": 4711})]


def test_vswitch_subnet_is_attached_when_configured(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:network"] = {
        "vswitchId": 9876,
        "vswitchSubnet": "10.100.1.0/24",
    }
    pulumi_runtime.run(MAIN, config)

    network = pulumi_runtime.one(NETWORK)
    assert network.inputs["exposeRoutesToVswitch"] is True
    vswitch = next(s for s in pulumi_runtime.by_type(SUBNET) if s.inputs["type"] == "vswitch")
    assert vswitch.inputs == {
        "networkId": int(network.id),
        "type": "vswitch",
        "vswitchId": 9876,
        "networkZone": "eu-central",
        "ipRange": "10.100.1.0/24",
    }


def test_invalid_stack_registers_nothing(pulumi_runtime: MockRuntime) -> None:
    config = copy.deepcopy(dev_config())
    config["hcloud-talos-autoscaler:network"] = {"subnet": "10.200.0.0/24"}
    config["hcloud-talos-autoscaler:autoscaler"]["nodeGroups"][0]["region"] = "mars"
    with pytest.raises(pulumi.RunError) as caught:
        pulumi_runtime.run(MAIN, config)
    message = str(caught.value)
    assert "hcloud-talos-autoscaler:network.subnet: 10.200.0.0/24 is not inside ipRange" in message
    assert "hcloud-talos-autoscaler:autoscaler.nodeGroups[0].region: 'mars'" in message
    assert pulumi_runtime.resources == []


def test_token_can_come_from_the_environment(
    pulumi_runtime: MockRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = dev_config()
    del config["hcloud:token"]
    with pytest.raises(pulumi.RunError, match="hcloud:token: is not set"):
        pulumi_runtime.run(MAIN, config)
    monkeypatch.setenv("HCLOUD_TOKEN", TEST_TOKEN)
    exports = pulumi_runtime.run(MAIN, config)
    assert exports["networkName"].value == "cozystack-vswitch"


# ---- the whole graph --------------------------------------------------------------

SNAPSHOT = "pulumi-python:dynamic:Resource"


def secret_named(runtime: MockRuntime, name: str) -> Any:
    return next(s for s in runtime.by_type(K8S_SECRET) if s.inputs["metadata"]["name"] == name)


def rendered_configs(config: dict[str, Any]) -> dict[str, WorkerConfig]:
    """What the program should hand each pool's servers, rendered independently."""
    sections, token = sections_from_flat_config(config)
    stack = parse_stack_config(sections, token, REPO)
    return plan_stack(stack).worker_configs(stack.network.subnet)


def rendered_user_data(config: dict[str, Any], pool: str) -> str:
    return rendered_configs(config)[pool].user_data.text


def test_dev_stack_registers_the_whole_graph_wired_by_outputs(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    exports = pulumi_runtime.run(MAIN, config)

    components = sorted(
        r.type.rsplit(":", 1)[-1]
        for r in pulumi_runtime.resources
        if r.type.startswith("hcloud-talos-autoscaler:")
    )
    assert components == [
        "AutoscaledServers",
        "AutoscalerSecrets",
        "ClusterAutoscaler",
        "NodeController",
        "PrivateNetwork",
        "ProviderIdSetter",
        "TalosImage",
    ]
    snapshot = pulumi_runtime.one(SNAPSHOT)
    assert pulumi_runtime.parent_of(snapshot).type == "hcloud-talos-autoscaler:index:TalosImage"
    assert snapshot.name == "talos-image-amd64"
    assert snapshot.inputs["architecture"] == "amd64"
    assert snapshot.inputs["server_type"] == "cx23"
    assert (
        snapshot.inputs["schematic_id"]
        == "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
    )
    assert snapshot.inputs["extensions"] == ["siderolabs/qemu-guest-agent"]
    assert snapshot.inputs["must_fit_server_types"] == ["cpx22"]
    assert snapshot.inputs["hcloud_token"] == TEST_TOKEN
    assert snapshot.is_secret("hcloud_token")
    assert snapshot.inputs["hcloud_endpoint"] == "https://api.hetzner.cloud/v1"
    assert snapshot.inputs["builder_scope"] == "hcloud-talos-autoscaler.dev"
    assert snapshot.inputs["write_timeout"] == 30
    # Test knobs never reach stack config, component args or state.
    assert "ssh_port" not in snapshot.inputs and "target_device" not in snapshot.inputs

    package = pulumi_runtime.one(PACKAGE)
    assert pulumi_runtime.by_type(HELM) == []
    assert package.inputs["metadata"] == {"name": "cozystack.cluster-autoscaler-hetzner"}
    chart = package_values(package.inputs)
    network = pulumi_runtime.one(NETWORK)
    assert chart["extraEnv"]["HCLOUD_NETWORK"] == network.inputs["name"]
    assert chart["extraEnvSecrets"] == {
        "HCLOUD_TOKEN": {"name": "hetzner-credentials", "key": "token"},
        "HCLOUD_CLUSTER_CONFIG": {"name": "talos-config", "key": "cluster-config"},
    }
    assert not package.secret_paths, "chart values must stay readable in previews"

    talos_config = secret_named(pulumi_runtime, "talos-config")
    assert talos_config.inputs["metadata"]["namespace"] == "cozy-cluster-autoscaler-hetzner"
    assert talos_config.is_secret("stringData")
    decoded = json.loads(base64.b64decode(talos_config.inputs["stringData"]["cluster-config"]))
    assert decoded["imagesForArch"] == {"amd64": snapshot.id}
    assert decoded["nodeConfigs"]["workers-fsn1"]["cloudInit"] == rendered_user_data(
        config, "workers-fsn1"
    )
    assert decoded["nodeConfigs"]["workers-fsn1"]["labels"]["hcloud/node-group"] == "workers-fsn1"
    credentials = secret_named(pulumi_runtime, "hetzner-credentials")
    assert credentials.inputs["stringData"] == {"token": TEST_TOKEN}
    assert credentials.is_secret("stringData")

    assert exports["imageIds"].value == {"amd64": snapshot.id}
    assert exports["autoscalerNamespace"].value == "cozy-cluster-autoscaler-hetzner"
    assert exports["nodeGroups"].value == [
        {
            "name": "workers-fsn1",
            "minSize": 0,
            "maxSize": 10,
            "instanceType": "cpx22",
            "region": "fsn1",
        }
    ]
    assert exports["credentialsSecret"].value == {
        "namespace": "cozy-cluster-autoscaler-hetzner",
        "name": "hetzner-credentials",
        "key": "token",
    }
    assert exports["talosConfigSecret"].value["key"] == "cluster-config"
    assert exports["workerConfigSha256"].value == worker_configs_sha256(rendered_configs(config))
    assert exports["autoscalerRelease"].value == "cozystack.cluster-autoscaler-hetzner"
    assert (
        exports["autoscalerLogsTarget"].value
        == "deployment/cluster-autoscaler-hetzner-hetzner-cluster-autoscaler"
    )
    assert exports["kubectlLogs"].value == (
        "kubectl -n cozy-cluster-autoscaler-hetzner logs "
        "deployment/cluster-autoscaler-hetzner-hetzner-cluster-autoscaler -f"
    )
    assert "smokeTestWatch" not in exports
    # Registered as each one's inputs resolve: in no fixed order.
    assert sorted(d.name for d in pulumi_runtime.by_type("kubernetes:apps/v1:Deployment")) == [
        "node-controller-deployment",
        "provider-id-setter-deployment",
    ]
    generations = {pool: c.generation for pool, c in rendered_configs(config).items()}
    assert exports["poolGenerations"].value == generations
    assert len(generations["workers-fsn1"]) == 10


def test_the_node_controller_is_wired_from_the_network_and_the_generations(
    pulumi_runtime: MockRuntime,
) -> None:
    config = dev_config()
    exports = pulumi_runtime.run(MAIN, config)
    config_map = pulumi_runtime.named("node-controller-script")
    data = config_map.inputs["data"]
    deployment = pulumi_runtime.named("node-controller-deployment")
    pod = pod_spec(deployment.inputs)
    (volume,) = pod["volumes"]
    files = projected(data, volume["configMap"])
    # The script and the modules it imports, at their paths in the repository, byte for byte.
    assert sorted(files) == [
        "config.json",
        "core/kubernetes/client.py",
        "core/kubernetes/node_controller.py",
        "core/kubernetes/rollout.py",
    ]
    for path in sorted(files)[1:]:
        assert files[path].encode() == (REPO / path).read_bytes()
    settings = json.loads(data["config.json"])
    assert settings == {
        "networkId": int(exports["networkId"].value),
        "pools": exports["poolGenerations"].value,
        "strategy": "replace",
        "maxUnavailable": 1,
        "drainTimeoutSeconds": 600,
    }
    container = pod["containers"][0]
    (mount,) = container["volumeMounts"]
    assert container["workingDir"] == mount["mountPath"]
    assert container["command"][-2:] == ["-m", "core.kubernetes.node_controller"]
    assert {"name": "NODE_CONTROLLER_CONFIG", "value": f"{mount['mountPath']}/config.json"} in (
        container["env"]
    )
    token = next(env for env in container["env"] if env["name"] == "HCLOUD_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hetzner-credentials", "key": "token"}
    credentials = secret_named(pulumi_runtime, "hetzner-credentials")
    network = pulumi_runtime.named("network-network")
    assert {credentials.urn, network.urn} <= config_map.dependencies | deployment.dependencies
    role = pulumi_runtime.named("node-controller-role")
    assert {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]} in (
        role.inputs["rules"]
    )

    paused = dev_config()
    paused["hcloud-talos-autoscaler:autoscaler"]["rollout"] = {
        "strategy": "none",
        "maxUnavailable": 2,
        "drainTimeout": 30,
    }
    pulumi_runtime.run(MAIN, paused)
    settings = json.loads(
        pulumi_runtime.named("node-controller-script").inputs["data"]["config.json"]
    )
    assert (settings["strategy"], settings["maxUnavailable"], settings["drainTimeoutSeconds"]) == (
        "none",
        2,
        1800,
    )


def test_no_export_or_resource_name_carries_secret_material(pulumi_runtime: MockRuntime) -> None:
    exports = pulumi_runtime.run(MAIN, dev_config())
    worker = (REPO / "examples" / "worker.yaml").read_text()
    secrets = [TEST_TOKEN, "7x1m9q.0sample0token00", "3f9k2p.0sample0cluster0", worker[-200:]]
    text = json.dumps({name: export.value for name, export in exports.items()})
    names = " ".join(r.name for r in pulumi_runtime.resources)
    for secret in secrets:
        assert secret not in text
        assert secret not in names
    assert [name for name, export in exports.items() if export.is_secret] == []


def test_mixed_helm_stack_builds_two_snapshots_and_both_images(pulumi_runtime: MockRuntime) -> None:
    flat = yaml.safe_load((REPO / "Pulumi.prod.yaml").read_text())["config"]
    pulumi_runtime.run(MAIN, {**flat, "hcloud:token": TEST_TOKEN})

    snapshots = {s.inputs["architecture"]: s for s in pulumi_runtime.by_type(SNAPSHOT)}
    assert set(snapshots) == {"amd64", "arm64"}
    assert snapshots["arm64"].inputs["server_type"] == "cax11"
    assert snapshots["arm64"].inputs["must_fit_server_types"] == ["cax21"]
    assert snapshots["amd64"].inputs["must_fit_server_types"] == ["cpx32"]
    assert pulumi_runtime.by_type(PACKAGE) == []
    releases = {r.inputs["name"]: r for r in pulumi_runtime.by_type(HELM)}
    autoscaler = releases["cluster-autoscaler-hetzner"]
    assert autoscaler.inputs["chart"] == "cluster-autoscaler"
    assert autoscaler.inputs["repositoryOpts"] == {
        "repo": "https://kubernetes.github.io/autoscaler"
    }
    assert autoscaler.inputs["namespace"] == "cluster-autoscaler"
    assert autoscaler.inputs["version"] == "9.56.0"
    assert autoscaler.inputs["values"]["cloudProvider"] == "hetzner"
    assert autoscaler.inputs["values"]["extraEnv"]["HCLOUD_FIREWALL"] == "prod-nodes"
    assert set(releases) == {"cluster-autoscaler-hetzner"}  # no Talos CCM any more
    setter = pulumi_runtime.named("provider-id-setter-deployment")
    assert setter.inputs["metadata"]["namespace"] == "cluster-autoscaler"

    decoded = json.loads(
        base64.b64decode(
            secret_named(pulumi_runtime, "talos-config").inputs["stringData"]["cluster-config"]
        )
    )
    assert decoded["imagesForArch"] == {
        "amd64": snapshots["amd64"].id,
        "arm64": snapshots["arm64"].id,
    }
    assert decoded["nodeConfigs"]["arm-fsn1"]["taints"] == [
        {"key": "arch", "value": "arm64", "effect": "NoSchedule"}
    ]


def test_legacy_format_is_the_guide_shape(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:autoscaler"] = {
        **config["hcloud-talos-autoscaler:autoscaler"],
        "configFormat": "legacy",
    }
    pulumi_runtime.run(MAIN, config)
    snapshot = pulumi_runtime.one(SNAPSHOT)
    chart = package_values(pulumi_runtime.one(PACKAGE).inputs)
    assert chart["extraEnv"]["HCLOUD_IMAGE"] == snapshot.id
    assert chart["extraEnvSecrets"]["HCLOUD_CLOUD_INIT"] == {
        "name": "talos-config",
        "key": "cloud-init",
    }
    cloud_init = secret_named(pulumi_runtime, "talos-config").inputs["stringData"]["cloud-init"]
    # The autoscaler base64-decodes the env var once: that must give the user data itself.
    assert base64.b64decode(cloud_init).decode() == rendered_user_data(config, "workers-fsn1")


def test_smoke_test_only_when_enabled(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:autoscaler"] = {
        **config["hcloud-talos-autoscaler:autoscaler"],
        "smokeTest": {"replicas": 4},
    }
    exports = pulumi_runtime.run(MAIN, config)
    deployment = next(
        d
        for d in pulumi_runtime.by_type("kubernetes:apps/v1:Deployment")
        if d.name == "smoke-test-deployment"
    )
    assert deployment.inputs["spec"]["replicas"] == 4
    assert deployment.inputs["metadata"]["namespace"] == "cozy-cluster-autoscaler-hetzner"
    pod = pod_spec(deployment.inputs)
    assert required_node_terms(pod)[0]["matchExpressions"][0]["values"] == ["workers-fsn1"]
    assert exports["smokeTestWatch"].value.startswith(
        "kubectl get nodes -l 'hcloud/node-group in (workers-fsn1)'"
    )


def test_a_worker_config_problem_registers_nothing(
    pulumi_runtime: MockRuntime, tmp_path: Any
) -> None:
    bad = (
        (REPO / "examples" / "worker.yaml")
        .read_text()
        .replace("  kubelet:\n", "  kubelet:\n    nodeLabels: {a: b}\n", 1)
    )
    path = tmp_path / "worker.yaml"
    path.write_text(bad)
    config = dev_config()
    config["hcloud-talos-autoscaler:talos"] = {
        **config["hcloud-talos-autoscaler:talos"],
        "workerConfigFile": str(path),
    }
    with pytest.raises(
        pulumi.RunError, match=r"machine\.kubelet\.nodeLabels: unknown key for Talos v1\.11"
    ):
        pulumi_runtime.run(MAIN, config)
    assert pulumi_runtime.resources == []


def test_every_contracted_output_is_exported(pulumi_runtime: MockRuntime) -> None:
    exports = pulumi_runtime.run(MAIN, dev_config())
    assert set(exports) == OUTPUT_CONTRACT
    assert all(export.is_known for export in exports.values())


def test_a_new_talos_config_or_image_rolls_the_autoscaler(pulumi_runtime: MockRuntime) -> None:
    def annotation(config: dict[str, Any], snapshot_id: str) -> str:
        pulumi_runtime.mocks.snapshot_ids = {"talos-image-amd64": snapshot_id}
        exports = pulumi_runtime.run(MAIN, config)
        chart = package_values(pulumi_runtime.one(PACKAGE).inputs)
        talos_config = secret_named(pulumi_runtime, "talos-config")
        value: str = chart["podAnnotations"][CONFIG_HASH_ANNOTATION]
        # Wired from the Secret's content and the snapshot ids, not from the stack file.
        assert value == config_fingerprint(
            talos_config.inputs["stringData"]["cluster-config"], exports["imageIds"].value
        )
        return value

    first = annotation(dev_config(), "5001")
    assert annotation(dev_config(), "5001") == first
    assert annotation(dev_config(), "5002") != first  # a new snapshot
    relabelled = dev_config()
    relabelled["hcloud-talos-autoscaler:talos"]["nodeLabels"]["team"] = "platform"
    assert annotation(relabelled, "5001") != first  # a new Talos config


def test_config_fingerprint_follows_config_and_images() -> None:
    base = config_fingerprint("config", {"amd64": "1"})
    assert config_fingerprint("config", {"amd64": "1"}) == base
    assert config_fingerprint("config", {"amd64": "2"}) != base
    assert config_fingerprint("config", {"amd64": "1", "arm64": "3"}) != base
    assert config_fingerprint("other", {"amd64": "1"}) != base


def test_a_new_stack_previews_with_unknown_ids_and_no_error(pulumi_preview: MockRuntime) -> None:
    """`pulumi preview` of a new stack: nothing exists, so ids and snapshot outputs are unknown."""
    exports = pulumi_preview.run(MAIN, dev_config())

    assert sorted(r.type.rsplit(":", 1)[-1] for r in pulumi_preview.resources) == [
        "AutoscaledServers",
        "AutoscalerSecrets",
        "ClusterAutoscaler",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "Deployment",
        "Namespace",
        "Network",
        "NetworkSubnet",
        "NodeController",
        "Package",
        "PoolServers",
        "PrivateNetwork",
        "ProviderIdSetter",
        "Resource",
        "Secret",
        "Secret",
        "ServiceAccount",
        "ServiceAccount",
        "TalosImage",
    ]
    unknown = sorted(name for name, exported in exports.items() if not exported.is_known)
    assert unknown == ["imageIds", "networkId"]
    # What reviewers read in a pull request is known before anything exists.
    assert exports["workerConfigSha256"].value == worker_configs_sha256(
        rendered_configs(dev_config())
    )
    assert exports["nodeGroups"].value[0]["name"] == "workers-fsn1"
    assert secret_named(pulumi_preview, "hetzner-credentials").is_secret("stringData")


# ---- node registration ------------------------------------------------------------

SETTER_COMPONENT = "hcloud-talos-autoscaler:index:ProviderIdSetter"


def test_the_provider_id_setter_is_deployed_by_default_and_wired_to_the_secrets(
    pulumi_runtime: MockRuntime,
) -> None:
    pulumi_runtime.run(MAIN, dev_config())

    component = pulumi_runtime.one(SETTER_COMPONENT)
    children = {
        r.type.rsplit(":", 1)[-1]: r for r in pulumi_runtime.resources if r.parent == component.urn
    }
    assert set(children) == {
        "ConfigMap",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    }
    namespace = "cozy-cluster-autoscaler-hetzner"
    assert {r.inputs["metadata"].get("namespace") for r in children.values()} == {namespace, None}
    assert children["ClusterRole"].inputs["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "patch"]}
    ]
    assert children["ClusterRoleBinding"].inputs["subjects"] == [
        {"kind": "ServiceAccount", "name": "provider-id-setter", "namespace": namespace}
    ]
    pod = pod_spec(children["Deployment"].inputs)
    assert pod["serviceAccountName"] == children["ServiceAccount"].inputs["metadata"]["name"]
    (container,) = pod["containers"]
    token = next(env for env in container["env"] if env["name"] == "HCLOUD_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hetzner-credentials", "key": "token"}
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Wired from AutoscalerSecrets' outputs (the credentials Secret and the namespace), not
    # copied strings: the engine records those resources as the Deployment's dependencies.
    credentials = secret_named(pulumi_runtime, "hetzner-credentials")
    namespace_resource = pulumi_runtime.one("kubernetes:core/v1:Namespace")
    assert {credentials.urn, namespace_resource.urn} <= children["Deployment"].dependencies
    assert pulumi_runtime.parent_of(credentials).type.endswith("AutoscalerSecrets")


def test_the_registered_config_map_holds_the_tested_script_byte_for_byte(
    pulumi_runtime: MockRuntime,
) -> None:
    pulumi_runtime.run(MAIN, dev_config())
    config_map = pulumi_runtime.named("provider-id-setter-script")
    deployment = next(
        d
        for d in pulumi_runtime.by_type("kubernetes:apps/v1:Deployment")
        if d.name == "provider-id-setter-deployment"
    )
    data = config_map.inputs["data"]
    assert sorted(data) == ["client.py", "provider_id_setter.py"]
    pod = pod_spec(deployment.inputs)
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == config_map.inputs["metadata"]["name"]
    files = projected(data, volume["configMap"])
    assert sorted(files) == ["core/kubernetes/client.py", "core/kubernetes/provider_id_setter.py"]
    for path, text in files.items():
        assert text.encode() == (REPO / path).read_bytes()
    (container,) = pod["containers"]
    (mount,) = container["volumeMounts"]
    assert mount["name"] == volume["name"]
    assert container["workingDir"] == mount["mountPath"]
    assert container["command"][-2:] == ["-m", "core.kubernetes.provider_id_setter"]


def test_provider_id_none_deploys_no_setter_and_warns(
    pulumi_runtime: MockRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_, **__: warnings.append(message))
    config = dev_config()
    config["hcloud-talos-autoscaler:autoscaler"]["providerId"] = "none"
    pulumi_runtime.run(MAIN, config)
    assert pulumi_runtime.by_type(SETTER_COMPONENT) == []
    assert [
        deployment.name for deployment in pulumi_runtime.by_type("kubernetes:apps/v1:Deployment")
    ] == ["node-controller-deployment"]
    assert any("autoscaler.providerId is none" in warning for warning in warnings)


def test_the_removed_provider_id_controller_key_says_what_replaced_it(
    pulumi_runtime: MockRuntime,
) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:autoscaler"]["providerIdController"] = True
    with pytest.raises(pulumi.RunError) as caught:
        pulumi_runtime.run(MAIN, config)
    message = str(caught.value)
    assert "hcloud-talos-autoscaler:autoscaler.providerIdController: was removed" in message
    assert "autoscaler.providerId: setter (the default)" in message
    assert pulumi_runtime.resources == []


def talos_config_json(runtime: MockRuntime) -> dict[str, Any]:
    secret = secret_named(runtime, "talos-config").inputs["stringData"]["cluster-config"]
    decoded: dict[str, Any] = json.loads(base64.b64decode(secret))
    return decoded


def test_an_existing_network_pins_new_servers_to_its_subnet(
    pulumi_runtime: MockRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_, **__: warnings.append(message))
    config = dev_config()
    config["hcloud-talos-autoscaler:network"] = {"existing": "shared-net"}
    config["hcloud-talos-autoscaler:talos"].update(version="v1.12.11", kubernetesVersion="1.35.0")
    pulumi_runtime.run(MAIN, config)

    assert talos_config_json(pulumi_runtime)["defaultSubnetIPRange"] == "10.100.0.0/24"
    chart = package_values(pulumi_runtime.one(PACKAGE).inputs)
    assert chart["image"] == {"tag": "v1.35.2"}
    assert not [w for w in warnings if "network.existing" in w]
    # The v1.11 worker config carried over to Talos v1.12: accepted, its deprecated keys warned.
    assert any(w.startswith("machine.features.stableHostname: deprecated") for w in warnings)


def test_an_existing_network_with_an_older_autoscaler_is_warned_not_pinned(
    pulumi_runtime: MockRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_, **__: warnings.append(message))
    config = dev_config()
    config["hcloud-talos-autoscaler:network"] = {"existing": "shared-net"}
    pulumi_runtime.run(MAIN, config)

    assert "defaultSubnetIPRange" not in talos_config_json(pulumi_runtime)
    assert any(
        w.startswith("network.existing 'shared-net': new servers cannot be pinned")
        for w in warnings
    ), warnings


def test_every_pools_template_carries_the_linux_label(pulumi_runtime: MockRuntime) -> None:
    flat = yaml.safe_load((REPO / "Pulumi.prod.yaml").read_text())["config"]
    pulumi_runtime.run(MAIN, {**flat, "hcloud:token": TEST_TOKEN})
    node_configs = talos_config_json(pulumi_runtime)["nodeConfigs"]
    assert {pool: c["labels"]["kubernetes.io/os"] for pool, c in node_configs.items()} == {
        "general-fsn1": "linux",
        "general-nbg1": "linux",
        "arm-fsn1": "linux",
    }


@pytest.mark.parametrize("source", ["hcloud:endpoint", "HCLOUD_ENDPOINT"])
def test_the_snapshot_resource_gets_the_api_endpoint_the_hcloud_provider_gets(
    pulumi_runtime: MockRuntime, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    config = dev_config()
    if source == "hcloud:endpoint":
        config[source] = "https://api.example.test/v1"
    else:
        monkeypatch.setenv(source, "https://api.example.test/v1")
    pulumi_runtime.run(MAIN, config)
    snapshot = pulumi_runtime.one(SNAPSHOT)
    assert snapshot.inputs["hcloud_endpoint"] == "https://api.example.test/v1"


# ---- destroy that empties the project ---------------------------------------------

POOL_SERVERS = "pulumi-python:dynamic/autoscaler:PoolServers"
SERVERS_COMPONENT = "hcloud-talos-autoscaler:index:AutoscaledServers"


def prod_config() -> dict[str, Any]:
    return shipped_config("prod")


def test_destroy_order_is_autoscaler_then_servers_then_network(
    pulumi_runtime: MockRuntime,
) -> None:
    """Dependencies registered with the engine: it deletes dependents first."""
    pulumi_runtime.run(MAIN, prod_config())

    records = {r.inputs["pool"]: r for r in pulumi_runtime.by_type(POOL_SERVERS)}
    assert set(records) == {"general-fsn1", "general-nbg1", "arm-fsn1"}
    component = pulumi_runtime.one(SERVERS_COMPONENT)
    network = pulumi_runtime.one(NETWORK)
    subnet = pulumi_runtime.one(SUBNET)
    namespace = pulumi_runtime.one("kubernetes:core/v1:Namespace")
    autoscaler = pulumi_runtime.one("hcloud-talos-autoscaler:index:ClusterAutoscaler")
    for pool, record in records.items():
        assert record.name == f"autoscaled-servers-{pool}"
        assert pulumi_runtime.parent_of(record) is component
        assert record.inputs["network_id"] == network.id
        assert record.inputs["namespace"] == "cluster-autoscaler"
        assert record.inputs["keep_servers"] is False
        # Wired from the network's and the Secrets' outputs, not copied strings.
        assert {network.urn, namespace.urn} <= record.dependencies
    # The records (through their component) come after the network and its subnet, so the
    # network is deleted only after the servers; the autoscaler after the records, so it is
    # deleted before them.
    assert {network.urn, subnet.urn} <= component.dependencies
    assert {record.urn for record in records.values()} <= autoscaler.dependencies
    helm = pulumi_runtime.one(HELM)
    assert pulumi_runtime.parent_of(helm) is autoscaler


def test_the_token_is_stored_only_as_a_secret(pulumi_runtime: MockRuntime) -> None:
    pulumi_runtime.run(MAIN, dev_config())
    record = pulumi_runtime.one(POOL_SERVERS)
    assert record.inputs["hcloud_token"] == TEST_TOKEN
    assert record.is_secret("hcloud_token")
    assert record.additional_secret_outputs == {"hcloud_token"}
    plain = {key: value for key, value in record.inputs.items() if key != "hcloud_token"}
    assert TEST_TOKEN not in json.dumps(plain)
    assert TEST_TOKEN.encode() not in base64.b64decode(record.inputs["__provider"])


def test_keep_servers_on_destroy_is_recorded(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:autoscaler"]["keepServersOnDestroy"] = True
    pulumi_runtime.run(MAIN, config)
    assert pulumi_runtime.one(POOL_SERVERS).inputs["keep_servers"] is True


def test_keep_servers_on_destroy_must_be_a_boolean(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:autoscaler"]["keepServersOnDestroy"] = "sometimes"
    with pytest.raises(pulumi.RunError) as caught:
        pulumi_runtime.run(MAIN, config)
    assert "hcloud-talos-autoscaler:autoscaler.keepServersOnDestroy:" in str(caught.value)
    assert pulumi_runtime.resources == []


def test_a_removed_pool_loses_its_record(pulumi_runtime: MockRuntime) -> None:
    """The engine deletes a record the program no longer registers, after the updates:
    that delete sweeps the pool (tests/core/test_server_sweep.py)."""
    config = prod_config()
    pulumi_runtime.run(MAIN, config)
    before = {r.name for r in pulumi_runtime.by_type(POOL_SERVERS)}
    groups = config["hcloud-talos-autoscaler:autoscaler"]["nodeGroups"]
    config["hcloud-talos-autoscaler:autoscaler"]["nodeGroups"] = [
        group for group in groups if group["name"] != "general-nbg1"
    ]
    pulumi_runtime.run(MAIN, config)
    after = {r.name for r in pulumi_runtime.by_type(POOL_SERVERS)}
    assert before - after == {"autoscaled-servers-general-nbg1"}
    assert after < before


def test_an_existing_network_is_swept_too(pulumi_runtime: MockRuntime) -> None:
    config = dev_config()
    config["hcloud-talos-autoscaler:network"] = {"existing": "shared-net"}
    pulumi_runtime.run(MAIN, config)
    assert pulumi_runtime.one(POOL_SERVERS).inputs["network_id"] == "4711"


def test_the_project_has_its_secrets_and_config_maps_updated_in_place() -> None:
    """Found by the engine (``make e2e``): the Kubernetes provider deletes and re-creates a
    Secret or ConfigMap whose data changes (``delete-replaced`` before ``create-replacement``,
    their names being fixed) unless its ``enableSecretMutable``/``enableConfigMapMutable`` is
    set. Every new snapshot would delete the ``talos-config`` Secret the autoscaler reads,
    and leave it deleted if the create failed. The project file sets both for every stack
    (stack files can still override them)."""
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["config"] == {
        "kubernetes:enableSecretMutable": {"value": True},
        "kubernetes:enableConfigMapMutable": {"value": True},
    }
