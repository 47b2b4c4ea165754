"""One getUpdates at a time per bot: the Telegram emulator counts overlapping polls,
answers the replaced one 409 as Telegram does, and lets a poll whose client went away
end with it, so a channel handed from one replica to the next can prove it never polled
twice at once."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
import sqlalchemy as sa

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import CONFLICT, ONE_POLL, TelegramEmulator
from core.clock import SystemClock
from core.delivery.contract import AdapterContext
from core.intake.inbox import Inbox
from core.store.tables import Message
from tests.adapter_harness import eventually
from tests.conftest import make_settings

TOKEN = "123456:TEST-token"


@pytest.fixture
async def emulator():
    async with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture
async def client():
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def get_updates(client: httpx.AsyncClient, emulator: TelegramEmulator, **params):
    return client.post(f"{emulator.url}/bot{TOKEN}/getUpdates", json=params)


def overlaps(emulator: TelegramEmulator) -> list[dict]:
    return [v for v in emulator.violations if v["limit"] == ONE_POLL]


async def stats(client: httpx.AsyncClient, emulator: TelegramEmulator) -> dict:
    return (await client.get(f"{emulator.url}/_control/stats")).json()


async def test_a_second_poll_while_one_is_open_is_a_violation_and_ends_the_first_409(
        emulator, client):
    first = asyncio.create_task(get_updates(client, emulator, timeout=2))
    await eventually(lambda: emulator.open_polls, what="the first long poll held")
    second = asyncio.create_task(get_updates(client, emulator, timeout=2))
    older = await first
    assert older.status_code == 409
    assert older.json() == {"ok": False, "error_code": 409, "description": CONFLICT}
    # The newer poll is the one still held: an update now goes to it.
    message = emulator.inject_message(chat_id=7, user_id=7, text="after the conflict")
    newer = await second
    assert newer.status_code == 200
    assert [u["message"]["message_id"] for u in newer.json()["result"]] == [
        message["message_id"]]
    assert len(overlaps(emulator)) == 1
    counted = await stats(client, emulator)
    assert counted["overlapping_polls"] == 1 and counted["polls_open"] == 0
    assert [v["limit"] for v in counted["violations"]] == [ONE_POLL]


async def test_polls_one_after_the_other_are_no_violation(emulator, client):
    for _ in range(3):
        answer = await get_updates(client, emulator, timeout=0.2)
        assert answer.json() == {"ok": True, "result": []}
    assert emulator.overlapping_polls == 0 and overlaps(emulator) == []


async def test_a_poll_cut_by_its_client_ends_so_the_next_one_is_no_violation(
        emulator, client):
    cut = asyncio.create_task(get_updates(client, emulator, timeout=30))
    await eventually(lambda: emulator.open_polls, what="the long poll held")
    cut.cancel()  # the client gives up: httpx closes the connection mid-poll
    with contextlib.suppress(asyncio.CancelledError):
        await cut
    answer = await get_updates(client, emulator, timeout=0)  # right after, no pause
    assert answer.json() == {"ok": True, "result": []}
    assert overlaps(emulator) == [] and emulator.overlapping_polls == 0
    assert emulator.open_polls == []


# --- the real adapter handing the channel over ----------------------------------------


@pytest.fixture
def tg_settings(emulator, monkeypatch):
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", TOKEN)
    return make_settings(
        channels={"telegram": {"enabled": True, "base_url": f"{emulator.url}/bot",
                               "poll_timeout": "2s"}},
        staff={"chat": "console"})


async def started(settings, store) -> TelegramAdapter:
    """A fresh adapter receiving into the store, as a replica that just became the
    channel's owner starts one."""
    inbox = Inbox(store, settings, SystemClock())
    adapter = TelegramAdapter(settings)
    await adapter.start(AdapterContext(settings=settings, clock=SystemClock(),
                                       ingest=inbox.ingest, load_cursor=inbox.load_cursor,
                                       ignore=inbox.ignore))
    return adapter


async def test_an_adapter_stopped_mid_poll_and_a_fresh_one_never_poll_at_once(
        emulator, store, tg_settings):
    first = await started(tg_settings, store)
    try:
        await eventually(lambda: emulator.requests["getUpdates"] >= 2 and emulator.open_polls,
                         what="the first adapter long polling")
    finally:
        await first.stop()  # cuts its held long poll (python-telegram-bot cancels it)
    second = await started(tg_settings, store)
    try:
        polls = emulator.requests["getUpdates"]
        await eventually(lambda: emulator.requests["getUpdates"] >= polls + 2,
                         what="the second adapter polling twice")
        emulator.inject_message(chat_id=501, user_id=501, text="after the switch")
        await eventually(lambda: _stored(store), what="the message stored by the second")
    finally:
        await second.stop()
    assert overlaps(emulator) == [] and emulator.overlapping_polls == 0


async def test_two_adapters_polling_at_once_are_caught(emulator, store, tg_settings):
    """The negative control: two owners of the channel at once overlap, the emulator
    says so, and the first one's held poll fails with Telegram's 409."""
    first = await started(tg_settings, store)
    second = None
    try:
        await eventually(lambda: emulator.open_polls, what="the first adapter long polling")
        second = await started(tg_settings, store)
        await eventually(lambda: emulator.overlapping_polls >= 1 and first.polls.errors >= 1,
                         what="an overlap counted, the first adapter's poll failed")
    finally:
        await first.stop()
        if second is not None:
            await second.stop()
    assert overlaps(emulator)


async def _stored(store) -> bool:
    async with store.session() as session:
        texts = list(await session.scalars(sa.select(Message.text)))
    return texts == ["after the switch"]
