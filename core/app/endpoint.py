"""A small HTTP server for the daemon's GET endpoints (/healthz, /metrics).

The standard library's ``ThreadingHTTPServer`` listens in a thread of its own; each
request is answered by a coroutine run on the daemon's event loop, where the database
and the adapters live. A web framework would cost the idle daemon about 11 MiB (aiohttp's
server) for two read-only routes; this costs nothing it does not already load.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

ANSWER_WITHIN = 30.0  # seconds a request may wait for its coroutine


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


Route = Callable[[], Awaitable[Answer]]


class Endpoint:
    """GET routes answered on ``loop``; anything else is 404 (405 for other methods)."""

    def __init__(self, routes: dict[str, Route]):
        self.routes = routes
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen (raises OSError when the address is taken); the port bound."""
        loop = asyncio.get_running_loop()
        handler = type("Handler", (_Handler,), {"routes": self.routes, "loop": loop})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True  # a stuck client never holds up shutdown
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="sameday-http", daemon=True)
        self._thread.start()
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.shutdown)  # returns once serving ended
            self._server.server_close()
            self._server = None


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Route]
    loop: asyncio.AbstractEventLoop
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (about 40 ms a request).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        route = self.routes.get(self.path.split("?", 1)[0])
        if route is None:
            return self._send(Answer(404, "text/plain; charset=utf-8", b"not found\n"))
        try:
            answer = asyncio.run_coroutine_threadsafe(route(), self.loop).result(
                ANSWER_WITHIN)
        except Exception:
            log.exception("http: %s failed", self.path)
            answer = Answer(500, "text/plain; charset=utf-8", b"internal error\n")
        self._send(answer)

    def do_POST(self) -> None:  # noqa: N802
        self._send(Answer(405, "text/plain; charset=utf-8", b"GET only\n"))

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # probes every few seconds: no access log
