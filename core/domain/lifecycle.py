"""The life of a ticket: every transition, and the rules that apply on it.

Ingest, the staff commands, the escalation sweep and a config reload all change tickets
through these functions, so a ticket follows one set of rules whoever moves it:

    open ──answer──▶ answered ──customer writes──▶ open (a new waiting cycle)
     │ ▲                 │
     │ └──snooze ends──  └──close──▶ closed ──customer writes / /reopen──▶ open (new cycle)
     └──snooze──▶ snoozed

Whenever a ticket starts waiting (opened, a new cycle, reopened by staff, recomputed on
reload) it gets its promise from the calendar and the first matching promise rule, and
the time of its first escalation from the rules it matches. Rules are always matched on
the same texts: the customer's latest messages of the ticket (``texts_for_rules``).

Pure: no database, no clock. Functions change the ticket object they are given (an ORM
row or a ticket being built by ingest) and return the changes for the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from core.config.settings import EscalationRule
from core.domain.policy import Policy
from core.domain.records import Priority, TicketStatus
from core.domain.rules import PRIORITY_RANK

WAITING = (TicketStatus.OPEN, TicketStatus.SNOOZED)
# Rules look at this many of the customer's latest messages of a ticket: the message that
# starts a new cycle always counts, and a long conversation is not read whole each sweep.
RULE_TEXTS = 20


class TicketState(Protocol):
    """The fields of a ticket its transitions read and write."""

    channel: str
    status: str
    priority: str
    assignee: str | None
    cycle: int
    escalation_level: int
    waiting_since: datetime | None
    due_at: datetime | None
    next_escalation_at: datetime | None
    first_response_at: datetime | None
    snoozed_until: datetime | None
    closed_at: datetime | None
    opened_at: datetime


@dataclass(frozen=True)
class Change:
    """One entry of the audit trail (an Event of this kind with this data)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Promise:
    """What a ticket that starts waiting is promised, and when the sweep first looks."""

    due_at: datetime
    first_escalation: datetime | None


def texts_for_rules(texts: list[str]) -> list[str]:
    """The texts rules match, from the customer's messages of a ticket, oldest first."""
    return texts[-RULE_TEXTS:]


def promise(policy: Policy, channel: str, texts: list[str], tags: list[str],
            waiting_since: datetime, priority: str = Priority.NORMAL,
            assignee: str | None = None) -> Promise:
    """The promise and the first escalation of a wait that starts at `waiting_since`."""
    texts = texts_for_rules(texts)
    due = policy.deadline(channel, texts, tags, waiting_since)
    return Promise(due, policy.first_escalation(channel, texts, tags, waiting_since, due,
                                                priority, assignee))


def wait_again(policy: Policy, ticket: TicketState, texts: list[str], tags: list[str],
               at: datetime) -> list[Change]:
    """The customer wrote to an answered or closed ticket, or staff reopened it: it waits
    again, in a new cycle with a new promise, and every rule may fire again."""
    changes = []
    if ticket.status == TicketStatus.CLOSED:
        ticket.closed_at = None
        changes.append(Change("reopened"))
    ticket.status = TicketStatus.OPEN
    ticket.cycle += 1
    ticket.escalation_level = 0
    ticket.waiting_since = at
    ticket.snoozed_until = None
    planned = promise(policy, ticket.channel, texts, tags, at, ticket.priority, ticket.assignee)
    ticket.due_at, ticket.next_escalation_at = planned.due_at, planned.first_escalation
    changes.append(Change("cycle", {"cycle": ticket.cycle, "due_at": ticket.due_at.isoformat()}))
    return changes


def customer_wrote(policy: Policy, ticket: TicketState, texts: list[str], tags: list[str],
                   at: datetime, now: datetime) -> list[Change]:
    """A new customer message on an existing ticket."""
    if ticket.status in (TicketStatus.ANSWERED, TicketStatus.CLOSED):
        return wait_again(policy, ticket, texts, tags, at)
    if policy.keyword_rules:  # the message may bring a keyword a rule waits for
        _plan_again(ticket, now)
    return []


def answered(ticket: TicketState, by: str | None, now: datetime) -> bool:
    """A staff answer: the clock stops until the customer writes again. True when it is
    the ticket's first answer."""
    first = ticket.first_response_at is None
    if first:
        ticket.first_response_at = now
    ticket.status = TicketStatus.ANSWERED
    ticket.assignee = ticket.assignee or by
    ticket.next_escalation_at = None
    ticket.snoozed_until = None
    return first


def closed(ticket: TicketState, now: datetime) -> None:
    ticket.status = TicketStatus.CLOSED
    ticket.closed_at = now
    ticket.next_escalation_at = None


def snoozed(ticket: TicketState, until: datetime) -> None:
    """Put aside: rules that fall due meanwhile fire when the snooze ends."""
    ticket.status = TicketStatus.SNOOZED
    ticket.snoozed_until = until
    ticket.next_escalation_at = until


def snooze_ended(ticket: TicketState) -> None:
    ticket.status = TicketStatus.OPEN
    ticket.snoozed_until = None


def assigned(ticket: TicketState, assignee: str | None, now: datetime) -> None:
    """Taken or assigned: rules that look at the assignee are planned again."""
    ticket.assignee = assignee
    _plan_again(ticket, now)


def prioritized(ticket: TicketState, priority: str, now: datetime) -> None:
    """A new priority: rules that look at it are planned again."""
    ticket.priority = priority
    _plan_again(ticket, now)


def _plan_again(ticket: TicketState, now: datetime) -> None:
    # The sweep plans a waiting ticket again now; rules already fired in this cycle stay
    # fired (unique per ticket, rule and cycle).
    if ticket.status == TicketStatus.OPEN:
        ticket.next_escalation_at = min(ticket.next_escalation_at or now, now)


def escalated(ticket: TicketState, rule: EscalationRule) -> None:
    """A rule fired: one level up, and its assignment and priority actions."""
    ticket.escalation_level += 1
    if rule.assign:
        ticket.assignee = rule.assign
    if rule.raise_priority and \
            PRIORITY_RANK[rule.raise_priority] > PRIORITY_RANK[ticket.priority]:
        ticket.priority = rule.raise_priority


def replanned(policy: Policy, ticket: TicketState, texts: list[str], tags: list[str],
              now: datetime) -> None:
    """A reloaded config: the waiting ticket's promise under the new calendar and rules,
    and its escalations planned again by the next sweep."""
    if ticket.status not in WAITING:
        return
    ticket.due_at = policy.deadline(ticket.channel, texts_for_rules(texts), tags,
                                    ticket.waiting_since or ticket.opened_at)
    if ticket.status == TicketStatus.OPEN:
        ticket.next_escalation_at = now
