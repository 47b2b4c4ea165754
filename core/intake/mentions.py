"""Posts kept as non-tickets (``Inbound.note``): a retweet, a quote that asks nothing.

They are stored once each in ``mention`` and counted on /metrics, but open no ticket,
get no acknowledgement and no staff card.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.domain.payload import pack
from core.domain.records import Inbound
from core.store.tables import Mention, Message


async def keep_mentions(session: AsyncSession, notes: Sequence[Inbound], now: datetime
                        ) -> tuple[int, int, list[Inbound]]:
    """Keep non-ticket mentions (a retweet, a quote that asks nothing) once each: no
    ticket, no acknowledgement, no card. An edit of a kept one updates it; an edit
    of a message already in a ticket stays an edit of that message (returned).
    Returns (stored, duplicates, those edits)."""
    if not notes:
        return 0, 0, []
    kept: set[tuple[str, str]] = set()
    in_tickets: set[tuple[str, str]] = set()
    for channel in {m.channel for m in notes}:
        ids = [m.external_id for m in notes if m.channel == channel]
        kept.update((channel, i) for (i,) in await session.execute(
            sa.select(Mention.external_id).where(Mention.channel == channel,
                                                 Mention.external_id.in_(ids))))
        in_tickets.update((channel, i) for (i,) in await session.execute(
            sa.select(Message.external_id).where(Message.channel == channel,
                                                 Message.external_id.in_(ids))))
    rows: list[dict] = []
    duplicates, edits = 0, []
    for note in notes:
        key = (note.channel, note.external_id)
        row = {"channel": note.channel, "external_id": note.external_id,
               "kind": note.note, "author_id": note.author_id,
               "author_handle": note.author_handle, "author_name": note.author_name,
               "text": note.text, "created_at": min(note.sent_at, now),
               "attachments": [a.to_json() for a in note.attachments] or None,
               "raw": pack(note.raw)}
        if key in in_tickets:
            if note.edited:
                edits.append(note)
            else:
                duplicates += 1
        elif key in kept:
            duplicates += 1
            if note.edited:  # the latest version is what is kept
                await session.execute(
                    sa.update(Mention.__table__)
                    .where(Mention.channel == note.channel,
                           Mention.external_id == note.external_id)
                    .values({k: row[k] for k in ("kind", "text", "attachments", "raw")}))
        else:
            kept.add(key)
            rows.append(row)
    if rows:
        await session.execute(sa.insert(Mention.__table__), rows)
    return len(rows), duplicates, edits

