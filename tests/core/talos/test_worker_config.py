"""The Talos worker config builder, checked against the official schemas (test oracles)."""

from __future__ import annotations

import pytest

from core.talos.documents import load_documents
from core.talos.worker_config import build_worker_config

from tests.support.worker_config import base_for, schema_errors, schema_for, spec


@pytest.mark.parametrize("talos_minor", [8, 9, 10, 11, 12, 13])
def test_rendered_config_validates_against_the_official_schema(talos_minor: int) -> None:
    base = base_for(talos_minor)
    if talos_minor >= 13:
        # Talos 1.13 moved `machine.network` to documents; its gen config no longer writes it.
        base = base.replace("  network: {}\n", "", 1)
    config = build_worker_config(base, spec(talos_minor))
    documents = load_documents(config.yaml)
    schema = schema_for(talos_minor)
    for document in documents:
        assert schema_errors(document, schema) == []
    assert len(documents) >= 1


def test_the_oracle_rejects_a_misplaced_key() -> None:
    """The schema check above can fail: a key at the wrong level is reported."""
    document = load_documents(base_for(11))[0]
    document["machine"]["nodeIP"] = {"validSubnets": ["10.100.0.0/24"]}
    assert any("nodeIP" in error for error in schema_errors(document, schema_for(11)))


def test_builder_places_every_key_where_talos_expects_it() -> None:
    config = build_worker_config(base_for(11), spec(11))
    main = load_documents(config.yaml)[0]
    machine = main["machine"]
    assert machine["nodeLabels"] == {
        "topology.kubernetes.io/zone": "hetzner-cloud",
        "hcloud/node-group": "workers",
    }
    assert machine["nodeAnnotations"] == {"kilo.squat.ai/location": "hetzner-cloud"}
    assert machine["kubelet"]["nodeIP"] == {"validSubnets": ["10.100.0.0/24"]}
    assert machine["kubelet"]["extraArgs"] == {"cloud-provider": "external"}
    assert machine["kubelet"]["image"] == "ghcr.io/siderolabs/kubelet:v1.33.1"
    assert machine["kubelet"]["extraConfig"]["registerWithTaints"] == [
        {"key": "dedicated", "value": "batch", "effect": "NoSchedule"}
    ]
    # Cozystack's guide deletes what was discovered on the machine the config came from.
    assert "install" not in machine and "network" not in machine
    assert machine["registries"]["mirrors"] == {
        "docker.io": {"endpoints": ["https://mirror.gcr.io"]}
    }
    # Everything else is kept as it was: tokens, CAs, endpoint, cluster network.
    base = load_documents(base_for(11))[0]
    assert main["cluster"] == base["cluster"]
    assert machine["token"] == base["machine"]["token"]
    assert machine["ca"] == base["machine"]["ca"]


def test_extra_args_values_keep_their_yaml_types() -> None:
    """Talos decodes ``512`` and ``true`` into its string args as written; Python's
    ``str(True)`` would hand the kubelet ``True``."""
    base = base_for(11).replace(
        "    disableManifestsDirectory: true\n",
        "    disableManifestsDirectory: true\n    extraArgs:\n      max-pods: 512\n      rotate-server-certificates: true\n",
    )
    config = build_worker_config(base, spec(11))
    kubelet = load_documents(config.yaml)[0]["machine"]["kubelet"]
    assert kubelet["extraArgs"] == {
        "max-pods": 512,
        "rotate-server-certificates": True,
        "cloud-provider": "external",
    }
    assert "rotate-server-certificates: true\n" in config.yaml


def test_from_talos_1_12_mirrors_are_documents_never_both() -> None:
    documents = load_documents(build_worker_config(base_for(12), spec(12)).yaml)
    main = documents[0]
    assert "registries" not in main["machine"]
    mirrors = {doc["name"]: doc for doc in documents if doc.get("kind") == "RegistryMirrorConfig"}
    assert mirrors["docker.io"] == {
        "apiVersion": "v1alpha1",
        "kind": "RegistryMirrorConfig",
        "name": "docker.io",
        "endpoints": [{"url": "https://mirror.gcr.io"}],
    }
    assert "ghcr.io" in mirrors  # the base config's own mirror document is kept


def test_before_talos_1_12_mirrors_stay_in_the_machine_section() -> None:
    documents = load_documents(build_worker_config(base_for(11), spec(11)).yaml)
    assert [doc for doc in documents if doc.get("kind") == "RegistryMirrorConfig"] == []
    assert "docker.io" in documents[0]["machine"]["registries"]["mirrors"]


def test_static_hostnames_are_removed() -> None:
    base = base_for(11).replace("  network: {}\n", "  network:\n    hostname: worker-1\n")
    config = build_worker_config(base, spec(11), "of pool w")
    assert "network" not in load_documents(config.yaml)[0]["machine"]
    assert config.warnings[0].startswith("machine.install, machine.network removed from the")
    base12 = base_for(12).replace("auto: stable", "hostname: worker-1")
    kinds = [doc.get("kind") for doc in load_documents(build_worker_config(base12, spec(12)).yaml)]
    assert "HostnameConfig" not in kinds


def test_same_inputs_give_identical_bytes() -> None:
    first = build_worker_config(base_for(12), spec(12))
    second = build_worker_config(base_for(12), spec(12))
    assert first.yaml.encode() == second.yaml.encode()
    assert first.user_data == second.user_data
