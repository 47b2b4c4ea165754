"""The VK adapter with vk_api against the loopback VK API and Bots Long Poll emulator."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest
import sqlalchemy as sa

from bots.vk.adapter import RedirectingSession, VKAdapter, part_key, random_id
from bots.vk.emulator import VKEmulator
from core.delivery.contract import DeliveryError
from core.domain.records import Outbound, OutboxState
from core.domain.text import split_text
from core.store.tables import Cursor, Message, Outbox, Quarantine, Ticket
from tests.adapter_harness import eventually, running
from tests.conftest import make_settings

GROUP = 1
TOKEN = "vk-test-token"
# Fault tests exercise the adapter, not the database: SQLite is enough for them.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def emulator():
    async with VKEmulator(group_id=GROUP, token=TOKEN) as emulator:
        yield emulator


def vk_settings(emulator: VKEmulator, wait: str = "1s"):
    return make_settings(
        channels={"vk": {"enabled": True, "group_id": GROUP, "base_url": emulator.url,
                         "long_poll_wait": wait}},
        staff={"chat": "console"},
        outbox={"retry_base": "1s"})  # keeps the dispatcher's retries short


@pytest.fixture
def settings(emulator, monkeypatch):
    monkeypatch.setenv("SAMEDAY_VK_TOKEN", TOKEN)
    return vk_settings(emulator)


async def count_is(h, table, n: int) -> bool:
    return await h.count(table) == n


def outbound(text: str, key: str = "ack:1", **target) -> Outbound:
    return Outbound(outbox_id=1, channel="vk", kind="ack", text=text, idempotency_key=key,
                    target=target or {"type": "message", "peer_id": 501})


# --- receiving and acknowledging ---------------------------------------------------------------


async def test_community_message_becomes_ticket_and_ack_goes_to_that_peer(
        emulator, store, settings):
    async with running(VKAdapter(settings), store, settings) as h:
        event = emulator.inject_message(from_id=501, text="Где мой заказ?")
        await eventually(lambda: len(emulator.sent_to(501)) == 1, what="the acknowledgement")
        [ticket] = await h.rows(sa.select(Ticket))
        assert (ticket.channel, ticket.thread_key) == ("vk", "peer:501")
        [ack] = emulator.sent_to(501)
        assert ack["method"] == "messages.send" and f"#{ticket.id}" in ack["message"]
        assert ack["random_id"] == random_id(f"ack:{ticket.id}")
        [stored] = await h.rows(sa.select(Message))
        assert stored.external_id == f"m{event['object']['message']['id']}"
        assert stored.author == "id501" and stored.text == "Где мой заказ?"
        [row] = await h.rows(sa.select(Outbox).where(Outbox.channel == "vk"))
        await eventually(lambda: _outbox_state(h, row.id, OutboxState.SENT), what="sent row")
        sent_id = await h.scalar(sa.select(Outbox.external_id).where(Outbox.id == row.id))
        assert sent_id == str(ack["id"])
        cursor = await h.scalar(sa.select(Cursor.value).where(Cursor.channel == "vk"))
        assert cursor == str(emulator.ts)


async def _outbox_state(h, row_id: int, state: str) -> bool:
    return await h.scalar(sa.select(Outbox.state).where(Outbox.id == row_id)) == state


async def test_wall_comment_becomes_ticket_and_ack_replies_under_it(emulator, store, settings):
    async with running(VKAdapter(settings), store, settings) as h:
        event = emulator.inject_wall_reply(from_id=777, post_id=42, text="Доставка сломалась")
        comment_id = event["object"]["id"]
        await eventually(lambda: len(emulator.comments_on(-GROUP, 42)) == 1, what="the reply")
        [ticket] = await h.rows(sa.select(Ticket))
        assert ticket.thread_key == f"wall:-{GROUP}_42:777"
        [reply] = emulator.comments_on(-GROUP, 42)
        assert reply["reply_to_comment"] == comment_id and reply["guid"] == f"ack:{ticket.id}"
        [stored] = await h.rows(sa.select(Message))
        assert stored.external_id == f"wall:-{GROUP}_42_{comment_id}"


async def test_own_messages_and_comments_are_not_tickets(emulator, store, settings):
    async with running(VKAdapter(settings), store, settings) as h:
        emulator.inject_wall_reply(from_id=-GROUP, post_id=5, text="our own answer")
        emulator.inject_event("message_reply", {"id": 99, "out": 1, "peer_id": 9, "text": "x"})
        emulator.inject_message(from_id=9, text="a real customer")
        await eventually(lambda: count_is(h, Message, 1), what="the customer's message")
        await asyncio.sleep(0.3)
        assert [m.author for m in await h.rows(sa.select(Message))] == ["id9"]


async def test_restart_mid_stream_loses_and_doubles_nothing(emulator, store, settings):
    async with running(VKAdapter(settings), store, settings) as h:
        for user in range(1, 6):
            emulator.inject_message(from_id=user, text=f"first {user}")
        await eventually(lambda: count_is(h, Message, 5), what="the first five")
    # While the daemon is down, customers keep writing.
    for user in range(1, 11):
        emulator.inject_message(from_id=user, text=f"second {user}")
    async with running(VKAdapter(settings), store, settings) as h:
        await eventually(lambda: count_is(h, Message, 15), what="all fifteen")
        await eventually(lambda: len(emulator.sent) == 10, what="one ack per ticket")
        await asyncio.sleep(0.3)
        assert await h.count(Message) == 15 and await h.count(Ticket) == 10
        assert sorted(m["peer_id"] for m in emulator.sent) == list(range(1, 11))


@sqlite_only
async def test_a_failed_commit_is_retried_before_the_poll_moves_on(emulator, store, settings):
    adapter = VKAdapter(settings)
    async with running(adapter, store, settings) as h:
        real_ingest, failures = adapter.context.ingest, []

        async def flaky_ingest(batch, cursor, unreadable=()):
            if batch and len(failures) < 2:
                failures.append(cursor)
                raise ConnectionError("database is down")
            return await real_ingest(batch, cursor, unreadable)

        adapter.context.ingest = flaky_ingest
        emulator.inject_message(from_id=3, text="one")
        await eventually(lambda: count_is(h, Message, 1), what="the stored message")
        emulator.inject_message(from_id=4, text="two")
        await eventually(lambda: count_is(h, Message, 2), what="the next message")
        assert len(failures) == 2


@sqlite_only
async def test_stop_returns_while_a_long_poll_is_held(emulator, store, settings):
    slow = vk_settings(emulator, wait="25s")
    adapter = VKAdapter(slow)
    async with running(adapter, store, slow):
        await eventually(lambda: emulator.requests["a_check"] >= 1, what="a held long poll")
        started = time.monotonic()
    assert time.monotonic() - started < 3


# --- faults on the way in ----------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize("fault", [
    {"kind": "500"}, {"kind": "timeout", "seconds": 0.3}, {"kind": "malformed"},
    {"kind": "missing_fields"}, {"kind": "failed1"}, {"kind": "failed2"}, {"kind": "failed3"},
])
async def test_long_poll_faults_are_survived(emulator, store, settings, fault):
    emulator.faults.add("a_check", **fault)
    async with running(VKAdapter(settings), store, settings) as h:
        # A poll after the faulty one means the adapter has recovered (new key, new ts).
        await eventually(lambda: emulator.requests["a_check"] >= 2, what="a poll after it")
        emulator.inject_message(from_id=7, text="still there?")
        await eventually(lambda: count_is(h, Message, 1), what="the message")
        await eventually(lambda: len(emulator.sent_to(7)) == 1, what="the acknowledgement")
    if fault["kind"] in ("failed2", "failed3"):
        assert emulator.requests["groups.getLongPollServer"] == 2


@sqlite_only
async def test_failed_1_is_logged_as_skipped_events(emulator, store, settings, caplog):
    emulator.faults.add("a_check", "failed1")
    with caplog.at_level(logging.WARNING, logger="bots.vk.adapter"):
        async with running(VKAdapter(settings), store, settings):
            await eventually(lambda: emulator.requests["a_check"] >= 2, what="a poll after it")
    assert any("failed=1" in record.message for record in caplog.records)


@sqlite_only
async def test_malformed_events_are_quarantined_and_the_channel_goes_on(
        emulator, store, settings):
    async with running(VKAdapter(settings), store, settings) as h:
        bad = [emulator.inject_event("message_new", {"message": {"id": 50, "text": "no peer"}}),
               emulator.inject_event("wall_reply_new", {"id": 3})]
        emulator.inject_message(from_id=8, text="good one")
        await eventually(lambda: count_is(h, Message, 1), what="the good message")
        await eventually(lambda: _cursor_is(h, emulator.ts), what="ts past the bad events")
        held = await h.rows(sa.select(Quarantine).order_by(Quarantine.id))
    assert [row.external_id for row in held] == [f"event:{e['event_id']}" for e in bad]
    assert [json.loads(row.payload) for row in held] == bad
    assert "KeyError" in held[0].error


async def _cursor_is(h, ts: int) -> bool:
    return await h.scalar(sa.select(Cursor.value).where(Cursor.channel == "vk")) == str(ts)


@sqlite_only
@pytest.mark.parametrize("kind", ["10", "500", "timeout", "malformed", "missing_fields"])
async def test_long_poll_server_faults_are_survived(emulator, store, settings, kind):
    emulator.faults.add("groups.getLongPollServer", kind, seconds=0.3)
    async with running(VKAdapter(settings), store, settings) as h:
        await eventually(lambda: emulator.requests["a_check"] >= 1, what="the connection")
        emulator.inject_message(from_id=11, text="hello")
        await eventually(lambda: count_is(h, Message, 1), what="the message")
    assert emulator.requests["groups.getLongPollServer"] == 2


# --- sending -----------------------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize("kind", ["6", "10", "500", "timeout", "malformed", "missing_fields",
                                  "lost_response"])
async def test_send_faults_are_retried_and_deliver_exactly_once(emulator, store, settings, kind):
    emulator.faults.add("messages.send", kind, seconds=0.3)
    async with running(VKAdapter(settings), store, settings) as h:
        emulator.inject_message(from_id=12, text="hi")
        await eventually(lambda: h.count(Outbox, Outbox.state == OutboxState.SENT,
                                         Outbox.channel == "vk"), what="the sent ack")
        [row] = await h.rows(sa.select(Outbox).where(Outbox.channel == "vk"))
        assert row.attempts == 2
    assert emulator.requests["messages.send"] == 2
    assert len(emulator.sent_to(12)) == 1


async def test_sending_the_same_outbound_twice_records_one_message(emulator, settings):
    adapter = VKAdapter(settings)
    first = await adapter.send(outbound("hello"))
    again = await adapter.send(outbound("hello"))
    assert first == again and len(emulator.sent_to(501)) == 1
    wall = {"type": "wall", "owner_id": -GROUP, "post_id": 3, "reply_to_comment": 1}
    first = await adapter.send(outbound("hello", key="reply:9", **wall))
    again = await adapter.send(outbound("hello", key="reply:9", **wall))
    assert first == again and len(emulator.comments_on(-GROUP, 3)) == 1


async def test_long_text_is_split_into_parts_with_their_own_random_ids(emulator, settings):
    adapter = VKAdapter(settings)
    text = ("word " * 1000).strip()
    await adapter.send(outbound(text, key="reply:5"))
    await adapter.send(outbound(text, key="reply:5"))  # a retry of the whole row
    parts = emulator.sent_to(501)
    assert len(parts) == 2 and all(len(p["message"]) <= 4096 for p in parts)
    assert " ".join(p["message"] for p in parts) == text
    assert [p["random_id"] for p in parts] == [random_id("reply:5"), random_id("reply:5#2")]


async def test_user_without_permission_is_a_permanent_error(emulator, settings):
    emulator.block(666)
    with pytest.raises(DeliveryError) as refused:
        await VKAdapter(settings).send(outbound("hi", peer_id=666, type="message"))
    assert refused.value.permanent
    assert "has not allowed messages from the community" in refused.value.reason
    assert emulator.sent == []


@pytest.mark.parametrize(("code", "permanent", "retry_after"), [
    ("6", False, 1.0), ("9", False, 60.0), ("10", False, None), ("901", True, None),
])
async def test_vk_errors_map_to_delivery_errors(emulator, settings, code, permanent,
                                                retry_after):
    emulator.faults.add("messages.send", code)
    with pytest.raises(DeliveryError) as error:
        await VKAdapter(settings).send(outbound("hi"))
    assert (error.value.permanent, error.value.retry_after) == (permanent, retry_after)
    assert f"VK error {code}" in error.value.reason


async def test_blocked_user_is_dead_lettered_after_one_attempt(emulator, store, settings):
    emulator.block(321)
    async with running(VKAdapter(settings), store, settings) as h:
        emulator.inject_message(from_id=321, text="hello")
        await eventually(lambda: h.count(Outbox, Outbox.state == OutboxState.DEAD),
                         what="the dead ack")
        [row] = await h.rows(sa.select(Outbox).where(Outbox.state == OutboxState.DEAD))
        assert row.attempts == 1 and "not allowed messages" in row.last_error


# --- the emulator's accounting and the pure helpers ----------------------------------------


async def test_emulator_counts_more_than_20_calls_a_second_as_violations(emulator):
    url = f"{emulator.url}/method/messages.send"
    async with aiohttp.ClientSession() as session:
        codes = []
        for i in range(25):
            data = {"access_token": TOKEN, "v": "5.199", "peer_id": "5", "message": "x",
                    "random_id": str(i + 1)}
            async with session.post(url, data=data) as response:
                body = await response.json()
                codes.append(body.get("error", {}).get("error_code"))
    assert codes[:20] == [None] * 20 and codes[20:] == [6] * 5
    assert len(emulator.violations) == 5 and len(emulator.sent_to(5)) == 20


async def test_adapter_stays_within_20_calls_a_second(emulator, settings):
    adapter = VKAdapter(settings)
    await asyncio.gather(*(adapter.send(outbound("hi", key=f"k{i}")) for i in range(25)))
    assert len(emulator.sent_to(501)) == 25 and emulator.violations == []


def test_random_id_is_stable_positive_and_31_bit():
    assert random_id("ack:1") == random_id("ack:1") != random_id("ack:2")
    assert all(0 < random_id(f"k{i}") < 2 ** 31 for i in range(1000))
    assert part_key("ack:1", 0) == "ack:1" and part_key("ack:1", 1) == "ack:1#2"


def test_split_text_keeps_words_whole():
    assert split_text("a" * 10 + " " + "b" * 10, 15) == ["a" * 10, "b" * 10]
    assert split_text("x" * 40, 15) == ["x" * 15, "x" * 15, "x" * 10]
    assert split_text("short", 4096) == ["short"]


def test_session_rewrites_only_the_vk_api_hosts():
    session = RedirectingSession("http://127.0.0.1:9/")
    assert session.rewrite("https://api.vk.ru/method/messages.send") == \
        "http://127.0.0.1:9/method/messages.send"
    assert session.rewrite("https://api.vk.com/method/x") == "http://127.0.0.1:9/method/x"
    assert session.rewrite("https://api.vk.ru.evil.example/method/x") == \
        "https://api.vk.ru.evil.example/method/x"
    assert session.rewrite("https://lp.vk.ru/wh1") == "https://lp.vk.ru/wh1"


@sqlite_only
async def test_long_poll_settings_that_lose_messages_are_named_at_start(
        emulator, store, settings, caplog):
    """An old Long Poll API version sends events in a format not read, and an event type
    turned off never arrives: both lose messages silently, so both are said."""
    from datetime import UTC, datetime

    from core.app.health import judge_channel

    emulator.long_poll_version = "5.92"
    emulator.events_off = {"message_edit"}
    adapter = VKAdapter(settings)
    with caplog.at_level(logging.ERROR, logger="bots.vk.adapter"):
        async with running(adapter, store, settings):
            await eventually(lambda: adapter.setup_problem is not None, what="the check")
            report = adapter.health()
    assert "5.92" in report.problem and "5.103 or later" in report.problem
    assert "message_edit" in report.problem and "Event types" in report.problem
    assert any("Long Poll API version is 5.92" in r.message for r in caplog.records)
    _, reasons = judge_channel("vk", report, datetime.now(UTC), 60, datetime.now(UTC))
    assert reasons and reasons[0].startswith("vk: the community's Long Poll API version")


@sqlite_only
async def test_current_long_poll_settings_are_no_problem(emulator, store, settings):
    adapter = VKAdapter(settings)
    async with running(adapter, store, settings):
        await eventually(lambda: emulator.requests["groups.getLongPollSettings"] == 1,
                         what="the settings read")
        await asyncio.sleep(0.2)
        assert adapter.health().problem is None
