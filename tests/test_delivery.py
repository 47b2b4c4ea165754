"""Delivery through the real adapters and emulators: rate limits, faults, dead letters,
idempotency and crash recovery of the outbox."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bots.common.emulator import SlidingWindow
from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import TelegramEmulator
from bots.twitter.adapter import TwitterAdapter
from bots.twitter.emulator import BOT_USER as X_BOT
from bots.twitter.emulator import XEmulator
from bots.vk.adapter import VKAdapter
from bots.vk.emulator import VKEmulator
from core.delivery.contract import STAFF_CHANNEL
from core.delivery.enqueue import Lane, enqueue, outbox_row
from core.domain.records import OutboxKind, OutboxState
from core.staff.cards import notice
from core.store.tables import Outbox, Ticket
from tests.adapter_harness import eventually, running
from tests.conftest import make_settings

STAFF_GROUP = -1007000
X_TOKENS = ("BEARER_TOKEN", "CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
            "ACCESS_TOKEN_SECRET")


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    # The delivery paths do not depend on the database; test_outbox.py covers PostgreSQL.
    return f"sqlite+aiosqlite:///{tmp_path / 'delivery.db'}"


@pytest.fixture(autouse=True)
def tokens(monkeypatch):
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123:delivery")
    monkeypatch.setenv("SAMEDAY_VK_TOKEN", "vk-delivery")
    for name in X_TOKENS:
        monkeypatch.setenv(f"SAMEDAY_X_{name}", "x-delivery")


def telegram_settings(emulator, **outbox):
    return make_settings(
        channels={"telegram": {"enabled": True, "base_url": f"{emulator.url}/bot",
                               "poll_timeout": "1s"}},
        staff={"chat": "telegram", "telegram_chat_id": STAFF_GROUP},
        outbox={"retry_base": "1s", **outbox})


async def queue(store, rows: list[dict]) -> list[int]:
    """Outbox rows as a committed change would leave them (ticket-less notices)."""
    now = time_now()
    async with store.session() as session, session.begin():
        objects = [Outbox(kind=row.pop("kind", OutboxKind.NOTICE), next_attempt_at=now,
                          created_at=now, deadline_at=row.pop("deadline_at", now), **row)
                   for row in rows]
        session.add_all(objects)
        await session.flush()
        return [o.id for o in objects]


def staff_target(chat_id: int, text: str) -> dict:
    """A staff-chat row's target: the message as data, next to a message in that chat."""
    return notice(None, text, reply_to={"chat_id": chat_id}).to_target()


def time_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def states(h) -> dict[int, str]:
    return {row.id: row.state for row in await h.rows(sa.select(Outbox))}


# --- each limit holds under a burst, counted by the emulator ------------------------------


@pytest.mark.parametrize(("limit", "window", "chats", "rows", "min_seconds"), [
    ("per_bot", "5/1s", list(range(1, 13)), 12, 2.0),      # 12 chats, 5 a second overall
    ("per_chat", "1/1s", [42], 3, 2.0),                    # one private chat, 1 a second
    ("per_group", "4/2s", [-500], 9, 4.0),                 # one group, 4 per 2 seconds
])
async def test_telegram_limits_hold_under_a_burst(store, limit, window, chats, rows,
                                                  min_seconds):
    async with TelegramEmulator() as emulator:
        count, seconds = (int(x.rstrip("s")) for x in window.split("/"))
        setattr(emulator, limit, SlidingWindow(count, seconds))
        settings = telegram_settings(emulator, limits={"telegram": {limit: window}})
        targets = [chats[i % len(chats)] for i in range(rows)]
        started = time.monotonic()
        async with running(TelegramAdapter(settings), store, settings) as h:
            await queue(store, [{"channel": "telegram", "target": {"chat_id": chat},
                                 "text": f"burst {i}", "idempotency_key": f"b{i}"}
                                for i, chat in enumerate(targets)])
            h.dispatcher.wake()
            await eventually(lambda: len(emulator.sent) == rows, timeout=30,
                             what="the whole burst")
        assert emulator.violations == []
        assert time.monotonic() - started >= min_seconds  # the limit really paced it


async def test_emulator_counts_violations_when_the_limit_is_not_respected(store):
    """The negative control for the test above: limits looser than the platform's."""
    async with TelegramEmulator(enforce_limits=False) as emulator:
        emulator.per_chat = SlidingWindow(1, 1.0)
        settings = telegram_settings(emulator, limits={"telegram": {"per_chat": "10/1s"}})
        async with running(TelegramAdapter(settings), store, settings) as h:
            await queue(store, [{"channel": "telegram", "target": {"chat_id": 42},
                                 "text": f"m{i}", "idempotency_key": f"v{i}"}
                                for i in range(3)])
            h.dispatcher.wake()
            await eventually(lambda: len(emulator.sent) == 3, what="the burst")
        assert len(emulator.violations) >= 2


async def test_vk_token_limit_holds_under_a_burst(store):
    async with VKEmulator() as emulator:
        emulator.per_token = SlidingWindow(6, 1.0)
        settings = make_settings(
            channels={"vk": {"enabled": True, "group_id": 1, "base_url": emulator.url,
                             "long_poll_wait": "1s"}},
            staff={"chat": "console"}, outbox={"limits": {"vk": {"per_token": "4/1s"}}})
        started = time.monotonic()
        async with running(VKAdapter(settings), store, settings) as h:
            await queue(store, [{"channel": "vk", "target": {"type": "message", "peer_id": 10 + i},
                                 "text": f"vk {i}", "idempotency_key": f"vk{i}"}
                                for i in range(12)])
            h.dispatcher.wake()
            await eventually(lambda: len(emulator.sent) == 12, timeout=30, what="12 sends")
        # 4 sends a second from the dispatcher, plus the receiver's own calls at connect
        # (the long poll server and the community's Long Poll settings).
        assert emulator.violations == []
        assert time.monotonic() - started >= 2.0


async def test_x_post_limit_holds_and_server_headers_are_honoured(store):
    async with XEmulator(post_limit=3, post_window=2.0) as emulator:
        settings = x_settings(emulator, limits={"twitter": {"per_user": "5/2s"}})
        mentions = [emulator.inject_tweet(str(100 + i), f"user{i}", f"help {i}")
                    for i in range(7)]
        async with running(TwitterAdapter(settings, poll_interval=60), store, settings) as h:
            # The config allows 5 per 2 s, X only 3: X's remaining=0 header pauses us.
            await queue(store, [{"channel": "twitter",
                                 "target": {"in_reply_to_tweet_id": m["id"]},
                                 "text": f"answer {i}", "idempotency_key": f"x{i}"}
                                for i, m in enumerate(mentions)])
            h.dispatcher.wake()
            await eventually(lambda: len(emulator.sent) == 7, timeout=30, what="7 replies")
            assert emulator.violations == []


def x_settings(emulator, **outbox):
    return make_settings(
        channels={"twitter": {"enabled": True, "user_id": X_BOT["id"],
                              "base_url": emulator.url}},
        staff={"chat": "console"}, outbox={"retry_base": "1s", **outbox})


# --- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [
    {"kind": "429", "seconds": 2}, {"kind": "500"}, {"kind": "timeout", "seconds": 0.3},
])
async def test_telegram_send_faults_are_retried_and_delivered_once(store, fault):
    async with TelegramEmulator() as emulator:
        settings = telegram_settings(emulator)
        emulator.faults.add("sendMessage", **fault)
        async with running(TelegramAdapter(settings), store, settings) as h:
            [row_id] = await queue(store, [{"channel": "telegram", "target": {"chat_id": 5},
                                            "text": "retry me", "idempotency_key": "r1"}])
            started = time.monotonic()
            h.dispatcher.wake()
            await eventually(lambda: len(emulator.sent) == 1, timeout=30, what="delivery")
            [row] = await h.rows(sa.select(Outbox).where(Outbox.id == row_id))
            await eventually(lambda: _state_is(h, row_id, OutboxState.SENT), what="sent")
        [row] = await h.rows(sa.select(Outbox).where(Outbox.id == row_id))
        assert row.attempts == 2 and row.external_id
        if fault["kind"] == "429":  # retry_after honoured
            assert time.monotonic() - started >= 2


async def _state_is(h, row_id: int, state: str) -> bool:
    [row] = await h.rows(sa.select(Outbox).where(Outbox.id == row_id))
    return row.state == state


async def test_permanent_error_is_not_retried(store):
    async with TelegramEmulator() as emulator:
        settings = telegram_settings(emulator)
        emulator.block(13)
        async with running(TelegramAdapter(settings), store, settings) as h:
            [row_id] = await queue(store, [{"channel": "telegram", "target": {"chat_id": 13},
                                            "kind": OutboxKind.ACK, "text": "hi",
                                            "idempotency_key": "p1"}])
            h.dispatcher.wake()
            await eventually(lambda: _state_is(h, row_id, OutboxState.DEAD), what="dead")
        [row] = await h.rows(sa.select(Outbox).where(Outbox.id == row_id))
        assert row.attempts == 1 and "blocked" in row.last_error
        assert emulator.requests["sendMessage"] == 1


async def test_dead_letter_sends_a_staff_notice_with_ticket_and_reason(store):
    async with TelegramEmulator() as emulator:
        settings = telegram_settings(emulator, max_attempts=2)
        emulator.fail_chat(77, 2)  # the customer's chat; the staff group works
        async with running(TelegramAdapter(settings), store, settings, staff=True) as h:
            await h.inbox.ingest([_inbound()])  # an ack and a staff card
            [ticket] = await h.rows(sa.select(Ticket))
            await eventually(lambda: h.count(Outbox, Outbox.state == OutboxState.DEAD),
                             timeout=30, what="the dead ack")
            await eventually(lambda: any("could not be delivered" in m["text"]
                                         for m in emulator.sent_to(STAFF_GROUP)),
                             timeout=30, what="the staff notice")
        notice = next(m for m in emulator.sent_to(STAFF_GROUP)
                      if "could not be delivered" in m["text"])
        assert f"#{ticket.id}" in notice["text"] and "Internal Server Error" in notice["text"]


def _inbound():
    from tests.helpers import inbound

    return inbound("m1", author="77", at=time_now())


# --- idempotency and crash recovery ---------------------------------------------------


def vk_settings(emulator):
    return make_settings(
        channels={"vk": {"enabled": True, "group_id": 1, "base_url": emulator.url,
                         "long_poll_wait": "1s"}},
        staff={"chat": "console"}, outbox={"retry_base": "1s", "lease": "1s"})


async def test_vk_retry_after_a_lost_response_does_not_double_the_message(store):
    async with VKEmulator() as emulator:
        settings = vk_settings(emulator)
        emulator.faults.add("messages.send", "lost_response")
        async with running(VKAdapter(settings), store, settings) as h:
            [row_id] = await queue(store, [{"channel": "vk",
                                            "target": {"type": "message", "peer_id": 9},
                                            "text": "once", "idempotency_key": "vk-once"}])
            h.dispatcher.wake()
            await eventually(lambda: _state_is(h, row_id, OutboxState.SENT), timeout=30,
                             what="sent after the retry")
        assert emulator.requests["messages.send"] == 2
        assert [m["message"] for m in emulator.sent] == ["once"]


async def abandon(store, row_ids: list[int], seconds_ago: int = 120,
                  recovered: int = 0) -> None:
    """What a crash mid-send leaves: rows in "sending", claimed a while ago."""
    async with store.session() as session, session.begin():
        await session.execute(
            sa.update(Outbox).where(Outbox.id.in_(row_ids))
            .values(state=OutboxState.SENDING, attempts=1, recovered=recovered,
                    claimed_at=time_now() - timedelta(seconds=seconds_ago)))


async def test_vk_rows_abandoned_in_sending_are_sent_again(store):
    async with VKEmulator() as emulator:
        settings = vk_settings(emulator)
        [row_id] = await queue(store, [{"channel": "vk",
                                        "target": {"type": "message", "peer_id": 9},
                                        "text": "recovered", "idempotency_key": "vk-rec"}])
        await abandon(store, [row_id], recovered=3)  # idempotent: however often
        async with running(VKAdapter(settings), store, settings) as h:
            await eventually(lambda: _state_is(h, row_id, OutboxState.SENT), timeout=30,
                             what="the recovered row sent")
        assert [m["message"] for m in emulator.sent] == ["recovered"]


async def test_telegram_abandoned_row_is_retried_once_then_dead_lettered(store):
    async with TelegramEmulator() as emulator:
        settings = telegram_settings(emulator, lease="1s")
        first, second = await queue(store, [
            {"channel": "telegram", "target": {"chat_id": 1}, "text": "first crash",
             "idempotency_key": "t-rec-1"},
            {"channel": "telegram", "target": {"chat_id": 2}, "text": "second crash",
             "idempotency_key": "t-rec-2"}])
        await abandon(store, [first], recovered=0)
        await abandon(store, [second], recovered=1)  # already retried after one crash
        async with running(TelegramAdapter(settings), store, settings) as h:
            await eventually(lambda: _state_is(h, first, OutboxState.SENT), timeout=30,
                             what="the first row retried")
            await eventually(lambda: _state_is(h, second, OutboxState.DEAD), what="dead")
        assert [m["text"] for m in emulator.sent] == ["first crash"]
        [dead] = await h.rows(sa.select(Outbox).where(Outbox.id == second))
        assert "may or may not have been delivered" in dead.last_error
        notices = await h.rows(sa.select(Outbox).where(Outbox.channel == STAFF_CHANNEL))
        assert len(notices) == 1 and "may or may not" in notices[0].text


async def test_x_abandoned_row_is_checked_before_posting_again(store):
    async with XEmulator() as emulator:
        settings = x_settings(emulator, lease="1s")
        mention = emulator.inject_tweet("200", "kate", "where is my order?")
        [posted, unposted] = await queue(store, [
            {"channel": "twitter", "target": {"in_reply_to_tweet_id": mention["id"]},
             "text": "posted before the crash", "idempotency_key": "x-rec-1"},
            {"channel": "twitter", "target": {"in_reply_to_tweet_id": mention["id"]},
             "text": "never posted", "idempotency_key": "x-rec-2"}])
        # The first reply reached X just before the process died.
        await _post_directly(emulator, mention["id"], "posted before the crash")
        await abandon(store, [posted, unposted])
        async with running(TwitterAdapter(settings, poll_interval=60), store, settings) as h:
            await eventually(lambda: _state_is(h, posted, OutboxState.SENT), timeout=30,
                             what="the posted row found")
            await eventually(lambda: _state_is(h, unposted, OutboxState.SENT), timeout=30,
                             what="the other row sent")
        assert [m["text"] for m in emulator.sent] == ["posted before the crash", "never posted"]


async def _post_directly(emulator, reply_to: str, text: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{emulator.url}/2/tweets",
                                json={"text": text, "reply": {"in_reply_to_tweet_id": reply_to}},
                                headers={"Authorization": "Bearer x"}) as response:
            assert response.status == 201


# --- lanes: new cards before staff chatter when the group's limit binds ----------------------


async def test_new_cards_go_before_chatter_when_the_group_limit_binds(store):
    """Answers to staff commands queued first, new tickets' cards after them (with later
    deadlines): under the staff group's limit every card still arrives first."""
    async with TelegramEmulator() as emulator:
        settings = telegram_settings(emulator, limits={"telegram": {"per_group": "2/1s"}})
        now = time_now()
        chatter = [outbox_row(channel=STAFF_CHANNEL, kind=OutboxKind.NOTICE,
                              text=f"chatter {i}", key=f"chat-{i}", now=now, lane=Lane.CHATTER,
                              target=notice(None, f"chatter {i}").to_target())
                   for i in range(3)]
        cards = [outbox_row(channel=STAFF_CHANNEL, kind=OutboxKind.STAFF_CARD,
                            text=f"card {i}", key=f"card-{i}", now=now,
                            deadline=now + timedelta(hours=2),
                            target=notice(None, f"card {i}").to_target())
                 for i in range(3)]
        async with store.session() as session, session.begin():
            await enqueue(session, *chatter, *cards)
        async with running(TelegramAdapter(settings), store, settings, staff=True):
            await eventually(lambda: len(emulator.sent) == 6, timeout=30, what="all six")
        assert [m["text"] for m in emulator.sent] == [
            "card 0", "card 1", "card 2", "chatter 0", "chatter 1", "chatter 2"]
        assert emulator.violations == []


# --- earliest deadline first under a binding limit ----------------------------------------


async def test_earliest_deadline_first_when_the_limit_binds(store):
    async with TelegramEmulator() as emulator:
        settings = telegram_settings(emulator, limits={"telegram": {"per_bot": "2/1s"}})
        now = time_now()
        rows = [  # queued in this order, deadlines out of order
            {"channel": STAFF_CHANNEL, "target": staff_target(-1, "staff notice"),
             "text": "staff notice", "deadline_at": now + timedelta(hours=5),
             "idempotency_key": "e1"},
            {"channel": "telegram", "target": {"chat_id": 3}, "text": "ack C",
             "deadline_at": now + timedelta(seconds=3), "idempotency_key": "e2"},
            {"channel": "telegram", "target": {"chat_id": 1}, "text": "ack A",
             "deadline_at": now + timedelta(seconds=1), "idempotency_key": "e3"},
            {"channel": STAFF_CHANNEL, "target": staff_target(-2, "staff card"),
             "text": "staff card", "deadline_at": now + timedelta(hours=2),
             "idempotency_key": "e4"},
            {"channel": "telegram", "target": {"chat_id": 2}, "text": "ack B",
             "deadline_at": now + timedelta(seconds=2), "idempotency_key": "e5"},
        ]
        await queue(store, rows)
        async with running(TelegramAdapter(settings), store, settings, staff=True):
            await eventually(lambda: len(emulator.sent) == 5, timeout=30, what="all five")
        assert [m["text"] for m in emulator.sent] == [
            "ack A", "ack B", "ack C", "staff card", "staff notice"]
        assert emulator.violations == []
