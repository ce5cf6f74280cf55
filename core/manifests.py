"""The Kubernetes objects this program applies besides the chart, as plain data.

- the providerID setter: ``provider_id_setter.py`` (standard library only, kept and tested
  here) in a ConfigMap, run by an official Python image with its own ServiceAccount and a
  ClusterRole on nodes. The autoscaler counts a node as registered only when its
  ``spec.providerID`` is ``hcloud://<server-id>``; on a Cozystack cluster nothing sets it
  (Local CCM removes the ``uninitialized`` taint first, and a cloud-node controller only
  initializes nodes that still carry it), so unregistered servers would be deleted after
  15 minutes;
- the scale-up smoke test (guide step 6).

The components register these objects and ``render`` writes them for ``kubectl apply``.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Any

import yaml

from core.config import Taint
from core.resources import PROJECT
from core.talos_config import NODE_GROUP_LABEL

SETTER_NAME = "provider-id-setter"
#: Official Python image (Docker Hub library/python); the script needs nothing else.
SETTER_IMAGE = "python:3.14.0-alpine3.22"
SCRIPT_FILE = "provider_id_setter.py"
SCRIPT_DIR = "/opt/provider-id-setter"
#: Cluster-scoped names carry the project's name so they do not collide with others'.
CLUSTER_ROLE = f"{PROJECT}-{SETTER_NAME}"
HEALTH_PORT = 8080
#: Isolated (no PYTHON* variables, no user site), no bytecode written (the root file
#: system is read-only), unbuffered logs.
SETTER_COMMAND = ["python", "-I", "-B", "-u", f"{SCRIPT_DIR}/{SCRIPT_FILE}"]
SCRIPT_HASH_ANNOTATION = f"{PROJECT}/script-sha256"
#: What the setter does, and nothing more: list Nodes and patch them (the API server
#: itself refuses to change a providerID that is already set). Its script makes no other
#: call (``tests/test_provider_id_setter.py`` compares both).
NODE_RULE: dict[str, list[str]] = {
    "apiGroups": [""],
    "resources": ["nodes"],
    "verbs": ["list", "patch"],
}


@cache
def setter_script() -> str:
    """The script exactly as this repository ships (and its tests run) it."""
    return resources.files("core").joinpath(SCRIPT_FILE).read_text(encoding="utf-8")


def provider_id_setter_manifests(
    namespace: str, credentials_secret: str, credentials_key: str
) -> list[dict[str, Any]]:
    """ConfigMap (script), ServiceAccount, ClusterRole, ClusterRoleBinding, Deployment."""
    labels = {"app.kubernetes.io/name": SETTER_NAME, "app.kubernetes.io/part-of": PROJECT}
    script = setter_script()
    metadata = {"name": SETTER_NAME, "namespace": namespace, "labels": labels}
    container = {
        "name": SETTER_NAME,
        "image": SETTER_IMAGE,
        "command": SETTER_COMMAND,
        "env": [
            {
                "name": "HCLOUD_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": credentials_secret, "key": credentials_key}},
            },
        ],
        "ports": [{"name": "health", "containerPort": HEALTH_PORT}],
        # The loop reports itself overdue after it missed its schedule by two minutes.
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "initialDelaySeconds": 10,
            "periodSeconds": 30,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True}],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": {SCRIPT_FILE: script},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": CLUSTER_ROLE, "labels": labels},
            "rules": [NODE_RULE],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": CLUSTER_ROLE, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": CLUSTER_ROLE,
            },
            "subjects": [{"kind": "ServiceAccount", "name": SETTER_NAME, "namespace": namespace}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": labels,
                        # A new script rolls the pod (a ConfigMap change alone would not).
                        "annotations": {
                            SCRIPT_HASH_ANNOTATION: hashlib.sha256(script.encode()).hexdigest()
                        },
                    },
                    "spec": {
                        "serviceAccountName": SETTER_NAME,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65534,
                            "runAsGroup": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        "volumes": [{"name": "script", "configMap": {"name": SETTER_NAME}}],
                    },
                },
            },
        },
    ]


SMOKE_TEST_NAME = "autoscaler-smoke-test"


def smoke_test_deployment(
    namespace: str, replicas: int, pools: list[str], taints: list[Taint]
) -> dict[str, Any]:
    """The guide's anti-affinity nginx Deployment, pinned to the autoscaled pools.

    One pod per node (anti-affinity on the hostname) and only on pool nodes, so
    ``replicas`` more than the pools' current nodes forces a scale-up. With no
    ``pools`` (legacy format: nodes carry no pool label) it is the guide's
    unpinned Deployment.
    """
    labels = {"app": SMOKE_TEST_NAME}
    tolerations = [
        {"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect}
        for taint in taints
    ]
    affinity: dict[str, Any] = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": labels},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    if pools:
        affinity["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": NODE_GROUP_LABEL, "operator": "In", "values": pools}
                        ]
                    }
                ]
            }
        }
    pod_spec: dict[str, Any] = {
        "affinity": affinity,
        "containers": [
            {
                "name": "nginx",
                "image": "nginx:1.27-alpine",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }
        ],
    }
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SMOKE_TEST_NAME, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def watch_nodes_command(pools: list[str]) -> str:
    """The command that shows autoscaled nodes appearing."""
    return f"kubectl get nodes -l '{NODE_GROUP_LABEL} in ({','.join(pools)})' -o wide --watch"


class _ManifestDumper(yaml.SafeDumper):
    """Multi-line strings (the setter's script) as literal blocks, readable in review;
    shared sub-objects written out in full, never as YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def manifests_yaml(manifests: list[dict[str, Any]]) -> str:
    """Kubernetes objects as one multi-document YAML file for ``kubectl apply -f``."""
    return yaml.dump_all(manifests, Dumper=_ManifestDumper, sort_keys=False, width=1000)
