"""The cross-section rules and the table of secret settings."""

from __future__ import annotations

from core.config.rules import SECRET_SETTINGS


def test_the_read_only_token_is_a_secret_setting() -> None:
    assert "autoscaler.providerIdToken" in [shown for shown, _, _ in SECRET_SETTINGS]
