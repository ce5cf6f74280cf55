"""What the dynamic providers write for the user: whole lines, even from parallel builds."""

from __future__ import annotations

import sys
import threading

import pytest

from components.configured_provider import log_line


class Recorder:
    """Stands for stderr: every ``write`` call, as the engine's reader receives them."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_line_is_one_write_with_its_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    # `print` writes the text and its newline apart: two builds' lines could run together.
    stderr = Recorder()
    monkeypatch.setattr(sys, "stderr", stderr)
    log_line("[eaf594a27a13] step 1/12: remove stale builders")
    assert stderr.writes == ["[eaf594a27a13] step 1/12: remove stale builders\n"]


def test_lines_of_parallel_builds_never_run_together(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = Recorder()
    monkeypatch.setattr(sys, "stderr", stderr)
    builds = [f"build-{index}" for index in range(4)]

    def build(name: str) -> None:
        for step in range(200):
            log_line(f"[{name}] step {step}")

    threads = [threading.Thread(target=build, args=(name,)) for name in builds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = "".join(stderr.writes).splitlines()
    assert sorted(lines) == sorted(
        f"[{name}] step {step}" for name in builds for step in range(200)
    )
