"""A customer corrects a message: the stored message is updated, the original stays in the
audit trail, and staff are told before they answer a question that changed.

An edit carries the platform id of the message it changes. An edit of a message that
was never stored (sent before sameday ran, or quarantined) is a new message instead.
The same edit delivered twice changes nothing the second time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.delivery.contract import STAFF_CHANNEL
from core.delivery.enqueue import enqueue, outbox_row
from core.domain.payload import pack
from core.domain.records import Direction, Inbound, OutboxKind
from core.staff.board import customer_name
from core.staff.cards import edited_notice
from core.store.tables import Customer, Event, Message, Ticket


async def apply_edits(session: AsyncSession, edits: Sequence[Inbound], now: datetime
                      ) -> tuple[list[int], list[Inbound]]:
    """Apply the edits of stored messages; returns the tickets that changed and the
    edits of messages not stored (to be stored as new ones)."""
    changed: list[int] = []
    unknown: list[Inbound] = []
    for edit in edits:
        message = await session.scalar(sa.select(Message).where(
            Message.channel == edit.channel, Message.external_id == edit.external_id,
            Message.direction == Direction.IN))
        if message is None:
            unknown.append(edit)
            continue
        attachments = [a.to_json() for a in edit.attachments] or None
        if message.text == edit.text and (message.attachments or None) == attachments:
            continue  # delivered again, or an edit of what we do not keep
        old = message.text
        message.text, message.attachments, message.raw = edit.text, attachments, pack(edit.raw)
        ticket = await session.get(Ticket, message.ticket_id)
        customer = await session.get(Customer, ticket.customer_id)
        session.add(Event(ticket_id=ticket.id, channel=edit.channel, kind="edited", at=now,
                          actor=edit.author_id,
                          data={"external_id": edit.external_id, "old": old,
                                "new": edit.text}))
        notice = edited_notice(ticket.id, customer_name(customer), old, edit.text)
        await enqueue(session, outbox_row(
            channel=STAFF_CHANNEL, kind=OutboxKind.NOTICE, ticket_id=ticket.id,
            text=notice.text(), target=notice.to_target(),
            key=f"edit:{edit.channel}:{edit.external_id}:{_version(edit)}", now=now,
            deadline=ticket.due_at))
        changed.append(ticket.id)
    return changed, unknown


def _version(edit: Inbound) -> str:
    """Tells two edits of one message apart (the same edit twice shares it)."""
    content = edit.text + "".join(str(a.to_json()) for a in edit.attachments)
    return hashlib.sha1(content.encode("utf-8", "replace")).hexdigest()[:12]
