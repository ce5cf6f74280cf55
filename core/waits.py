"""Bounded waiting: the one helper behind every "look again until done or out of time".

Every wait of a build (an action, the server powering off, SSH coming up, a
delete refused while the server is locked) and of the destroy sweep (the autoscaler
stopping, delete actions) goes through ``until``: it has a deadline, backs off between
looks, and fails with a message naming what it waited for. (The providerID setter's
loop cannot use it: the in-cluster scripts use the standard library only.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How long to wait before look number ``tries + 1`` (the hcloud library's BackoffFunction).
Backoff = Callable[[int], float]


class Interrupted(KeyboardInterrupt):
    """The build was asked to stop by a signal other than SIGINT (the CLI maps SIGTERM)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WaitTimeout(TimeoutError):
    """A bounded wait ran out of time."""


def exponential(first: float, cap: float) -> Backoff:
    """``first``, twice that, ... up to ``cap`` seconds between looks."""

    def backoff(tries: int) -> float:
        return float(min(cap, first * 2 ** min(tries, 32)))

    return backoff


def looks_within(backoff: Backoff, seconds: float) -> int:
    """How many looks a wait of ``seconds`` makes with ``backoff`` (for the benchmark)."""
    looks, waited = 1, 0.0
    while waited + backoff(looks - 1) <= seconds:
        waited += backoff(looks - 1)
        looks += 1
    return looks


def until(
    what: str,
    seconds: float,
    attempt: Callable[[], T | None],
    backoff: Backoff,
    *,
    retry_if: Callable[[Exception], bool] = lambda _: False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``attempt`` until it returns a value, at most ``seconds`` long.

    ``None`` means "not yet"; an exception for which ``retry_if`` is true is
    remembered and retried, any other propagates at once. The last pause ends at the
    deadline. ``clock`` and ``sleep`` are the real ones except in simulated-time tests.
    """
    deadline = clock() + seconds
    tries = 0
    last_error: Exception | None = None
    while True:
        try:
            outcome = attempt()
        except Exception as error:
            if not retry_if(error):
                raise
            last_error = error
        else:
            if outcome is not None:
                return outcome
        remaining = deadline - clock()
        if remaining <= 0:
            detail = f" (last error: {last_error})" if last_error is not None else ""
            raise WaitTimeout(f"gave up waiting for {what} after {format_seconds(seconds)}{detail}")
        sleep(min(backoff(tries), remaining))
        tries += 1


def format_seconds(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.1f}".removesuffix(".0") + " min"
    return f"{seconds:g} s"
