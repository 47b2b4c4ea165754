"""The retention purge: empty what ``[retention]`` no longer lets sameday keep.

Run daily by the daemon (an APScheduler job) and by hand (``sameday retention run
[--dry-run]``). For every ticket closed longer ago than a period, and every mention or
quarantined payload older than it:

- ``raw``: the platform payload as received (``message.raw``, ``mention.raw``, a released
  quarantined payload) is emptied;
- ``media``: the attachments (platform file ids, links, file names) are emptied;
- ``messages``: the text of every message of the ticket (customer's, staff's, notes) and
  of a mention (with its author's name and handle) is replaced by "", and a payload still
  held in quarantine is dropped (state ``purged``); ``copies`` of those texts elsewhere go
  with them: delivered or dead outbox rows, the old and new texts of edits in the audit
  trail, survey comments.

A purged text takes its raw payload and media with it (``RetentionSettings.kept``). Only
closed tickets are purged: an open, answered or snoozed one keeps everything, however
old. Figures never change: reports count events and tickets' times, which stay.

Small batches (``BATCH`` rows, one short transaction each, a bounded number of them per
run) so that ingest waits at most one batch for the write lock. Each update repeats the
condition it was selected by, so two replicas purging at once count each row once. A run
that changed nothing still records its ``purged`` event: /metrics shows the last run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.config.durations import format_duration
from core.config.settings import RetentionSettings
from core.domain.records import OutboxState, TicketStatus
from core.store.engine import Store
from core.store.tables import Event, Mention, Message, Outbox, Quarantine, Survey, Ticket

log = logging.getLogger(__name__)

BATCH = 500  # rows per transaction
MAX_BATCHES = 2000  # per step and run; what is left waits for the next run
PURGED_EVENT = "purged"  # one audit event per run, with the counts
ACTOR = "retention"
KINDS = ("messages", "raw", "media", "copies")
# The audit events that hold a message's texts, and the keys that hold them.
TEXT_EVENTS = ("edited", "answer_edited", "answer_withdrawn")
TEXT_KEYS = ("old", "new")
PURGED_STATE = "purged"  # a quarantined payload dropped by retention
HELD, RELEASED = "held", "released"  # core.intake.quarantine's states


@dataclass(frozen=True)
class Step:
    """One kind of purge: rows of ``table`` matching ``where`` get ``values``."""

    name: str
    kind: str
    table: Any
    where: tuple[Any, ...]
    values: dict[str, Any]


@dataclass
class PurgeRun:
    at: datetime
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    steps: dict[str, int] = field(default_factory=dict)  # by step name, for the CLI
    transactions: int = 0  # transactions that purged something
    largest: int = 0  # the most rows one transaction purged
    complete: bool = True  # False: stopped early (the daemon stops, the batch bound)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def closed_before(cutoff: datetime) -> sa.Select:
    """The ids of tickets closed at or before ``cutoff`` (never an open one)."""
    return sa.select(Ticket.id).where(Ticket.status == TicketStatus.CLOSED,
                                      Ticket.closed_at.is_not(None),
                                      Ticket.closed_at <= cutoff)


def _present(column: Any) -> Any:
    """A JSON list that holds something (SQL NULL, JSON null and [] hold nothing)."""
    return sa.and_(column.is_not(None),
                   sa.cast(column, sa.Text).not_in(("null", "[]")))


def steps(settings: RetentionSettings, now: datetime) -> list[Step]:
    """What is due at ``now``, in order: payloads, media, then texts."""
    out: list[Step] = []
    cutoffs = {kind: None if settings.kept(kind) is None else now - settings.kept(kind)
               for kind in ("raw", "media", "messages")}
    raw, media, text = cutoffs["raw"], cutoffs["media"], cutoffs["messages"]
    if raw is not None:
        out += [
            Step("message raw", "raw", Message,
                 (Message.ticket_id.in_(closed_before(raw)), Message.raw.is_not(None)),
                 {"raw": None}),
            Step("mention raw", "raw", Mention,
                 (Mention.created_at <= raw, Mention.raw.is_not(None)), {"raw": None}),
            Step("released quarantine", "raw", Quarantine,
                 (Quarantine.state == RELEASED, Quarantine.released_at <= raw,
                  Quarantine.payload != ""), {"payload": "", "error": ""}),
        ]
    if media is not None:
        out += [
            Step("message media", "media", Message,
                 (Message.ticket_id.in_(closed_before(media)), _present(Message.attachments)),
                 {"attachments": sa.null()}),
            Step("mention media", "media", Mention,
                 (Mention.created_at <= media, _present(Mention.attachments)),
                 {"attachments": sa.null()}),
        ]
    if text is not None:
        due = closed_before(text)
        out += [
            Step("message text", "messages", Message,
                 (Message.ticket_id.in_(due), Message.text != ""), {"text": ""}),
            Step("mention text", "messages", Mention,
                 (Mention.created_at <= text,
                  sa.or_(Mention.text != "", Mention.author_name.is_not(None),
                         Mention.author_handle.is_not(None))),
                 {"text": "", "author_name": None, "author_handle": None}),
            # The only copy of a message that could not be stored: kept as long as texts.
            Step("held quarantine", "raw", Quarantine,
                 (Quarantine.state == HELD, Quarantine.quarantined_at <= text),
                 {"payload": "", "error": "dropped by retention", "state": PURGED_STATE}),
            Step("outbox text", "copies", Outbox,
                 (Outbox.ticket_id.in_(due),
                  Outbox.state.in_((OutboxState.SENT, OutboxState.DEAD)), Outbox.text != ""),
                 {"text": ""}),
            Step("survey comment", "copies", Survey,
                 (Survey.ticket_id.in_(due), Survey.comment.is_not(None)),
                 {"comment": None}),
        ]
    return out


class Retention:
    """Purges what is due, in batches; ``run`` once a day (the daemon) or by hand."""

    def __init__(self, store: Store, clock: Clock, *, batch: int = BATCH,
                 max_batches: int = MAX_BATCHES):
        self.store = store
        self.clock = clock
        self.batch = batch
        self.max_batches = max_batches
        self._lock = asyncio.Lock()

    async def run(self, settings: RetentionSettings, *, dry_run: bool = False,
                  stopping: Callable[[], bool] = lambda: False) -> PurgeRun:
        """Purge (or with ``dry_run`` count) what is due now; record the run."""
        async with self._lock:
            now = self.clock.now()
            run = PurgeRun(at=now, dry_run=dry_run)
            for step in steps(settings, now):
                if stopping():
                    run.complete = False
                    break
                count = await (self._count(step) if dry_run else self._purge(step, run,
                                                                              stopping))
                run.counts[step.kind] += count
                run.steps[step.name] = count
            text_kept = settings.kept("messages")
            if text_kept is not None and not stopping():
                count = await self._events(now - text_kept, run, dry_run)
                run.counts["copies"] += count
                run.steps["event texts"] = count
            if not dry_run:
                await self._record(run, settings)
            log.info("retention%s: %s", " (dry run)" if dry_run else "",
                     ", ".join(f"{kind} {n}" for kind, n in run.counts.items()))
            return run

    async def _count(self, step: Step) -> int:
        async with self.store.session() as session:
            return await session.scalar(
                sa.select(sa.func.count()).select_from(step.table).where(*step.where))

    async def _purge(self, step: Step, run: PurgeRun, stopping: Callable[[], bool]) -> int:
        table, purged = step.table, 0
        for _ in range(self.max_batches):
            async with self.store.session() as session, session.begin():
                ids = list(await session.scalars(
                    sa.select(table.id).where(*step.where).order_by(table.id)
                    .limit(self.batch).with_for_update(skip_locked=True, of=table)))
                if ids:
                    await _overwrite_freed(session)
                    result = await session.execute(
                        sa.update(table).where(table.id.in_(ids), *step.where)
                        .values(**step.values).execution_options(synchronize_session=False))
                    purged += result.rowcount
                    run.transactions += 1
                    run.largest = max(run.largest, result.rowcount)
            if len(ids) < self.batch:
                return purged
            if stopping():
                break
            await asyncio.sleep(0)  # let ingest have the write lock between batches
        run.complete = False
        log.warning("retention: %s: more is due than %d batches; the rest waits for the "
                    "next run", step.name, self.max_batches)
        return purged

    async def _events(self, cutoff: datetime, run: PurgeRun, dry_run: bool) -> int:
        """The texts in audit events (edits) of tickets whose texts are due: the event
        stays, its ``old``/``new`` go. JSON is read in Python, so ids page the loop."""
        last, purged = 0, 0
        for _ in range(self.max_batches):
            async with self.store.session() as session, session.begin():
                rows = (await session.execute(
                    sa.select(Event.id, Event.data)
                    .where(Event.kind.in_(TEXT_EVENTS), Event.id > last,
                           Event.ticket_id.in_(closed_before(cutoff)))
                    .order_by(Event.id).limit(self.batch))).all()
                due = [(event_id, data) for event_id, data in rows
                       if any(key in (data or {}) for key in TEXT_KEYS)]
                if due and not dry_run:
                    await _overwrite_freed(session)
                    await _strip_texts(session, due)
                    run.transactions += 1
                    run.largest = max(run.largest, len(due))
                purged += len(due)
            if len(rows) < self.batch:
                return purged
            last = rows[-1][0]
            await asyncio.sleep(0)
        run.complete = False
        return purged

    async def _record(self, run: PurgeRun, settings: RetentionSettings) -> None:
        kept = {kind: "forever" if getattr(settings, kind) is None
                else format_duration(getattr(settings, kind))
                for kind in ("messages", "raw", "media")}
        async with self.store.session() as session, session.begin():
            session.add(Event(kind=PURGED_EVENT, actor=ACTOR, at=run.at,
                              data={**run.counts, "kept": kept, "complete": run.complete}))


async def _overwrite_freed(session: AsyncSession) -> None:
    """On SQLite, emptied text is overwritten in the file, not left in free pages."""
    if session.bind.dialect.name == "sqlite":
        await session.execute(sa.text("PRAGMA secure_delete = ON"))


async def _strip_texts(session: AsyncSession, rows: list[tuple[int, dict]]) -> None:
    for event_id, data in rows:
        kept = {key: value for key, value in data.items() if key not in TEXT_KEYS}
        await session.execute(sa.update(Event).where(Event.id == event_id)
                              .values(data={**kept, "purged": True})
                              .execution_options(synchronize_session=False))


# --- what was purged (for /metrics and the report) -----------------------------------------


def purged_counts(data: dict[str, Any] | None) -> dict[str, int]:
    """The counts of one ``purged`` event's data, by kind."""
    data = data or {}
    return {kind: int(data.get(kind) or 0) for kind in KINDS}


async def purge_totals(session: AsyncSession) -> tuple[dict[str, int], datetime | None]:
    """Everything purged so far by kind, and when the latest run was (None: never).
    One event a day: a few thousand rows in ten years."""
    totals = dict.fromkeys(KINDS, 0)
    latest = None
    for at, data in await session.execute(
            sa.select(Event.at, Event.data).where(Event.kind == PURGED_EVENT)):
        for kind, count in purged_counts(data).items():
            totals[kind] += count
        latest = at if latest is None or at > latest else latest
    return totals, latest


def describe_keep(kept: timedelta | None) -> str:
    return "forever" if kept is None else format_duration(kept)
