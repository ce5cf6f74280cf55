"""The providerID setter's Kubernetes objects, applied into the autoscaler's namespace.

Why the setter exists, and the objects themselves: ``core.autoscaler.manifests``; the script:
``core/kubernetes/provider_id_setter.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.in_cluster_helper import register_helper_objects
from components.secrets import AutoscalerSecrets
from core import resources
from core.autoscaler.manifests import provider_id_setter_manifests


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

        deployment = register_helper_objects(self, name, manifests)
        self.deployment_name = deployment.metadata["name"]
        self.register_outputs({"deploymentName": self.deployment_name})
