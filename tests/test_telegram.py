"""The Telegram adapter with python-telegram-bot against the loopback Bot API emulator."""

from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import BOT_USER, TelegramEmulator
from core.delivery.contract import DeliveryError
from core.domain.records import Outbound, OutboxState
from core.domain.text import split_text
from core.store.tables import Message, Outbox, Quarantine, Ticket
from tests.adapter_harness import eventually, running
from tests.conftest import make_settings

STAFF_GROUP = -1005000


@pytest.fixture
async def emulator():
    async with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture
def tg_settings(emulator, monkeypatch):
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123456:TEST-token")
    return make_settings(
        channels={"telegram": {"enabled": True, "base_url": f"{emulator.url}/bot",
                               "poll_timeout": "1s"}},
        staff={"chat": "telegram", "telegram_chat_id": STAFF_GROUP})


async def test_private_message_becomes_ticket_and_ack_replies_in_that_chat(
        emulator, store, tg_settings):
    async with running(TelegramAdapter(tg_settings), store, tg_settings, staff=True) as h:
        message = emulator.inject_message(chat_id=501, user_id=501, text="Где мой заказ?",
                                          username="kate")
        await eventually(lambda: len(emulator.sent_to(501)) == 1, what="the acknowledgement")
        [ticket] = await h.rows(sa.select(Ticket))
        assert ticket.channel == "telegram" and ticket.thread_key == "chat:501"
        [ack] = emulator.sent_to(501)
        assert ack["reply_to_message"]["message_id"] == message["message_id"]
        assert f"#{ticket.id}" in ack["text"]
        await eventually(lambda: len(emulator.sent_to(STAFF_GROUP)) == 1, what="staff card")
        assert "Где мой заказ?" in emulator.sent_to(STAFF_GROUP)[0]["text"]
        [stored] = await h.rows(sa.select(Message))
        assert stored.external_id == f"501:{message['message_id']}"


async def test_group_messages_only_when_addressed_to_the_bot(emulator, store, tg_settings):
    async with running(TelegramAdapter(tg_settings), store, tg_settings) as h:
        emulator.inject_message(chat_id=-77, user_id=1, chat_type="supergroup",
                                text="just chatting")
        emulator.inject_message(chat_id=-77, user_id=2, chat_type="supergroup",
                                text=f"@{BOT_USER['username']} my parcel is late")
        await eventually(lambda: h.count(Message), what="the mention")
        await eventually(lambda: len(emulator.sent_to(-77)) == 1, what="ack in the group")
        bot_reply = emulator.sent_to(-77)[0]
        emulator.inject_message(chat_id=-77, user_id=3, chat_type="supergroup",
                                text="me too", reply_to_message_id=bot_reply["message_id"])
        await eventually(lambda: _count_is(h, Message, 2), what="the reply to the bot")
        authors = sorted(m.author for m in await h.rows(sa.select(Message)))
        assert authors == ["2", "3"]
        # Staff-group messages are the staff's business, not customer tickets.
        emulator.inject_message(chat_id=STAFF_GROUP, user_id=9, chat_type="supergroup",
                                text=f"@{BOT_USER['username']} hi")
        await asyncio.sleep(0.5)
        assert await h.count(Message) == 2


async def _count_is(h, table, n: int) -> bool:
    return await h.count(table) == n


async def test_restart_mid_stream_loses_and_doubles_nothing(emulator, store, tg_settings):
    async with running(TelegramAdapter(tg_settings), store, tg_settings) as h:
        for user in range(1, 6):
            emulator.inject_message(chat_id=user, user_id=user, text=f"first {user}")
        await eventually(lambda: _count_is(h, Message, 5), what="first five")
    # While the daemon is down, customers keep writing.
    for user in range(1, 11):
        emulator.inject_message(chat_id=user, user_id=user, text=f"second {user}")
    async with running(TelegramAdapter(tg_settings), store, tg_settings) as h:
        await eventually(lambda: _count_is(h, Message, 15), what="all fifteen")
        await asyncio.sleep(0.3)
        assert await h.count(Message) == 15
        assert await h.count(Ticket) == 10
        await eventually(lambda: len(emulator.sent) == 10, what="one ack per ticket")
        assert sorted(m["chat"]["id"] for m in emulator.sent) == list(range(1, 11))


async def test_updates_are_not_confirmed_before_they_are_stored(emulator, store, tg_settings):
    """A crash between fetching and committing: Telegram must still have the update."""
    adapter = TelegramAdapter(tg_settings)
    crash = asyncio.Event()

    async def failing_ingest(batch, cursor, unreadable=()):
        await crash.wait()  # the transaction is under way ... and the process dies
        raise ConnectionError("simulated crash before commit")

    async with running(adapter, store, tg_settings) as h:
        adapter.context.ingest = failing_ingest
        emulator.inject_message(chat_id=42, user_id=42, text="lost?")
        await asyncio.sleep(1.5)  # fetched and handed to the handler, not committed
        assert emulator.confirmed <= emulator.updates[-1]["update_id"]
        assert await h.count(Message) == 0
        crash.set()
    assert emulator.confirmed <= emulator.updates[-1]["update_id"]  # still not confirmed
    async with running(TelegramAdapter(tg_settings), store, tg_settings) as h:
        await eventually(lambda: _count_is(h, Message, 1), what="the redelivered update")


@pytest.mark.parametrize("fault", [
    {"kind": "429", "seconds": 1}, {"kind": "500"}, {"kind": "timeout", "seconds": 0.3},
    {"kind": "malformed"}, {"kind": "missing_fields"},
])
async def test_receive_faults_are_survived(emulator, store, tg_settings, fault):
    emulator.faults.add("getUpdates", **fault)
    async with running(TelegramAdapter(tg_settings), store, tg_settings) as h:
        emulator.inject_message(chat_id=7, user_id=7, text="still there?")
        await eventually(lambda: _count_is(h, Message, 1), timeout=20, what="the message")
        # Polling goes on after the faulty answer (a "missing_fields" answer may carry
        # the message itself, so the count is awaited, not assumed).
        await eventually(lambda: emulator.requests["getUpdates"] >= 2, what="more polls")


async def test_malformed_updates_are_quarantined_and_the_channel_goes_on(
        emulator, store, tg_settings):
    bad = emulator.inject_update({"message": {"message_id": 1, "text": "no chat"}})
    # Readable by python-telegram-bot, not by the adapter: a sender that is not a user.
    unreadable = emulator.inject_update({"message": {
        "message_id": 2, "date": 1764000000, "chat": {"id": 9, "type": "private"},
        "from": {"id": 9, "is_bot": False, "first_name": "Kate"}, "text": "hi",
        "message_thread_id": "not a number", "is_topic_message": True}})
    emulator.inject_message(chat_id=8, user_id=8, text="good one")
    async with running(TelegramAdapter(tg_settings), store, tg_settings) as h:
        await eventually(lambda: _count_is(h, Message, 1), what="the good message")
        await eventually(lambda: emulator.confirmed > emulator.updates[-1]["update_id"],
                         what="the offset moving past both updates")
        await eventually(lambda: _count_is(h, Quarantine, 2), what="both quarantined")
        held = {row.external_id: row for row in await h.rows(sa.select(Quarantine))}
    assert set(held) == {f"update:{bad['update_id']}", f"update:{unreadable['update_id']}"}
    kept = json.loads(held[f"update:{bad['update_id']}"].payload)
    assert kept == bad  # the whole update as Telegram sent it
    notices = [row.text for row in await h.rows(sa.select(Outbox).where(
        Outbox.idempotency_key.like("quarantine:%")))]
    assert len(notices) == 2 and all("quarantined as Q" in text for text in notices)


def outbound(text: str, chat_id: int = 501, **target) -> Outbound:
    return Outbound(outbox_id=1, channel="telegram", kind="ack", text=text,
                    target={"chat_id": chat_id, **target}, idempotency_key="k1")


async def test_send_errors_map_to_delivery_errors(emulator, tg_settings):
    adapter = TelegramAdapter(tg_settings)
    await adapter.bot.initialize()
    try:
        emulator.block(666)
        with pytest.raises(DeliveryError) as blocked:
            await adapter.send(outbound("hi", chat_id=666))
        assert blocked.value.permanent and "blocked" in blocked.value.reason
        emulator.faults.add("sendMessage", "429", seconds=3)
        with pytest.raises(DeliveryError) as limited:
            await adapter.send(outbound("hi"))
        assert not limited.value.permanent and limited.value.retry_after == 3
        emulator.faults.add("sendMessage", "500")
        with pytest.raises(DeliveryError) as broken:
            await adapter.send(outbound("hi"))
        assert not broken.value.permanent
        delivered = await adapter.send(outbound("hi again"))
        assert delivered.external_id.startswith("501:")
    finally:
        await adapter.bot.shutdown()


async def test_long_text_is_split(emulator, tg_settings):
    adapter = TelegramAdapter(tg_settings)
    await adapter.bot.initialize()
    try:
        emulator.enforce_limits = False
        await adapter.send(outbound(("word " * 1000).strip(), chat_id=9))
        parts = emulator.sent_to(9)
        assert len(parts) == 2 and all(len(p["text"]) <= 4096 for p in parts)
        assert " ".join(p["text"] for p in parts) == ("word " * 1000).strip()
    finally:
        await adapter.bot.shutdown()


def test_split_text_keeps_words_whole():
    parts = split_text("a" * 10 + " " + "b" * 10, 15)
    assert parts == ["a" * 10, "b" * 10]
    assert split_text("x" * 40, 15) == ["x" * 15, "x" * 15, "x" * 10]
    assert split_text("short", 4096) == ["short"]


async def test_blocked_user_is_recorded_as_undeliverable(emulator, store, tg_settings):
    emulator.block(321)
    async with running(TelegramAdapter(tg_settings), store, tg_settings) as h:
        emulator.inject_message(chat_id=321, user_id=321, text="hello")
        await eventually(lambda: h.count(Outbox, Outbox.state == OutboxState.DEAD),
                         what="the dead ack")
        [row] = await h.rows(sa.select(Outbox).where(Outbox.state == OutboxState.DEAD))
        assert row.attempts == 1 and "blocked" in row.last_error


async def test_start_with_a_deep_link_is_greeted_and_opens_no_ticket(emulator, store,
                                                                      tg_settings):
    """"/start YnZi..." (a deep link) is how a chat opens: greeted, no ticket, no card;
    "/start my order is late" is a question."""
    async with running(TelegramAdapter(tg_settings), store, tg_settings) as h:
        emulator.inject_message(chat_id=71, user_id=71, text="/start YnZiZ2lmdA")
        await eventually(lambda: emulator.sent_to(71), what="the greeting")
        assert await h.count(Ticket) == 0
        emulator.inject_message(chat_id=72, user_id=72, text="/start my order is late")
        await eventually(lambda: _count_is(h, Ticket, 1), what="a ticket for the question")
    [greeting] = emulator.sent_to(71)
    assert greeting["text"] == tg_settings.ack.greeting["ru"] or \
        greeting["text"] == tg_settings.ack.greeting["en"]
