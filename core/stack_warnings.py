"""What a valid stack should still tell its user, the same in ``render`` and ``pulumi up``."""

from __future__ import annotations

from core import autoscaler_values as values
from core.config import StackConfig
from core.talos_config import WorkerConfig, worker_config_warnings


def stack_warnings(stack: StackConfig, configs: dict[str, WorkerConfig] | None) -> list[str]:
    """Worker config notes (deprecated keys, removed sections), then the autoscaler's."""
    found = worker_config_warnings(configs) if configs is not None else []
    found += [
        warning
        for warning in (
            values.subnet_pin_warning(
                stack.network.existing, stack.autoscaler.config_format, stack.autoscaler_image
            ),
            values.node_registration_warning(stack.autoscaler.provider_id),
        )
        if warning
    ]
    return found
