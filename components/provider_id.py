"""Opt-in controller that sets ``spec.providerID`` on autoscaled nodes.

The autoscaler counts a node as registered only when its providerID is
``hcloud://<server-id>``; Talos nodes started with ``cloud-provider: external``
also keep the ``node.cloudprovider.kubernetes.io/uninitialized`` taint until a
cloud controller initializes them. We deploy the Talos CCM with only its
``cloud-node`` controller: it reads each node's platform metadata through the
Talos API (Hetzner's metadata gives ``hcloud://<id>``) and never deletes nodes,
so bare-metal nodes of a mixed cluster are left alone. hcloud-cloud-controller-manager
was not chosen: its node lifecycle controller asks the Hetzner API about every
node and removes ones it cannot find, which is wrong for non-Hetzner bare metal.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

TALOS_CCM_CHART = "oci://ghcr.io/siderolabs/charts/talos-cloud-controller-manager"
TALOS_CCM_VERSION = "0.5.0"
TALOS_CCM_NAMESPACE = "kube-system"


def talos_ccm_values() -> dict[str, Any]:
    """Only the cloud-node controller, on the control plane (it needs Talos API access)."""
    control_plane = "node-role.kubernetes.io/control-plane"
    return {
        "enabledControllers": ["cloud-node"],
        "nodeSelector": {control_plane: ""},
        "tolerations": [{"key": control_plane, "effect": "NoSchedule", "operator": "Exists"}],
    }


class ProviderIdController(pulumi.ComponentResource):
    """Talos CCM release in ``kube-system``."""

    release_name: pulumi.Output[str]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hcloud-talos-autoscaler:index:ProviderIdController", name, None, opts)
        release = k8s.helm.v3.Release(
            f"{name}-release",
            name="talos-cloud-controller-manager",
            chart=TALOS_CCM_CHART,
            version=TALOS_CCM_VERSION,
            namespace=TALOS_CCM_NAMESPACE,
            values=talos_ccm_values(),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.release_name = release.name.apply(lambda value: value or "")
        self.register_outputs({"releaseName": self.release_name})
