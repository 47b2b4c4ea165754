"""Sends whose outcome is unknown -- the platform performed them but the answer was lost,
or the process died in "sending" -- are not blindly repeated: X looks first, Telegram
gets one more attempt and then a dead letter that says it may or may not have arrived,
and a crashed process's rows are recovered at once without touching a live one's."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import TelegramEmulator
from bots.twitter.adapter import TwitterAdapter
from bots.twitter.emulator import XEmulator
from core.delivery.contract import STAFF_CHANNEL
from core.domain.records import OutboxState
from core.store.process import HOST, THIS_PROCESS
from core.store.tables import Heartbeat, Outbox
from tests.adapter_harness import eventually, running
from tests.test_delivery import (
    _post_directly,
    _state_is,
    queue,
    telegram_settings,
    time_now,
    tokens,  # noqa: F401 - the autouse fixture that sets the token variables
    x_settings,
)


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    return f"sqlite+aiosqlite:///{tmp_path / 'unknown.db'}"


async def _row(h, row_id: int) -> Outbox:
    [row] = await h.rows(sa.select(Outbox).where(Outbox.id == row_id))
    return row


async def test_telegram_lost_answer_is_retried_once_and_counted(store):
    async with TelegramEmulator() as emulator:
        settings = telegram_settings(emulator)
        emulator.faults.add("sendMessage", "lost_response")
        async with running(TelegramAdapter(settings), store, settings) as h:
            [row_id] = await queue(store, [{"channel": "telegram", "target": {"chat_id": 5},
                                            "text": "your order ships today",
                                            "idempotency_key": "tg-lost-1"}])
            h.dispatcher.wake()
            await eventually(lambda: _state_is(h, row_id, OutboxState.SENT), timeout=30,
                             what="sent after one retry")
            row = await _row(h, row_id)
        # Telegram has no idempotency key: the customer got it twice -- the documented
        # bound -- and the row remembers the doubt.
        assert [m["text"] for m in emulator.sent] == ["your order ships today"] * 2
        assert row.recovered == 1 and row.attempts == 2


async def test_telegram_second_unknown_outcome_is_dead_lettered_not_sent_a_third_time(store):
    async with TelegramEmulator() as emulator:
        settings = telegram_settings(emulator, max_attempts=8)
        emulator.faults.add("sendMessage", "lost_response", count=2)
        async with running(TelegramAdapter(settings), store, settings) as h:
            [row_id] = await queue(store, [{"channel": "telegram", "target": {"chat_id": 5},
                                            "text": "twice lost", "ticket_id": None,
                                            "idempotency_key": "tg-lost-2"}])
            h.dispatcher.wake()
            await eventually(lambda: _state_is(h, row_id, OutboxState.DEAD), timeout=30,
                             what="dead after the second unknown outcome")
            row = await _row(h, row_id)
            notices = await h.rows(sa.select(Outbox).where(Outbox.channel == STAFF_CHANNEL))
        assert [m["text"] for m in emulator.sent] == ["twice lost"] * 2  # never a third
        assert "may or may not have been delivered" in row.last_error
        assert len(notices) == 1 and "may or may not" in notices[0].text


async def test_x_lost_answer_is_found_on_x_and_not_posted_again(store):
    async with XEmulator() as emulator:
        settings = x_settings(emulator)
        mention = emulator.inject_tweet("200", "kate", "where is my order?")
        emulator.faults.add("tweets", "lost_response")
        async with running(TwitterAdapter(settings, poll_interval=60), store, settings) as h:
            [row_id] = await queue(store, [{
                "channel": "twitter", "target": {"in_reply_to_tweet_id": mention["id"]},
                "text": "It ships today & arrives Friday", "idempotency_key": "x-lost"}])
            h.dispatcher.wake()
            await eventually(lambda: _state_is(h, row_id, OutboxState.SENT), timeout=30,
                             what="found delivered")
            row = await _row(h, row_id)
        [posted] = emulator.sent
        assert row.external_id == str(posted["id"]) and row.attempts == 1
        assert emulator.requests["tweets"] == 1  # looked, did not post again


async def test_x_duplicate_content_that_we_posted_is_a_success_not_a_failure(store):
    async with XEmulator() as emulator:
        settings = x_settings(emulator)
        mention = emulator.inject_tweet("201", "oleg", "refund?")
        # Posted by an attempt whose answer never came back (an earlier process).
        await _post_directly(emulator, mention["id"], "Refund sent")
        async with running(TwitterAdapter(settings, poll_interval=60), store, settings) as h:
            [row_id] = await queue(store, [{
                "channel": "twitter", "target": {"in_reply_to_tweet_id": mention["id"]},
                "text": "Refund sent", "idempotency_key": "x-dup"}])
            h.dispatcher.wake()
            await eventually(lambda: _state_is(h, row_id, OutboxState.SENT), timeout=30,
                             what="found delivered")
            row = await _row(h, row_id)
            dead = await h.count(Outbox, Outbox.state == OutboxState.DEAD)
        assert row.external_id == str(emulator.sent[0]["id"]) and dead == 0
        assert len(emulator.sent) == 1


async def test_x_duplicate_content_not_ours_is_dead_at_once(store):
    async with XEmulator() as emulator:
        settings = x_settings(emulator)
        first = emulator.inject_tweet("202", "ann", "hello?")
        second = emulator.inject_tweet("203", "bob", "hello?")
        await _post_directly(emulator, first["id"], "Thanks, we are on it")
        async with running(TwitterAdapter(settings, poll_interval=60), store, settings) as h:
            [row_id] = await queue(store, [{  # same text, to another tweet: not ours
                "channel": "twitter", "target": {"in_reply_to_tweet_id": second["id"]},
                "text": "Thanks, we are on it", "idempotency_key": "x-dup-2"}])
            h.dispatcher.wake()
            await eventually(lambda: _state_is(h, row_id, OutboxState.DEAD), timeout=30,
                             what="dead")
            row = await _row(h, row_id)
        assert "duplicate" in row.last_error and row.attempts == 1


# --- rows left in "sending" -------------------------------------------------------------------


def a_finished_process() -> str:
    """The identity of a process of this host that has exited."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return f"{HOST}:{child.stdout.strip()}:0badc0de"


async def claim(store, row_id: int, by: str, seconds_ago: float = 2) -> None:
    async with store.session() as session, session.begin():
        await session.execute(sa.update(Outbox).where(Outbox.id == row_id).values(
            state=OutboxState.SENDING, attempts=1, claimed_by=by,
            claimed_at=time_now() - timedelta(seconds=seconds_ago)))


async def beat(store, process: str, seconds_ago: float = 0) -> None:
    async with store.session() as session, session.begin():
        await session.merge(Heartbeat(process=process,
                                      beat_at=time_now() - timedelta(seconds=seconds_ago)))


async def keep_beating(store, process: str) -> None:
    """A live replica on another host: its heartbeat changes every second."""
    while True:
        await beat(store, process)
        await asyncio.sleep(1)


async def test_a_crashed_processs_rows_are_recovered_at_once_a_live_replicas_are_not(store):
    async with TelegramEmulator() as emulator:
        settings = telegram_settings(emulator)  # the default lease: 60 s
        rows = await queue(store, [
            {"channel": "telegram", "target": {"chat_id": 10 + i}, "text": text,
             "idempotency_key": f"claim-{i}"}
            for i, text in enumerate(["crashed here", "our pid reborn", "silent replica",
                                      "live replica"])])
        crashed, reborn, silent, live = rows
        await claim(store, crashed, a_finished_process())
        # A container restarts with the same pid: the nonce tells the lives apart.
        await claim(store, reborn, f"{HOST}:{os.getpid()}:00000000")
        await claim(store, silent, "replica-2:41:cafe0001")
        await beat(store, "replica-2:41:cafe0001", seconds_ago=40)  # stopped beating
        await claim(store, live, "replica-3:42:cafe0002")
        beating = asyncio.create_task(keep_beating(store, "replica-3:42:cafe0002"))
        try:
            async with running(TelegramAdapter(settings), store, settings) as h:
                started = time.monotonic()
                for row_id in (crashed, reborn):  # this host's dead: the first pass
                    await eventually(lambda r=row_id: _state_is(h, r, OutboxState.SENT),
                                     timeout=10, what="recovered at once")
                crash_recovery = time.monotonic() - started
                # Another host's silent process: once its beat has not changed for 15 s.
                await eventually(lambda: _state_is(h, silent, OutboxState.SENT),
                                 timeout=40, what="recovered well before the lease")
                live_row = await _row(h, live)
        finally:
            beating.cancel()
        assert crash_recovery < 5
        assert live_row.state == OutboxState.SENDING  # a beating replica's row: not stolen
        assert sorted(m["text"] for m in emulator.sent) == sorted(
            ["crashed here", "our pid reborn", "silent replica"])
        assert THIS_PROCESS.startswith(f"{HOST}:{os.getpid()}:")


def test_which_failures_leave_the_outcome_unknown():
    """Only a request that went out and got no answer is unknown; a refused connection
    was never sent, and an answer -- even an unreadable one -- says what happened."""
    from unittest.mock import Mock

    import aiohttp
    import httpx
    from telegram.error import NetworkError, TimedOut

    from bots.telegram.errors import delivery_error as telegram_error
    from bots.twitter.errors import delivery_error as x_error

    def caused(error, cause):
        error.__cause__ = cause
        return error

    request = httpx.Request("POST", "http://127.0.0.1/bot1/sendMessage")
    assert telegram_error(caused(TimedOut(), httpx.ReadTimeout("", request=request))).unknown
    assert telegram_error(caused(NetworkError("x"), httpx.RemoteProtocolError(
        "Server disconnected without sending a response."))).unknown
    assert not telegram_error(caused(NetworkError("x"), httpx.ConnectError("refused"))).unknown
    assert not telegram_error(caused(TimedOut(), httpx.PoolTimeout("full"))).unknown
    assert not telegram_error(NetworkError("Bad Gateway")).unknown  # a 502 answer

    assert x_error(aiohttp.ServerDisconnectedError()).unknown
    assert x_error(TimeoutError()).unknown
    assert not x_error(aiohttp.ClientConnectorError(Mock(), OSError(111, "refused"))).unknown
    assert not x_error(aiohttp.ContentTypeError(Mock(), (), status=500)).unknown
