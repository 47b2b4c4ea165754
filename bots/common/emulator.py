"""What every platform emulator shares: an aiohttp server on 127.0.0.1, injected faults,
and a control API to inject customer messages and read back what the bot sent.

Each emulator speaks the subset of its platform's real wire protocol that the adapters
use, so the real client libraries (python-telegram-bot, vk_api, tweepy) run against it
unchanged. Tests and `sameday demo` drive an emulator either in-process (its Python
methods) or over HTTP under ``/_control/...``:

    POST /_control/fault   {"method": "sendMessage", "kind": "429", "count": 1, ...}
    POST /_control/chaos   {"rates": {"500": 0.1, "429": 0.05}, "seconds": {"429": 1}}
                           (every call draws a fault at these rates; /_control/clear ends it)
    GET  /_control/sent    everything the bot sent, in order (?times=1: with arrival times)
    POST /_control/inject  a customer message (body depends on the platform)
    GET  /_control/stats   request counts and rate-limit violations

Fault kinds: "429" (rate limited, with the platform's retry hint), "500" (server error),
"timeout" (the server holds the request for ``seconds`` and then drops it), "malformed"
(a body that is not JSON), "missing_fields" (valid JSON missing required fields),
"lost_response" (the request is performed, then the connection drops unanswered), plus
platform-specific ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

LOSE_RESPONSE = web.RequestKey("lose_response", bool)


@dataclass
class Fault:
    kind: str
    count: int = 1
    seconds: float = 0.0  # timeout: how long to hold the request; 429: the retry hint
    extra: dict[str, Any] = field(default_factory=dict)


class FaultBox:
    """Faults waiting for the next calls of a method ("*" matches every method), and
    faults drawn at random for every call at given rates (a chaos run)."""

    def __init__(self) -> None:
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._rates: list[tuple[str, float, float]] = []  # (kind, probability, seconds)
        self._random = random.Random(0)

    def set_rates(self, rates: dict[str, float], seconds: dict[str, float] | None = None,
                  seed: int = 0) -> None:
        """Every later call gets fault `kind` with probability `rates[kind]` (their sum
        at most 1); ``seconds`` per kind: the 429 retry hint, the timeout's hold."""
        if sum(rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        self._rates = [(kind, rate, (seconds or {}).get(kind, 0.0))
                       for kind, rate in rates.items()]
        self._random = random.Random(seed)

    def add(self, method: str, kind: str, count: int = 1, seconds: float = 0.0,
            **extra: Any) -> None:
        self._faults[method].append(Fault(kind, count, seconds, extra))

    def take(self, method: str) -> Fault | None:
        for key in (method, "*"):
            queue = self._faults.get(key)
            if queue:
                fault = queue[0]
                fault.count -= 1
                if fault.count <= 0:
                    queue.popleft()
                return fault
        draw = self._random.random()
        for kind, rate, seconds in self._rates:
            if draw < rate:
                return Fault(kind, 1, seconds)
            draw -= rate
        return None

    def clear(self) -> None:
        self._faults.clear()
        self._rates = []


class SlidingWindow:
    """Counts events in a trailing window to detect rate-limit violations."""

    def __init__(self, limit: int, seconds: float):
        self.limit = limit
        self.seconds = seconds
        self._events: dict[Any, deque[float]] = defaultdict(deque)

    def hit(self, key: Any, now: float | None = None) -> bool:
        """Record an event; return True if it exceeded the limit."""
        now = time.monotonic() if now is None else now
        events = self._events[key]
        while events and events[0] <= now - self.seconds:
            events.popleft()
        events.append(now)
        return len(events) > self.limit


class Emulator:
    """Base class: owns the aiohttp app, the runner and the common control routes."""

    name = "emulator"

    def __init__(self) -> None:
        self.faults = FaultBox()
        self.requests: dict[str, int] = defaultdict(int)
        self.violations: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.sent_times: list[float] = []  # time.monotonic() of each entry of `sent`
        self.sent_clock: list[float] = []  # ... and its time.time(), for other processes
        # The platform's clock for message dates (the demo runs it on its virtual clock;
        # rate limits always count real time).
        self.message_time: Callable[[], float] = time.time
        self.app = web.Application(client_max_size=8 * 1024 * 1024)
        self.app.add_routes([
            web.post("/_control/fault", self._control_fault),
            web.post("/_control/chaos", self._control_chaos),
            web.post("/_control/clear", self._control_clear),
            web.get("/_control/sent", self._control_sent),
            web.get("/_control/stats", self._control_stats),
            web.post("/_control/inject", self._control_inject),
            web.get("/_files/{name}", self._file),
        ])
        # Media the platform serves by URL (VK's photo and voice links, X's media):
        # name -> (content, content type).
        self.files: dict[str, tuple[bytes, str]] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        # handler_cancellation: a request whose client went away (its process killed, or
        # the client cancelled it) ends here too, as it does on the platform's side; a
        # long poll must not stay open for nobody (aiohttp >= 3.9 keeps running the
        # handler by default).
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5,
                                     handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the port chosen for port=0
        self.url = f"http://{host}:{self.port}"
        log.info("%s emulator listening on %s", self.name, self.url)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- helpers for subclasses ---------------------------------------------------------

    async def apply_fault(self, method: str, request: web.Request) -> web.Response | None:
        """The response an injected fault demands, or None to answer normally."""
        self.requests[method] += 1
        fault = self.faults.take(method)
        if fault is None:
            return None
        if fault.kind == "timeout":
            await asyncio.sleep(fault.seconds or 30)
            # Drop the connection without an answer, as a dead network would (an exception
            # escaping the handler would only make aiohttp answer 500).
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=504)  # never reaches the client
        if fault.kind == "malformed":
            return web.Response(status=200, text="<html>not json", content_type="text/html")
        if fault.kind == "500":
            return web.Response(status=500, text="Internal Server Error")
        if fault.kind == "lost_response":
            request[LOSE_RESPONSE] = True  # performed, then unanswered: see `answer`
            return None
        return self.platform_fault(method, fault)

    @staticmethod
    def answer(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        """The response, or for a "lost_response" fault none: the request was performed
        and the connection drops before the answer, as when a network fails mid-way."""
        if request.get(LOSE_RESPONSE) and request.transport is not None:
            request.transport.abort()
        return response

    def platform_fault(self, method: str, fault: Fault) -> web.Response | None:
        """Platform-specific faults ("429", "missing_fields", ...); None means answer."""
        return None

    def host_file(self, name: str, content: bytes, content_type: str) -> str:
        """Serve a file as the platform's CDN would; returns its URL."""
        self.files[name] = (content, content_type)
        return f"{self.url}/_files/{name}"

    async def _file(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=found[0], content_type=found[1])

    def record_sent(self, item: dict[str, Any]) -> None:
        """Something the bot sent, with its arrival time (latency benchmarks read it)."""
        self.sent.append(item)
        self.sent_times.append(time.monotonic())
        self.sent_clock.append(time.time())

    def violation(self, limit: str, **details: Any) -> None:
        self.violations.append({"limit": limit, "at": time.time(), **details})

    @staticmethod
    async def params(request: web.Request) -> dict[str, Any]:
        """Query, form or JSON parameters, as the client libraries send them."""
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                params.update(await request.post())
        return params

    # --- control API ---------------------------------------------------------------------

    async def _control_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.faults.add(body.pop("method", "*"), body.pop("kind"), int(body.pop("count", 1)),
                        float(body.pop("seconds", 0)), **body)
        return web.json_response({"ok": True})

    async def _control_chaos(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.faults.set_rates(body.get("rates", {}), body.get("seconds"),
                              int(body.get("seed", 0)))
        return web.json_response({"ok": True})

    async def _control_clear(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"ok": True})

    async def _control_sent(self, request: web.Request) -> web.Response:
        """Everything sent; ``?times=1``: as [{"item": ..., "at": unix time}, ...]."""
        sent: Any = self.sent
        if request.query.get("times"):
            sent = [{"item": item, "at": at} for item, at in zip(sent, self.sent_clock,
                                                                 strict=True)]
        return web.json_response(json.loads(json.dumps(sent, default=str)))

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def stats(self) -> dict[str, Any]:
        """What ``/_control/stats`` answers; platforms add their own counts."""
        return {"requests": self.requests, "violations": self.violations,
                "sent": len(self.sent)}

    async def _control_inject(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(self.inject_payload(body))

    def inject_payload(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError
