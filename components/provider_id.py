"""The providerID setter's Kubernetes objects, applied into the autoscaler's namespace.

Why the setter exists, and the objects themselves: ``core.manifests``; the script:
``core/provider_id_setter.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.secrets import AutoscalerSecrets
from core import resources
from core.manifests import provider_id_setter_manifests


@dataclass(frozen=True)
class ProviderIdSetterArgs:
    """Wired from ``AutoscalerSecrets``: its namespace and the Hetzner token Secret."""

    namespace: pulumi.Input[str]
    credentials_secret: pulumi.Input[str]
    credentials_key: pulumi.Input[str]

    @classmethod
    def from_secrets(cls, secrets: AutoscalerSecrets) -> ProviderIdSetterArgs:
        return cls(
            secrets.namespace, secrets.credentials_secret_name, secrets.setter_credentials_key
        )


class ProviderIdSetter(pulumi.ComponentResource):
    """The setter's ConfigMap, ServiceAccount, ClusterRole, binding and Deployment."""

    deployment_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ProviderIdSetterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(resources.PROVIDER_ID_SETTER.type, name, None, opts)
        manifests = pulumi.Output.all(
            namespace=args.namespace,
            credentials_secret=args.credentials_secret,
            credentials_key=args.credentials_key,
        ).apply(lambda resolved: provider_id_setter_manifests(**resolved))

        def part(index: int, key: str) -> pulumi.Output[Any]:
            return manifests.apply(lambda objects: objects[index][key])

        child = pulumi.ResourceOptions(parent=self)
        script = k8s.core.v1.ConfigMap(
            resources.SETTER_SCRIPT.name(name),
            metadata=part(0, "metadata"),
            data=part(0, "data"),
            opts=child,
        )
        account = k8s.core.v1.ServiceAccount(
            resources.SETTER_ACCOUNT.name(name), metadata=part(1, "metadata"), opts=child
        )
        role = k8s.rbac.v1.ClusterRole(
            resources.SETTER_ROLE.name(name),
            metadata=part(2, "metadata"),
            rules=part(2, "rules"),
            opts=child,
        )
        binding = k8s.rbac.v1.ClusterRoleBinding(
            resources.SETTER_BINDING.name(name),
            metadata=part(3, "metadata"),
            role_ref=part(3, "roleRef"),
            subjects=part(3, "subjects"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, account]),
        )
        deployment = k8s.apps.v1.Deployment(
            resources.SETTER_DEPLOYMENT.name(name),
            metadata=part(4, "metadata"),
            spec=part(4, "spec"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[script, binding]),
        )
        self.deployment_name = deployment.metadata["name"]
        self.register_outputs({"deploymentName": self.deployment_name})
