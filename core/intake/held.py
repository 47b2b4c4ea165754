"""A blocked customer's messages (/block, core.staff.blocking): stored and counted,
nothing sent.

Each message is kept in the ticket its thread continues (open, closed recently, or the
one a merged ticket points to), else in the customer's latest ticket, and only as a
last resort in a new ticket opened closed -- so a blocked customer opens no ticket in
the queue, gets no acknowledgement, no card, no follow-up and no escalation, and the
tickets they write to do not change state. Each gets a ``received`` event (it counts in
the report) and a ``held`` event (what /blocked and /unblock count).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.domain.payload import pack
from core.domain.records import Direction, Inbound, Priority, TicketStatus
from core.staff.blocking import HELD
from core.store.tables import Event, Message, Ticket

TICKETS = Ticket.__table__


async def hold_blocked(session: AsyncSession, fresh: Sequence[Inbound],
                       customers: dict[tuple[str, str], Any], tickets: dict[tuple, Any],
                       now: datetime) -> tuple[list[Inbound], int]:
    """Store the blocked customers' messages of ``fresh`` quietly; return the others
    and how many were held."""
    blocked = {c.id for c in customers.values() if c.blocked_at is not None}
    if not blocked:
        return list(fresh), 0
    others: list[Inbound] = []
    messages: list[dict] = []
    events: list[dict] = []
    latest: dict[int, int] = {}  # customer id -> the ticket their messages go to
    for inbound in fresh:
        customer = customers[(inbound.channel, inbound.author_id)]
        if customer.id not in blocked:
            others.append(inbound)
            continue
        arrival = min(inbound.sent_at, now)
        thread = tickets.get((inbound.channel, inbound.thread_key, customer.id))
        ticket_id = thread.id if thread is not None else \
            await _latest_ticket(session, customer.id, latest, inbound, arrival, now, events)
        latest[customer.id] = ticket_id
        messages.append({
            "ticket_id": ticket_id, "channel": inbound.channel, "direction": Direction.IN,
            "author": inbound.author_handle or inbound.author_id,
            "external_id": inbound.external_id, "text": inbound.text, "created_at": arrival,
            "attachments": [a.to_json() for a in inbound.attachments] or None,
            "raw": pack(inbound.raw)})
        for kind in ("received", HELD):
            events.append({"ticket_id": ticket_id, "channel": inbound.channel, "kind": kind,
                           "actor": inbound.author_id, "at": now,
                           "data": {"external_id": inbound.external_id}})
    await session.execute(sa.insert(Message.__table__), messages)
    await session.execute(sa.insert(Event.__table__), events)
    return others, len(messages)


async def _latest_ticket(session: AsyncSession, customer_id: int, latest: dict[int, int],
                         inbound: Inbound, arrival: datetime, now: datetime,
                         events: list[dict]) -> int:
    """The customer's latest ticket, or a new one opened closed (a blocked customer
    writing on a new thread with no ticket at all: a linked account's first message)."""
    if customer_id in latest:
        return latest[customer_id]
    found = await session.scalar(sa.select(sa.func.max(Ticket.id))
                                 .where(Ticket.customer_id == customer_id))
    if found is not None:
        return found
    ticket_id = await session.scalar(sa.insert(TICKETS).returning(TICKETS.c.id).values(
        channel=inbound.channel, thread_key=inbound.thread_key, customer_id=customer_id,
        status=TicketStatus.CLOSED, priority=Priority.NORMAL, cycle=1, escalation_level=0,
        opened_at=arrival, waiting_since=arrival, last_customer_at=arrival, closed_at=now,
        reply_target=dict(inbound.reply_target)))
    events.append({"ticket_id": ticket_id, "channel": inbound.channel, "kind": "opened",
                   "actor": inbound.author_id, "at": now, "data": {"blocked": True}})
    return ticket_id
