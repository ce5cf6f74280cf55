"""The stack configuration: one typed model, validated before any resource exists."""

from core.config.model import *  # noqa: F403
