"""Reads the stack configuration from the Pulumi engine (``pulumi up``/``preview``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from core.config import (
    StackConfig,
    parse_stack_config,
    plaintext_secret_warnings,
    sections_from_flat_config,
    server_type_warnings,
)
from core.hetzner import Catalogue
from core.hetzner_catalogue import CatalogueUnavailable, fetch_catalogue
from core.image_builder.api import DEFAULT_ENDPOINT, api_endpoint


def read_stack_config(project_dir: Path) -> tuple[StackConfig, list[str]]:
    """Validate the running stack's config and say what deserves a warning.

    Raises ConfigError before any resource exists. All keys are read (not only
    the known ones) so that a typo such as ``hcloud-talos-autoscaler:netwrok``
    is reported instead of ignored. In a preview with a token the server types
    are checked against the project's live list from the Hetzner API.
    """
    flat: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    sections, token = sections_from_flat_config(flat)
    if token is None:
        token = os.environ.get("HCLOUD_TOKEN")
    warnings: list[str] = []
    catalogue: Catalogue | None = None
    if pulumi.runtime.is_dry_run() and isinstance(token, str) and token:
        endpoint = read_hcloud_endpoint() or DEFAULT_ENDPOINT
        try:
            catalogue = fetch_catalogue(token, endpoint)
        except CatalogueUnavailable as error:
            warnings.append(
                f"could not read the server types from the Hetzner API at {endpoint} ({error}); "
                "checked against the built-in table only"
            )
    stack = parse_stack_config(sections, token, project_dir, catalogue=catalogue)
    from_environment = "hcloud:token" not in flat  # HCLOUD_TOKEN is in no file

    def is_encrypted(key: str) -> bool:
        return runtime_config.is_config_secret(key) or (key == "hcloud:token" and from_environment)

    warnings += plaintext_secret_warnings(stack, is_encrypted, f"Pulumi.{pulumi.get_stack()}.yaml")
    warnings += server_type_warnings(stack, catalogue)
    return stack, warnings


def read_hcloud_endpoint() -> str | None:
    """The Hetzner API URL the hcloud provider uses: ``hcloud:endpoint`` or ``HCLOUD_ENDPOINT``."""
    return api_endpoint(runtime_config.get_config("hcloud:endpoint"))
