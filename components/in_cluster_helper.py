"""An in-cluster helper's objects (``core.autoscaler.manifests``), registered under its component.

The providerID setter and the node controller are registered the same way: ConfigMap,
ServiceAccount and ClusterRole, the binding once both exist, the Deployment once its script
and its rights are there.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from core import resources


def register_helper_objects(
    parent: pulumi.ComponentResource, name: str, manifests: pulumi.Output[list[dict[str, Any]]]
) -> k8s.apps.v1.Deployment:
    """``manifests`` as ``core.autoscaler.manifests`` orders them, children of ``parent``
    named after ``name``; returns the Deployment."""

    def part(index: int, key: str) -> pulumi.Output[Any]:
        return manifests.apply(lambda objects: objects[index][key])

    script_child, account_child, role_child, binding_child, deployment_child = (
        resources.HELPER_CHILDREN
    )
    child = pulumi.ResourceOptions(parent=parent)
    script = k8s.core.v1.ConfigMap(
        script_child.name(name), metadata=part(0, "metadata"), data=part(0, "data"), opts=child
    )
    account = k8s.core.v1.ServiceAccount(
        account_child.name(name), metadata=part(1, "metadata"), opts=child
    )
    role = k8s.rbac.v1.ClusterRole(
        role_child.name(name), metadata=part(2, "metadata"), rules=part(2, "rules"), opts=child
    )
    binding = k8s.rbac.v1.ClusterRoleBinding(
        binding_child.name(name),
        metadata=part(3, "metadata"),
        role_ref=part(3, "roleRef"),
        subjects=part(3, "subjects"),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[role, account]),
    )
    return k8s.apps.v1.Deployment(
        deployment_child.name(name),
        metadata=part(4, "metadata"),
        spec=part(4, "spec"),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[script, binding]),
    )
