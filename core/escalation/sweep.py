"""Escalation: nothing may silently miss its promise.

Rules (``[[escalation]]``) have a trigger (after a duration of business or wall time
since the customer started waiting, a duration before the promise, or the promise
itself), conditions and actions. The pure part (``plan``) says which rules a ticket still
has to fire in its current waiting cycle and when; ``Escalator.sweep`` fires those that
are due.

Exactly once: each firing inserts a row unique by (ticket, rule, cycle) with
``INSERT ... ON CONFLICT DO NOTHING`` in the same transaction as its actions, and due
tickets are locked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL. A sweep repeated after a
crash, or run by several replicas, cannot fire a rule twice.

The clock: a staff answer stops it (``next_escalation_at`` is cleared); a new customer
message after an answer starts a new cycle (all rules apply again); a snooze holds the
ticket until it ends, and rules that fell due meanwhile fire then. A blocked customer's
tickets (/block) do not escalate: the sweep clears their clock, /unblock sets it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.config.settings import EscalationRule, Settings
from core.domain import lifecycle
from core.domain.merging import escalations_held
from core.domain.policy import Policy
from core.domain.records import TicketStatus
from core.domain.rules import TicketFacts, plan
from core.staff.board import (
    customer_texts,
    first_message,
    queue_card_edit,
    queue_staff_message,
    ticket_card,
)
from core.staff.cards import card_message
from core.store.engine import Store
from core.store.tables import TICKET_DUE, Customer, Escalation, Event, Ticket

log = logging.getLogger(__name__)

SWEEP_BATCH = 200
# Built once: a replay asks it between every two events (building the statement would
# cost more than running it). TICKET_DUE word for word: the partial index
# ix_ticket_next_due answers it with its first entry, however many tickets wait.
_NEXT_DUE = sa.select(sa.func.min(Ticket.next_escalation_at)).where(sa.text(TICKET_DUE))


@dataclass(frozen=True)
class Fired:
    ticket_id: int
    rule: str
    cycle: int
    at: datetime


class Escalator:
    """The sweep that fires due escalations, and the admin's reload of open tickets."""

    def __init__(self, store: Store, settings: Settings, clock: Clock,
                 on_outbox: Callable[[], None] | None = None):
        self.store = store
        self.clock = clock
        self.on_outbox = on_outbox or (lambda: None)
        self._lock = asyncio.Lock()  # the interval job and the wake-up job may overlap
        self.reconfigure(settings)

    def reconfigure(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = Policy(settings)

    async def next_due(self) -> datetime | None:
        """The earliest time a ticket may need the sweep (to schedule a wake-up)."""
        async with self.store.session() as session:
            return await self.next_due_in(session)

    @staticmethod
    async def next_due_in(session: AsyncSession) -> datetime | None:
        """``next_due`` in the caller's transaction (the fast replay asks between events)."""
        return await session.scalar(_NEXT_DUE)

    async def sweep(self) -> list[Fired]:
        """Fire every escalation due now; return what fired."""
        fired: list[Fired] = []
        async with self._lock:
            while True:
                batch, more = await self._sweep_batch()
                fired += batch
                if not more:
                    break
        if fired:
            self.on_outbox()
        return fired

    async def _sweep_batch(self) -> tuple[list[Fired], bool]:
        return await self.store.unit(self.sweep_due)

    async def sweep_due(self, session: AsyncSession, limit: int = SWEEP_BATCH
                        ) -> tuple[list[Fired], bool]:
        """Fire what is due now on up to ``limit`` tickets, in the caller's transaction;
        True when more may be due."""
        now = self.clock.now()
        fired: list[Fired] = []
        tickets = list(await session.scalars(
            sa.select(Ticket)
            .where(sa.text(TICKET_DUE), Ticket.next_escalation_at <= now)
            .order_by(Ticket.next_escalation_at).limit(limit)
            .with_for_update(skip_locked=True)))
        for ticket in tickets:
            fired += await self._sweep_ticket(session, ticket, now)
        return fired, len(tickets) == limit

    async def _sweep_ticket(self, session: AsyncSession, ticket: Ticket,
                            now: datetime) -> list[Fired]:
        customer = await session.get(Customer, ticket.customer_id)
        if customer is not None and customer.blocked_at is not None:
            escalations_held(ticket)  # /block: no escalation until /unblock plans it again
            return []
        if ticket.status == TicketStatus.SNOOZED:
            if ticket.snoozed_until and ticket.snoozed_until > now:
                ticket.next_escalation_at = ticket.snoozed_until
                return []
            lifecycle.snooze_ended(ticket)  # back in the queue
            session.add(Event(ticket_id=ticket.id, channel=ticket.channel,
                              kind="snooze_ended", at=now, data={}))
        facts = await _facts(session, ticket)
        done = set(await session.scalars(
            sa.select(Escalation.rule).where(Escalation.ticket_id == ticket.id,
                                             Escalation.cycle == ticket.cycle)))
        fired: list[Fired] = []
        for when, rule in plan(self.settings.escalation, facts, done,
                               self.policy.calendar):
            if when > now:
                break
            if await self._fire(session, ticket, rule, facts, now):
                fired.append(Fired(ticket.id, rule.name, ticket.cycle, now))
            done.add(rule.name)
            facts = await _facts(session, ticket)  # an action may change priority/assignee
        upcoming = plan(self.settings.escalation, facts, done, self.policy.calendar)
        ticket.next_escalation_at = upcoming[0][0] if upcoming else None
        return fired

    async def _fire(self, session: AsyncSession, ticket: Ticket, rule: EscalationRule,
                    facts: TicketFacts, now: datetime) -> bool:
        """Record the firing once; only the transaction that recorded it acts."""
        insert = (postgresql.insert if self.store.engine.dialect.name == "postgresql"
                  else sqlite.insert)
        recorded = await session.scalar(
            insert(Escalation).values(ticket_id=ticket.id, rule=rule.name, cycle=ticket.cycle,
                                      fired_at=now)
            .on_conflict_do_nothing(index_elements=["ticket_id", "rule", "cycle"])
            .returning(Escalation.id))
        if recorded is None:
            return False  # another sweep fired it already
        log.info("escalation %r fired for ticket #%s (cycle %s)", rule.name, ticket.id,
                 ticket.cycle)
        lifecycle.escalated(ticket, rule)
        event = Event(ticket_id=ticket.id, channel=ticket.channel, kind="escalated", at=now,
                      data={"rule": rule.name, "cycle": ticket.cycle,
                            "level": ticket.escalation_level})
        session.add(event)
        await session.flush()
        if rule.notify or rule.mention:
            await self._notice(session, ticket, rule, facts, now, event.id)
        return True

    async def _notice(self, session: AsyncSession, ticket: Ticket, rule: EscalationRule,
                      facts: TicketFacts, now: datetime, event_id: int) -> None:
        """Re-post the ticket's card to the staff chat with the reason and mentions (the
        staff chat renders the mentions its own way: a link to the member's account)."""
        customer = await session.get(Customer, ticket.customer_id)
        card = ticket_card(self.policy, ticket, customer, await first_message(session, ticket.id),
                           now)
        message = card_message(card, ticket.status, tone="warning",
                               lines=(f"⚠ {rule.name}: {self._reason(rule, ticket, now)}",),
                               mentions=tuple(rule.mention))
        await queue_staff_message(session, message, f"escalation:{event_id}", now)
        await queue_card_edit(session, self.policy, ticket, f"escalated: {rule.name}",
                              str(event_id), now)

    def _reason(self, rule: EscalationRule, ticket: Ticket, now: datetime) -> str:
        promise = self.policy.promise_for_staff(ticket.due_at, now)
        if rule.at_due:
            return f"the promise ({promise}) is due now"
        if rule.before_due is not None:
            return f"the promise ({promise}) is due soon"
        return f"no answer yet; promised {promise}"

    async def recompute_open_tickets(self) -> int:
        """After a reload: new calendar and promise rules for every waiting ticket, and the
        escalation plan computed again at the next sweep."""
        now = self.clock.now()
        async with self.store.session() as session, session.begin():
            tickets = list(await session.scalars(
                sa.select(Ticket).where(Ticket.status.in_(
                    lifecycle.WAITING))))
            for ticket in tickets:
                facts = await _facts(session, ticket)
                lifecycle.replanned(self.policy, ticket, facts.texts, facts.tags, now)
        return len(tickets)


async def _facts(session: AsyncSession, ticket: Ticket) -> TicketFacts:
    customer = await session.get(Customer, ticket.customer_id)
    texts = await customer_texts(session, ticket.id)
    return TicketFacts(channel=ticket.channel, priority=ticket.priority,
                       assignee=ticket.assignee, tags=list(customer.tags or []),
                       texts=texts, waiting_since=ticket.waiting_since or ticket.opened_at,
                       due_at=ticket.due_at)
