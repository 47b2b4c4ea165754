"""The ticket transitions of /merge and /block, beside core.domain.lifecycle's.

Pure, like lifecycle: functions change the ticket objects they are given and return the
changes for the audit trail.
"""

from __future__ import annotations

from datetime import datetime

from core.domain.lifecycle import WAITING, Change, TicketState, closed
from core.domain.records import TicketStatus
from core.domain.rules import PRIORITY_RANK


def merged(target: TicketState, source: TicketState, now: datetime) -> list[Change]:
    """``source`` is merged into ``target`` (its messages already moved there): the
    source is closed; the target carries on the customer's wait.

    - A waiting source makes the target wait too, with the earlier promise of the two
      and the earlier start of the wait (an answered target waits again, in a new
      cycle, with the source's promise); a promise of a ticket that is not waiting was
      kept or is over, and changes nothing.
    - The higher priority of the two stays; an unassigned target takes the source's
      assignee.
    """
    changes: list[Change] = []
    if source.status in WAITING and target.status != TicketStatus.CLOSED:
        if target.status in WAITING:
            if source.due_at is not None and (target.due_at is None
                                              or source.due_at < target.due_at):
                target.due_at = source.due_at
            target.waiting_since = min(target.waiting_since or target.opened_at,
                                       source.waiting_since or source.opened_at)
        else:  # answered: the source's customer still waits for an answer
            target.status = TicketStatus.OPEN
            target.cycle += 1
            target.escalation_level = 0
            target.snoozed_until = None
            target.waiting_since = source.waiting_since or source.opened_at
            target.due_at = source.due_at
            changes.append(Change("cycle", {"cycle": target.cycle,
                                            "due_at": target.due_at.isoformat()
                                            if target.due_at else None}))
        if target.status == TicketStatus.OPEN:
            # The sweep plans its escalations again now, on the earlier promise.
            target.next_escalation_at = now
    if PRIORITY_RANK[source.priority] > PRIORITY_RANK[target.priority]:
        target.priority = source.priority
    target.assignee = target.assignee or source.assignee
    closed(source, now)
    return changes


def escalations_held(ticket: TicketState) -> None:
    """The customer is blocked: the ticket's escalations stop (the sweep skips it)."""
    ticket.next_escalation_at = None


def escalations_resumed(ticket: TicketState, now: datetime) -> None:
    """The customer is unblocked: a waiting ticket's escalations are planned again by
    the next sweep (a snoozed one when its snooze ends)."""
    if ticket.status == TicketStatus.OPEN:
        ticket.next_escalation_at = now
    elif ticket.status == TicketStatus.SNOOZED:
        ticket.next_escalation_at = ticket.snoozed_until or now
