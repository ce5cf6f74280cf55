"""The live server-type catalogue: an API that never answers or answers no JSON is unavailable."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.hetzner.catalogue import CatalogueUnavailable, fetch_catalogue


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_an_api_that_never_answers_is_given_up_on_at_the_deadline(silent_server: int) -> None:
    started = time.monotonic()
    with pytest.raises(CatalogueUnavailable, match=r"no answer within 1s"):
        fetch_catalogue("t", f"http://127.0.0.1:{silent_server}/v1", deadline=1.0)
    assert time.monotonic() - started < 3


def test_a_non_json_answer_is_unavailable_not_a_traceback(tmp_path: Path) -> None:
    from tests.stand_ins.image_factory import ImageFactory

    served = ImageFactory(b"raw").start()  # answers 404 text, not the API's JSON
    try:
        with pytest.raises(CatalogueUnavailable, match="API error 404"):
            fetch_catalogue("t", f"{served.url}/v1")
    finally:
        served.stop()
