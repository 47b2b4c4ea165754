"""Helpers every adapter uses: retry with backoff, never dying of one bad update, and the
record of receive polls that each adapter's ``health()`` reports."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from core.config.settings import TEXTS_LOGGER
from core.delivery.contract import ChannelAdapter, ChannelHealth
from core.domain.records import Inbound, Unreadable
from core.intake.quarantine import describe
from core.store.engine import is_transient

T = TypeVar("T")

log = logging.getLogger(__name__)
texts = logging.getLogger(TEXTS_LOGGER)  # customers' texts: debug only, off by default


class Backoff:
    """Exponential backoff with jitter for receive loops (network errors, 5xx)."""

    def __init__(self, base: float = 1.0, ceiling: float = 60.0):
        self.base = base
        self.ceiling = ceiling
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return random.uniform(0, min(self.ceiling, self.base * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0


class PollHealth:
    """When an adapter last heard from its platform, and how many receive polls failed.

    The daemon's /healthz and /metrics (core/health.py) read it through the adapter's
    ``health()``. ``failing`` is the outcome of the latest poll, so a platform that stops
    answering shows as disconnected at once, not only when the last success grows old.
    Times are wall-clock UTC: the health endpoint runs on the daemon's real clock.
    """

    def __init__(self) -> None:
        self.last_ok: datetime | None = None
        self.errors = 0
        self.failing = False

    def succeeded(self) -> None:
        self.last_ok = datetime.now(UTC)
        self.failing = False

    def failed(self, _error: BaseException | None = None) -> None:
        self.errors += 1
        self.failing = True

    def report(self, connected: bool, problem: str | None = None) -> ChannelHealth:
        """The adapter's ``health()`` answer; ``connected`` is its own view of the link,
        ``problem`` a platform setting that loses messages."""
        return ChannelHealth(connected=connected and not self.failing,
                             last_poll_ok=self.last_ok, poll_errors=self.errors,
                             problem=problem)


async def run_until_stopped(name: str, step: Callable[[], Awaitable[None]],
                            stopping: asyncio.Event, backoff: Backoff | None = None,
                            on_error: Callable[[Exception], None] | None = None) -> None:
    """Call `step` until `stopping` is set; log and back off on any error, never die.

    ``on_error`` hears of every failed step (adapters count failed polls with it)."""
    backoff = backoff or Backoff()
    while not stopping.is_set():
        try:
            await step()
            backoff.reset()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if on_error is not None:
                on_error(error)
            delay = backoff.next_delay()
            log.warning("%s: %s; retrying in %.1fs", name, describe(error, 300), delay)
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except TimeoutError:
                pass


def read_payloads(adapter: ChannelAdapter, payloads: list[Any],
                  key: Callable[[Any], str | None]) -> tuple[list[Inbound], list[Unreadable]]:
    """The customer messages among platform payloads, and the payloads the adapter cannot
    read (to quarantine with the batch: one malformed event must not stop the channel).
    ``key`` reads a payload's platform id where it has one."""
    batch: list[Inbound] = []
    unreadable: list[Unreadable] = []
    for payload in payloads:
        try:
            inbound = adapter.read_payload(payload)
        except Exception as error:
            # The error and the payload may quote the customer's text: ids only here.
            log.warning("%s: quarantining a payload it cannot read (%s, id %s)",
                        adapter.name, type(error).__name__, key(payload))
            texts.debug("%s: unreadable payload (%s): %.300r", adapter.name,
                        describe(error, 300), payload)
            unreadable.append(Unreadable(adapter.name, payload, describe(error), key(payload)))
            continue
        if inbound is not None:
            batch.append(inbound)
    return batch, unreadable


async def ingest_until_stored(name: str, store: Callable[[], Awaitable[object]],
                              stopping: asyncio.Event) -> bool:
    """Store a received batch, retrying while the database refuses it.

    A poison message does not fail a batch (the inbox quarantines it), so what fails here
    is the database: unavailable, or refusing even the quarantine. Either way it is
    retried with backoff until it takes the batch, and /healthz shows it meanwhile.
    Returns False only if the daemon stops first: the platform cursor is then not
    advanced, so the batch is fetched again after the restart.
    """
    return await _retrying(name, store, stopping, lambda error: True) is not None


async def retry_while_unavailable(name: str, step: Callable[[], Awaitable[T]],
                                  stopping: asyncio.Event) -> tuple[T, float] | None:
    """Run `step`, waiting out a database that is unavailable for now; return its result
    and the seconds it was held up, or None if the daemon stops first. Any other error is
    raised to the caller: it will not go away by waiting."""
    return await _retrying(name, step, stopping, is_transient)


async def _retrying(name: str, step: Callable[[], Awaitable[T]], stopping: asyncio.Event,
                    worth_waiting: Callable[[Exception], bool]) -> tuple[T, float] | None:
    """`step`'s result and the seconds it was held up; errors `worth_waiting` for are
    retried with backoff until the daemon stops (None), others are raised."""
    backoff = Backoff(base=0.5, ceiling=30)
    started = time.monotonic()
    while True:
        try:
            return await step(), time.monotonic() - started
        except Exception as error:
            if not worth_waiting(error):
                raise
            if stopping.is_set():
                return None
            delay = backoff.next_delay()
            log.error("%s: the database refused it (%s); retrying in %.1fs",
                      name, describe(error, 300), delay)
            await asyncio.sleep(delay)
