"""What counts as a secret when showing user data, by rule rather than by a list of fields.

Two rules, applied to every value anywhere in a Talos config and to every value
an error message shows:

- **the key names a secret**: its last word (camelCase, snake_case, kebab-case
  and dots split into words) is token, key, password, passphrase, secret, auth,
  credential(s) or a compound of them (``identityToken``, ``privateKey``,
  ``presharedKey``, ``aescbcEncryptionSecret``, ``AWS_SECRET_ACCESS_KEY``);
  ``publicKey`` and friends are not secrets. Every value below such a key is hidden.
- **the value looks like key material**: a PEM private key block, base64 that
  decodes to one, a URL with a password, or a text holding a Kubernetes Secret.

Talos' own fields that fall under the first rule (schemas v1.8-v1.13) include
``machine.token``, ``cluster.token``, ``cluster.secret``, every ``*.key`` of a
CA or client identity, ``machine.registries.config.*.auth.*``,
WireGuard ``privateKey``/``presharedKey``, disk encryption ``passphrase`` and
the API server encryption secrets.
"""

from __future__ import annotations

import base64
import binascii
import re
import reprlib
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
#: How an error message shows a secret value.
HIDDEN = "[secret]"
#: The last word of a key that holds a secret.
SECRET_WORDS = frozenset(
    {"token", "key", "password", "passwd", "passphrase", "secret", "auth", "credential"}
    | {"credentials"}
)
#: A key whose last word is one of these is public (WireGuard ``publicKey``).
PUBLIC_QUALIFIERS = frozenset({"public"})
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_PEM_PRIVATE = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")
#: Bounded repetitions only: these run over user text of any length, never backtracking far.
_URL_PASSWORD = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]{0,31}://[^:/@\s]{0,256}:[^@/\s]{1,256}@")
_KUBERNETES_SECRET = re.compile(r"^[ \t]*kind:[ \t]*[\"']?Secret[\"']?[ \t]*$", re.MULTILINE)
#: Error messages show at most this much of a value.
SHOWN_CHARACTERS = 80


def words(key: str) -> list[str]:
    """``identityToken`` -> ``[identity, token]``; ``AWS_SECRET_KEY`` -> ``[aws, secret, key]``."""
    return [word.lower() for word in _WORDS.findall(key)]


def is_secret_key(key: Any) -> bool:
    """Whether values under this mapping key are secrets (see the module's rule)."""
    if not isinstance(key, str):
        return False
    parts = words(key)
    if not parts or parts[-1] not in SECRET_WORDS:
        return False
    return not (len(parts) > 1 and parts[-2] in PUBLIC_QUALIFIERS)


def looks_like_key_material(value: Any) -> bool:
    """PEM private keys (also base64-encoded, as Talos stores them), URL passwords, Secrets."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return False
    if _PEM_PRIVATE.search(value) or _URL_PASSWORD.search(value):
        return True
    if _KUBERNETES_SECRET.search(value):
        return True
    return any(_decodes_to_private_key(run) for run in _BASE64_RUN.findall(value))


def _decodes_to_private_key(run: str) -> bool:
    try:
        decoded = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return _PEM_PRIVATE.search(decoded.decode("latin-1")) is not None


def redact(node: Any) -> Any:
    """A copy with every secret value (by either rule) replaced by ``<redacted>``.

    Structure is kept (keys, list lengths, empty values), so the result still
    shows where each secret sits. The input comes from ``safe_yaml`` (bounded).
    """
    return _redact(node, under_secret=False)


def _redact(node: Any, *, under_secret: bool) -> Any:
    if isinstance(node, Mapping):
        return {
            key: _redact(value, under_secret=under_secret or is_secret_key(key))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_redact(item, under_secret=under_secret) for item in node]
    if node is None or node == "":
        return node
    if under_secret or looks_like_key_material(node):
        return REDACTED
    return node


def contains_secret(node: Any) -> bool:
    """Whether ``redact`` would hide anything in ``node``."""
    return redact(node) != node


def shown(value: Any, key: str = "") -> str:
    """A value as an error message shows it: short, and never a secret.

    ``key`` is the config key path or document path the value sits at; a
    secret key (its last part) or secret-looking content shows as ``[secret]``.
    """
    last = re.split(r"[.:\[\]]", key.rstrip("]"))[-1] if key else ""
    if is_secret_key(last) or contains_secret(_bounded(value)):
        return HIDDEN
    text = _REPR.repr(value)
    if len(text) > SHOWN_CHARACTERS:
        text = f"{text[: SHOWN_CHARACTERS - 1]}…"
    if isinstance(value, str | bytes | list | dict) and len(value) > SHOWN_CHARACTERS:
        text += f" ({len(value)} {'characters' if isinstance(value, str) else 'items'})"
    return text


def _bounded(value: Any, budget: int = 2_000) -> Any:
    """At most ``budget`` nodes of a value, for the secret check of a message."""
    remaining = [budget]

    def walk(node: Any, depth: int) -> Any:
        remaining[0] -= 1
        if remaining[0] < 0 or depth > 16:
            return None
        if isinstance(node, Mapping):
            return {key: walk(inner, depth + 1) for key, inner in list(node.items())[:200]}
        if isinstance(node, list):
            return [walk(inner, depth + 1) for inner in node[:200]]
        if isinstance(node, str) and len(node) > 65_536:
            return node[:65_536]
        return node

    return walk(value, 0)


def _repr() -> reprlib.Repr:
    shortener = reprlib.Repr()
    shortener.maxstring = SHOWN_CHARACTERS
    shortener.maxother = SHOWN_CHARACTERS
    shortener.maxlevel = 3
    shortener.maxdict = shortener.maxlist = 6
    return shortener


_REPR = _repr()
