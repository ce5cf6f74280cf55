"""The Hetzner Cloud API client of a build: every request and every action wait is bounded.

The ``hcloud`` library retries a request that timed out or answered 502/504,
``timeout``, ``conflict`` or ``rate_limit_exceeded`` (5 retries, backing off up to
60 s). With a connect and read timeout on each attempt, an API that accepts
connections and never answers fails a call after about 3.5 minutes instead of
hanging. Actions are polled with a growing interval, so a 40-minute snapshot
costs tens of requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
from hcloud import APIException, Client
from hcloud.actions import BoundAction

from core.hetzner.access import DEFAULT_ENDPOINT
from core.resources import PROJECT
from core.waits import Backoff, WaitTimeout, exponential, until

#: Connect and read timeout of one request, in seconds.
REQUEST_TIMEOUT = (10.0, 30.0)
#: Action polls: 1 s, 2 s, 4 s, ... then every 30 s.
ACTION_POLL = exponential(first=1.0, cap=30.0)
#: Errors worth another try: the resource is busy, or the API had a hiccup.
TRANSIENT_CODES = frozenset(
    {
        "locked",
        "conflict",
        "timeout",
        "rate_limit_exceeded",
        "server_error",
        "service_error",
        "unavailable",
        "resource_unavailable",
        "maintenance",
    }
)


class ApiClient(Client):
    """``hcloud.Client`` with request timeouts and a backed-off poll it also uses for waits."""

    def __init__(
        self,
        token: str,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        poll: Backoff = ACTION_POLL,
        request_timeout: tuple[float, float] = REQUEST_TIMEOUT,
        retry_backoff: Backoff | None = None,
    ) -> None:
        super().__init__(
            token=token,
            api_endpoint=endpoint,
            application_name=PROJECT,
            poll_interval=lambda retries: poll(retries),
            timeout=request_timeout,
        )
        self.poll = poll
        self.request_timeout = request_timeout
        if retry_backoff is not None:
            # hcloud 2.27 has no public setting for the pause between its retries;
            # tests shorten it. Fail loudly if a new version renames it.
            if not hasattr(self._client, "_retry_interval_func"):
                raise RuntimeError("this hcloud version has no _retry_interval_func to set")
            self._client._retry_interval_func = lambda retries: retry_backoff(retries)


def wait_for(
    client: ApiClient,
    action: BoundAction,
    what: str,
    seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll ``action`` until it finished, at most ``seconds``; an action error raises.

    ``sleep`` pauses between polls (a reporting one logs progress while it waits)."""

    def finished() -> bool | None:
        action.reload()
        return True if action.status != "running" else None

    until(what, seconds, finished, client.poll, retry_if=is_transient, sleep=sleep)
    if action.status == "error":
        reason = action.error["message"] if action.error else "no reason given"
        code = str(action.error.get("code") or "") if action.error else ""
        raise ActionFailed(f"{action.command} failed: {reason}", code)


class ActionFailed(RuntimeError):
    """An action ended with an error; ``code`` is Hetzner's (``placement_error``, ...)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def is_transient(error: Exception) -> bool:
    """True for errors that another try may get past."""
    if isinstance(error, APIException):
        if isinstance(error.code, int):
            return error.code >= 500
        return error.code in TRANSIENT_CODES
    return isinstance(error, requests.exceptions.RequestException)


def describe(error: BaseException) -> str:
    """One line for a failure, naming the API problem rather than a traceback."""
    if isinstance(error, APIException):
        return f"Hetzner API error {error.code}: {error.message}"
    if isinstance(error, requests.exceptions.Timeout):
        return f"the Hetzner API did not answer in time, also after retries ({error})"
    if isinstance(error, requests.exceptions.ConnectionError):
        return f"cannot reach the Hetzner API ({error})"
    if isinstance(error, WaitTimeout):
        return str(error)
    return str(error) or type(error).__name__
