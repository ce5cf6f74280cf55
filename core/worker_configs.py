"""Every pool's Talos worker config: the base config patched with each pool's spec
(``PoolPlan.worker_spec``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.config.model import StackConfig
from core.pools import PoolPlan
from core.talos.worker_config import WorkerConfig, build_worker_config


def render_worker_configs(
    stack: StackConfig, pools: Sequence[PoolPlan], subnet: str
) -> dict[str, WorkerConfig]:
    """The worker config of every pool for nodes in ``subnet`` (the base config must be
    readable); each carries its pool's generation label."""
    if stack.base_documents is None:
        raise ValueError("the base worker config is encrypted; it cannot be rendered offline")
    written: dict[str, str] = {}
    return {
        pool.name: build_worker_config(
            stack.base_documents,
            pool.worker_spec_in(subnet),
            source=f"of pool {pool.name} (from {stack.worker_config_key})",
            written=written,
        )
        for pool in pools
    }


def generations(configs: Mapping[str, WorkerConfig]) -> dict[str, str]:
    """Pool -> the generation of its worker config (the ``poolGenerations`` output)."""
    return {pool: config.generation for pool, config in configs.items()}
