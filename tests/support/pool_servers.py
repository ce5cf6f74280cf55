"""A pool's autoscaled servers and Nodes on the stand-ins: what the destroy sweep and its dynamic
provider are tested against."""

from __future__ import annotations

import pytest

from tests.stand_ins.hetzner_api import HetznerEmulator
from tests.stand_ins.kubernetes_api import KubernetesApiStandIn

NETWORK = 4711
POOL = "workers-fsn1"
NAMESPACE = "cozy-cluster-autoscaler-hetzner"
LABEL = {"hcloud/node-group": POOL}

AUTOSCALER_COMMAND = [
    "./cluster-autoscaler",
    "--cloud-provider=hetzner",
    f"--namespace={NAMESPACE}",
    f"--nodes=0:10:cpx22:fsn1:{POOL}",
]


@pytest.fixture
def deletes_in_fake_time(hetzner_api: HetznerEmulator) -> None:
    """The emulator's actions run in real time while the sweep's clock here is simulated:
    a server is gone once its delete is accepted (tests that run in real time set a duration)."""
    hetzner_api.action_seconds["delete_server"] = 0.0


def autoscaled(
    hetzner_api: HetznerEmulator,
    kubernetes_api: KubernetesApiStandIn,
    name: str,
    ip: str,
    *,
    provider_id: bool = True,
    network: int = NETWORK,
) -> int:
    """A server the autoscaler created in ``network`` and the Node it registered."""
    server = hetzner_api.add_server(name, LABEL, private_ips={network: ip})
    kubernetes_api.add_node(
        name, internal_ip=ip, provider_id=f"hcloud://{server}" if provider_id else None
    )
    return server
