"""The AutoscalerSecrets component under mocks."""

from __future__ import annotations

import base64

import pulumi

from components.secrets import AutoscalerSecrets, AutoscalerSecretsArgs

from tests.conftest import MockRuntime

SECRET = "kubernetes:core/v1:Secret"
NAMESPACE = "kubernetes:core/v1:Namespace"


def test_secrets_are_registered_in_the_namespace_with_secret_values(
    pulumi_runtime: MockRuntime,
) -> None:
    cloud_init = base64.b64encode(b"version: v1alpha1\n").decode()

    def program() -> None:
        secrets = AutoscalerSecrets(
            "secrets",
            AutoscalerSecretsArgs(
                namespace="cozy-cluster-autoscaler-hetzner",
                hcloud_token="plain-token",
                talos_config_key="cloud-init",
                talos_config_value=cloud_init,
            ),
        )
        pulumi.export("credentials", secrets.credentials_secret_name)
        pulumi.export("key", secrets.talos_config_secret_key)

    exports = pulumi_runtime.run(program)

    namespace = pulumi_runtime.one(NAMESPACE)
    assert namespace.inputs["metadata"]["name"] == "cozy-cluster-autoscaler-hetzner"
    secrets = {secret.name: secret for secret in pulumi_runtime.by_type(SECRET)}
    assert set(secrets) == {"secrets-credentials", "secrets-talos-config"}
    credentials, talos_config = secrets["secrets-credentials"], secrets["secrets-talos-config"]
    assert credentials.inputs["metadata"] == {
        "name": "hetzner-credentials",
        "namespace": "cozy-cluster-autoscaler-hetzner",
    }
    assert credentials.inputs["stringData"] == {"token": "plain-token"}
    assert credentials.is_secret("stringData")
    assert talos_config.inputs["metadata"]["name"] == "talos-config"
    assert talos_config.is_secret("stringData")
    # The autoscaler reads the env var and base64-decodes it: stringData holds exactly that.
    assert (
        base64.b64decode(talos_config.inputs["stringData"]["cloud-init"]) == b"version: v1alpha1\n"
    )
    assert "data" not in talos_config.inputs
    for secret in (credentials, talos_config):
        assert (
            pulumi_runtime.parent_of(secret).type
            == "hcloud-talos-autoscaler:index:AutoscalerSecrets"
        )
    assert exports["credentials"].value == "hetzner-credentials"
    assert exports["key"].value == "cloud-init"
