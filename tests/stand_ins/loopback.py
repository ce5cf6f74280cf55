"""The one loopback HTTP(S) server the stand-ins run on: a free 127.0.0.1 port, a daemon thread.

The Hetzner Cloud API emulator, the Image Factory and the Kubernetes API stand-in differ
in what they answer, not in how they serve: ``LoopbackServer`` serves a handler (over
TLS when given a context), and ``answering`` makes the handler of a stand-in that answers
each request from its method, path, headers and body.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

#: (status, content type, body) of an answer.
Answer = tuple[int, str, bytes]
#: What a stand-in answers a request: (handler, method, body) -> answer.
Respond = Callable[[BaseHTTPRequestHandler, str, bytes], Answer]


class LoopbackServer:
    """Serves ``handler`` on 127.0.0.1 from ``start()`` to ``stop()`` (or as a context)."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
    ) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "http" if tls is None else "https"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def answering(respond: Respond, methods: tuple[str, ...]) -> type[BaseHTTPRequestHandler]:
    """A handler that reads each request's body and writes ``respond``'s answer.

    Methods outside ``methods`` get the standard library's 501, as before; a client that
    gave up waiting (a test of timeouts) is not an error of the stand-in.
    """

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            return

        def _dispatch(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, content_type, data = respond(self, method, body)
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    for method in methods:
        setattr(Handler, f"do_{method}", lambda self, method=method: self._dispatch(method))
    return Handler
