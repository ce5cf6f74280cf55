"""Secret stack values: decrypted by the engine, or encrypted in a stack file read offline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.config.problems import kind_of


@dataclass(frozen=True, repr=False)
class Encrypted:
    """A ``{secure: ...}`` value from a stack file: present, but not readable offline."""

    ciphertext: str

    def __repr__(self) -> str:
        return "[encrypted]"


@dataclass(frozen=True, repr=False)
class Secret:
    """A decrypted secret value; its repr never shows the value."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "[secret]"


SecretValue = Secret | Encrypted


def reveal(value: SecretValue | None) -> str:
    """The plain text of a secret the Pulumi engine decrypted (never an offline one)."""
    if not isinstance(value, Secret):
        raise ValueError("secret value is not available (missing, or encrypted offline)")
    return value.reveal()


def as_secret(value: Any) -> SecretValue:
    if isinstance(value, Secret | Encrypted):
        return value
    if isinstance(value, Mapping) and set(value) == {"secure"}:
        return Encrypted(str(value["secure"]))
    if isinstance(value, str) and value:
        return Secret(value)
    raise ValueError(
        f"must be a non-empty string (got {kind_of(value)}); "
        "set it with `pulumi config set --secret`"
    )
