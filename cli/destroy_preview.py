"""``python -m components destroy-preview --stack dev``: what the destroy sweep would delete.

For each pool of the stack: the servers ``pulumi destroy`` (or removing the pool) would
delete, the Nodes it would delete after them, and why each matched; the pool-labelled
servers it leaves alone, and why. Reads only: nothing is deleted. The token comes from
HCLOUD_TOKEN (HCLOUD_ENDPOINT, else the stack's ``hcloud:endpoint``, for the URL), the
cluster from KUBECONFIG or ``~/.kube/config``.
"""

from __future__ import annotations

import argparse
import os

from cli import add_stack_arguments
from core.config import ConfigError, Problem
from core.config.parse import read_stack_file
from core.hetzner.access import api_endpoint, environment_token
from core.hetzner.api import ApiClient
from core.kubernetes.kubeconfig import KubeconfigError, kubernetes_access
from core.plan import plan_stack
from core.server_sweep import PoolTarget, preview_pool


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    preview = commands.add_parser(
        "destroy-preview",
        help="list the servers and Nodes the destroy sweep would delete per pool (deletes nothing)",
    )
    add_stack_arguments(preview)
    preview.add_argument(
        "--debug", action="store_true", help="print the traceback of a runtime failure"
    )


def destroy_preview(args: argparse.Namespace) -> int:
    stack, _ = read_stack_file(args.project_dir, args.stack)
    plan = plan_stack(stack)
    token = environment_token()
    if not token:
        raise ConfigError(
            [Problem("", "HCLOUD_TOKEN is not set: export the stack's Hetzner token to look")]
        )
    client = ApiClient(token, api_endpoint(stored=plan.hcloud_endpoint))
    if plan.servers.keep_servers:
        print(
            "autoscaler.keepServersOnDestroy is true: the sweep deletes nothing; the pools' "
            "servers are listed with `hcloud server list -l hcloud/node-group=<pool>`"
        )
        return 0
    wanted = plan.network.shown_name
    network = (
        client.networks.get_by_id(int(wanted))
        if wanted.isdigit()
        else client.networks.get_by_name(wanted)
    )
    if network is None or network.id is None:
        print(f"network {wanted} does not exist: the sweep would find no servers to delete")
        return 0
    try:
        kubernetes = kubernetes_access(None, os.environ)
    except KubeconfigError as error:
        api, problem = None, f"the kubeconfig cannot be used: {error}"
    else:
        api, problem = kubernetes.api, ""
    print(f"stack {args.stack}: network {wanted} ({network.id}); nothing is deleted")
    for pool in plan.servers.pools:
        target = PoolTarget(pool=pool, network_id=network.id, namespace=plan.autoscaler.namespace)
        print("\n".join(preview_pool(client, target, api, problem).lines()))
    return 0
