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

from core.config.parse import hcloud_endpoint, read_engine_config
from core.errors import InputError
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
        return plan_stack(stack, warnings, hcloud_endpoint=hcloud_endpoint(flat))

    plan = read()
    for warning in plan.warnings:
        pulumi.log.warn(warning)
    return plan
