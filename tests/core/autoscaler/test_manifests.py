"""The in-cluster helpers' manifests: the providerID setter's least privilege."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from core.autoscaler.manifests import provider_id_setter_manifests

from tests.stand_ins.hetzner_api import HetznerEmulator
from tests.stand_ins.kubernetes_api import KubernetesApiStandIn
from tests.support.pod_volume import lay_out_helper
from tests.support.setter_process import run_standalone_until_registered


def _verb(method: str, path: str) -> tuple[str, str]:
    """(resource, verb) of a Kubernetes API request, as RBAC names it."""
    parsed = urllib.parse.urlsplit(path)
    parts = parsed.path.strip("/").split("/")  # api, v1, <resource>[, <name>]
    resource, named = parts[2], len(parts) > 3
    query = urllib.parse.parse_qs(parsed.query)
    if method == "GET":
        verb = "watch" if query.get("watch") else "get" if named else "list"
    else:
        verb = {"PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}[method]
    return resource, verb


def test_the_cluster_role_grants_exactly_the_calls_the_script_makes(
    tmp_path: Path, hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    manifests = provider_id_setter_manifests("ns", "creds", "token")
    run_standalone_until_registered(
        lay_out_helper(manifests, tmp_path), hetzner_api, kubernetes_api
    )

    made = {_verb(method, path) for method, path in kubernetes_api.state.requests}
    role = manifests[2]
    granted = {
        (resource, verb)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert made == granted
    # It only reads Hetzner: a read-only token is enough.
    assert {method for method, _ in hetzner_api.state.requests} == {"GET"}
