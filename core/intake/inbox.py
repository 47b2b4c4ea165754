"""Ingest: turn a batch of Inbound messages into stored tickets, in ONE transaction.

Per batch: skip what is already stored (unique ``(channel, external_id)``), upsert the
customers, append each message to the open ticket of its thread or open a new one, and
write the audit events and the outbox rows (acknowledgement, staff card or follow-up
notice). An adapter advances its platform cursor only after ``ingest`` returns, so a
crash anywhere means the batch is fetched again and deduplicated: nothing lost, nothing
doubled.

Threading rule (documented in docs/inbox.md): a message joins the ticket of the same
channel, thread and customer that is not closed. If that ticket was closed less than
``inbox.reopen_within`` ago it is reopened; otherwise a new ticket is opened. A ticket
closed by /merge continues in the one it was merged into. A blocked customer's messages
are stored quietly (core.intake.held); a flooding customer's fold into one card update
(core.intake.flood).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.config.settings import Settings
from core.delivery.contract import STAFF_CHANNEL, Cursor
from core.delivery.enqueue import enqueue, outbox_row
from core.domain import lifecycle
from core.domain.payload import pack
from core.domain.policy import Policy
from core.domain.records import (
    Direction,
    Inbound,
    OutboxKind,
    Priority,
    TicketStatus,
    Unreadable,
)
from core.intake import quarantine
from core.intake.edits import apply_edits
from core.intake.flood import FloodGuard
from core.intake.held import hold_blocked
from core.intake.mentions import keep_mentions
from core.intake.quarantine import describe, unstorable
from core.intake.storable import storable
from core.intake.survey import take_answers
from core.staff.blocking import is_blocked
from core.staff.board import customer_name, latest_customer_texts
from core.staff.cards import Card, card_message, follow_up, make_card, media_message
from core.staff.merging import merge_target
from core.staff.survey import cancel_waiting
from core.store.bulk import insert_returning, insert_rows, pairs_in
from core.store.engine import Store, is_transient
from core.store.tables import Cursor as CursorRow
from core.store.tables import Customer, Event, Message, Outbox, Ticket
from core.store.writes import RECEIVE

log = logging.getLogger(__name__)

TICKETS, CUSTOMERS = Ticket.__table__, Customer.__table__


@dataclass
class IngestResult:
    received: int = 0  # new messages stored
    duplicates: int = 0  # already stored (or repeated inside the batch)
    opened: list[int] = field(default_factory=list)  # new ticket ids
    reopened: list[int] = field(default_factory=list)
    appended: list[int] = field(default_factory=list)  # ticket ids that got a message
    quarantined: list[int] = field(default_factory=list)  # new quarantine row ids
    edited: list[int] = field(default_factory=list)  # tickets whose message was edited
    greeted: int = 0  # chat openings answered with the greeting
    noted: int = 0  # new non-ticket mentions stored (Inbound.note: retweets, quotes)

    def merge(self, other: IngestResult) -> None:
        self.received += other.received
        self.duplicates += other.duplicates
        self.greeted += other.greeted
        self.noted += other.noted
        for name in ("opened", "reopened", "appended", "quarantined", "edited"):
            getattr(self, name).extend(getattr(other, name))


class Inbox:
    def __init__(self, store: Store, settings: Settings, clock: Clock, *,
                 on_outbox: Callable[[], None] | None = None):
        self.store = store
        self.clock = clock
        self.reconfigure(settings)
        self.on_outbox = on_outbox or (lambda: None)
        self._inflight: set[asyncio.Future] = set()
        # Payloads adapters left out, by (channel, kind), since this process started.
        self.ignored: Counter[tuple[str, str]] = Counter()

    def ignore(self, channel: str, kind: str) -> None:
        self.ignored[(channel, kind)] += 1

    def reconfigure(self, settings: Settings) -> None:
        """Use a new config (SIGHUP): new calendar, promise rules and texts."""
        self.settings = settings
        self.policy = Policy(settings)

    async def ingest(self, batch: Sequence[Inbound], cursor: Cursor | None = None,
                     unreadable: Sequence[Unreadable] = ()) -> IngestResult:
        """Store a batch, the payloads its adapter could not read (quarantined) and the
        adapter's cursor atomically; safe to repeat. Raises only while the database is
        unavailable: a message that cannot be stored is quarantined, not retried.

        The transaction runs in its own task and is shielded: a daemon shutting down may
        cancel the adapter that called us, but never a commit half-way (see ``drain``).
        """
        task = asyncio.ensure_future(self._ingest_reporting(batch, cursor, unreadable))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return await asyncio.shield(task)

    async def ingest_or_raise(self, batch: Sequence[Inbound]) -> IngestResult:
        """Store a batch or raise, quarantining nothing (``sameday quarantine retry``
        stores a payload again this way)."""
        result = await self._ingest_with_retry(batch, None, ())
        if result.received:
            self.on_outbox()
        return result

    async def drain(self) -> None:
        """Wait for every transaction in flight (used at shutdown)."""
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def load_cursor(self, channel: str, key: str) -> str | None:
        async with self.store.session() as session:
            row = await session.get(CursorRow, (channel, key))
            return row.value if row else None

    async def _ingest_reporting(self, batch: Sequence[Inbound], cursor: Cursor | None,
                                unreadable: Sequence[Unreadable]) -> IngestResult:
        """Ingest, telling the store's write health how the channel's intake does."""
        channels = {m.channel for m in batch} | {u.channel for u in unreadable} | (
            {cursor.channel} if cursor else set())
        try:
            result = await self._ingest_or_quarantine(batch, cursor, unreadable)
        except Exception as error:
            for channel in channels:
                self.store.writes.failed(channel, RECEIVE, error)
            raise
        for channel in channels:
            self.store.writes.succeeded(channel, RECEIVE)
        if result.received or result.quarantined or result.edited or result.greeted:
            self.on_outbox()
        return result

    async def _ingest_or_quarantine(self, batch: Sequence[Inbound], cursor: Cursor | None,
                                    unreadable: Sequence[Unreadable]) -> IngestResult:
        try:
            return await self._ingest_with_retry(batch, cursor, unreadable)
        except Exception as error:
            if is_transient(error) or not batch:
                raise
            log.error("ingest: a batch of %d could not be stored (%s); storing its messages "
                      "one by one", len(batch), describe(error))
        # One poison message must not hold back the others, nor the channel: each is
        # stored alone, and what still fails is quarantined with the cursor.
        result, rejected = IngestResult(), list(unreadable)
        for inbound in batch:
            try:
                result.merge(await self._ingest_with_retry([inbound], None, ()))
            except Exception as error:
                if is_transient(error):
                    raise
                log.error("ingest: %s message %s quarantined: %s", inbound.channel,
                          inbound.external_id, describe(error))
                rejected.append(unstorable(inbound, error))
        result.merge(await self._ingest_with_retry([], cursor, rejected))
        return result

    async def _ingest_with_retry(self, batch: Sequence[Inbound], cursor: Cursor | None,
                                 unreadable: Sequence[Unreadable]) -> IngestResult:
        async def store_batch(session: AsyncSession) -> IngestResult:
            result = await self._ingest(session, batch) if batch else IngestResult()
            if unreadable:
                result.quarantined = await quarantine.hold(session, unreadable,
                                                           self.clock.now())
            if cursor is not None:
                await _save_cursor(session, cursor)
            return result

        for attempt in range(3):
            try:
                return await self.store.unit(store_batch)
            except IntegrityError:
                # Another writer stored some of these rows first (replicas, a racing
                # retry): run again; the second pass deduplicates against them.
                if attempt == 2:
                    raise
                log.info("ingest raced another writer; retrying the batch")
        raise AssertionError("unreachable")

    async def _ingest(self, session: AsyncSession, batch: Sequence[Inbound]) -> IngestResult:
        """New messages first, then non-ticket mentions, then edits (an edit may follow
        its original in a batch); an edit of a message never stored is a new message. A
        greeting opens nothing; a noted mention is stored apart, opening nothing."""
        greeted = [m for m in batch if m.greeting and await self._greet(session, m)]
        batch = [m for m in batch if not m.greeting]
        result = await self._ingest_new(
            session, [m for m in batch if not m.edited and not m.note])
        result.greeted = len(greeted)
        noted, repeated, edits_of_messages = await keep_mentions(
            session, [storable(m) for m in batch if m.note], self.clock.now())
        result.noted, result.duplicates = noted, result.duplicates + repeated
        edits = [storable(m) for m in batch if m.edited and not m.note] + edits_of_messages
        if edits:
            edited, unknown = await apply_edits(session, edits, self.clock.now())
            if unknown:
                result.merge(await self._ingest_new(session, unknown))
            result.edited += edited
        return result

    async def _greet(self, session: AsyncSession, opening: Inbound) -> bool:
        """Answer a chat's opening ("/start") with the configured greeting, once."""
        key = f"greet:{opening.channel}:{opening.external_id}"
        text = self.settings.ack.greeting.get(self.policy.language(opening))
        if not text or await session.scalar(
                sa.select(Outbox.id).where(Outbox.idempotency_key == key)):
            return False  # no greeting configured, or delivered again after a crash
        customer = await session.scalar(sa.select(Customer.id).where(
            Customer.channel == opening.channel,
            Customer.external_user_id == opening.author_id))
        if customer is not None and await is_blocked(session, customer):
            return False  # /block: nothing is sent to them
        await enqueue(session, outbox_row(
            channel=opening.channel, kind=OutboxKind.ACK, text=text,
            target=dict(opening.reply_target), key=key, now=self.clock.now()))
        return True

    async def _ingest_new(self, session: AsyncSession, batch: Sequence[Inbound]
                          ) -> IngestResult:
        now = self.clock.now()
        result = IngestResult()
        fresh = [storable(m) for m in await self._new_messages(session, batch)]
        result.duplicates = len(batch) - len(fresh)
        if not fresh:
            return result
        customers = await self._upsert_customers(session, fresh, now)
        tickets: dict[tuple, Ticket | NewTicket] = await self._threadable_tickets(
            session, fresh, customers, now)
        # Blocked customers' messages are stored quietly (core.intake.held).
        fresh, held = await hold_blocked(session, fresh, customers, tickets, now)
        result.received = held
        # Answers to the satisfaction survey (a typed "5", its comment) open nothing.
        fresh, answers = await take_answers(session, self.settings, self.policy, fresh,
                                             customers, now)
        result.received += answers
        if not fresh:
            return result
        flood = FloodGuard(self.settings.inbox.flood)

        placed: list[tuple[Inbound, CustomerView, Ticket | NewTicket, datetime]] = []
        waiting_again: list[int] = []
        new_tickets: list[tuple[Inbound, CustomerView, NewTicket]] = []
        events: list[dict] = []
        # The customer's messages of each ticket so far: what promise and escalation
        # rules match when a ticket starts waiting again.
        texts = await _customer_texts(session, [
            t for t in tickets.values() if t.status in (TicketStatus.ANSWERED,
                                                        TicketStatus.CLOSED)])
        for inbound in fresh:
            customer = customers[(inbound.channel, inbound.author_id)]
            arrival = min(inbound.sent_at, now)  # a platform clock ahead of ours is not news
            key = (inbound.channel, inbound.thread_key, customer.id)
            ticket = tickets.get(key)
            folded = flood.count(customer, arrival)
            if folded and ticket is None:  # a flood opens no ticket: it joins the latest
                ticket = await flood.window_ticket(session, customer)
                if ticket is not None and id(ticket) not in texts:
                    texts.update(await _customer_texts(session, [ticket]))
                folded = ticket is not None
            if ticket is None:
                planned = lifecycle.promise(self.policy, inbound.channel, [inbound.text],
                                            customer.tags, arrival)
                ticket = NewTicket(channel=inbound.channel, thread_key=inbound.thread_key,
                                   customer_id=customer.id, opened_at=arrival,
                                   due_at=planned.due_at, language=self.policy.language(inbound),
                                   reply_target=dict(inbound.reply_target),
                                   next_escalation_at=planned.first_escalation)
                tickets[key] = ticket
                texts[id(ticket)] = [inbound.text]
                new_tickets.append((inbound, customer, ticket))
            else:
                ticket.last_customer_at = max(ticket.last_customer_at, arrival)
                if ticket.channel == inbound.channel:  # (a merge may join two channels)
                    ticket.reply_target = dict(inbound.reply_target)  # answer the latest
                texts.setdefault(id(ticket), []).append(inbound.text)
                # A ticket opened by this batch was planned with its first text: no change.
                changes = [] if isinstance(ticket, NewTicket) else lifecycle.customer_wrote(
                    self.policy, ticket, texts[id(ticket)], customer.tags, arrival, now)
                for change in changes:
                    events.append(_event(ticket, change.kind, now, change.data,
                                         actor=inbound.author_id))
                    if change.kind == "reopened":
                        result.reopened.append(ticket.id)
                if changes:  # waiting again: a survey not sent yet is withdrawn
                    waiting_again.append(ticket.id)
            flood.placed(inbound, customer, ticket, folded)
            placed.append((inbound, customer, ticket, arrival))
        acked_customers: set[int] = set()
        for inbound, customer, ticket in new_tickets:  # in order: a burst gets one
            if self.policy.acknowledges(inbound, last_acked_at=customer.last_acked_at,
                                        now=now):
                ticket.acked_at = customer.last_acked_at = now
                acked_customers.add(customer.id)
        await _insert_tickets(session, [ticket for _, _, ticket in new_tickets])
        await cancel_waiting(session, waiting_again, now, "the customer wrote again")

        outbox: list[dict] = []
        for inbound, customer, ticket in new_tickets:
            events.append(_event(ticket, "opened", now, {"due_at": ticket.due_at.isoformat()}))
            if ticket.acked_at is not None:
                ack = self.policy.acknowledgement(
                    inbound, ticket_id=ticket.id, due=ticket.due_at, name=customer.name,
                    handle=customer.handle, language=ticket.language, now=now)
                outbox.append(outbox_row(
                    channel=inbound.channel, kind=OutboxKind.ACK, ticket_id=ticket.id,
                    text=ack, target=dict(inbound.reply_target), key=f"ack:{ticket.id}",
                    now=now))
            card = card_message(self._staff_card(ticket, customer, inbound, now),
                                TicketStatus.OPEN)
            outbox.append(outbox_row(
                channel=STAFF_CHANNEL, kind=OutboxKind.STAFF_CARD, ticket_id=ticket.id,
                text=card.text(), target=card.to_target(), key=f"card:{ticket.id}", now=now,
                deadline=ticket.due_at))
        if acked_customers:
            await session.execute(sa.update(CUSTOMERS).where(CUSTOMERS.c.id.in_(
                acked_customers)).values(last_acked_at=now))
        result.opened = [ticket.id for _, _, ticket in new_tickets]

        messages: list[dict] = []
        for inbound, customer, ticket, arrival in placed:
            messages.append({
                "ticket_id": ticket.id, "channel": inbound.channel, "direction": Direction.IN,
                "author": inbound.author_handle or inbound.author_id,
                "external_id": inbound.external_id, "text": inbound.text, "created_at": arrival,
                "attachments": [a.to_json() for a in inbound.attachments] or None,
                "raw": pack(inbound.raw),
            })
            events.append(_event(ticket, "received", now, {"external_id": inbound.external_id},
                                 actor=inbound.author_id))
            if flood.folded(inbound):
                continue  # shown on the card instead (core.intake.flood)
            if not isinstance(ticket, NewTicket):
                notice = follow_up(ticket.id, customer_name(customer), inbound.text,
                                   inbound.attachments)
                outbox.append(outbox_row(
                    channel=STAFF_CHANNEL, kind=OutboxKind.NOTICE, ticket_id=ticket.id,
                    text=notice.text(), target=notice.to_target(),
                    key=f"msg:{inbound.channel}:{inbound.external_id}", now=now,
                    deadline=ticket.due_at))
            if inbound.attachments:  # shown as media in the staff chat, after the text
                media = media_message(ticket.id, customer_name(customer), inbound.channel,
                                      inbound.reply_target, inbound.attachments)
                outbox.append(outbox_row(
                    channel=STAFF_CHANNEL, kind=OutboxKind.NOTICE, ticket_id=ticket.id,
                    text=media.text(), target=media.to_target(),
                    key=f"media:{inbound.channel}:{inbound.external_id}", now=now,
                    deadline=ticket.due_at))
        # Core inserts of plain rows: one executemany each, no ORM bookkeeping.
        await insert_rows(session, Message.__table__, messages)
        await insert_rows(session, Event.__table__, events)
        await enqueue(session, *outbox)
        await flood.settle(session, self.policy, now)
        result.received += len(fresh)
        result.appended = sorted({row["ticket_id"] for row in messages} - set(result.opened))
        return result

    def _staff_card(self, ticket: NewTicket, customer: CustomerView, inbound: Inbound,
                    now: datetime) -> Card:
        return make_card(ticket_id=ticket.id, channel=ticket.channel,
                         customer=customer_name(customer),
                         promise=self.policy.promise_for_staff(ticket.due_at, now),
                         opened_at=ticket.opened_at, zone=self.policy.zone,
                         status=TicketStatus.OPEN, assignee=None, snoozed_until=None,
                         priority=Priority.NORMAL, first_text=inbound.text,
                         attachments=inbound.attachments)

    async def _new_messages(self, session: AsyncSession,
                            batch: Sequence[Inbound]) -> list[Inbound]:
        """The messages of the batch not stored yet, each once, in batch order."""
        stored: set[tuple[str, str]] = set(map(tuple, await session.execute(
            sa.select(Message.channel, Message.external_id)
            .where(pairs_in(Message.channel, Message.external_id,
                            [(m.channel, m.external_id) for m in batch])))))
        fresh = []
        for inbound in batch:
            key = (inbound.channel, inbound.external_id)
            if key not in stored:
                stored.add(key)
                fresh.append(inbound)
        return fresh

    async def _upsert_customers(self, session: AsyncSession, fresh: list[Inbound],
                                now: datetime) -> dict[tuple[str, str], CustomerView]:
        rows = await session.execute(
            sa.select(Customer.id, Customer.channel, Customer.external_user_id,
                      Customer.handle, Customer.name, Customer.tags,
                      Customer.last_acked_at, Customer.flood_since, Customer.flood_count,
                      Customer.blocked_at)
            .where(pairs_in(Customer.channel, Customer.external_user_id,
                            [(m.channel, m.author_id) for m in fresh])))
        customers: dict[tuple[str, str], CustomerView] = {
            (row.channel, row.external_user_id): CustomerView(*row) for row in rows}
        configured_tags = self.settings.customers.tags
        new: dict[tuple[str, str], CustomerView] = {}
        changed: dict[int, CustomerView] = {}
        for inbound in fresh:
            key = (inbound.channel, inbound.author_id)
            customer = customers.get(key)
            if customer is None:
                customer = CustomerView(None, inbound.channel, inbound.author_id, None, None,
                                        configured_tags.get(f"{key[0]}:{key[1]}", []), None)
                customers[key] = new[key] = customer
            # Handles and names change; keep the latest the platform told us.
            if (inbound.author_handle or customer.handle) != customer.handle or \
                    (inbound.author_name or customer.name) != customer.name:
                customer.handle = inbound.author_handle or customer.handle
                customer.name = inbound.author_name or customer.name
                if customer.id is not None:
                    changed[customer.id] = customer
        if new:
            # Returned rows are matched by key, not by order, so the driver may batch them.
            inserted = await insert_returning(
                session, CUSTOMERS,
                [{"channel": c.channel, "external_user_id": c.external_user_id,
                  "handle": c.handle, "name": c.name, "tags": c.tags, "created_at": now}
                 for c in new.values()], ("id", "channel", "external_user_id"))
            for customer_id, channel, external_user_id in inserted:
                new[(channel, external_user_id)].id = customer_id
        if changed:
            await session.execute(
                sa.update(CUSTOMERS).where(CUSTOMERS.c.id == sa.bindparam("customer_id"))
                .values(handle=sa.bindparam("new_handle"), name=sa.bindparam("new_name")),
                [{"customer_id": c.id, "new_handle": c.handle, "new_name": c.name}
                 for c in changed.values()])
        return customers

    async def _threadable_tickets(self, session: AsyncSession, fresh: list[Inbound],
                                  customers: dict[tuple[str, str], CustomerView],
                                  now: datetime) -> dict[tuple[str, str, int], Ticket]:
        """The ticket each (channel, thread, customer) continues: open, or closed recently."""
        customer_ids = {c.id for c in customers.values()}
        reopen_after = now - self.settings.inbox.reopen_within
        rows = await session.scalars(
            sa.select(Ticket)
            .where(Ticket.customer_id.in_(customer_ids),
                   sa.or_(Ticket.status != TicketStatus.CLOSED, Ticket.closed_at >= reopen_after,
                          Ticket.merged_into.is_not(None)))
            .order_by(Ticket.id))
        wanted = {(m.channel, m.thread_key) for m in fresh}
        tickets: dict[tuple[str, str, int], Ticket] = {}
        for ticket in list(rows):
            if (ticket.channel, ticket.thread_key) not in wanted:
                continue
            key = (ticket.channel, ticket.thread_key, ticket.customer_id)
            # A ticket closed by /merge continues in the one it was merged into.
            ticket = await merge_target(session, ticket, reopen_after)
            if ticket is None:
                continue
            current = tickets.get(key)
            # A ticket that is not closed always wins; among closed ones, the newest.
            if current is None or current.status == TicketStatus.CLOSED:
                tickets[key] = ticket
        return tickets


async def _save_cursor(session: AsyncSession, cursor: Cursor) -> None:
    row = await session.get(CursorRow, (cursor.channel, cursor.key))
    if row is None:
        session.add(CursorRow(channel=cursor.channel, key=cursor.key, value=cursor.value))
    else:
        row.value = cursor.value


@dataclass
class CustomerView:
    """The customer columns ingest needs (cheaper than ORM objects on the hot path)."""

    id: int | None
    channel: str
    external_user_id: str
    handle: str | None
    name: str | None
    tags: list[str]
    last_acked_at: datetime | None
    flood_since: datetime | None = None  # the flood guard's window (core.intake.flood)
    flood_count: int = 0
    blocked_at: datetime | None = None  # /block (core.intake.held)


@dataclass
class NewTicket:
    """A ticket opened by this batch, inserted in bulk; gets its id on insert. It has the
    fields of a ticket that its transitions (core.domain.lifecycle) use."""

    channel: str
    thread_key: str
    customer_id: int
    opened_at: datetime
    due_at: datetime
    language: str
    reply_target: dict
    next_escalation_at: datetime | None
    id: int | None = None
    acked_at: datetime | None = None
    status: str = TicketStatus.OPEN
    priority: str = Priority.NORMAL
    assignee: str | None = None
    cycle: int = 1
    escalation_level: int = 0
    first_response_at: datetime | None = None
    snoozed_until: datetime | None = None
    closed_at: datetime | None = None
    waiting_since: datetime | None = None
    last_customer_at: datetime | None = None

    def __post_init__(self) -> None:
        self.last_customer_at = self.waiting_since = self.opened_at


async def _customer_texts(session: AsyncSession, tickets: list[Ticket]) -> dict[int, list[str]]:
    """The customer's latest stored messages of these tickets, keyed by id(ticket) (new
    tickets of the batch have no id yet)."""
    stored = await latest_customer_texts(session, [ticket.id for ticket in tickets])
    return {id(ticket): stored.get(ticket.id, []) for ticket in tickets}


async def _insert_tickets(session: AsyncSession, tickets: list[NewTicket]) -> None:
    if not tickets:
        return
    by_key = {(t.channel, t.thread_key, t.customer_id): t for t in tickets}
    inserted = await insert_returning(
        session, TICKETS,
        [{"channel": t.channel, "thread_key": t.thread_key, "customer_id": t.customer_id,
          "status": TicketStatus.OPEN, "priority": Priority.NORMAL, "cycle": 1,
          "escalation_level": 0, "opened_at": t.opened_at, "last_customer_at": t.last_customer_at,
          "waiting_since": t.opened_at,
          "due_at": t.due_at, "next_escalation_at": t.next_escalation_at, "language": t.language,
          "acked_at": t.acked_at,
          "reply_target": t.reply_target} for t in tickets],
        ("id", "channel", "thread_key", "customer_id"))
    for ticket_id, *key in inserted:
        by_key[tuple(key)].id = ticket_id


def _event(ticket: Ticket | NewTicket, kind: str, at: datetime, data: dict,
           actor: str | None = None) -> dict:
    return {"ticket_id": ticket.id, "channel": ticket.channel, "kind": kind, "actor": actor,
            "at": at, "data": data}
