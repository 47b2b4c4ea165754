"""Quarantine: payloads that could not be read or stored, kept whole instead of blocking.

A platform payload that its adapter cannot read, or a message the inbox cannot store, is
written here in the same transaction as the cursor that moves past it: the channel goes
on, nothing is lost, and staff hear of it once. ``sameday quarantine list|show|retry``
(core.app.cli) lets an admin look, and read a payload again after an upgrade.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.config.channels import channel_label
from core.domain.payload import encode
from core.domain.records import Attachment, Inbound, Unreadable
from core.domain.text import valid_unicode
from core.staff.board import queue_staff_message
from core.staff.cards import notice
from core.store.engine import Store
from core.store.tables import Quarantine

HELD, RELEASED = "held", "released"
INBOUND_MARK = "sameday_inbound"  # a payload that is an Inbound itself (no platform raw)
MAX_ERROR = 2000


def unstorable(inbound: Inbound, error: BaseException) -> Unreadable:
    """A message the inbox could not store, as a payload to quarantine: the platform's
    own payload when the adapter kept it, else the normalized message (its fields as
    text where they are not JSON: a broken field may be the very reason)."""
    try:
        payload = inbound.raw if inbound.raw is not None else {
            INBOUND_MARK: {name: list(value) if isinstance(value, tuple)
                           else value if isinstance(value, str | int | dict | list | None)
                           else _text_of(value)
                           for name, value in dataclasses.asdict(inbound).items()}}
    except Exception:  # nothing about a broken message may stop its channel
        payload = {"unencodable": repr(inbound)[:100_000]}
    return Unreadable(inbound.channel, payload, describe(error), str(inbound.external_id))


def describe(error: BaseException, limit: int = MAX_ERROR) -> str:
    """An error as one short text: its type and message."""
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}"[:limit]


def _text_of(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else repr(value)


async def hold(session: AsyncSession, items: Sequence[Unreadable], now: datetime) -> list[int]:
    """Quarantine the payloads (one kept per channel and platform id, however often the
    platform delivers it) and tell staff of each new one; returns the new rows' ids."""
    ids = []
    for item in items:
        if item.external_id is not None and await session.scalar(
                sa.select(Quarantine.id).where(Quarantine.channel == item.channel,
                                               Quarantine.external_id == item.external_id)):
            continue
        row = Quarantine(channel=item.channel, external_id=_short(item.external_id),
                         payload=encode(item.payload), error=valid_unicode(item.error)[:MAX_ERROR],
                         quarantined_at=now)
        session.add(row)
        await session.flush()
        ids.append(row.id)
        await queue_staff_message(session, notice(
            None, f"⚠ A {channel_label(item.channel)} message could not be read and is "
                  f"quarantined as Q{row.id}: {row.error[:300]}",
            f"An admin can look at it with: sameday quarantine show {row.id}", tone="warning"),
            f"quarantine:{row.id}", now)
    return ids


async def held_counts(session: AsyncSession) -> dict[str, int]:
    """Quarantined payloads not released, by channel (for /healthz and /metrics)."""
    rows = await session.execute(sa.select(Quarantine.channel, sa.func.count())
                                 .where(Quarantine.state == HELD).group_by(Quarantine.channel))
    return {channel: count for channel, count in rows}


async def release(store: Store, quarantine_id: int, now: datetime) -> None:
    """Its message is stored now (or was not one for the inbox)."""
    await _update(store, quarantine_id, state=RELEASED, released_at=now)


async def still_held(store: Store, quarantine_id: int, error: str) -> None:
    """A retry failed too: keep the payload held with the newest error."""
    await _update(store, quarantine_id, error=valid_unicode(error)[:MAX_ERROR])


async def _update(store: Store, quarantine_id: int, **values: Any) -> None:
    async with store.session() as session, session.begin():
        await session.execute(sa.update(Quarantine).where(Quarantine.id == quarantine_id)
                              .values(**values))


def inbound_of(payload: Any) -> Inbound | None:
    """The Inbound a payload holds when it was kept as one (see ``unstorable``)."""
    if not isinstance(payload, dict) or INBOUND_MARK not in payload:
        return None
    fields = dict(payload[INBOUND_MARK])
    fields["sent_at"] = datetime.fromisoformat(fields["sent_at"])  # raises if it was broken
    fields["attachments"] = tuple(Attachment.from_json(a)
                                  for a in fields.get("attachments") or ())
    return Inbound(**fields)


def _short(external_id: str | None) -> str | None:
    return None if external_id is None else valid_unicode(str(external_id))[:128]
