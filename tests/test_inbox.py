"""Ingestion: dedupe, threading, reopening, cursors, and idempotence of a whole batch."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import sqlalchemy as sa

from core.delivery.contract import STAFF_CHANNEL, Cursor
from core.domain.records import OutboxKind, TicketStatus
from core.intake.inbox import Inbox
from core.store.tables import Customer, Event, Message, Outbox, Ticket
from tests.conftest import make_settings
from tests.helpers import count, inbound, rows, update

TABLES = (Customer, Ticket, Message, Outbox, Event)


async def snapshot(store) -> dict[str, int]:
    return {table.__name__: await count(store, table) for table in TABLES}


async def test_new_message_opens_ticket_with_ack_and_staff_card(inbox, store):
    result = await inbox.ingest([inbound("m1", author="u1", handle="@kate")])
    assert result.received == 1 and len(result.opened) == 1
    [ticket] = await rows(store, sa.select(Ticket))
    assert ticket.status == TicketStatus.OPEN and ticket.due_at > ticket.opened_at
    assert ticket.due_at.tzinfo is not None  # stored and read back as aware UTC
    outbox = await rows(store, sa.select(Outbox).order_by(Outbox.id))
    assert [(o.channel, o.kind) for o in outbox] == [
        ("telegram", OutboxKind.ACK), (STAFF_CHANNEL, OutboxKind.STAFF_CARD)]
    assert outbox[0].target == {"chat_id": "u1"}  # the answer goes back to the origin chat
    assert f"#{ticket.id}" in outbox[0].text and "hello" in outbox[1].text
    [customer] = await rows(store, sa.select(Customer))
    assert customer.handle == "@kate"


async def test_same_batch_twice_changes_nothing(inbox, store):
    batch = [inbound(f"m{i}", author=f"u{i % 3}") for i in range(10)]
    first = await inbox.ingest(batch)
    before = await snapshot(store)
    second = await inbox.ingest(batch)
    assert first.received == 10 and second.received == 0 and second.duplicates == 10
    assert await snapshot(store) == before


async def test_duplicates_inside_one_batch_are_stored_once(inbox, store):
    result = await inbox.ingest([inbound("m1"), inbound("m1"), inbound("m2")])
    assert (result.received, result.duplicates) == (2, 1)
    assert await count(store, Message) == 2


async def test_same_external_id_on_two_channels_is_two_messages(inbox, store):
    await inbox.ingest([inbound("42", channel="telegram"), inbound("42", channel="vk")])
    assert await count(store, Message) == 2 and await count(store, Ticket) == 2


async def test_one_ticket_per_thread_and_second_message_appends(inbox, store):
    first = await inbox.ingest([inbound("m1", author="u1"), inbound("m2", author="u2")])
    second = await inbox.ingest([inbound("m3", author="u1", text="any news?")])
    assert len(first.opened) == 2 and second.opened == [] and len(second.appended) == 1
    tickets = await rows(store, sa.select(Ticket).order_by(Ticket.id))
    assert len(tickets) == 2
    messages = await rows(store, sa.select(Message).where(Message.ticket_id == tickets[0].id))
    assert [m.external_id for m in messages] == ["m1", "m3"]
    # The follow-up is shown to staff, but the customer is not acknowledged twice.
    kinds = await rows(store, sa.select(Outbox.kind).where(Outbox.ticket_id == tickets[0].id))
    assert sorted(kinds) == ["ack", "notice", "staff_card"]


async def test_different_threads_of_one_customer_are_different_tickets(inbox, store):
    await inbox.ingest([inbound("c1", channel="vk", author="7", thread="wall:1_10:7"),
                        inbound("c2", channel="vk", author="7", thread="wall:1_11:7")])
    assert await count(store, Ticket) == 2
    assert await count(store, Customer) == 1


async def test_message_after_answer_starts_a_new_cycle(inbox, store, clock):
    await inbox.ingest([inbound("m1")])
    [ticket] = await rows(store, sa.select(Ticket))
    await update(store, sa.update(Ticket).values(status=TicketStatus.ANSWERED))
    clock.advance(timedelta(hours=3))
    await inbox.ingest([inbound("m2", at=clock.now())])
    [ticket] = await rows(store, sa.select(Ticket))
    assert ticket.status == TicketStatus.OPEN and ticket.cycle == 2
    assert ticket.due_at > clock.now()
    assert await count(store, Ticket) == 1


async def test_message_soon_after_close_reopens(inbox, store, clock):
    await inbox.ingest([inbound("m1")])
    await update(store, sa.update(Ticket).values(status=TicketStatus.CLOSED,
                                                 closed_at=clock.now()))
    clock.advance(timedelta(hours=2))
    result = await inbox.ingest([inbound("m2", at=clock.now())])
    [ticket] = await rows(store, sa.select(Ticket))
    assert result.reopened == [ticket.id] and result.opened == []
    assert ticket.status == TicketStatus.OPEN and ticket.closed_at is None and ticket.cycle == 2
    assert await count(store, sa.select(Event).where(Event.kind == "reopened").subquery()) == 1


async def test_message_long_after_close_opens_new_ticket(inbox, store, clock):
    await inbox.ingest([inbound("m1")])
    await update(store, sa.update(Ticket).values(status=TicketStatus.CLOSED,
                                                 closed_at=clock.now()))
    clock.advance(timedelta(days=2))
    result = await inbox.ingest([inbound("m2", at=clock.now())])
    assert len(result.opened) == 1 and result.reopened == []
    statuses = await rows(store, sa.select(Ticket.status).order_by(Ticket.id))
    assert statuses == [TicketStatus.CLOSED, TicketStatus.OPEN]


async def test_reopen_window_zero_never_reopens(store, clock):
    inbox = Inbox(store, make_settings(inbox={"reopen_within": "0s"}), clock)
    await inbox.ingest([inbound("m1")])
    await update(store, sa.update(Ticket).values(status=TicketStatus.CLOSED,
                                                 closed_at=clock.now()))
    clock.advance(timedelta(seconds=1))
    result = await inbox.ingest([inbound("m2", at=clock.now())])
    assert len(result.opened) == 1 and await count(store, Ticket) == 2


async def test_cursor_is_saved_with_the_batch(inbox):
    await inbox.ingest([inbound("m1")], Cursor("telegram", "offset", "101"))
    assert await inbox.load_cursor("telegram", "offset") == "101"
    await inbox.ingest([], Cursor("telegram", "offset", "102"))
    assert await inbox.load_cursor("telegram", "offset") == "102"
    assert await inbox.load_cursor("vk", "ts") is None


async def test_configured_customer_tags_are_applied(store, clock):
    inbox = Inbox(store, make_settings(customers={"tags": {"twitter:99": ["vip"]}}), clock)
    await inbox.ingest([inbound("t1", channel="twitter", author="99")])
    [customer] = await rows(store, sa.select(Customer))
    assert customer.tags == ["vip"]


async def test_cancelled_caller_does_not_interrupt_the_commit(inbox, store):
    batch = [inbound(f"m{i}", author=f"u{i}") for i in range(50)]
    caller = asyncio.create_task(inbox.ingest(batch))
    await asyncio.sleep(0.01)  # the transaction is under way
    caller.cancel()
    await inbox.drain()
    # Either nothing (cancelled before it began) or everything: never half a batch.
    assert await count(store, Message) in (0, 50)
    assert await count(store, Message) == await count(store, Ticket)


async def test_wakes_the_dispatcher_only_when_something_was_queued(store, settings, clock):
    woken = []
    inbox = Inbox(store, settings, clock, on_outbox=lambda: woken.append(1))
    await inbox.ingest([inbound("m1")])
    await inbox.ingest([inbound("m1")])
    assert woken == [1]


async def test_nul_characters_do_not_poison_a_batch(inbox, store):
    """PostgreSQL refuses NUL in text; such a message must still be stored, not retried
    forever."""
    result = await inbox.ingest([inbound("m1", text="bad\x00byte", handle="@x\x00y")])
    assert result.received == 1
    [message] = await rows(store, sa.select(Message))
    assert message.text == "badbyte"


async def test_lone_surrogates_and_non_strings_do_not_poison_a_batch(inbox, store):
    """Issue 12: "\\ud800" is a legal JSON escape that no database driver can encode, and
    a platform may send a number where a name belongs; the batch must still be stored."""
    bad = dataclasses.replace(inbound("m1", text="где \ud800 мой заказ? \ud83d\ude00",
                                      handle="@k\udfffate"), author_name=42)
    fine = inbound("m2", author="u2", text="a normal one")
    result = await inbox.ingest([bad, fine])
    assert result.received == 2
    messages = {m.external_id: m for m in await rows(store, sa.select(Message))}
    assert messages["m1"].text == "где \ufffd мой заказ? 😀"
    assert messages["m2"].text == "a normal one"
    [customer] = await rows(store, sa.select(Customer).where(Customer.external_user_id == "u1"))
    assert (customer.handle, customer.name) == ("@k\ufffdate", "42")
