"""The Kubernetes objects this program applies besides the chart, as plain data.

- the providerID setter: ``core/kubernetes/provider_id_setter.py`` and the ``client.py``
  it imports (standard library only, kept and tested there) in a ConfigMap, mounted at the
  paths the repository has (``<mount>/core/kubernetes/...``) and run by an
  official Python image with its own ServiceAccount and a ClusterRole on nodes. The
  autoscaler counts a node as registered only when its ``spec.providerID`` is
  ``hcloud://<server-id>``; on a Cozystack cluster nothing sets it (Local CCM removes the
  ``uninitialized`` taint first, and a cloud-node controller only initializes nodes that
  still carry it), so unregistered servers would be deleted after 15 minutes;
- the node controller: ``node_controller.py`` with the same ``client.py``,
  ``rollout.py`` (the labels and settings it shares with the ``nodes`` command) and its
  ``config.json`` (the stack's network, each pool's generation, the rollout settings) in
  its own ConfigMap, with its own ServiceAccount and ClusterRole: it drains and replaces
  nodes of an outdated generation (docs/upgrades.md).
  A second Deployment rather than a grown setter: only it holds the rights to evict pods
  and delete Nodes and needs a Hetzner token that may delete servers, and a stuck drain
  never delays the registration of new nodes;
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
from core.hetzner.access import TOKEN_VARIABLE
from core.hetzner.facts import NODE_GROUP_LABEL
from core.resources import PROJECT

SETTER_NAME = "provider-id-setter"
#: Official Python image (Docker Hub library/python); the script needs nothing else.
SETTER_IMAGE = "python:3.14.0-alpine3.22"
#: The scripts' package. Its files are mounted at the paths the repository has
#: (``<mount>/core/kubernetes/client.py``), so a script imports the modules shipped beside it
#: as the repository's code does (``from core.kubernetes.client import ...``): ``core`` and
#: ``core.kubernetes`` are namespace packages there (no ``__init__.py`` shipped).
HELPER_PACKAGE = "core.kubernetes"
SCRIPT_MODULE = "provider_id_setter"
SCRIPT_FILE = f"{SCRIPT_MODULE}.py"
#: The standard-library modules the scripts import, shipped beside them.
CLIENT_FILE = "client.py"
ROLLOUT_FILE = "rollout.py"
SCRIPT_DIR = "/opt/provider-id-setter"
#: Cluster-scoped names carry the project's name so they do not collide with others'.
CLUSTER_ROLE = f"{PROJECT}-{SETTER_NAME}"
HEALTH_PORT = 8080
#: No PYTHON* variables, no user site, no bytecode written (the root file system is
#: read-only), unbuffered logs; the script run as a module (``-m``) from the working
#: directory, the mount, which ``-m`` puts first on ``sys.path`` (``-E``/``-s`` keep it; ``-I``
#: or ``-P`` would not): ``core.kubernetes.client`` is found there.
SETTER_COMMAND = ["python", "-E", "-s", "-B", "-u", "-m", f"{HELPER_PACKAGE}.{SCRIPT_MODULE}"]
SCRIPT_HASH_ANNOTATION = f"{PROJECT}/script-sha256"
#: What the setter does, and nothing more: list Nodes and patch them (the API server
#: itself refuses to change a providerID that is already set). Its script makes no other
#: call (``tests/core/kubernetes/test_provider_id_setter.py`` compares both).
NODE_RULE: dict[str, list[str]] = {
    "apiGroups": [""],
    "resources": ["nodes"],
    "verbs": ["list", "patch"],
}


@cache
def helper_file(name: str) -> str:
    """A file of ``core/kubernetes`` exactly as this repository ships (and its tests run) it."""
    return resources.files(HELPER_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def volume_items(data: dict[str, str]) -> list[dict[str, str]]:
    """Where the ConfigMap volume puts each key (a key cannot hold a ``/``): a Python file at
    its path in the repository, under the mount; anything else (``config.json``) at the top."""
    package = HELPER_PACKAGE.replace(".", "/")
    return [
        {"key": key, "path": f"{package}/{key}" if key.endswith(".py") else key}
        for key in sorted(data)
    ]


def setter_files() -> dict[str, str]:
    """The setter's ConfigMap files: its script and the client it imports."""
    return {name: helper_file(name) for name in (CLIENT_FILE, SCRIPT_FILE)}


def controller_files() -> dict[str, str]:
    """The node controller's ConfigMap files besides ``config.json``."""
    return {name: helper_file(name) for name in (CLIENT_FILE, ROLLOUT_FILE, CONTROLLER_SCRIPT_FILE)}


def provider_id_setter_manifests(
    namespace: str, credentials_secret: str, credentials_key: str
) -> list[dict[str, Any]]:
    """ConfigMap (script), ServiceAccount, ClusterRole, ClusterRoleBinding, Deployment."""
    scripts = setter_files()
    return _in_cluster_helper(
        SETTER_NAME,
        namespace,
        data=scripts,
        scripts="".join(scripts[name] for name in sorted(scripts)),
        command=SETTER_COMMAND,
        env=[_token_env(credentials_secret, credentials_key)],
        mount=SCRIPT_DIR,
        role=CLUSTER_ROLE,
        rules=[NODE_RULE],
    )


def _token_env(credentials_secret: str, credentials_key: str) -> dict[str, Any]:
    return {
        "name": TOKEN_VARIABLE,
        "valueFrom": {"secretKeyRef": {"name": credentials_secret, "key": credentials_key}},
    }


def _in_cluster_helper(
    name: str,
    namespace: str,
    *,
    data: dict[str, str],
    scripts: str,
    command: list[str],
    env: list[dict[str, Any]],
    mount: str,
    role: str,
    rules: list[dict[str, list[str]]],
) -> list[dict[str, Any]]:
    """The objects of one in-cluster helper: its ConfigMap (``data``), ServiceAccount,
    ClusterRole (``rules``) and binding, and a Deployment of one pod that runs ``command``
    on the official Python image with the ConfigMap mounted at ``mount`` (its working
    directory; the files at ``volume_items``' paths). A change of
    ``scripts`` (the helper's code) rolls the pod; a ConfigMap change alone would not."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PROJECT}
    metadata = {"name": name, "namespace": namespace, "labels": labels}
    container = {
        "name": name,
        "image": SETTER_IMAGE,
        "command": command,
        "workingDir": mount,
        "env": env,
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
        "volumeMounts": [{"name": "script", "mountPath": mount, "readOnly": True}],
    }
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role, "labels": labels},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {
                "replicas": 1,
                # Never two at once (two node controllers would each drain maxUnavailable).
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {
                            SCRIPT_HASH_ANNOTATION: hashlib.sha256(scripts.encode()).hexdigest()
                        },
                    },
                    "spec": {
                        "serviceAccountName": name,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65534,
                            "runAsGroup": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        "volumes": [
                            {
                                "name": "script",
                                "configMap": {"name": name, "items": volume_items(data)},
                            }
                        ],
                    },
                },
            },
        },
    ]


CONTROLLER_NAME = "node-controller"
CONTROLLER_SCRIPT_MODULE = "node_controller"
CONTROLLER_SCRIPT_FILE = f"{CONTROLLER_SCRIPT_MODULE}.py"
CONTROLLER_CONFIG_FILE = "config.json"
CONTROLLER_DIR = "/opt/node-controller"
CONTROLLER_ROLE = f"{PROJECT}-{CONTROLLER_NAME}"
#: As the setter's.
CONTROLLER_COMMAND = [*SETTER_COMMAND[:-1], f"{HELPER_PACKAGE}.{CONTROLLER_SCRIPT_MODULE}"]
#: Read Nodes, cordon and annotate them, delete replaced ones; find and evict their pods
#: (the Eviction API, which honours PodDisruptionBudgets); report on the Node with Events.
CONTROLLER_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


def node_controller_manifests(
    namespace: str, credentials_secret: str, credentials_key: str, config_json: str
) -> list[dict[str, Any]]:
    """ConfigMap (script, client, rollout, config), ServiceAccount, ClusterRole, binding,
    Deployment.

    A new ``config.json`` reaches the running pod through the mounted ConfigMap (read every
    pass); a new script rolls the pod.
    """
    scripts = controller_files()
    return _in_cluster_helper(
        CONTROLLER_NAME,
        namespace,
        data={**scripts, CONTROLLER_CONFIG_FILE: config_json},
        scripts="".join(scripts[name] for name in sorted(scripts)),
        command=CONTROLLER_COMMAND,
        env=[
            _token_env(credentials_secret, credentials_key),
            {
                "name": "NODE_CONTROLLER_CONFIG",
                "value": f"{CONTROLLER_DIR}/{CONTROLLER_CONFIG_FILE}",
            },
        ],
        mount=CONTROLLER_DIR,
        role=CONTROLLER_ROLE,
        rules=CONTROLLER_RULES,
    )


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
