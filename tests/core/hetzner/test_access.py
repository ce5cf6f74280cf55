"""How the program's dynamic providers reach Hetzner: the stack's current access."""

from __future__ import annotations

import pytest

from core.hetzner.access import DEFAULT_ENDPOINT, HetznerAccess, current_hetzner_access


def test_hetzner_access_prefers_the_stacks_current_values(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"hcloud:token": "from-config", "hcloud:endpoint": "https://config.example/v1"}
    monkeypatch.setenv("HCLOUD_TOKEN", "from-env")
    monkeypatch.setenv("HCLOUD_ENDPOINT", "https://env.example/v1")
    stored = ("from-state", "https://state.example/v1")
    assert current_hetzner_access(config, *stored) == HetznerAccess(
        "from-config", "https://config.example/v1"
    )
    assert current_hetzner_access({}, *stored) == HetznerAccess(
        "from-env", "https://env.example/v1"
    )
    monkeypatch.delenv("HCLOUD_TOKEN")
    monkeypatch.delenv("HCLOUD_ENDPOINT")
    assert current_hetzner_access(None, *stored) == HetznerAccess(*stored)
    assert current_hetzner_access(None, "from-state").endpoint == DEFAULT_ENDPOINT
    with pytest.raises(ValueError, match="pulumi config set --secret hcloud:token"):
        current_hetzner_access({}, None)
