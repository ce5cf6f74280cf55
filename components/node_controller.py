"""The node controller's Kubernetes objects, applied into the autoscaler's namespace.

What it does and why it is its own Deployment: ``core.manifests``; the script:
``core/node_controller.py``. Its ``config.json`` is wired from the network's id and the
pools' generations (``AutoscalerConfig.generations``), so a new generation is an in-place
ConfigMap update that the running controller reads; Pulumi never waits for the rollout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.secrets import AutoscalerSecrets
from core import resources
from core.manifests import node_controller_manifests
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

        def part(index: int, key: str) -> pulumi.Output[Any]:
            return manifests.apply(lambda objects: objects[index][key])

        child = pulumi.ResourceOptions(parent=self)
        script = k8s.core.v1.ConfigMap(
            resources.CONTROLLER_SCRIPT.name(name),
            metadata=part(0, "metadata"),
            data=part(0, "data"),
            opts=child,
        )
        account = k8s.core.v1.ServiceAccount(
            resources.CONTROLLER_ACCOUNT.name(name), metadata=part(1, "metadata"), opts=child
        )
        role = k8s.rbac.v1.ClusterRole(
            resources.CONTROLLER_ROLE.name(name),
            metadata=part(2, "metadata"),
            rules=part(2, "rules"),
            opts=child,
        )
        binding = k8s.rbac.v1.ClusterRoleBinding(
            resources.CONTROLLER_BINDING.name(name),
            metadata=part(3, "metadata"),
            role_ref=part(3, "roleRef"),
            subjects=part(3, "subjects"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, account]),
        )
        deployment = k8s.apps.v1.Deployment(
            resources.CONTROLLER_DEPLOYMENT.name(name),
            metadata=part(4, "metadata"),
            spec=part(4, "spec"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[script, binding]),
        )
        self.deployment_name = deployment.metadata["name"]
        self.register_outputs({"deploymentName": self.deployment_name})
