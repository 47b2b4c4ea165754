"""The facts a report is computed from, read from the store in one transaction.

Plain data -- tickets, delivered acknowledgements, audit events -- so ``compute_report``
(``core.reporting.report``) can be checked by hand without a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.domain import lifecycle
from core.domain.records import OutboxKind, OutboxState
from core.reporting.period import Period
from core.retention.purge import PURGED_EVENT
from core.staff.survey import question_key_of
from core.store.engine import Store
from core.store.tables import Event, Outbox, Survey, Ticket

# "purged": the retention runs (core.retention.purge), what the report says was purged.
EVENT_KINDS = ("received", "answered", "escalated", "dead_letter", PURGED_EVENT)


@dataclass(frozen=True)
class TicketFacts:
    """The columns of one ticket the report needs.

    ``first_due_at`` is the promise made when the ticket was opened; ``due_at`` is the
    promise of the current waiting cycle (they differ once the customer wrote again after
    an answer). Promises kept are judged on the first one, like the first response.
    """

    id: int
    channel: str
    status: str
    opened_at: datetime
    first_due_at: datetime | None
    due_at: datetime | None = None
    waiting_since: datetime | None = None
    acked_at: datetime | None = None
    first_response_at: datetime | None = None
    closed_at: datetime | None = None
    assignee: str | None = None


@dataclass(frozen=True)
class EventFacts:
    kind: str
    channel: str | None
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    ticket_id: int | None = None
    actor: str | None = None  # the staff member, for staff actions ("answered")


@dataclass(frozen=True)
class SurveyFacts:
    """A satisfaction survey whose question was delivered (``asked_at``) in the period,
    with its score if the customer answered (core.domain.survey.Csat counts them)."""

    id: int
    ticket_id: int
    channel: str
    agent: str | None
    asked_at: datetime
    score: int | None = None
    answered_at: datetime | None = None


@dataclass
class ReportData:
    tickets: list[TicketFacts]
    ack_sent: dict[int, datetime]  # ticket id -> when its acknowledgement was delivered
    events: list[EventFacts]
    surveys: list[SurveyFacts] = field(default_factory=list)
    # ticket id -> the staff member who gave its first answer (any time), for the
    # tickets above: whose ticket it is in the per-agent figures.
    first_answered_by: dict[int, str] = field(default_factory=dict)


# --- reading the store ---------------------------------------------------------------------


async def load_report_data(store: Store, period: Period, channel: str | None = None
                           ) -> ReportData:
    """Every fact the report needs, read in ONE transaction (a consistent snapshot)."""
    async with store.session() as session, session.begin():
        tickets = await _load_tickets(session, period, channel)
        ack_sent = await _load_acks(session, period, channel)
        events = await _load_events(session, period, channel)
        surveys = await _load_surveys(session, period, channel)
        first_answered_by = await _first_answerers(session, [t.id for t in tickets])
    return ReportData(tickets, ack_sent, events, surveys, first_answered_by)


async def _load_tickets(session: AsyncSession, period: Period, channel: str | None
                        ) -> list[TicketFacts]:
    """Tickets opened in the period, plus any that may have waited during it (backlog,
    overdue line): opened before its end and neither closed nor answered before its start."""
    query = sa.select(Ticket).where(
        # A ticket merged into another is counted there (its messages and promise moved).
        Ticket.merged_into.is_(None),
        Ticket.opened_at < period.until,
        sa.or_(Ticket.closed_at.is_(None), Ticket.closed_at >= period.since),
        sa.or_(Ticket.first_response_at.is_(None), Ticket.first_response_at >= period.since,
               Ticket.status.in_(lifecycle.WAITING)))
    if channel:
        query = query.where(Ticket.channel == channel)
    rows = list(await session.scalars(query.order_by(Ticket.id)))
    first_due = await _first_promises(session, [t.id for t in rows if t.cycle > 1])
    return [TicketFacts(id=t.id, channel=t.channel, status=t.status, opened_at=t.opened_at,
                        first_due_at=first_due.get(t.id, t.due_at), due_at=t.due_at,
                        waiting_since=t.waiting_since, acked_at=t.acked_at,
                        first_response_at=t.first_response_at, closed_at=t.closed_at,
                        assignee=t.assignee)
            for t in rows]


async def _first_promises(session: AsyncSession, ticket_ids: list[int]) -> dict[int, datetime]:
    """The promise made at opening, for tickets whose ``due_at`` moved to a later cycle."""
    if not ticket_ids:
        return {}
    rows = await session.execute(sa.select(Event.ticket_id, Event.data).where(
        Event.kind == "opened", Event.ticket_id.in_(ticket_ids)))
    promises = {}
    for ticket_id, data in rows:
        if data and data.get("due_at"):
            promises[ticket_id] = datetime.fromisoformat(data["due_at"]).astimezone(UTC)
    return promises


async def _load_acks(session: AsyncSession, period: Period, channel: str | None
                     ) -> dict[int, datetime]:
    """When each acknowledgement of a ticket opened in the period was delivered."""
    query = (sa.select(Outbox.ticket_id, Outbox.sent_at)
             .join(Ticket, Ticket.id == Outbox.ticket_id)
             .where(Outbox.kind == OutboxKind.ACK, Outbox.state == OutboxState.SENT,
                    Outbox.sent_at.is_not(None), Ticket.opened_at >= period.since,
                    Ticket.opened_at < period.until))
    if channel:
        query = query.where(Ticket.channel == channel)
    result: dict[int, datetime] = {}
    for ticket_id, sent_at in await session.execute(query):
        # One acknowledgement per ticket today; the earliest wins should that change.
        result[ticket_id] = min(sent_at, result.get(ticket_id, sent_at))
    return result


async def _load_events(session: AsyncSession, period: Period, channel: str | None
                       ) -> list[EventFacts]:
    query = sa.select(Event.kind, Event.channel, Event.at, Event.data, Event.ticket_id,
                      Event.actor).where(
        Event.kind.in_(EVENT_KINDS), Event.at >= period.since, Event.at < period.until)
    if channel:
        query = query.where(Event.channel == channel)
    return [EventFacts(kind, ch, at, data or {}, ticket_id, actor)
            for kind, ch, at, data, ticket_id, actor
            in await session.execute(query.order_by(Event.at, Event.id))]


async def _load_surveys(session: AsyncSession, period: Period, channel: str | None
                        ) -> list[SurveyFacts]:
    """The surveys whose question was delivered in the period."""
    query = (sa.select(Survey.id, Survey.ticket_id, Survey.channel, Survey.agent,
                       Outbox.sent_at, Survey.score, Survey.answered_at)
             .join(Outbox, Outbox.idempotency_key == question_key_of(Survey.id))
             .where(Outbox.state == OutboxState.SENT, Outbox.sent_at >= period.since,
                    Outbox.sent_at < period.until))
    if channel:
        query = query.where(Survey.channel == channel)
    return [SurveyFacts(*row) for row in await session.execute(query.order_by(Survey.id))]


ID_CHUNK = 500  # ticket ids per IN (...) list


async def _first_answerers(session: AsyncSession, ticket_ids: list[int]) -> dict[int, str]:
    """Who gave each ticket's first answer: the actor of its earliest "answered" event."""
    found: dict[int, str] = {}
    for start in range(0, len(ticket_ids), ID_CHUNK):
        rows = await session.execute(
            sa.select(Event.ticket_id, Event.actor)
            .where(Event.kind == "answered", Event.ticket_id.in_(ticket_ids[start:start +
                                                                             ID_CHUNK]))
            .order_by(Event.at, Event.id))
        for ticket_id, actor in rows:
            if actor:
                found.setdefault(ticket_id, actor)
    return found
