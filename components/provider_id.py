"""The providerID setter's Kubernetes objects, and the component that applies them.

The autoscaler counts a node as registered only when its ``spec.providerID`` is
``hcloud://<server-id>``; otherwise it deletes the server after 15 minutes. On a
Cozystack cluster nothing sets it: Local CCM removes the ``uninitialized`` taint within
seconds and never sets providerID, and a cloud-node controller only initializes nodes
that still carry that taint. So the program deploys ``provider_id_setter.py`` (standard
library only, kept and tested in this repository) into the autoscaler's namespace: a
ConfigMap holds the script, an official Python image runs it, no image is built.

``provider_id_setter_manifests`` is the one description of those objects: the component
registers it and ``render`` writes it for ``kubectl apply``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from core.resources import PROJECT

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
#: What the setter may do: read Nodes and patch them (the API server itself refuses to
#: change a providerID that is already set).
NODE_RULE: dict[str, list[str]] = {
    "apiGroups": [""],
    "resources": ["nodes"],
    "verbs": ["get", "list", "watch", "patch"],
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


@dataclass(frozen=True)
class ProviderIdSetterArgs:
    """Wired from ``AutoscalerSecrets``: its namespace and the Hetzner token Secret."""

    namespace: pulumi.Input[str]
    credentials_secret: pulumi.Input[str]
    credentials_key: pulumi.Input[str]


class ProviderIdSetter(pulumi.ComponentResource):
    """The setter's ConfigMap, ServiceAccount, ClusterRole, binding and Deployment."""

    deployment_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ProviderIdSetterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hcloud-talos-autoscaler:index:ProviderIdSetter", name, None, opts)
        manifests = pulumi.Output.all(
            args.namespace, args.credentials_secret, args.credentials_key
        ).apply(lambda resolved: provider_id_setter_manifests(*resolved))

        def part(index: int, key: str) -> pulumi.Output[Any]:
            return manifests.apply(lambda objects: objects[index][key])

        child = pulumi.ResourceOptions(parent=self)
        script = k8s.core.v1.ConfigMap(
            f"{name}-script", metadata=part(0, "metadata"), data=part(0, "data"), opts=child
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-account", metadata=part(1, "metadata"), opts=child
        )
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-role", metadata=part(2, "metadata"), rules=part(2, "rules"), opts=child
        )
        binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-binding",
            metadata=part(3, "metadata"),
            role_ref=part(3, "roleRef"),
            subjects=part(3, "subjects"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, account]),
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=part(4, "metadata"),
            spec=part(4, "spec"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[script, binding]),
        )
        self.deployment_name = deployment.metadata["name"]
        self.register_outputs({"deploymentName": self.deployment_name})
