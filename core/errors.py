"""The one error path: bad input is an ``InputError`` listing every problem, never a traceback.

``python -m components render``, ``python -m components.image_builder`` and the
Pulumi program all print an ``InputError`` as it is (exit code 2, or a clean
``pulumi.RunError`` in a preview); anything else is a runtime failure (exit
code 1) whose traceback only ``--debug`` shows.
"""

from __future__ import annotations

#: Exit codes of both command lines.
EXIT_BAD_INPUT = 2
EXIT_RUNTIME_FAILURE = 1
#: A single problem's message is cut to this length (values in it are shortened already).
MESSAGE_LIMIT = 1_000


class InputError(ValueError):
    """The user's input is wrong; the message names where, what and the fix."""


def bounded(message: str) -> str:
    """The message, cut in the middle when a value made it too long (the fix stays)."""
    if len(message) <= MESSAGE_LIMIT:
        return message
    half = MESSAGE_LIMIT // 2
    return f"{message[:half]} … {message[-half:]}"
