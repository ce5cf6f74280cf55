"""Worker configs as Hetzner user data: plain, or gzip+base64 where Talos reads it, within
Hetzner's limit."""

from __future__ import annotations

import base64
import gzip
import random
import string
from typing import Any

import pytest
import yaml

from core.talos.problems import WorkerConfigError
from core.talos.user_data import decode_user_data, encode_user_data
from core.talos.worker_config import build_worker_config

from tests.support.worker_config import base_for, spec


def _big_config(size: int, compressible: bool) -> str:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits
    files: list[dict[str, Any]] = []
    while sum(len(f["content"]) for f in files) < size:
        content = "x" * 4000 if compressible else "".join(rng.choices(alphabet, k=4000))
        files.append(
            {
                "path": f"/var/etc/f{len(files)}",
                "permissions": 420,
                "op": "create",
                "content": content,
            }
        )
    return base_for(11).replace(
        "  certSANs: []\n", "  certSANs: []\n  files:\n" + _indent(yaml.safe_dump(files), 4), 1
    )


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line for line in text.splitlines(keepends=True))


def test_too_big_plain_config_is_gzip_encoded_and_round_trips() -> None:
    config = build_worker_config(_big_config(40_000, compressible=True), spec(11))
    assert len(config.yaml.encode()) > 32_768
    assert config.user_data.encoding == "gzip+base64"
    assert config.user_data.size <= 32_768
    assert gzip.decompress(base64.b64decode(config.user_data.text)).decode() == config.yaml
    assert decode_user_data(config.user_data.text) == config.yaml


def test_too_big_even_compressed_fails_clearly() -> None:
    with pytest.raises(
        WorkerConfigError, match=r"Hetzner accepts at most 32768 bytes of user data"
    ):
        build_worker_config(_big_config(60_000, compressible=False), spec(11))


def test_too_big_for_talos_1_8_fails_instead_of_gzip() -> None:
    """Talos 1.8 does not base64-decode Hetzner user data: gzip+base64 would never boot."""
    base = _big_config(40_000, compressible=True).replace("kubelet:v1.33.1", "kubelet:v1.31.4")
    with pytest.raises(WorkerConfigError, match=r"Talos v1\.8 cannot read it compressed"):
        build_worker_config(base, spec(8))
    assert build_worker_config(base, spec(9)).user_data.encoding == "gzip+base64"


def test_small_config_stays_plain() -> None:
    assert encode_user_data("version: v1alpha1\n", spec(11).talos).encoding == "plain"


def test_before_talos_1_9_a_config_too_big_for_plain_user_data_is_an_error() -> None:
    """FACTS 4.4: base64(gzip) user data is decoded on Hetzner only from Talos v1.9."""
    big = _big_config(40_000, compressible=True)
    assert build_worker_config(big, spec(9)).user_data.encoding == "gzip+base64"
    with pytest.raises(WorkerConfigError, match=r"Talos v1\.8 cannot read it compressed"):
        build_worker_config(big, spec(8))
