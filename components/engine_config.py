"""The stack's plan, from the config the Pulumi engine hands the program.

Also the one place where the program meets bad input: an ``InputError`` found while the
config is read, or later while outputs resolve (``stops_cleanly``), becomes a
``pulumi.RunError``, whose message the engine prints as it is (the same lines ``render``
prints) without a traceback; nothing is registered after it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import pulumi
from pulumi.runtime import config as runtime_config

from core.config import ConfigError, Problem, StackConfig, reveal
from core.config.parse import hcloud_endpoint, read_engine_config
from core.errors import InputError
from core.hetzner.access import environment_token
from core.hetzner.api import ApiClient
from core.hetzner.facts import Architecture
from core.image_builder.existing import find_existing
from core.plan import StackPlan, plan_stack

Parameters = ParamSpec("Parameters")
Result = TypeVar("Result")


def stops_cleanly(function: Callable[Parameters, Result]) -> Callable[Parameters, Result]:
    """``function``, with bad input turned into the engine's clean stop."""

    def checked(*args: Parameters.args, **kwargs: Parameters.kwargs) -> Result:
        try:
            return function(*args, **kwargs)
        except InputError as error:
            raise pulumi.RunError(str(error)) from None

    return checked


def read_stack_plan(project_dir: Path) -> StackPlan:
    """The running stack's plan; its warnings are logged. Stops on bad input."""
    flat = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}

    @stops_cleanly
    def read() -> StackPlan:
        stack, warnings = read_engine_config(
            flat,
            runtime_config.is_config_secret,
            preview=pulumi.runtime.is_dry_run(),
            stack_name=pulumi.get_stack(),
            project_dir=project_dir,
        )
        endpoint = hcloud_endpoint(flat)
        existing = _existing_images(stack, endpoint)
        return plan_stack(stack, warnings, hcloud_endpoint=endpoint, existing_images=existing)

    plan = read()
    for warning in plan.warnings:
        pulumi.log.warn(warning)
    return plan


def _existing_images(stack: StackConfig, endpoint: str) -> dict[Architecture, int]:
    """The ids of ``image.existing``, looked up in preview and update alike."""
    if not stack.image.existing:
        return {}
    token = reveal(stack.hcloud_token) if stack.hcloud_token is not None else None
    token = token or environment_token()
    if not token:
        raise ConfigError(
            [Problem("image.existing", "needs the Hetzner token to look the snapshots up")]
        )
    found, problems = find_existing(ApiClient(str(token), endpoint), stack.image.existing)
    if problems:
        raise ConfigError(problems)
    return found
