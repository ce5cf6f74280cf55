"""The cluster-autoscaler release: Cozystack `Package` or upstream Helm chart (guide step 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from core import resources
from core.autoscaler.values import (
    CHART_NAME,
    PACKAGE_NAME,
    RELEASE_NAME,
    helm_values,
    package_manifest,
)
from core.plan import AutoscalerPlan


@dataclass(frozen=True)
class ClusterAutoscalerArgs:
    plan: AutoscalerPlan
    #: Wired from ``AutoscalerSecrets`` (Helm installs the release there).
    namespace: pulumi.Input[str]
    #: Chart values (``AutoscalerConfig.chart_values``, resolved from other outputs). An
    #: Output as it is: ``Output.from_input`` would lift every value inside it into an Output.
    values: pulumi.Output[dict[str, Any]]


class ClusterAutoscaler(pulumi.ComponentResource):
    """Deploys the autoscaler once its Secrets and images exist (pass them in ``depends_on``)."""

    release_name: pulumi.Output[str]
    logs_target: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterAutoscalerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(resources.CLUSTER_AUTOSCALER.type, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        values = args.values
        if args.plan.deploy == "package":
            manifest = values.apply(package_manifest)
            package = k8s.apiextensions.CustomResource(
                resources.PACKAGE.name(name),
                api_version="cozystack.io/v1alpha1",
                kind="Package",
                metadata={"name": PACKAGE_NAME},
                spec=manifest["spec"],
                opts=child,
            )
            self.release_name = package.urn.apply(lambda _urn: PACKAGE_NAME)
        else:
            release = k8s.helm.v3.Release(
                resources.HELM_RELEASE.name(name),
                name=RELEASE_NAME,
                chart=CHART_NAME,
                version=args.plan.chart_version,
                repository_opts={"repo": args.plan.chart_repository},
                namespace=args.namespace,
                values=values.apply(helm_values),
                opts=child,
            )
            self.release_name = release.name.apply(lambda value: value or RELEASE_NAME)
        self.logs_target = pulumi.Output.from_input(args.plan.logs_target)
        self.register_outputs({"releaseName": self.release_name, "logsTarget": self.logs_target})
