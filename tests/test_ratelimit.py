"""Rate-limit buckets: never more than N in any window, full rate when the queue is long."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config.rates import RateLimit
from core.delivery.ratelimit import Bucket, Limiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_parse_rates():
    assert RateLimit.parse("30/1s") == RateLimit(30, timedelta(seconds=1))
    assert RateLimit.parse("20/m") == RateLimit(20, timedelta(minutes=1))
    assert RateLimit.parse("100/15m") == RateLimit(100, timedelta(minutes=15))
    for bad in ("fast", "0/1s", "10", "10/0s", "-1/1s"):
        with pytest.raises(ValueError):
            RateLimit.parse(bad)


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 10), window=st.floats(0.5, 5),
       gaps=st.lists(st.floats(0, 2), min_size=1, max_size=80))
def test_never_more_than_count_in_any_window(count, window, gaps):
    bucket = Bucket(RateLimit(count, timedelta(seconds=window)), margin=0)
    now, spent = 0.0, []
    for gap in gaps:
        now += gap
        if bucket.ready_at(now) <= now:
            bucket.spend(now)
            spent.append(now)
    # Every window (t - window, t] holds at most `count` sends (the window as the bucket
    # holds it: timedelta keeps microseconds).
    window = bucket.window
    for end in spent:
        assert sum(1 for t in spent if end - window < t <= end) <= count


def test_a_long_queue_gets_the_full_rate():
    bucket = Bucket(RateLimit(20, timedelta(seconds=1)), margin=0)
    now, sent = 0.0, 0
    while now < 10:
        now = bucket.ready_at(now)
        if now >= 10:
            break
        bucket.spend(now)
        sent += 1
    assert sent == 200  # 20 per second for 10 seconds, no less


def test_limiter_checks_every_bucket_of_a_send():
    clock = FakeTime()
    limiter = Limiter({"per_bot": RateLimit(30, timedelta(seconds=1)),
                       "per_chat": RateLimit(1, timedelta(seconds=1))}, margin=0, now=clock)
    chat_a = [("per_bot", "bot"), ("per_chat", "a")]
    chat_b = [("per_bot", "bot"), ("per_chat", "b")]
    assert limiter.try_acquire(chat_a)
    assert not limiter.try_acquire(chat_a)  # the chat is at its limit ...
    assert limiter.try_acquire(chat_b)  # ... another chat is not
    assert limiter.ready_at(chat_a) == pytest.approx(clock.now + 1)
    clock.now += 1
    assert limiter.try_acquire(chat_a)


def test_unknown_bucket_names_do_not_limit():
    limiter = Limiter({}, now=FakeTime())
    assert all(limiter.try_acquire([("per_user", "x")]) for _ in range(1000))


def test_block_honours_the_platforms_retry_after():
    clock = FakeTime()
    limiter = Limiter({"per_bot": RateLimit(30, timedelta(seconds=1))}, now=clock)
    limiter.block([("per_bot", "bot")], 5)
    assert not limiter.try_acquire([("per_bot", "bot")])
    clock.now += 5
    assert limiter.try_acquire([("per_bot", "bot")])


def test_server_count_replaces_our_own():
    """X says how many posts remain in its fixed window; that is the truth."""
    clock = FakeTime()
    limiter = Limiter({"per_user": RateLimit(100, timedelta(minutes=15))}, now=clock)
    key = [("per_user", "me")]
    assert limiter.try_acquire(key)
    limiter.observe(key, remaining=1, reset_in=10)
    assert limiter.try_acquire(key)
    assert not limiter.try_acquire(key)  # the server's window is used up
    assert limiter.ready_at(key) == pytest.approx(clock.now + 10)
    clock.now += 10
    assert limiter.try_acquire(key)  # X's window reset, whatever our own count says


def test_the_window_runs_from_the_platforms_answer():
    """A send that took 0.4 s to answer holds its token until 1 s after the answer, so
    the platform, which saw it somewhere in between, never counts two in one second."""
    clock = FakeTime()
    limiter = Limiter({"per_chat": RateLimit(1, timedelta(seconds=1))}, now=clock)
    key = [("per_chat", "a")]
    reservation = limiter.try_acquire(key)
    clock.now += 0.4
    limiter.settle(reservation)
    assert limiter.ready_at(key) == pytest.approx(clock.now + 1)
