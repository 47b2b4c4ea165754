"""/block, /unblock, /blocked and the inbox's flood guard: a blocked customer's messages
are stored and counted but get no acknowledgement, card or escalation; a flooding
customer's messages fold into one card update. Through the inbox on a virtual clock
(both databases), the console and the Telegram staff group."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from rich.console import Console

from core.config.load import ConfigError
from core.domain.records import Direction, OutboxKind, OutboxState, TicketStatus
from core.intake.inbox import Inbox
from core.staff.console import run_console
from core.store.tables import Customer, Event, Message, Outbox, Ticket
from tests import test_merge_link as merge_link
from tests.conftest import START, make_settings
from tests.helpers import count, inbound, rows, update
from tests.test_merge_link import STAFF

NUDGE = [{"name": "nudge", "after": "30m", "clock": "wall", "notify": True}]


class World(merge_link.World):
    """The merge tests' world (a desk, an inbox and a sweep), with what blocking reads."""

    async def ticket_of(self, external_id: str) -> int:
        async with self.store.session() as session:
            return await session.scalar(sa.select(Message.ticket_id)
                                        .where(Message.external_id == external_id))

    async def outbox(self, kind: str) -> list[Outbox]:
        return await rows(self.store, sa.select(Outbox).where(Outbox.kind == kind)
                          .order_by(Outbox.id))

    async def events(self, kind: str) -> list[Event]:
        return await rows(self.store, sa.select(Event).where(Event.kind == kind)
                          .order_by(Event.id))

    async def deliver(self, kind: str) -> None:
        """What the dispatcher does once staff rows of this kind are sent."""
        await update(self.store, sa.update(Outbox).where(
            Outbox.kind == kind, Outbox.external_id.is_(None))
            .values(external_id=sa.cast(Outbox.id, sa.String), state=OutboxState.SENT))


# --- /block, /unblock, /blocked through the desk, both databases ------------------------------


async def test_a_blocked_customer_is_kept_and_counted_but_gets_nothing(store, clock):
    w = World(store, clock, escalation=NUDGE)
    first = await w.write("m1", author="u1", handle="@spam")
    await w.deliver(OutboxKind.STAFF_CARD)

    reply = await w.ok(f"/block {first} sends ads all day")
    assert reply.text == (f"@spam blocked: their messages are still kept and counted "
                          f"(/blocked), but get no acknowledgement, card or escalation; their "
                          f"waiting ticket #{first} will not escalate. /unblock {first} "
                          f"undoes it.")
    [customer] = await rows(store, sa.select(Customer))
    assert (customer.blocked_at, customer.blocked_by, customer.blocked_reason) == (
        START, "anna", "sends ads all day")
    assert (await w.ticket(first)).next_escalation_at is None
    [edit] = await w.outbox(OutboxKind.CARD_EDIT)
    assert "customer blocked by anna" in edit.text
    [blocked] = await w.events("blocked")
    assert blocked.data["reason"] == "sends ads all day" and blocked.actor == "anna"

    # They write again, on the same thread and on a new one: stored, in their ticket.
    clock.advance(timedelta(minutes=5))
    assert await w.write("m2", author="u1", text="BUY NOW") == first
    assert await w.write("m3", author="u1", thread="chat:u1:new", text="CHEAP") == first
    assert await count(store, Ticket) == 1 and await count(store, Message) == 3
    assert len(await w.outbox(OutboxKind.ACK)) == 1  # the one before the block
    assert await w.outbox(OutboxKind.NOTICE) == []  # no "writes again", no card
    assert len(await w.outbox(OutboxKind.STAFF_CARD)) == 1
    assert len(await w.events("received")) == 3  # counted in the report
    assert [e.data["external_id"] for e in await w.events("held")] == ["m2", "m3"]
    ticket = await w.ticket(first)
    assert ticket.status == TicketStatus.OPEN and ticket.last_customer_at == START

    # No escalation, however long they wait.
    clock.advance(timedelta(hours=2))
    assert await w.escalator.sweep() == []

    listed = (await w.ok("/blocked")).text
    assert listed == (f"@spam (Telegram) · blocked 24.11 10:00 by anna · 2 messages since · "
                      f"/unblock {first}\n   “sends ads all day”")
    assert "already blocked (blocked 24.11 10:00 by anna)" in await w.refused(
        f"/block {first} again")

    reply = await w.ok(f"/unblock {first}")
    assert reply.text == ("@spam unblocked: new messages are acknowledged and carded again. "
                          f"2 messages came while blocked (in #{first}); /show to read them.")
    [customer] = await rows(store, sa.select(Customer))
    assert customer.blocked_at is customer.blocked_by is customer.blocked_reason is None
    # Its escalations are planned again: the overdue nudge fires now.
    assert [f.rule for f in await w.escalator.sweep()] == ["nudge"]
    assert await w.refused(f"/unblock {first}") == \
        "@spam is not blocked. /blocked lists who is."
    assert (await w.ok("/blocked")).text == "No one is blocked."

    await w.write("m4", author="u1", text="sorry, a real question")
    notices = [n.text for n in await w.outbox(OutboxKind.NOTICE)]
    assert any("writes again" in n and "a real question" in n for n in notices)
    [unblocked] = await w.events("unblocked")
    assert unblocked.data["held"] == 2


async def test_block_reason_is_optional_and_unknown_tickets_are_refused(store, clock):
    w = World(store, clock)
    first = await w.write("m1", author="u1")
    assert await w.refused("/block 999 spam") == "There is no ticket #999."
    assert await w.refused("/unblock 999") == "There is no ticket #999."
    assert "Usage: /block N [reason]" in await w.refused("/block spam")
    await w.ok(f"/block #{first}")
    [customer] = await rows(store, sa.select(Customer))
    assert customer.blocked_reason is None
    assert "“" not in (await w.ok("/blocked")).text
    assert "0 messages since" in (await w.ok("/blocked")).text
    assert "No message came while blocked." in (await w.ok(f"/unblock {first}")).text


async def test_a_blocked_customer_without_a_ticket_gets_a_closed_one(store, clock):
    w = World(store, clock)
    await w.write("m1", author="u1")
    # A linked account that never wrote before, blocked with its person.
    await update(store, sa.insert(Customer).values(
        channel="telegram", external_user_id="u9", tags=[], created_at=START,
        blocked_at=START, blocked_by="anna"))
    clock.advance(timedelta(minutes=1))
    quiet = await w.write("q1", author="u9", text="spam")
    ticket = await w.ticket(quiet)
    assert ticket.status == TicketStatus.CLOSED and ticket.next_escalation_at is None
    assert len(await w.outbox(OutboxKind.ACK)) == len(await w.outbox(OutboxKind.STAFF_CARD)) == 1
    assert "1 message since" in (await w.ok("/blocked")).text
    # Nor is a blocked customer greeted when they open the chat again.
    greeting = make_settings(staff=STAFF, ack={"greeting": {"ru": "Здравствуйте!",
                                                            "en": "Hello!"}})
    await Inbox(store, greeting, clock).ingest([dataclasses.replace(
        inbound("start", author="u9", text="/start"), greeting=True)])
    assert len(await w.outbox(OutboxKind.ACK)) == 1


async def test_block_and_unblock_cover_the_linked_accounts(store, clock):
    w = World(store, clock)
    a = await w.write("t1", channel="telegram", author="501", handle="@kate")
    b = await w.write("v1", channel="vk", author="77", thread="77")
    await w.ok(f"/link {a} {b}")
    reply = await w.ok(f"/block {a} abuse")
    assert reply.text.startswith("@kate (Telegram), 77 (VK) blocked")
    assert f"their waiting tickets #{a}, #{b} will not escalate" in reply.text
    await w.write("v2", channel="vk", author="77", thread="77", text="!!!")
    assert await w.outbox(OutboxKind.NOTICE) == []
    assert "already blocked" in await w.refused(f"/block {b}")
    assert (await w.ok(f"/unblock {b}")).text.startswith("@kate (Telegram), 77 (VK) unblocked")
    assert await rows(store, sa.select(Customer).where(Customer.blocked_at.is_not(None))) == []


# --- the flood guard, through the inbox on a virtual clock -------------------------------------


async def test_a_flood_folds_into_one_card_update(store, clock):
    w = World(store, clock, inbox={"flood": "3/1m"})
    for n in range(1, 7):  # six messages in 25 seconds: three more than the limit
        assert await w.write(f"m{n}", author="u1", text=f"hello {n}") == 1
        clock.advance(timedelta(seconds=5))
    notices = [n.text for n in await w.outbox(OutboxKind.NOTICE)]
    assert [n.splitlines()[1] for n in notices] == ["hello 2", "hello 3"]
    [ack] = await w.outbox(OutboxKind.ACK)
    # The card was not posted yet: the card itself says so, no further message.
    [card] = await w.outbox(OutboxKind.STAFF_CARD)
    assert "⚠ flooding: 3 more messages since 10:00 folded here (/show 1)" in card.text
    assert card.target["card"]["note"].startswith("⚠ flooding: 3 more")
    assert await w.outbox(OutboxKind.CARD_EDIT) == []
    assert await count(store, Message) == 6 and len(await w.events("received")) == 6
    assert [e.data["window_total"] for e in await w.events("folded")] == [1, 2, 3]

    # Posted now: the next folded messages make ONE edit, rewritten while it waits.
    await w.deliver(OutboxKind.STAFF_CARD)
    await w.write("m7", author="u1")
    clock.advance(timedelta(seconds=5))
    await w.write("m8", author="u1")
    [edit] = await w.outbox(OutboxKind.CARD_EDIT)
    assert "⚠ flooding: 5 more messages since 10:00 folded here" in edit.text
    assert edit.target["edit"] == str(card.id)  # the posted card (as deliver() numbered it)
    await w.deliver(OutboxKind.CARD_EDIT)  # sent: the next fold queues a new one
    await w.write("m9", author="u1")
    edits = await w.outbox(OutboxKind.CARD_EDIT)
    assert len(edits) == 2 and "6 more messages" in edits[1].text
    assert len(await w.outbox(OutboxKind.NOTICE)) == 2 and len(await w.outbox(OutboxKind.ACK)) == 1

    # A minute after the window began, the customer is heard again.
    clock.set(START + timedelta(minutes=1, seconds=1))
    await w.write("m10", author="u1", text="a calm question")
    assert "a calm question" in (await w.outbox(OutboxKind.NOTICE))[-1].text
    [customer] = await rows(store, sa.select(Customer))
    assert (customer.flood_since, customer.flood_count) == (clock.now(), 1)


async def test_a_flood_on_new_threads_opens_no_new_tickets(store, clock):
    """X: every mention is a thread of its own, so a flood would be a ticket (and an
    acknowledgement) per post; folded ones join the customer's latest ticket."""
    # (Without the acknowledgements' own quiet window, to see the flood guard's part.)
    w = World(store, clock, inbox={"flood": "2/1m"}, ack={"quiet_window": "0s"})
    await w.inbox.ingest([inbound(f"t{n}", channel="twitter", author="9", thread=f"x:{n}",
                                  at=clock.now(), text=f"@shop post {n}") for n in range(6)])
    assert await count(store, Ticket) == 2
    assert len(await w.outbox(OutboxKind.ACK)) == 2  # not six
    second = await w.ticket_of("t1")
    assert [await w.ticket_of(f"t{n}") for n in range(2, 6)] == [second] * 4
    cards = await w.outbox(OutboxKind.STAFF_CARD)
    assert "⚠ flooding: 4 more messages" in cards[1].text and "flooding" not in cards[0].text
    assert await w.outbox(OutboxKind.NOTICE) == []
    # The answer goes to their latest post.
    assert (await w.ticket(second)).reply_target == {"chat_id": "9"}


async def test_a_folded_message_still_starts_a_new_waiting_cycle(store, clock):
    w = World(store, clock, inbox={"flood": "1/1m"})
    first = await w.write("m1", author="u1")
    await w.ok(f"/reply {first} done")
    clock.advance(timedelta(seconds=20))
    await w.write("m2", author="u1", text="not done!")  # folded: no notice, but it waits
    ticket = await w.ticket(first)
    assert ticket.status == TicketStatus.OPEN and ticket.cycle == 2
    assert await w.outbox(OutboxKind.NOTICE) == []


async def test_flood_off_and_bad_settings(store, clock):
    w = World(store, clock, inbox={"flood": "off"})
    await w.write("m0", author="u1")
    await w.inbox.ingest([inbound(f"m{n}", author="u1", at=clock.now()) for n in range(1, 15)])
    assert len(await w.outbox(OutboxKind.NOTICE)) == 14
    assert await w.events("folded") == []
    assert make_settings().inbox.flood is not None  # on by default
    for bad, why in (("0/1m", "positive"), ("5/2h", "at most 1h"), ("lots", "is not a rate"),
                     (5, "is not a rate")):
        with pytest.raises(ConfigError) as error:
            make_settings(inbox={"flood": bad})
        assert "inbox.flood" in str(error.value) and why in str(error.value)


# --- end to end: the console ------------------------------------------------------------------


def captured() -> Console:
    return Console(file=io.StringIO(), width=120, soft_wrap=True)


async def wait_for(console: Console, text: str, timeout: float = 10) -> None:
    async def poll() -> None:
        while text not in console.file.getvalue():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


async def test_console_block_blocked_unblock(store, clock):
    w = World(store, clock)
    await w.write("m1", author="u1", handle="@spam", text="first question")
    console = captured()

    async def session() -> AsyncIterator[str]:
        await wait_for(console, "new ticket")
        yield "/block 1 ads"
        await wait_for(console, "customer blocked by anna")
        await w.write("m2", author="u1", text="BUY NOW")
        yield "/blocked"
        yield "block 1"
        yield "/show 1"
        yield "/unblock 1"
        yield "unblock 1"
        await w.write("m3", author="u1", text="a real question")
        await wait_for(console, "writes again")

    await run_console(w.desk, w.desk.actor_named("anna"), session(), console, idle_poll=0.05)
    text = console.file.getvalue()
    assert "@spam blocked: their messages are still kept and counted" in text
    assert "#1 updated: 🆕 new (customer blocked by anna)" in text
    assert "@spam (Telegram) · blocked 24.11 10:00 by anna · 1 message since · /unblock 1" \
        in text and "“ads”" in text
    assert "@spam is already blocked" in text
    assert "BUY NOW" in text.split("/show 1")[1]  # kept, and shown by /show
    assert text.count("BUY NOW") == 1  # never as a follow-up
    assert "1 message came while blocked (in #1)" in text
    assert "@spam is not blocked. /blocked lists who is." in text
    assert "#1 @spam writes again:" in text and "a real question" in text


async def test_console_shows_a_flood_as_one_updated_card(store, clock):
    w = World(store, clock, inbox={"flood": "3/1m"})
    await w.write("m1", author="u1", handle="@loud", text="first")
    console = captured()

    async def session() -> AsyncIterator[str]:
        await wait_for(console, "new ticket")
        for n in range(2, 9):
            clock.advance(timedelta(seconds=5))
            await w.write(f"m{n}", author="u1", text=f"again {n}")
        await wait_for(console, "5 more messages")
        yield "/show 1"

    await run_console(w.desk, w.desk.actor_named("anna"), session(), console, idle_poll=0.05)
    text = console.file.getvalue()
    assert text.count("writes again") == 2  # the 2nd and 3rd; the rest folded
    assert "#1 updated: 🆕 new (⚠ flooding: " in text
    assert "5 more messages since 10:00 folded here (/show 1))" in text
    shown = text.split("sameday(anna)> /show 1")[1]
    assert all(f"again {n}" in shown for n in range(2, 9))
    # At most one card update waited at a time: fewer edits than folded messages.
    edits = await w.outbox(OutboxKind.CARD_EDIT)
    assert 1 <= len(edits) <= 5 and all(e.state == OutboxState.SENT for e in edits)


# --- end to end: the Telegram staff group -----------------------------------------------------


async def test_telegram_staff_group_blocks_and_unblocks_a_customer(sqlite_store, monkeypatch):
    from bots.telegram.adapter import TelegramAdapter
    from bots.telegram.emulator import TelegramEmulator
    from tests.adapter_harness import eventually, running_all
    from tests.test_staff_telegram import ANNA as ANNA_ID
    from tests.test_staff_telegram import STAFF as STAFF_CHAT
    from tests.test_staff_telegram import card_of, settings_for, staff_says

    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123:staff")
    async with TelegramEmulator() as telegram:
        settings = settings_for(telegram)
        async with running_all([TelegramAdapter(settings)], sqlite_store, settings) as h:
            telegram.inject_message(chat_id=601, user_id=601, text="cheap followers",
                                    username="spammer")
            await card_of(telegram, 1, h)
            await eventually(lambda: len(telegram.sent_to(601)) == 1, what="the ack")

            def said(text: str) -> bool:
                return any(text in m["text"] for m in telegram.sent_to(STAFF_CHAT))

            staff_says(telegram, ANNA_ID, "/block 1 spam bot")
            await eventually(lambda: said("blocked: their messages are still kept"),
                             what="the block")
            telegram.inject_message(chat_id=601, user_id=601, text="more followers")
            async def stored() -> bool:
                return await h.count(Message, Message.direction == Direction.IN) == 2
            await eventually(stored, what="the blocked customer's message stored")
            staff_says(telegram, ANNA_ID, "/blocked")
            await eventually(lambda: said("1 message since"), what="the /blocked list")
            staff_says(telegram, ANNA_ID, "/unblock 1")
            await eventually(lambda: said("1 message came while blocked"), what="the unblock")
            staff_says(telegram, ANNA_ID, "/unblock 1")
            await eventually(lambda: said("is not blocked"), what="the second unblock")
            telegram.inject_message(chat_id=601, user_id=601, text="a real question")
            await eventually(lambda: said("a real question"), what="the follow-up")
            assert not said("more followers")  # never shown while blocked
            assert len(telegram.sent_to(601)) == 1  # one acknowledgement, before the block
