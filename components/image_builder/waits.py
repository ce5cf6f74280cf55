"""Bounded waiting: the one helper behind every "look again until done or out of time".

Every wait of a build (an action, the server powering off, SSH coming up, a
delete refused while the server is locked) goes through ``until``: it has a
deadline, backs off between looks, and fails with a message naming what it
waited for. It also stops a build whose process is shutting down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How long to wait before look number ``tries + 1`` (the hcloud library's BackoffFunction).
Backoff = Callable[[int], float]

#: Sleeps are cut into slices this long, so a shutdown is noticed within it.
_SLICE_SECONDS = 0.5


class Interrupted(KeyboardInterrupt):
    """The build was asked to stop (Ctrl-C, SIGTERM, or its process shutting down)."""

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
) -> T:
    """Call ``attempt`` until it returns a value, at most ``seconds`` long.

    ``None`` means "not yet"; an exception for which ``retry_if`` is true is
    remembered and retried, any other propagates at once.
    """
    deadline = time.monotonic() + seconds
    tries = 0
    last_error: Exception | None = None
    while True:
        check_interrupted()
        try:
            outcome = attempt()
        except Exception as error:
            if not retry_if(error):
                raise
            last_error = error
        else:
            if outcome is not None:
                return outcome
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f" (last error: {last_error})" if last_error is not None else ""
            raise WaitTimeout(f"gave up waiting for {what} after {format_seconds(seconds)}{detail}")
        sleep(min(backoff(tries), remaining))
        tries += 1


def sleep(seconds: float) -> None:
    """``time.sleep`` that notices a shutdown of the process within half a second."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(_SLICE_SECONDS, remaining))
        check_interrupted()


def check_interrupted() -> None:
    """Stop a build running in a worker thread once the process is shutting down.

    Pulumi's provider host runs builds in gRPC worker threads; when the host gets
    SIGINT its main thread ends and the interpreter waits for those threads. The
    build then stops here and its teardown runs. (In the CLI the build runs in the
    main thread, where Ctrl-C and SIGTERM arrive as ``Interrupted`` directly.)
    """
    if not threading.main_thread().is_alive():
        raise Interrupted("the process is shutting down")


def format_seconds(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"
