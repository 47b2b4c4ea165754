"""Rate limits for outbound messages: token buckets whose tokens come back one window
after they were spent.

A classic token bucket (capacity N, refilled at N per window) lets 2N messages through
in one window: a full bucket plus a window's refill. Platforms count messages in a
trailing window ("at most 20 a minute in a group"), so here each spent token returns
exactly one window later: never more than N in any window, and a steady N per window
when the queue is long.

A token is taken when a send starts and re-stamped when the platform has answered
(``settle``): the platform saw the message somewhere in between, so counting the window
from the answer makes "never more than N in any window" hold at the platform's end too,
whatever the network jitter. The price is one round trip per token cycle.

Limits run on real (monotonic) time, even when the core runs on a virtual clock: they
are about the wire, not about the business day.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from core.config.rates import RateLimit


class Bucket:
    """At most `limit.count` tokens spent in any window of `limit.per` (plus margin)."""

    def __init__(self, limit: RateLimit, margin: float = 0.0):
        self.capacity = limit.count
        self.window = limit.per.total_seconds() * (1 + margin)
        self.spent: deque[float] = deque()
        self.blocked_until = 0.0
        # What the platform itself reported (X's x-rate-limit-remaining / -reset): when
        # known, it replaces our own count, since the platform's window is the truth.
        self.server_remaining: int | None = None
        self.server_reset = 0.0

    def _expire(self, now: float) -> None:
        while self.spent and self.spent[0] <= now - self.window:
            self.spent.popleft()

    def ready_at(self, now: float, tokens: int = 1) -> float:
        """The earliest moment `tokens` tokens can be spent (now, if they can)."""
        self._expire(now)
        tokens = min(tokens, self.capacity)
        earliest = max(now, self.blocked_until)
        if self.server_remaining is not None:
            if now >= self.server_reset or self.server_remaining >= tokens:
                return earliest
            return max(earliest, self.server_reset)
        missing = tokens - (self.capacity - len(self.spent))
        if missing <= 0:
            return earliest
        # A nanosecond past the window, so float rounding cannot put both ends in one.
        return max(earliest, self.spent[missing - 1] + self.window + 1e-9)

    def spend(self, now: float, tokens: int = 1) -> None:
        self.spent.extend([now] * min(tokens, self.capacity))
        if self.server_remaining is not None and now < self.server_reset:
            self.server_remaining -= tokens

    def restamp(self, spent_at: float, now: float, tokens: int = 1) -> None:
        """Move tokens spent at `spent_at` to `now` (the send's answer arrived)."""
        for _ in range(min(tokens, self.capacity)):
            try:
                self.spent.remove(spent_at)
            except ValueError:
                return  # already expired: it returned a window after it was spent
            self.spent.append(now)  # every stamp in the deque is <= now: still sorted

    def observe(self, now: float, remaining: int, reset_in: float) -> None:
        self.server_remaining = remaining
        self.server_reset = now + reset_in

    def idle(self, now: float) -> bool:
        self._expire(now)
        return not self.spent and self.blocked_until <= now


RateKey = tuple[str, str]  # (bucket name as in config, key: a chat id, "bot", a user id)


@dataclass(frozen=True)
class Reservation:
    keys: list[RateKey]
    tokens: int
    at: float


def _locked(method: Callable) -> Callable:
    @functools.wraps(method)
    def locked(self: Limiter, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class Limiter:
    """The buckets of one adapter, created on first use from its limits. Thread-safe:
    the outbox claim decides with it inside a unit of work, in a database thread
    (core.store.units), while sends settle tokens on the event loop."""

    def __init__(self, limits: dict[str, RateLimit], margin: float = 0.0,
                 now: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.margin = margin
        self.now = now
        self.buckets: dict[RateKey, Bucket] = {}
        self._last_prune = 0.0
        self._lock = threading.Lock()

    def _bucket(self, key: RateKey) -> Bucket | None:
        bucket = self.buckets.get(key)
        if bucket is None and key[0] in self.limits:
            bucket = self.buckets[key] = Bucket(self.limits[key[0]], self.margin)
        return bucket

    @_locked
    def ready_at(self, keys: list[RateKey], tokens: int = 1) -> float:
        now = self.now()
        return max([now] + [b.ready_at(now, tokens) for k in keys if (b := self._bucket(k))])

    @_locked
    def try_acquire(self, keys: list[RateKey], tokens: int = 1) -> Reservation | None:
        """Spend `tokens` from every bucket of `keys` if all have them now."""
        now = self.now()
        buckets = [b for k in keys if (b := self._bucket(k))]
        if any(b.ready_at(now, tokens) > now for b in buckets):
            return None
        for bucket in buckets:
            bucket.spend(now, tokens)
        self._prune(now)
        return Reservation(keys, tokens, now)

    @_locked
    def remember(self, spends: list[tuple[float, list[RateKey], int]]) -> None:
        """Sends made before this limiter existed, as (seconds ago, keys, tokens): by
        another replica that ran the channel until now (core.delivery.dispatcher)."""
        now = self.now()
        for ago, keys, tokens in sorted(spends, key=lambda spend: -spend[0]):
            for key in keys:  # oldest first: each bucket's stamps stay in order
                if bucket := self._bucket(key):
                    bucket.spend(now - ago, tokens)

    @_locked
    def settle(self, reservation: Reservation) -> None:
        """The send of `reservation` got its answer: its window runs from now."""
        now = self.now()
        for key in reservation.keys:
            if bucket := self.buckets.get(key):
                bucket.restamp(reservation.at, now, reservation.tokens)

    @_locked
    def block(self, keys: list[RateKey], seconds: float) -> None:
        """The platform said "wait": spend nothing on these buckets for `seconds`."""
        until = self.now() + seconds
        for key in keys:
            if bucket := self._bucket(key):
                bucket.blocked_until = max(bucket.blocked_until, until)

    @_locked
    def observe(self, keys: list[RateKey], remaining: int, reset_in: float) -> None:
        """The platform's own count after a send: `remaining` until `reset_in` seconds."""
        now = self.now()
        for key in keys:
            if bucket := self._bucket(key):
                bucket.observe(now, remaining, reset_in)

    def _prune(self, now: float) -> None:
        # Per-chat buckets would otherwise accumulate for every chat ever answered.
        if now - self._last_prune > 60:
            self._last_prune = now
            for key in [k for k, b in self.buckets.items() if b.idle(now)]:
                del self.buckets[key]
