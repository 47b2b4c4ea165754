"""The staff chat's messages about tickets, from the database: a ticket's card as it
stands, card edits, and what staff hear about deliveries (``StaffNotices``).

All of it is queued through the outbox in the caller's transaction, as ``StaffMessage``
data (core.staff.cards) that the staff chat renders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.config.channels import channel_label
from core.delivery.actions import DELETE, EDIT
from core.delivery.contract import STAFF_CHANNEL
from core.delivery.enqueue import Lane, enqueue, outbox_row
from core.domain import lifecycle
from core.domain.policy import Policy
from core.domain.records import Attachment, Direction, Outbound, OutboxKind
from core.staff.cards import Card, StaffMessage, card_message, make_card, notice, who
from core.store.tables import Customer, Message, Outbox, Ticket


def customer_name(customer: Any) -> str:
    """How staff read a customer (a Customer row, or ingest's lighter view of one)."""
    if customer is None:
        return "?"
    return who(customer.handle, customer.name, customer.external_user_id)


def ticket_card(policy: Policy, ticket: Ticket, customer: Customer | None,
                first: FirstMessage, now: datetime, note: str = "") -> Card:
    """The ticket's card as it stands now (posted, edited, re-posted by escalations)."""
    return make_card(ticket_id=ticket.id, channel=ticket.channel,
                     customer=customer_name(customer),
                     promise=policy.promise_for_staff(ticket.due_at, now),
                     opened_at=ticket.opened_at, zone=policy.zone, status=ticket.status,
                     assignee=ticket.assignee, snoozed_until=ticket.snoozed_until,
                     priority=ticket.priority, first_text=first.text,
                     attachments=first.attachments, note=note)


async def current_card(session: AsyncSession, policy: Policy, ticket: Ticket, now: datetime,
                       note: str = "") -> Card:
    customer = await session.get(Customer, ticket.customer_id)
    return ticket_card(policy, ticket, customer, await first_message(session, ticket.id), now,
                       note)


async def queue_card_edit(session: AsyncSession, policy: Policy, ticket: Ticket, note: str,
                          key: str, now: datetime) -> bool:
    """Edit the ticket's card to show its state; False if no card was delivered yet."""
    posted = await session.scalar(
        sa.select(Outbox.external_id).where(
            Outbox.ticket_id == ticket.id, Outbox.kind == OutboxKind.STAFF_CARD,
            Outbox.external_id.is_not(None)).limit(1))
    if posted is None:
        return False
    message = card_message(await current_card(session, policy, ticket, now, note),
                           ticket.status, edit=posted)
    await enqueue(session, outbox_row(
        channel=STAFF_CHANNEL, kind=OutboxKind.CARD_EDIT, ticket_id=ticket.id,
        text=message.text(), target=message.to_target(), key=f"edit:{ticket.id}:{key}",
        now=now))
    return True


async def customer_texts(session: AsyncSession, ticket_id: int) -> list[str]:
    """The customer's latest messages of a ticket, oldest first, as many as rules read."""
    return (await latest_customer_texts(session, [ticket_id])).get(ticket_id, [])


def _latest_texts() -> sa.Select:
    rank = sa.func.row_number().over(partition_by=Message.ticket_id,
                                     order_by=Message.id.desc()).label("rank")
    latest = (sa.select(Message.ticket_id, Message.id, Message.text, rank)
              .where(Message.ticket_id.in_(sa.bindparam("ticket_ids", expanding=True)),
                     Message.direction == Direction.IN)
              .subquery())
    return (sa.select(latest.c.ticket_id, latest.c.text)
            .where(latest.c.rank <= lifecycle.RULE_TEXTS).order_by(latest.c.id))


# Built once: every sweep and every new waiting cycle asks it, and building the window
# query cost more than running it.
_LATEST_TEXTS = _latest_texts()


async def latest_customer_texts(session: AsyncSession,
                                ticket_ids: list[int]) -> dict[int, list[str]]:
    """The customer's latest messages of each ticket (as many as rules read), oldest
    first, by ticket id: one query, however many tickets."""
    if not ticket_ids:
        return {}
    rows = await session.execute(_LATEST_TEXTS, {"ticket_ids": list(ticket_ids)})
    texts: dict[int, list[str]] = {}
    for ticket_id, text in rows:
        texts.setdefault(ticket_id, []).append(text)
    return texts


@dataclass(frozen=True)
class FirstMessage:
    """The customer's first message of a ticket: what its card quotes and shows."""

    text: str = ""
    attachments: tuple[Attachment, ...] = ()


async def first_message(session: AsyncSession, ticket_id: int) -> FirstMessage:
    row = (await session.execute(
        sa.select(Message.text, Message.attachments).where(
            Message.ticket_id == ticket_id, Message.direction == Direction.IN)
        .order_by(Message.id).limit(1))).first()
    if row is None:
        return FirstMessage()
    return FirstMessage(row.text or "", tuple(Attachment.from_json(a)
                                              for a in row.attachments or ()))


async def queue_staff_message(session: AsyncSession, message: StaffMessage, key: str, now: datetime,
                     lane: Lane = Lane.STAFF) -> None:
    await enqueue(session, outbox_row(
        channel=STAFF_CHANNEL, kind=OutboxKind.NOTICE, ticket_id=message.ticket_id,
        text=message.text(), target=message.to_target(), key=key, now=now, lane=lane))


class StaffNotices:
    """What the staff chat hears from the dispatcher (a ``DeliveryListener``)."""

    def __init__(self, policy: Callable[[], Policy]):
        self._policy = policy  # the staff desk's, which a reload replaces

    @property
    def policy(self) -> Policy:
        return self._policy()

    async def delivered(self, session: AsyncSession, outbound: Outbound, now: datetime) -> None:
        """A staff answer reached the customer: ONE change in the staff chat -- the card
        edited to say so, or (no card yet) one line next to the staff member's message."""
        confirm = outbound.target.get("confirm")
        if outbound.kind != OutboxKind.REPLY or confirm is None or outbound.ticket_id is None:
            return
        ticket = await session.get(Ticket, outbound.ticket_id)
        if ticket is None:
            return
        # Rows queued by sameday 0.1 carry the staff chat's address in `confirm` itself.
        origin = confirm.get("origin", confirm)
        by = confirm.get("by") or ticket.assignee or "staff"
        note = f"answered by {by} · delivered {now.astimezone(self.policy.zone):%H:%M}"
        if await queue_card_edit(session, self.policy, ticket, note,
                                 f"delivered:{outbound.outbox_id}", now):
            return
        customer = await session.get(Customer, ticket.customer_id)
        await queue_staff_message(session, notice(
            ticket.id, f"✓ #{ticket.id}: sent to {customer_name(customer)} on "
                       f"{channel_label(outbound.channel)}", tone="ok",
            reply_to=origin), f"confirm:{outbound.outbox_id}", now,
            Lane.CHATTER)

    async def dead(self, session: AsyncSession, outbound: Outbound, reason: str,
                   now: datetime) -> None:
        """A row given up: tell the staff chat, with the ticket number and the reason."""
        if outbound.channel == STAFF_CHANNEL:
            return  # a notice about a failed notice would fail the same way
        what = {OutboxKind.ACK: "the acknowledgement", OutboxKind.REPLY: "the answer",
                EDIT: "the change of the answer", DELETE: "the withdrawal of the answer",
                }.get(outbound.kind, "a message")
        number = f"#{outbound.ticket_id}: " if outbound.ticket_id else ""
        confirm = outbound.target.get("confirm") or {}
        await queue_staff_message(session, notice(
            outbound.ticket_id, f"⚠ {number}{what} on {channel_label(outbound.channel)} "
                                f"could not be delivered: {reason}",
            f"Text: {outbound.text[:300]}", tone="warning",
            reply_to=confirm.get("origin", confirm or None)),
            f"dead:{outbound.outbox_id}", now)
