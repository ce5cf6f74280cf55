"""Secret stack values: decrypted by the engine, or encrypted in a stack file read offline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.config.problems import kind_of


class Encrypted:
    """A ``{secure: ...}`` value from a stack file: present, but not readable offline."""

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return "[encrypted]"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Encrypted) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)


class Secret:
    """A decrypted secret value; its repr never shows the value."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "[secret]"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


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
