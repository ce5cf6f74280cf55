"""Command line: ``python -m cli nodes --stack dev``: the stack's autoscaled nodes, each with its
pool, generation (current or outdated), Talos and kubelet versions, age, and what the node
controller is doing with it.

The cluster is reached as the Kubernetes provider reaches it
(``core.kubernetes.kubeconfig``: the stack file's ``kubernetes:kubeconfig``/
``kubernetes:context``, else ``KUBECONFIG``, else ``~/.kube/config``). The current
generations are the ones the deployed controller works with
(its ConfigMap); the stack file's own, when they differ, mean a ``pulumi up`` is pending.
Exit codes as ``render``'s: 0 done, 2 bad input, 1 the cluster could not be read.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli import add_stack_arguments
from core import safe_yaml
from core.autoscaler.manifests import CONTROLLER_NAME
from core.config import stack_file
from core.config.parse import read_stack_file
from core.config.sources import STACK_FILE_LIMITS
from core.errors import EXIT_BAD_INPUT, EXIT_RUNTIME_FAILURE, InputError
from core.kubernetes.client import ApiError, KubernetesApi
from core.kubernetes.kubeconfig import KubeconfigError, kubernetes_access
from core.kubernetes.node_status import controller_settings, node_rows, table
from core.plan import plan_stack


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli")
    commands = parser.add_subparsers(dest="command", required=True)
    nodes = commands.add_parser(
        "nodes", help="list the stack's autoscaled nodes, their generation and rollout state"
    )
    add_stack_arguments(nodes)
    args = parser.parse_args(argv)
    try:
        print(show_nodes(args.project_dir, args.stack, os.environ if environ is None else environ))
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (KubeconfigError, ApiError) as error:
        print(f"error: the cluster could not be read: {error}", file=sys.stderr)
        return EXIT_RUNTIME_FAILURE
    return 0


def show_nodes(project_dir: Path, stack_name: str, environ: Mapping[str, str]) -> str:
    stack, _ = read_stack_file(project_dir, stack_name)
    plan = plan_stack(stack)
    planned = plan.generations(plan.network.subnet) if stack.base_documents is not None else None
    api = kubernetes_access(_provider_config(project_dir, stack_name), environ).api
    namespace = urllib.parse.quote(plan.secrets.namespace)
    deployed = controller_settings(
        _get_or_none(api, f"/api/v1/namespaces/{namespace}/configmaps/{CONTROLLER_NAME}")
    )
    lines: list[str] = []
    if deployed is not None:
        pools, strategy = dict(deployed.pools), deployed.strategy
        if planned is not None and planned != pools:
            lines.append(
                "note: the stack file's generations differ from the deployed controller's: "
                "`pulumi up` has not applied them yet"
            )
    elif planned is not None:
        pools, strategy = planned, plan.rollout.strategy
        lines.append("note: no node controller is deployed; generations from the stack file")
    else:
        raise KubeconfigError(
            f"no node controller ConfigMap {CONTROLLER_NAME} in namespace "
            f"{plan.secrets.namespace}, and the worker config is encrypted in the stack file: "
            "run `pulumi up` first"
        )
    rows = node_rows(api.list_all("/api/v1/nodes"), pools, strategy, datetime.now(UTC))
    lines.append(table(rows))
    current = ", ".join(f"{pool}={generation}" for pool, generation in sorted(pools.items()))
    lines.append(f"{len(rows)} autoscaled node(s); current generations: {current}")
    return "\n".join(lines)


def _provider_config(project_dir: Path, stack_name: str) -> dict[str, Any]:
    """The stack file's ``kubernetes:kubeconfig`` and ``kubernetes:context`` in plain text."""
    document = safe_yaml.load_one(
        safe_yaml.read_text(stack_file(project_dir, stack_name), STACK_FILE_LIMITS),
        STACK_FILE_LIMITS,
    )
    flat = (document or {}).get("config") or {}
    found: dict[str, Any] = {}
    for key in ("kubernetes:kubeconfig", "kubernetes:context"):
        value = flat.get(key)
        if isinstance(value, Mapping) and "secure" in value:
            raise KubeconfigError(
                f"{key} is encrypted in the stack file; export KUBECONFIG instead (this "
                "command reads the stack file without the Pulumi CLI)"
            )
        if value:
            found[key] = value
    return found


def _get_or_none(api: KubernetesApi, path: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = api.request("GET", path)
    except ApiError as error:
        if error.status == 404:
            return None
        raise
    return found
