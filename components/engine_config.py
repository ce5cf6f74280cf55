"""Reads the stack configuration from the Pulumi engine (``pulumi up``/``preview``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pulumi.runtime import config as runtime_config

from components.config import StackConfig, parse_stack_config, sections_from_flat_config
from components.image_builder.api import api_endpoint


def read_stack_config(project_dir: Path) -> StackConfig:
    """Validate the running stack's config; raises ConfigError before any resource exists.

    All keys are read (not only the known ones) so that a typo such as
    ``hcloud-talos-autoscaler:netwrok`` is reported instead of ignored.
    """
    flat: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    sections, token = sections_from_flat_config(flat)
    if token is None:
        token = os.environ.get("HCLOUD_TOKEN")
    return parse_stack_config(sections, token, project_dir)


def read_hcloud_endpoint() -> str | None:
    """The Hetzner API URL the hcloud provider uses: ``hcloud:endpoint`` or ``HCLOUD_ENDPOINT``."""
    return api_endpoint(runtime_config.get_config("hcloud:endpoint"))
