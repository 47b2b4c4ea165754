"""The one way a message is queued: an outbox row, written in the caller's transaction.

Rows are plain dicts inserted with one executemany (ingest queues hundreds per batch).
Under a binding rate limit the dispatcher sends by ``lane``, then earliest deadline:
what a customer waits for first, then new tickets' cards and alerts to staff (by the
ticket's promise), then the chatter of the staff chat (answers to commands, card edits),
so a busy staff group never holds a new card behind confirmations.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.domain.records import OutboxKind, OutboxState
from core.store.bulk import insert_rows
from core.store.tables import Outbox


class Lane(enum.IntEnum):
    CUSTOMER = 0  # acknowledgements and answers: a customer is waiting
    STAFF = 1  # new cards, follow-ups, escalations, dead letters
    CHATTER = 2  # answers to staff commands, card edits, confirmations


def lane_of(kind: str) -> Lane:
    if kind in (OutboxKind.ACK, OutboxKind.REPLY):
        return Lane.CUSTOMER
    return Lane.CHATTER if kind == OutboxKind.CARD_EDIT else Lane.STAFF


def outbox_row(*, channel: str, kind: str, text: str, target: dict[str, Any], key: str,
               now: datetime, ticket_id: int | None = None, deadline: datetime | None = None,
               lane: Lane | None = None) -> dict[str, Any]:
    """One row to insert; `key` makes it idempotent (a repeat cannot queue it twice)."""
    return {"channel": channel, "kind": kind, "ticket_id": ticket_id, "target": target,
            "text": text, "idempotency_key": key, "state": OutboxState.PENDING, "attempts": 0,
            "lane": int(lane if lane is not None else lane_of(kind)),
            "deadline_at": deadline or now, "next_attempt_at": now, "created_at": now}


async def enqueue(session: AsyncSession, *rows: dict[str, Any]) -> None:
    """Insert the rows in the session's transaction (a repeated key raises IntegrityError)."""
    await insert_rows(session, Outbox.__table__, rows)
