"""Where the stack config comes from: a stack file read offline, or the engine's flat config.

Both give the project's sections (``talos``, ``network``, ...) and ``hcloud:token``; the
base worker config is read here too (a file next to the project, or the secret value).
Everything is read in bounded time and memory (``safe_yaml``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core import safe_yaml, validators
from core.config.model import PROJECT, TalosSettings
from core.config.problems import ConfigError, Problem, kind_of
from core.config.secrets import Secret
from core.redaction import shown
from core.talos.documents import WORKER_CONFIG_LIMITS

#: A stack file is small; an encrypted worker config in it is the largest value.
STACK_FILE_LIMITS = safe_yaml.Limits(max_bytes=4 * 1024 * 1024)


def sections_from_flat_config(flat: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """Split ``namespace:key`` config into the project's sections and ``hcloud:token``.

    Values arrive as objects from a stack file and as JSON text from the Pulumi
    engine; both are accepted. Keys of other namespaces (``kubernetes:``, ...)
    belong to their providers and are left alone.
    """
    sections: dict[str, Any] = {}
    for full_key, value in flat.items():
        if not isinstance(full_key, str):
            raise ConfigError(
                [Problem("", f"config key {shown(full_key)} is not a string; quote it")]
            )
        namespace, _, key = full_key.partition(":")
        if namespace != PROJECT:
            continue
        if isinstance(value, str) and len(value) <= STACK_FILE_LIMITS.max_bytes:
            with contextlib.suppress(json.JSONDecodeError, RecursionError):
                value = json.loads(value)
        sections[key] = value
    return sections, flat.get("hcloud:token")


def stack_file(project_dir: Path, stack: str) -> Path:
    """``Pulumi.<stack>.yaml`` of a stack name Pulumi accepts (``org/`` parts dropped)."""
    problem = validators.stack_name_problem(stack)
    if problem:
        raise ConfigError([Problem("", f"--stack: {problem}")])
    return project_dir / f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"


def load_stack_file(project_dir: Path, stack: str) -> tuple[dict[str, Any], Any]:
    """Read ``Pulumi.<stack>.yaml`` without the Pulumi CLI (secrets stay encrypted)."""
    path = stack_file(project_dir, stack)
    try:
        text = safe_yaml.read_text(path, STACK_FILE_LIMITS)
        document = safe_yaml.load_one(text, STACK_FILE_LIMITS)
    except OSError as error:
        raise ConfigError(
            [Problem("", f"cannot read stack file {path} ({error.strerror}); is --stack right?")]
        ) from None
    except safe_yaml.YamlError as error:
        raise ConfigError([Problem("", f"{path} {error}")]) from None
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise ConfigError(
            [Problem("", f"{path} must be a mapping with a 'config' key, got {kind_of(document)}")]
        )
    flat = document.get("config") or {}
    if not isinstance(flat, Mapping):
        raise ConfigError([Problem("", f"{path}: 'config' must be a mapping of keys to values")])
    for key in flat:
        if not isinstance(key, str):
            raise ConfigError([Problem("", f"{path}: config key {shown(key)} is not a string")])
    return sections_from_flat_config(flat)


def shape_problem(value: Any) -> str | None:
    """Config values arrive as JSON from the engine, unbounded: refuse absurd nesting or size."""
    limits = STACK_FILE_LIMITS
    stack: list[tuple[Any, int]] = [(value, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > limits.max_depth:
            return f"is nested deeper than {limits.max_depth} levels"
        if count > limits.max_nodes:
            return f"holds more than {limits.max_nodes} values"
        if isinstance(node, Mapping):
            stack.extend((inner, depth + 1) for inner in node.values())
        elif isinstance(node, list):
            stack.extend((inner, depth + 1) for inner in node)
    return None


def load_worker_config(
    talos: TalosSettings, base_dir: Path, problems: list[Problem]
) -> tuple[Secret, tuple[dict[str, Any], ...]] | None:
    """The base worker config (file or secret) and its documents, parsed once; None with
    a problem when it cannot be read, and None when it is encrypted (offline)."""
    if talos.worker_config_file is not None:
        path = base_dir / talos.worker_config_file
        key = "talos.workerConfigFile"
        try:
            text = safe_yaml.read_text(path, WORKER_CONFIG_LIMITS)
        except OSError as error:
            problems.append(
                Problem(
                    key,
                    f"cannot read {path} ({error.strerror}); give a path relative to the "
                    "project directory of the worker.yaml from `talosctl gen config`",
                )
            )
            return None
        except safe_yaml.YamlError as error:
            problems.append(Problem(key, f"{path} {error}"))
            return None
        secret = Secret(text)
    elif isinstance(talos.worker_config, Secret):
        secret = talos.worker_config
        key = "talos.workerConfig"
    else:
        return None
    try:
        documents = safe_yaml.load_all(secret.reveal(), WORKER_CONFIG_LIMITS)
        if not all(isinstance(document, dict) for document in documents):
            raise safe_yaml.YamlError("every document must be a mapping (key: value)")
    except safe_yaml.YamlError as error:
        problems.append(Problem(key, f"is not valid YAML: {error}"))
        return None
    if not documents:
        problems.append(Problem(key, "must be a Talos machine config (YAML mapping documents)"))
        return None
    return secret, tuple(documents)
