"""The flood guard (``inbox.flood``, e.g. "10/1m"): a customer who sends more than K
messages within a window is flooding.

The window starts at a customer's first message and lasts the configured time; the
messages beyond the K-th in it are stored and threaded as usual (they count, and may
start a new waiting cycle), but they open no new ticket (one on a new thread joins the
customer's latest ticket), get no acknowledgement and no follow-up or media notice:
they fold into ONE update of the ticket's card, which says how many were folded. While
that update waits in the outbox, later folded messages rewrite it instead of queuing
another, so a staff group that takes 20 messages a minute sees one line, kept current.

The window lives on the customer row (``flood_since``, ``flood_count``), written with the
batch, so it holds across batches, restarts and replicas owning the channel in turn.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.config.rates import RateLimit
from core.delivery.contract import STAFF_CHANNEL
from core.delivery.enqueue import enqueue, outbox_row
from core.domain.policy import Policy
from core.domain.records import Inbound, OutboxKind, OutboxState, TicketStatus
from core.staff.board import current_card
from core.staff.cards import card_message
from core.store.tables import Customer, Event, Outbox, Ticket

CUSTOMERS, OUTBOX = Customer.__table__, Outbox.__table__


class FloodGuard:
    """One batch's view of the customers' windows (``count``, ``placed``), written back
    with what was folded by ``settle`` in the batch's transaction."""

    def __init__(self, limit: RateLimit | None):
        self.limit = limit  # None: off
        self._counted: dict[int, Any] = {}  # customer id -> its view (flood_* changed)
        self._folded: set[int] = set()  # id() of the folded Inbound messages
        # id(ticket) -> [ticket, customer view, messages folded into it by this batch]
        self._tickets: dict[int, list[Any]] = {}
        self._latest: dict[int, Any] = {}  # customer id -> ticket of their latest message

    def count(self, customer: Any, arrival: datetime) -> bool:
        """Count a message of the customer (sent at ``arrival``); True: fold it."""
        if self.limit is None:
            return False
        since = customer.flood_since
        if since is None or arrival >= since + self.limit.per:
            customer.flood_since, customer.flood_count = arrival, 0
        customer.flood_count += 1
        self._counted[customer.id] = customer
        return customer.flood_count > self.limit.count

    async def window_ticket(self, session: AsyncSession, customer: Any) -> Any | None:
        """The ticket a flooding customer's message on a new thread joins: the one their
        latest message went to (this batch, or stored and not closed)."""
        if customer.id in self._latest:
            return self._latest[customer.id]
        return await session.scalar(
            sa.select(Ticket).where(Ticket.customer_id == customer.id,
                                    Ticket.status != TicketStatus.CLOSED)
            .order_by(Ticket.last_customer_at.desc(), Ticket.id.desc()).limit(1))

    def placed(self, inbound: Inbound, customer: Any, ticket: Any, folded: bool) -> None:
        self._latest[customer.id] = ticket
        if folded:
            self._folded.add(id(inbound))
            entry = self._tickets.setdefault(id(ticket), [ticket, customer, 0])
            entry[2] += 1

    def folded(self, inbound: Inbound) -> bool:
        """True: no notice for this message (its card is updated instead)."""
        return id(inbound) in self._folded

    async def settle(self, session: AsyncSession, policy: Policy, now: datetime) -> None:
        """Write the windows back, record the folds and update the cards (after the
        batch's tickets, messages and cards are inserted)."""
        if self._counted:
            await session.execute(
                sa.update(CUSTOMERS).where(CUSTOMERS.c.id == sa.bindparam("customer_id"))
                .values(flood_since=sa.bindparam("since"), flood_count=sa.bindparam("count")),
                [{"customer_id": c.id, "since": c.flood_since, "count": c.flood_count}
                 for c in self._counted.values()])
        for ticket, customer, count in self._tickets.values():
            total = customer.flood_count - self.limit.count
            since = customer.flood_since
            session.add(Event(ticket_id=ticket.id, channel=ticket.channel, kind="folded",
                              actor=customer.external_user_id, at=now,
                              data={"count": count, "window_total": total,
                                    "since": since.isoformat(), "limit": str(self.limit)}))
            local = since.astimezone(policy.zone)
            note = (f"⚠ flooding: {total} more message{'' if total == 1 else 's'} since "
                    f"{local:%H:%M} folded here (/show {ticket.id})")
            await _update_card(session, policy, ticket, note, now,
                               f"edit:{ticket.id}:flood:{int(since.timestamp())}:", total)


async def _update_card(session: AsyncSession, policy: Policy, ticket: Any, note: str,
                       now: datetime, key_prefix: str, total: int) -> None:
    """Show ``note`` on the ticket's card with ONE message in the staff chat: rewrite the
    card while it is not posted yet, else the pending flood edit, else queue one."""
    card = (await session.execute(
        sa.select(Outbox.id, Outbox.external_id, Outbox.state)
        .where(Outbox.ticket_id == ticket.id, Outbox.kind == OutboxKind.STAFF_CARD)
        .order_by(Outbox.id).limit(1))).first()
    if card is None:
        return
    current = await current_card(session, policy, ticket, now, note)
    if card.external_id is None:
        if card.state == OutboxState.PENDING:
            message = card_message(current, ticket.status)
            await session.execute(sa.update(OUTBOX).where(
                OUTBOX.c.id == card.id, OUTBOX.c.state == OutboxState.PENDING)
                .values(text=message.text(), target=message.to_target()))
        return  # being posted right now: the next folded message updates it
    message = card_message(current, ticket.status, edit=card.external_id)
    rewritten = await session.execute(sa.update(OUTBOX).where(
        OUTBOX.c.ticket_id == ticket.id, OUTBOX.c.kind == OutboxKind.CARD_EDIT,
        OUTBOX.c.state == OutboxState.PENDING,
        OUTBOX.c.idempotency_key.like(f"{key_prefix}%"))
        .values(text=message.text(), target=message.to_target()))
    if rewritten.rowcount:
        return
    # The window's total only grows, so each new edit of the window has a new key.
    await enqueue(session, outbox_row(
        channel=STAFF_CHANNEL, kind=OutboxKind.CARD_EDIT, ticket_id=ticket.id,
        text=message.text(), target=message.to_target(), key=f"{key_prefix}{total}",
        now=now))
