"""A worker config as Hetzner user data: gzipped where Talos reads that, within the limit."""

from __future__ import annotations

import base64
import gzip
from dataclasses import dataclass
from typing import Literal

from core.hetzner.facts import USER_DATA_LIMIT_BYTES
from core.releases import talos as talos_versions
from core.talos.problems import TalosProblem, WorkerConfigError

#: Talos on Hetzner decodes base64 user data (then un-gzips it) only from v1.9.0
#: (siderolabs/talos commit ccbd5aed, platform/hcloud/hcloud.go).
GZIP_USER_DATA_SINCE = (1, 9)


@dataclass(frozen=True)
class UserData:
    """What Hetzner hands the server: the YAML, or base64(gzip(YAML)) when it is too big."""

    text: str
    encoding: Literal["plain", "gzip+base64"]

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8"))


def encode_user_data(text: str, talos: talos_versions.Version, source: str = "") -> UserData:
    """Plain YAML when it fits Hetzner's limit, else base64(gzip(YAML)), else an error.

    Talos decodes base64(gzip) user data on Hetzner only from v1.9: before, a config
    that does not fit as plain YAML is an error, not a server that never boots.
    """
    plain = UserData(text=text, encoding="plain")
    if plain.size <= USER_DATA_LIMIT_BYTES:
        return plain
    if talos.minor_key < GZIP_USER_DATA_SINCE:
        raise WorkerConfigError(
            source,
            [
                TalosProblem(
                    "",
                    f"is {plain.size} bytes; Hetzner accepts at most {USER_DATA_LIMIT_BYTES} "
                    f"bytes of user data, and Talos v{talos.major}.{talos.minor} cannot read it "
                    "compressed (Talos decodes base64(gzip) user data on Hetzner from v1.9): "
                    "remove inline manifests or large files, or use Talos v1.9 or newer",
                )
            ],
        )
    compressed = gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)
    packed = UserData(text=base64.b64encode(compressed).decode("ascii"), encoding="gzip+base64")
    if packed.size <= USER_DATA_LIMIT_BYTES:
        return packed
    raise WorkerConfigError(
        source,
        [
            TalosProblem(
                "",
                f"is {plain.size} bytes ({packed.size} bytes even gzip+base64 encoded); Hetzner "
                f"accepts at most {USER_DATA_LIMIT_BYTES} bytes of user data: remove inline "
                "manifests or large files from the worker config",
            )
        ],
    )


def decode_user_data(text: str) -> str:
    """The YAML inside user data, as Talos reads it (plain or base64(gzip))."""
    try:
        return gzip.decompress(base64.b64decode(text, validate=True)).decode("utf-8")
    except (ValueError, OSError):
        return text
