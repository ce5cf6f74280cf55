"""A STAND-IN for the Talos Image Factory: a stdlib HTTP server on 127.0.0.1 that registers
schematics and serves the ``.raw.xz`` disk images of generated raw images."""

from __future__ import annotations

import functools
import hashlib
import json
import lzma
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.stand_ins.loopback import LoopbackServer


class ImageFactory(LoopbackServer):
    """Serves ``/image/{schematic}/{version}/hcloud-{arch}.raw.xz`` and ``POST /schematics``.

    With ``stall_after`` set, a download sends that many bytes and then nothing more
    (the connection stays open) until the factory stops.
    """

    def __init__(self, raw_image: bytes, corrupt: bool = False) -> None:
        self.raw_image = raw_image
        self.compressed = _xz(raw_image)
        if corrupt:
            self.compressed = self.compressed[: len(self.compressed) // 2] + b"garbage"
        self.known_schematics: set[str] = set()
        self.downloads: list[str] = []
        self.stall_after: int | None = None
        #: With this set, a download trickles (``trickle`` bytes every 50 ms) and holds its
        #: last bytes until the event is set: a slow download whose end the test decides.
        self.throttled_until: threading.Event | None = None
        self.trickle = 32 * 1024
        #: Set once a download has stalled (the build is mid-write).
        self.stalled = threading.Event()
        self._released = threading.Event()
        factory = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                schematic_id = hashlib.sha256(body).hexdigest()
                factory.known_schematics.add(schematic_id)
                self._send(201, json.dumps({"id": schematic_id}).encode())

            def do_GET(self) -> None:
                match = re.fullmatch(
                    r"/image/([0-9a-f]{64})/(v[\d.]+)/hcloud-(amd64|arm64)\.raw\.xz", self.path
                )
                if match is None or match.group(1) not in factory.known_schematics:
                    self._send(404, b"not found")
                    return
                factory.downloads.append(self.path)
                if factory.throttled_until is not None:
                    self._throttled(factory.compressed, factory.throttled_until)
                    return
                if factory.stall_after is None:
                    self._send(200, factory.compressed)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(factory.compressed)))
                self.end_headers()
                self.wfile.write(factory.compressed[: factory.stall_after])
                self.wfile.flush()
                factory.stalled.set()
                factory._released.wait()
                self.close_connection = True

            def _throttled(self, data: bytes, release: threading.Event) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                held = len(data) - 1024
                for offset in range(0, held, factory.trickle):
                    self.wfile.write(data[offset : min(held, offset + factory.trickle)])
                    self.wfile.flush()
                    time.sleep(0.05)
                release.wait(timeout=120)
                self.wfile.write(data[held:])

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.base_url

    def stop(self) -> None:
        self._released.set()
        super().stop()


@functools.cache
def _xz(raw_image: bytes) -> bytes:
    """The fastest preset: `xz -d` reads any, and big benchmark images compress in seconds."""
    return lzma.compress(raw_image, format=lzma.FORMAT_XZ, preset=0)


def generated_raw_image(size: int = 3 * 1024 * 1024, seed: int = 11) -> bytes:
    """A disk image with long zero runs and some random blocks, like a real raw image."""
    import random

    rng = random.Random(seed)
    chunks: Iterator[bytes] = (
        rng.randbytes(64 * 1024) if index % 5 == 0 else bytes(64 * 1024)
        for index in range(size // (64 * 1024))
    )
    return b"".join(chunks)


def talos_shaped_raw_image(
    size: int = 3 * 1024 * 1024, seed: int = 11, data_per_8mib: int = 256 * 1024
) -> bytes:
    """A raw image shaped like Talos's: data in its first MiB (boot partitions), then MiBs of
    zeros with ``data_per_8mib`` bytes of data every 8 MiB, and data in its last MiB; so a
    sparse write skips whole MiB blocks."""
    import random

    rng = random.Random(seed)
    mib, block = 1024 * 1024, data_per_8mib
    image = bytearray(size)
    image[:mib] = rng.randbytes(min(mib, size))
    for offset in range(8 * mib, size - mib, 8 * mib):
        image[offset : offset + block] = rng.randbytes(block)
    image[size - mib :] = rng.randbytes(mib)
    return bytes(image)


#: The raw image the tests' factories serve.
RAW_IMAGE = generated_raw_image()
