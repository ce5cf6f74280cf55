"""The destroy sweep's dynamic provider: what `pulumi destroy` and `pulumi up` run, against the
stand-ins, in real time and once through Pulumi's own dynamic-provider host."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from pulumi.dynamic import Config, ConfigureRequest

from components.server_sweep import provider as provider_module
from components.server_sweep.provider import PoolServersProvider
from core.hetzner.api import ApiClient
from core.server_sweep import SweepError, SweepLimits

from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator, SilentApi
from tests.stand_ins.kubernetes_api import KubernetesApiStandIn
from tests.support.dynamic_host import DynamicHost
from tests.support.pool_servers import (
    AUTOSCALER_COMMAND,
    NAMESPACE,
    NETWORK,
    POOL,
    autoscaled,
)

#: The emulator's deletes finish at once; tests that run in real time set a duration.
pytestmark = pytest.mark.usefixtures("deletes_in_fake_time")


def record(*, keep: bool = False, pool: str = POOL) -> dict[str, Any]:
    """A record's state as the program registers it; the stored token was rotated away."""
    return {
        "pool": pool,
        "network_id": str(NETWORK),
        "namespace": NAMESPACE,
        "keep_servers": keep,
        "hcloud_token": "revoked-token",
    }


def stack_config(hetzner_api: HetznerEmulator, kubeconfig: Path) -> dict[str, str]:
    """The stack config the engine hands the provider process (current token, endpoint)."""
    return {
        "hcloud:token": TEST_TOKEN,
        "hcloud:endpoint": hetzner_api.endpoint,
        "kubernetes:kubeconfig": str(kubeconfig),
    }


def configured(config: dict[str, str]) -> PoolServersProvider:
    provider = PoolServersProvider()
    provider.configure(ConfigureRequest(Config(config, "hcloud-talos-autoscaler")))
    return provider


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real time, short settle: the provider waits as in production, only briefly."""
    monkeypatch.setattr(
        PoolServersProvider, "limits", SweepLimits(settle=0.05, unchecked_settle=0.1, poll=0.01)
    )


def test_the_record_lifecycle_and_a_delete_that_sweeps(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    tmp_path: Path,
    quick: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded = hetzner_api.seed_unrelated(60)
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    hetzner_api.action_seconds["delete_server"] = 0.2  # real time: the server is "deleting"
    kubeconfig = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig", auth="certificate")
    provider = configured(stack_config(hetzner_api, kubeconfig))
    props = record()

    created = provider.create(props)
    assert created.id == f"{NETWORK}/{POOL}" and created.outs == props
    assert hetzner_api.state.requests == []  # a record: nothing is created
    assert not provider.diff(created.id, props, props).changes
    assert provider.read(created.id, props).outs == props
    moved = provider.diff(created.id, props, {**props, "network_id": "4712"})
    assert moved.replaces == ["network_id"] and moved.delete_before_replace is False
    for key, value in [("keep_servers", True), ("namespace", "other"), ("hcloud_token", "new")]:
        diff = provider.diff(created.id, props, {**props, key: value})
        assert diff.changes and not diff.replaces, key
    assert provider.update(created.id, props, {**props, "keep_servers": True}).outs == {
        **props,
        "keep_servers": True,
    }

    provider.delete(created.id, props)

    assert server not in hetzner_api.state.servers
    assert hetzner_api.surviving(seeded) == seeded
    assert f"{POOL}-aaaa" not in kubernetes_api.state.nodes
    stderr = capsys.readouterr().err
    assert f"pool {POOL}: deleted 1 server(s) attached to network {NETWORK}" in stderr
    assert f"pool {POOL}: deleted Node(s) {POOL}-aaaa" in stderr


def test_keep_servers_on_destroy_deletes_nothing(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    kubeconfig = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig")
    configured(stack_config(hetzner_api, kubeconfig)).delete(f"{NETWORK}/{POOL}", record(keep=True))
    assert server in hetzner_api.state.servers and f"{POOL}-aaaa" in kubernetes_api.state.nodes
    assert hetzner_api.state.requests == [] and kubernetes_api.state.requests == []
    assert (
        f"pool {POOL}: servers kept (autoscaler.keepServersOnDestroy); list them with "
        f"`hcloud server list -l hcloud/node-group={POOL}`"
    ) in capsys.readouterr().err


def test_an_exec_kubeconfig_does_not_fail_the_destroy(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    tmp_path: Path,
    quick: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    kubeconfig = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig", auth="exec")
    configured(stack_config(hetzner_api, kubeconfig)).delete(f"{NETWORK}/{POOL}", record())

    assert server not in hetzner_api.state.servers
    assert f"{POOL}-aaaa" in kubernetes_api.state.nodes  # reported, not deleted
    assert kubernetes_api.state.requests == []
    stderr = capsys.readouterr().err
    assert (
        "Node(s) not deleted (the kubeconfig cannot be used: context 'stand-in' logs in with an "
        "exec plugin (kubelogin), which this program does not run): remove them with "
        f"`kubectl delete node --ignore-not-found {POOL}-aaaa`"
    ) in stderr


def test_deleting_a_removed_pools_record_sweeps_that_pool_only(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    tmp_path: Path,
    quick: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`pulumi up` without a pool deletes that pool's record after updating the autoscaler."""
    removed = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    kept = hetzner_api.add_server(
        "arm-fsn1-1", {"hcloud/node-group": "arm-fsn1"}, private_ips={NETWORK: "10.100.0.8"}
    )
    kubernetes_api.add_node("arm-fsn1-1", internal_ip="10.100.0.8", provider_id=f"hcloud://{kept}")
    # The updated autoscaler runs without the removed pool.
    kubernetes_api.add_pod(
        NAMESPACE, "autoscaler-new", [*AUTOSCALER_COMMAND[:3], "--nodes=0:3:cax21:fsn1:arm-fsn1"]
    )
    kubeconfig = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig")
    # HCLOUD_TOKEN serves when the stack config has no token (CI), before the stored one.
    monkeypatch.setenv("HCLOUD_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("HCLOUD_ENDPOINT", hetzner_api.endpoint)
    configured({"kubernetes:kubeconfig": str(kubeconfig)}).delete(f"{NETWORK}/{POOL}", record())

    assert removed not in hetzner_api.state.servers
    assert kept in hetzner_api.state.servers
    assert sorted(kubernetes_api.state.nodes) == ["arm-fsn1-1"]


def test_a_failed_sweep_fails_the_delete_so_the_network_stays(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn, tmp_path: Path, quick: None
) -> None:
    """The record stays in state (the engine keeps it and does not delete the network)."""
    server = autoscaled(hetzner_api, kubernetes_api, f"{POOL}-aaaa", "10.100.0.3")
    hetzner_api._delete_servers = lambda *_: (  # type: ignore[method-assign]
        403,
        {"error": {"code": "protected", "message": "server is delete protected", "details": {}}},
    )
    kubeconfig = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(SweepError, match=f"`hcloud server delete {server}`"):
        configured(stack_config(hetzner_api, kubeconfig)).delete(f"{NETWORK}/{POOL}", record())


def test_pulumi_dynamic_host_sweeps_on_delete_with_the_stack_config(
    hetzner_api: HetznerEmulator, kubernetes_api: KubernetesApiStandIn, tmp_path: Path
) -> None:
    """What `pulumi destroy` runs: the provider pickled by the program, unpickled by a fresh
    `python -m pulumi.dynamic` in the project directory, configured with the stack config and
    driven over gRPC like the engine does (production limits: the settle wait is real)."""
    seeded = hetzner_api.seed_unrelated(60)
    servers = [
        autoscaled(hetzner_api, kubernetes_api, f"{POOL}-{index}", f"10.100.0.{index}")
        for index in range(3, 6)
    ]
    hetzner_api.action_seconds["delete_server"] = 1.0  # real time, as Hetzner takes a while
    kubeconfig = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig", auth="certificate")
    with DynamicHost(dropped=("PYTHONPATH", "HCLOUD_", "KUBECONFIG")) as host:
        host.configure(stack_config(hetzner_api, kubeconfig))
        created = host.create(
            "urn:pulumi:dev::p::pulumi-python:dynamic/autoscaler:PoolServers::x",
            record(),
            PoolServersProvider(),
        )
        assert created.id == f"{NETWORK}/{POOL}"
        assert all(server in hetzner_api.state.servers for server in servers)

        host.delete(created)
        assert not any(server in hetzner_api.state.servers for server in servers)
        assert hetzner_api.surviving(seeded) == seeded
        assert kubernetes_api.state.nodes == {}
    stderr = host.stderr
    assert f"pool {POOL}: deleted 3 server(s) attached to network {NETWORK}" in stderr
    assert TEST_TOKEN not in stderr


def test_an_api_that_never_answers_fails_the_delete_instead_of_hanging(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = SilentApi().start()
    quick = functools.partial(ApiClient, request_timeout=(1.0, 0.1), retry_backoff=lambda _: 0.02)
    monkeypatch.setattr(provider_module, "ApiClient", quick)
    monkeypatch.setattr(
        PoolServersProvider, "limits", SweepLimits(delete_timeout=1.0, settle=0.0, poll=0.01)
    )
    kubeconfig = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig")
    config = {
        "hcloud:token": TEST_TOKEN,
        "hcloud:endpoint": silent.endpoint,
        "kubernetes:kubeconfig": str(kubeconfig),
    }
    try:
        with pytest.raises(SweepError) as caught:
            configured(config).delete(f"{NETWORK}/{POOL}", record())
    finally:
        silent.stop()
    assert caught.value.step == "delete servers"
    assert "the server list could not be read (the Hetzner API did not answer in time" in str(
        caught.value
    )
    assert f"`hcloud server list -l hcloud/node-group={POOL}`" in str(caught.value)
    assert silent.connections >= 1
