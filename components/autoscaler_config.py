"""What the autoscaler hands new servers, wired from the network's and the images' outputs.

The place where the plan's pure functions meet Outputs, documented once: each value is a
keyword ``Output.all`` of the outputs it needs, applied to a ``StackPlan`` function. What
carries the worker configs (tokens, keys) stays secret; what is derived from them and
must be readable in a preview (fingerprints, the mounted-file flag) is unsecret. Bad input
found only now (a worker config too large for the subnet's nodes, a cluster config above
the Secret limit) stops the program like bad input found first (``stops_cleanly``).
"""

from __future__ import annotations

from typing import Any

import pulumi

from components.engine_config import stops_cleanly
from components.secrets import AutoscalerSecrets
from core.plan import StackPlan
from core.talos.worker_config import WorkerConfig, worker_configs_sha256
from core.worker_configs import generations


class AutoscalerConfig:
    """The ``talos-config`` Secret's value, its fingerprint, and the chart values."""

    #: Fingerprint of every pool's Talos config (the ``workerConfigSha256`` output).
    worker_configs_sha256: pulumi.Output[str]
    #: What the ``talos-config`` Secret holds (secret).
    talos_config_value: pulumi.Output[str]
    #: Pool -> the generation its nodes boot (the ``poolGenerations`` output).
    generations: pulumi.Output[dict[str, str]]
    #: The cluster config is mounted as a file (too large for an environment variable).
    talos_config_as_file: pulumi.Output[bool]
    #: sha256 of the Talos config and the snapshot ids: a change rolls the autoscaler.
    fingerprint: pulumi.Output[str]

    def __init__(
        self,
        plan: StackPlan,
        *,
        subnet: pulumi.Input[str],
        image_ids: pulumi.Input[dict[str, str]],
        placement_group_ids: pulumi.Input[dict[str, str]] | None = None,
    ) -> None:
        self._plan = plan
        self._image_ids = pulumi.Output.from_input(image_ids)
        # Secret from the subnet on: ``Output.secret`` of the configs would lift each into an
        # Output of its own.
        worker_configs: pulumi.Output[dict[str, WorkerConfig]] = pulumi.Output.secret(subnet).apply(
            stops_cleanly(plan.worker_configs)
        )
        self.worker_configs_sha256 = pulumi.Output.unsecret(
            worker_configs.apply(worker_configs_sha256)
        )
        self.generations = pulumi.Output.unsecret(worker_configs.apply(generations))
        talos_config = pulumi.Output.all(
            worker_configs=worker_configs,
            image_ids=self._image_ids,
            subnet=subnet,
            placement_groups=placement_group_ids or {},
        ).apply(stops_cleanly(lambda resolved: plan.talos_config(**resolved)))
        self.talos_config_value = pulumi.Output.secret(talos_config.apply(lambda c: c.value))
        self.talos_config_as_file = pulumi.Output.unsecret(talos_config.apply(lambda c: c.as_file))
        self.fingerprint = pulumi.Output.unsecret(talos_config.apply(lambda c: c.fingerprint))

    def chart_values(
        self, network_name: pulumi.Input[str], secrets: AutoscalerSecrets
    ) -> pulumi.Output[dict[str, Any]]:
        """The autoscaler's values, from the network's name and the Secrets' names."""
        return pulumi.Output.all(
            network_name=network_name,
            image_ids=self._image_ids,
            credentials_secret=secrets.credentials_secret_name,
            talos_config_secret=secrets.talos_config_secret_name,
            talos_config_as_file=self.talos_config_as_file,
            config_hash=self.fingerprint,
        ).apply(stops_cleanly(lambda resolved: self._plan.chart_values(**resolved)))
