"""The stack configuration: one typed model, validated before any resource exists.

- ``model``: the four sections and their fields, each checked alone; ``StackConfig``;
- ``rules``: what needs several sections (zones, capacity, the autoscaler image, the
  cluster's networks) and the warnings a valid stack still gets;
- ``problems``: one line per problem, naming the key; pydantic's errors in those words;
- ``secrets``: decrypted and still-encrypted secret values;
- ``sources``: a stack file read offline, the engine's flat config, the base worker config;
- ``parse``: sections to ``StackConfig``, or every problem at once.
"""

from core.config.model import (
    COZYSTACK_NAMESPACE,
    DEFAULT_BUILDER_SERVER_TYPES,
    DEFAULT_EXTENSIONS,
    SCHEMATIC_ID_PATTERN,
    SNAPSHOT_IDENTITY_LABELS,
    WRITE_TIMEOUT_MAX_MINUTES,
    WRITE_TIMEOUT_MINUTES,
    AutoscalerSettings,
    NodeGroup,
    SnapshotLabel,
    StackConfig,
    Taint,
    check_write_timeout,
)
from core.config.parse import parse_stack_config
from core.config.problems import ConfigError, Problem
from core.config.rules import plaintext_secret_warnings, server_type_warnings
from core.config.secrets import Encrypted, Secret, SecretValue, reveal
from core.config.sources import (
    WORKER_CONFIG_LIMITS,
    load_stack_file,
    sections_from_flat_config,
    stack_file,
)

__all__ = [
    "COZYSTACK_NAMESPACE",
    "DEFAULT_BUILDER_SERVER_TYPES",
    "DEFAULT_EXTENSIONS",
    "SCHEMATIC_ID_PATTERN",
    "SNAPSHOT_IDENTITY_LABELS",
    "WORKER_CONFIG_LIMITS",
    "WRITE_TIMEOUT_MAX_MINUTES",
    "WRITE_TIMEOUT_MINUTES",
    "AutoscalerSettings",
    "ConfigError",
    "Encrypted",
    "NodeGroup",
    "Problem",
    "Secret",
    "SecretValue",
    "SnapshotLabel",
    "StackConfig",
    "Taint",
    "check_write_timeout",
    "load_stack_file",
    "parse_stack_config",
    "plaintext_secret_warnings",
    "reveal",
    "sections_from_flat_config",
    "server_type_warnings",
    "stack_file",
]
