"""The providerID setter against the Hetzner API emulator and a Kubernetes API stand-in."""

from __future__ import annotations

import logging
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from core.autoscaler.manifests import provider_id_setter_manifests
from core.kubernetes import client as client_module
from core.kubernetes import provider_id_setter as setter_module
from core.kubernetes.provider_id_setter import (
    ApiError,
    HetznerApi,
    KubernetesApi,
    Node,
    ProviderIdSetter,
    serve_health,
)

from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator
from tests.stand_ins.kubernetes_api import PROVIDER_ID_FORBIDDEN, KubernetesApiStandIn
from tests.support.pod_volume import lay_out_helper
from tests.support.setter_process import NETWORK, POOL, run_standalone_until_registered


def make_setter(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> ProviderIdSetter:
    return ProviderIdSetter(
        HetznerApi(hetzner_api.endpoint, TEST_TOKEN),
        KubernetesApi.in_cluster(kubernetes_api.url, kubernetes_api.service_account_dir),
    )


def hetzner_list_requests(hetzner_api: HetznerEmulator) -> int:
    return sum(
        1 for method, path in hetzner_api.state.requests if (method, path) == ("GET", "/v1/servers")
    )


def test_an_autoscaled_node_gets_its_server_id(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = hetzner_api.add_server(
        "workers-fsn1-5f3a9c", POOL, private_ips={NETWORK: "10.100.0.3"}, public_ipv4="203.0.113.7"
    )
    kubernetes_api.add_node("workers-fsn1-5f3a9c", internal_ip="10.100.0.3")

    with caplog.at_level(logging.INFO, logger="provider-id-setter"):
        delay = make_setter(hetzner_api, kubernetes_api).run_once(now=0)

    assert kubernetes_api.provider_id("workers-fsn1-5f3a9c") == f"hcloud://{server}"
    assert delay == 10
    assert [record.getMessage() for record in caplog.records] == [
        f"node workers-fsn1-5f3a9c: spec.providerID set to hcloud://{server}"
    ]


def test_only_autoscaler_servers_matched_by_name_and_address_are_used(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    by_private = hetzner_api.add_server("pool-a1", POOL, private_ips={NETWORK: "10.100.0.4"})
    by_public = hetzner_api.add_server("pool-a2", POOL, public_ipv4="203.0.113.8")
    by_annotation = hetzner_api.add_server("pool-a3", POOL, private_ips={NETWORK: "10.100.0.6"})
    hetzner_api.add_server("pool-wrong-ip", POOL, private_ips={NETWORK: "10.100.0.9"})
    hetzner_api.add_server("pool-has-id", POOL, private_ips={NETWORK: "10.100.0.10"})
    # A server of someone else with a node's name: not the autoscaler's, never used.
    hetzner_api.add_server("cp-1", {"role": "control-plane"}, public_ipv4="198.51.100.1")
    hetzner_api.seed_unrelated(60)

    kubernetes_api.add_node("pool-a1", internal_ip="10.100.0.4")
    kubernetes_api.add_node("pool-a2", internal_ip="10.0.0.2", external_ip="203.0.113.8")
    # The kubelet with an external cloud provider leaves addresses to the CCM; it
    # records --node-ip in an annotation.
    kubernetes_api.add_node("pool-a3", provided_node_ip="10.100.0.6")
    kubernetes_api.add_node("pool-wrong-ip", internal_ip="10.100.0.99")
    kubernetes_api.add_node("pool-has-id", internal_ip="10.100.0.10", provider_id="hcloud://1")
    kubernetes_api.add_node(
        "cp-1", internal_ip="198.51.100.1", labels={"node-role.kubernetes.io/control-plane": ""}
    )
    kubernetes_api.add_node("metal-1", internal_ip="192.168.1.20")

    make_setter(hetzner_api, kubernetes_api).run_once(now=0)

    assert {name: kubernetes_api.provider_id(name) for name in kubernetes_api.state.nodes} == {
        "pool-a1": f"hcloud://{by_private}",
        "pool-a2": f"hcloud://{by_public}",
        "pool-a3": f"hcloud://{by_annotation}",
        "pool-wrong-ip": "",
        "pool-has-id": "hcloud://1",
        "cp-1": "",
        "metal-1": "",
    }
    assert kubernetes_api.count("PATCH") == 3
    patched = sorted(path for method, path in kubernetes_api.state.requests if method == "PATCH")
    assert patched == ["/api/v1/nodes/pool-a1", "/api/v1/nodes/pool-a2", "/api/v1/nodes/pool-a3"]


def test_servers_are_read_page_by_page_with_the_label_selector(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    for index in range(120):
        hetzner_api.add_server(f"pool-{index}", POOL, private_ips={NETWORK: f"10.100.1.{index}"})
    hetzner_api.seed_unrelated(60)
    last = hetzner_api.add_server("pool-last", POOL, private_ips={NETWORK: "10.100.2.1"})
    kubernetes_api.add_node("pool-last", internal_ip="10.100.2.1")

    make_setter(hetzner_api, kubernetes_api).run_once(now=0)

    assert kubernetes_api.provider_id("pool-last") == f"hcloud://{last}"
    assert hetzner_list_requests(hetzner_api) == 3  # 121 autoscaler servers, 50 per page


def test_nodes_are_listed_page_by_page(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "NODES_PER_PAGE", 2)
    server = hetzner_api.add_server("pool-z", POOL, private_ips={NETWORK: "10.100.0.50"})
    for index in range(4):
        kubernetes_api.add_node(f"metal-{index}", internal_ip=f"192.168.1.{index}")
    kubernetes_api.add_node("pool-z", internal_ip="10.100.0.50")

    make_setter(hetzner_api, kubernetes_api).run_once(now=0)

    assert kubernetes_api.provider_id("pool-z") == f"hcloud://{server}"
    assert kubernetes_api.count("GET") == 3


def test_the_api_server_refuses_to_change_a_set_provider_id(
    kubernetes_api: KubernetesApiStandIn,
) -> None:
    """The stand-in enforces the rule like the API server, and the setter reports its answer."""
    kubernetes_api.add_node("n", internal_ip="10.100.0.2", provider_id="hcloud://1")
    api = KubernetesApi.in_cluster(kubernetes_api.url, kubernetes_api.service_account_dir)
    (node,) = api.nodes()
    with pytest.raises(ApiError) as caught:
        api.set_provider_id(node, "hcloud://2")
    assert str(caught.value).endswith(
        f'422 Node "n" is invalid: spec.providerID: Forbidden: {PROVIDER_ID_FORBIDDEN}'
    )
    assert kubernetes_api.provider_id("n") == "hcloud://1"
    api.set_provider_id(node, "hcloud://1")  # the same value is not a change


def test_a_refused_patch_does_not_stop_the_other_nodes(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = hetzner_api.add_server("pool-1", POOL, private_ips={NETWORK: "10.100.0.11"})
    second = hetzner_api.add_server("pool-2", POOL, private_ips={NETWORK: "10.100.0.12"})
    kubernetes_api.add_node("pool-1", internal_ip="10.100.0.11")
    kubernetes_api.add_node("pool-2", internal_ip="10.100.0.12")
    setter = make_setter(hetzner_api, kubernetes_api)
    patch = setter.kubernetes.set_provider_id

    def racing(node: Node, provider_id: str) -> None:
        if node.name == "pool-1":  # someone else registers it between list and patch
            kubernetes_api.state.nodes["pool-1"]["spec"]["providerID"] = "hcloud://other"
        patch(node, provider_id)

    monkeypatch.setattr(setter.kubernetes, "set_provider_id", racing)
    with caplog.at_level(logging.INFO, logger="provider-id-setter"):
        delay = setter.run_once(now=0)

    assert kubernetes_api.provider_id("pool-1") == "hcloud://other"
    assert kubernetes_api.provider_id("pool-2") == f"hcloud://{second}"
    assert delay == 20  # an error: backed off
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"hcloud://{first}" not in errors[0]
    assert "spec.providerID: Forbidden" in errors[0]


def test_api_errors_back_off_and_are_logged(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = hetzner_api.add_server("pool-1", POOL, private_ips={NETWORK: "10.100.0.11"})
    kubernetes_api.add_node("pool-1", internal_ip="10.100.0.11")
    kubernetes_api.state.failures = [500, 503]
    hetzner_api.faults.rate_limited_requests = 2
    setter = make_setter(hetzner_api, kubernetes_api)

    with caplog.at_level(logging.INFO, logger="provider-id-setter"):
        delays = [setter.run_once(now=float(step)) for step in range(5)]

    assert delays == [20, 40, 80, 160, 10]
    assert kubernetes_api.provider_id("pool-1") == f"hcloud://{server}"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 4
    assert "Kubernetes API: GET" in errors[0] and ": 500 Internal error occurred" in errors[0]
    assert "Hetzner API: GET" in errors[2] and "429 rate_limit_exceeded" in errors[2]
    assert all("retrying in" in error for error in errors)


def test_backoff_is_capped(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    kubernetes_api.state.failures = [500] * 8
    setter = make_setter(hetzner_api, kubernetes_api)
    assert [setter.run_once(now=0) for _ in range(8)][-3:] == [300, 300, 300]


def test_a_wrong_token_is_an_error_not_a_crash(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kubernetes_api.add_node("pool-1", internal_ip="10.100.0.11")
    setter = ProviderIdSetter(
        HetznerApi(hetzner_api.endpoint, "revoked"),
        KubernetesApi.in_cluster(kubernetes_api.url, kubernetes_api.service_account_dir),
    )
    with caplog.at_level(logging.ERROR, logger="provider-id-setter"):
        assert setter.run_once(now=0) == 20
    assert "401 unauthorized: unable to authenticate" in caplog.records[0].getMessage()


def test_a_rotated_service_account_token_is_read_again(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    setter = make_setter(hetzner_api, kubernetes_api)
    assert setter.run_once(now=0) == 10
    kubernetes_api.token = "rotated"
    (kubernetes_api.service_account_dir / "token").write_text("rotated")
    assert setter.run_once(now=10) == 10


def test_an_hour_stays_within_a_few_hundred_requests(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    """Nodes that are not the autoscaler's are looked up ever less often, not every loop."""
    kubernetes_api.add_node("cp-1", internal_ip="10.0.0.1")
    kubernetes_api.add_node("metal-1", internal_ip="10.0.0.2")
    kubernetes_api.add_node("pool-wrong-ip", internal_ip="10.100.0.99")
    hetzner_api.add_server("pool-wrong-ip", POOL, private_ips={NETWORK: "10.100.0.9"})
    server = hetzner_api.add_server("pool-new", POOL, private_ips={NETWORK: "10.100.0.20"})
    setter = make_setter(hetzner_api, kubernetes_api)

    now = 0.0
    while now < 3600:
        if now == 1800:  # an autoscaled node joins half-way
            kubernetes_api.add_node("pool-new", internal_ip="10.100.0.20")
        now += setter.run_once(now)

    assert kubernetes_api.provider_id("pool-new") == f"hcloud://{server}"
    assert kubernetes_api.count("GET") == 360  # one node list per 10 s loop
    assert kubernetes_api.count("PATCH") == 1
    hetzner_requests = hetzner_list_requests(hetzner_api)
    assert hetzner_requests <= 12, hetzner_requests  # 30 s, 60 s, ... then every 15 min
    assert kubernetes_api.count("GET") + kubernetes_api.count("PATCH") + hetzner_requests < 400


def test_health_follows_the_loop(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    clock = [0.0]
    setter = make_setter(hetzner_api, kubernetes_api)
    server = serve_health(setter, 0, lambda: clock[0])
    url = f"http://127.0.0.1:{server.server_address[1]}/healthz"
    try:
        setter.run_once(now=0)
        assert urllib.request.urlopen(url, timeout=5).status == 200
        clock[0] = 10 + setter_module.LIVENESS_GRACE_SECONDS + 1  # the loop stopped
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url, timeout=5)
        assert caught.value.code == 503
    finally:
        server.shutdown()
        server.server_close()


def test_the_script_runs_standalone(
    tmp_path: Path, hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn
) -> None:
    pod = lay_out_helper(provider_id_setter_manifests("ns", "creds", "token"), tmp_path)
    run_standalone_until_registered(pod, hetzner_api, kubernetes_api)


def test_missing_token_exits_with_a_reason(tmp_path: Path) -> None:
    pod = lay_out_helper(provider_id_setter_manifests("ns", "creds", "token"), tmp_path)
    result = subprocess.run(
        pod.command,
        cwd=pod.cwd,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "HCLOUD_TOKEN is not set" in result.stderr
