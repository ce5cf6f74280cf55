"""The Kubernetes Secrets the autoscaler reads: Hetzner token and Talos config (guide step 4)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from core import resources
from core.autoscaler.values import CREDENTIALS_KEY, CREDENTIALS_SECRET, TALOS_CONFIG_SECRET
from core.plan import StackPlan


@dataclass(frozen=True)
class AutoscalerSecretsArgs:
    """Secret values arrive as Outputs and are re-marked secret here whatever their origin."""

    namespace: str
    hcloud_token: pulumi.Input[str]
    #: Key in the ``talos-config`` Secret: ``cloud-init`` (legacy) or ``cluster-config``.
    talos_config_key: str
    #: The exact string the autoscaler reads from that key (``stringData``, not ``data``:
    #: putting the base64 text into ``data`` would hand the autoscaler the decoded YAML).
    talos_config_value: pulumi.Input[str]
    #: Cozystack's operator also manages the namespace; keep it when this stack is destroyed.
    retain_namespace: bool = True
    #: ``autoscaler.providerIdToken`` (read-only), stored under ``setter_credentials_key``.
    setter_token: pulumi.Input[str] | None = None
    setter_credentials_key: str = CREDENTIALS_KEY

    @classmethod
    def from_plan(
        cls, plan: StackPlan, talos_config_value: pulumi.Input[str]
    ) -> AutoscalerSecretsArgs:
        return cls(
            namespace=plan.secrets.namespace,
            hcloud_token=plan.autoscaler_token,
            talos_config_key=plan.secrets.talos_config_key,
            talos_config_value=talos_config_value,
            retain_namespace=plan.secrets.retain_namespace,
            setter_token=plan.setter_token,
            setter_credentials_key=plan.secrets.setter_credentials_key,
        )


class AutoscalerSecrets(pulumi.ComponentResource):
    """Namespace + ``hetzner-credentials`` + ``talos-config`` Secrets.

    The namespace is applied with server-side apply (the provider's default), so
    it is created when missing and adopted when Cozystack's operator made it first.
    """

    namespace: pulumi.Output[str]
    credentials_secret_name: pulumi.Output[str]
    credentials_secret_key: pulumi.Output[str]
    #: The key of the providerID setter's token in the credentials Secret.
    setter_credentials_key: pulumi.Output[str]
    talos_config_secret_name: pulumi.Output[str]
    talos_config_secret_key: pulumi.Output[str]
    #: ``{namespace, name, key}`` of each Secret (the ``*Secret`` stack outputs).
    credentials_reference: pulumi.Output[dict[str, str]]
    talos_config_reference: pulumi.Output[dict[str, str]]

    def __init__(
        self, name: str, args: AutoscalerSecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(resources.AUTOSCALER_SECRETS.type, name, None, opts)
        namespace = k8s.core.v1.Namespace(
            resources.NAMESPACE.name(name),
            metadata={"name": args.namespace},
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_namespace),
        )
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        credentials = k8s.core.v1.Secret(
            resources.CREDENTIALS_SECRET.name(name),
            metadata={"name": CREDENTIALS_SECRET, "namespace": namespace.metadata["name"]},
            type="Opaque",
            string_data={
                CREDENTIALS_KEY: pulumi.Output.secret(args.hcloud_token),
                **(
                    {args.setter_credentials_key: pulumi.Output.secret(args.setter_token)}
                    if args.setter_token is not None
                    else {}
                ),
            },
            opts=in_namespace,
        )
        talos_config = k8s.core.v1.Secret(
            resources.TALOS_CONFIG_SECRET.name(name),
            metadata={"name": TALOS_CONFIG_SECRET, "namespace": namespace.metadata["name"]},
            type="Opaque",
            string_data={args.talos_config_key: pulumi.Output.secret(args.talos_config_value)},
            opts=in_namespace,
        )
        self.namespace = namespace.metadata["name"]
        self.credentials_secret_name = credentials.metadata["name"]
        self.credentials_secret_key = pulumi.Output.from_input(CREDENTIALS_KEY)
        self.setter_credentials_key = pulumi.Output.from_input(args.setter_credentials_key)
        self.talos_config_secret_name = talos_config.metadata["name"]
        self.talos_config_secret_key = pulumi.Output.from_input(args.talos_config_key)
        self.credentials_reference = pulumi.Output.all(
            namespace=self.namespace,
            name=self.credentials_secret_name,
            key=self.credentials_secret_key,
        )
        self.talos_config_reference = pulumi.Output.all(
            namespace=self.namespace,
            name=self.talos_config_secret_name,
            key=self.talos_config_secret_key,
        )
        self.register_outputs(
            {
                "namespace": self.namespace,
                "credentialsSecretName": self.credentials_secret_name,
                "talosConfigSecretName": self.talos_config_secret_name,
                "talosConfigSecretKey": self.talos_config_secret_key,
            }
        )
