"""Guide step 7 as data: the exact kubectl commands for this stack's real names."""

from __future__ import annotations

from core.talos_config import NODE_GROUP_LABEL


def verification_commands(namespace: str, logs_target: str, pools: list[str]) -> dict[str, str]:
    """Commands exported as stack outputs (``pulumi stack output --shell`` prints them).

    Good looks like: nodes of the pools appear, their InternalIP lies in the
    private subnet, they carry the pool and location labels (and Kilo annotations),
    and PROVIDER-ID is ``hcloud://<server-id>``.
    """
    selector = f"{NODE_GROUP_LABEL} in ({','.join(pools)})"
    return {
        "kubectlLogs": f"kubectl -n {namespace} logs {logs_target} -f",
        "kubectlNodes": f"kubectl get nodes -l '{selector}' -o wide",
        "kubectlNodeLabels": f"kubectl get nodes -l '{selector}' --show-labels",
        "kubectlProviderIds": (
            f"kubectl get nodes -l '{selector}' -o custom-columns="
            "NAME:.metadata.name,PROVIDER-ID:.spec.providerID,"
            "INTERNAL-IP:'.status.addresses[?(@.type==\"InternalIP\")].address'"
        ),
    }
