"""The config model's own rules: what one section's settings must agree on."""

from __future__ import annotations

import pytest

from tests.support.stack_config import autoscaler_settings


def test_priorities_need_the_priority_expander_and_one_expander_setting() -> None:
    with pytest.raises(ValueError, match=r"set autoscaler\.expander: priority"):
        autoscaler_settings(pools=[{"priority": 5}])
    with pytest.raises(ValueError, match="expander is set twice"):
        autoscaler_settings(expander="priority", extraArgs={"expander": "random"})
