"""Problems with the stack config: one line each, naming the key; pydantic's errors so too.

Every problem is reported at once: pydantic's validation errors are translated into
``<key path>: <what is wrong and the fix>``, unknown keys get a did-you-mean, and a
value is shown shortened and never when it is a secret (``redaction.shown``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from core.errors import InputError, bounded
from core.redaction import shown
from core.resources import PROJECT


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the stack config."""

    key: str
    message: str

    def __str__(self) -> str:
        if not self.key:
            return bounded(self.message)
        key = (
            self.key if self.key.startswith(("hcloud:", f"{PROJECT}:")) else f"{PROJECT}:{self.key}"
        )
        return bounded(f"{key}: {self.message}")


class ConfigError(InputError):
    """The stack config is invalid; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"the stack configuration has {len(problems)} problem(s):\n{lines}")


def kind_of(value: Any) -> str:
    """What a value is, without showing it (it may be a secret)."""
    if value is None or value == "":
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def unknown_key_message(key: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}known keys: {', '.join(known)}"


def problems_from(error: ValidationError, section: str, model: type[BaseModel]) -> list[Problem]:
    problems = []
    for detail in error.errors():
        loc = tuple(
            _alias_of(model, detail["loc"][:index], part)
            for index, part in enumerate(detail["loc"])
        )
        path = _key_path(section, loc)
        if detail["type"] == "extra_forbidden":
            owner = _model_at(model, detail["loc"][:-1])
            known = [field.alias or name for name, field in owner.model_fields.items()]
            message = unknown_key_message(key_part(detail["loc"][-1]), known)
        else:
            message = _message(detail, path)
        problems.append(Problem(path, message))
    return problems


_MISSING = {
    "talos.version": "is required: the Talos release of the cluster, e.g. v1.11.6",
    "autoscaler.nodeGroups": (
        "is required: list at least one pool {name, minSize, maxSize, instanceType, region}"
    ),
}


def _message(detail: Any, path: str) -> str:
    message = str(detail["msg"])
    if detail["type"] == "missing":
        return _MISSING.get(path, "is required")
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = detail.get("input")
    if detail["type"] in {
        "literal_error",
        "greater_than_equal",
        "greater_than",
        "less_than_equal",
        "too_short",
        "too_long",
    } or ("type" in detail["type"] or "parsing" in detail["type"]):
        return f"got {shown(value, path)}: {message}"
    return message


def _key_path(section: str, loc: tuple[Any, ...]) -> str:
    path = section
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part.startswith("function-"):
            continue  # pydantic's name for a validator step, not a key
        else:
            path += f".{key_part(part)}"
    return path


def key_part(part: Any) -> str:
    """A key as a path shows it: a huge or binary key is shortened."""
    text = str(part)
    if len(text) <= 64 and text.isprintable():
        return text
    return shown(part)


def _alias_of(model: type[BaseModel], parents: tuple[Any, ...], part: Any) -> Any:
    """The stack key of a field pydantic names by its Python name (a validated default)."""
    if not isinstance(part, str):
        return part
    field = _model_at(model, parents).model_fields.get(part)
    return field.alias if field is not None and field.alias else part


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    current: type[BaseModel] = model
    for part in loc:
        if isinstance(part, int):
            continue
        for name, field in current.model_fields.items():
            if part in {name, field.alias}:
                inner = _model_in(field.annotation)
                if inner is not None:
                    current = inner
                break
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None
