"""What the tests of the whole program (``__main__.py``) share, whatever runs it: mocks, the
oracles or the real engine."""

from __future__ import annotations

from typing import Any

from tests.conftest import REPO, shipped_config

MAIN = REPO / "__main__.py"

#: Resource types the program registers for the autoscaler's release and its Secrets.
PACKAGE = "kubernetes:cozystack.io/v1alpha1:Package"
HELM = "kubernetes:helm.sh/v3:Release"
K8S_SECRET = "kubernetes:core/v1:Secret"


def dev_config() -> dict[str, Any]:
    """The shipped dev stack's config, plus a token as `pulumi config set --secret` would."""
    return shipped_config("dev")


#: The stack outputs other stacks may rely on (docs/configuration.md, "Stack outputs");
#: renaming one breaks them.
OUTPUT_CONTRACT = {
    "networkId",
    "networkName",
    "networkZone",
    "subnetIpRange",
    "imageIds",
    "autoscalerNamespace",
    "nodeGroups",
    "credentialsSecret",
    "talosConfigSecret",
    "workerConfigSha256",
    "poolGenerations",
    "autoscalerRelease",
    "autoscalerLogsTarget",
    "kubectlLogs",
    "kubectlNodes",
    "kubectlNodeLabels",
    "kubectlProviderIds",
}
