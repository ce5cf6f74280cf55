"""Talos config documents: loading with the line and column of an error, and redaction."""

from __future__ import annotations

import pytest

from core.talos.documents import REDACTED, redact
from core.talos.problems import WorkerConfigError
from core.talos.worker_config import build_worker_config

from tests.support.worker_config import base_for, spec


def test_failed_to_load_config_points_at_line_and_column() -> None:
    with pytest.raises(WorkerConfigError, match=r"failed to load config: .* at line 3, column 3"):
        build_worker_config("machine:\n  type: worker\n  - token\n", spec(11))


def test_redact_hides_tokens_keys_and_secrets() -> None:
    text = build_worker_config(base_for(11), spec(11)).yaml
    shown = redact(text)
    assert "7x1m9q.0sample0token00" in text
    for secret in (
        "7x1m9q.0sample0token00",
        "3f9k2p.0sample0cluster0",
        "c2FtcGxlLWNsdXN0ZXItc2VjcmV0",
    ):
        assert secret not in shown
    assert "https://192.0.2.10:6443" in shown
    assert REDACTED in shown
