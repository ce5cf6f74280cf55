"""The node controller's Kubernetes objects, applied into the autoscaler's namespace.

What it does and why it is its own Deployment: ``core.autoscaler.manifests``; the script:
``core/kubernetes/node_controller.py``. Its ``config.json`` is wired from the network's id and the
pools' generations (``AutoscalerConfig.generations``), so a new generation is an in-place
ConfigMap update that the running controller reads; Pulumi never waits for the rollout.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.in_cluster_helper import register_helper_objects
from components.secrets import AutoscalerSecrets
from core import resources
from core.autoscaler.manifests import node_controller_manifests
from core.plan import RolloutPlan


@dataclass(frozen=True)
class NodeControllerArgs:
    namespace: pulumi.Input[str]
    credentials_secret: pulumi.Input[str]
    credentials_key: pulumi.Input[str]
    network_id: pulumi.Input[str]
    #: Pool -> its current generation.
    generations: pulumi.Input[dict[str, str]]
    rollout: RolloutPlan

    @classmethod
    def wired(
        cls,
        rollout: RolloutPlan,
        secrets: AutoscalerSecrets,
        network_id: pulumi.Input[str],
        generations: pulumi.Input[dict[str, str]],
    ) -> NodeControllerArgs:
        return cls(
            secrets.namespace,
            secrets.credentials_secret_name,
            secrets.credentials_secret_key,
            network_id,
            generations,
            rollout,
        )


class NodeController(pulumi.ComponentResource):
    """The controller's ConfigMap, ServiceAccount, ClusterRole, binding and Deployment."""

    deployment_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: NodeControllerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(resources.NODE_CONTROLLER.type, name, None, opts)
        manifests = pulumi.Output.all(
            namespace=args.namespace,
            credentials_secret=args.credentials_secret,
            credentials_key=args.credentials_key,
            network_id=args.network_id,
            generations=args.generations,
        ).apply(
            lambda resolved: node_controller_manifests(
                resolved["namespace"],
                resolved["credentials_secret"],
                resolved["credentials_key"],
                args.rollout.controller_config(resolved["network_id"], resolved["generations"]),
            )
        )

        deployment = register_helper_objects(self, name, manifests)
        self.deployment_name = deployment.metadata["name"]
        self.register_outputs({"deploymentName": self.deployment_name})
