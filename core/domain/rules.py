"""Escalation rules as pure functions: which rules a ticket matches, when each
falls due, and the plan of what is still to fire in the current waiting cycle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.config.settings import EscalationRule
from core.domain.calendar import BusinessCalendar
from core.domain.records import Priority

PRIORITY_RANK = {p: i for i, p in enumerate(
    (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT))}


@dataclass(frozen=True)
class TicketFacts:
    """What rule conditions and triggers look at."""

    channel: str
    priority: str
    assignee: str | None
    tags: list[str]
    texts: list[str]  # the customer's messages of the ticket
    waiting_since: datetime
    due_at: datetime


def matches(rule: EscalationRule, facts: TicketFacts) -> bool:
    """Every condition the rule sets holds (an empty condition holds)."""
    if rule.channels and facts.channel not in rule.channels:
        return False
    if rule.priorities and facts.priority not in rule.priorities:
        return False
    if rule.unassigned and facts.assignee:
        return False
    if rule.tags and not set(rule.tags) & set(facts.tags):
        return False
    if rule.keywords:
        text = " ".join(facts.texts).casefold()
        if not any(keyword.casefold() in text for keyword in rule.keywords):
            return False
    return True


def trigger_time(rule: EscalationRule, facts: TicketFacts,
                 calendar: BusinessCalendar) -> datetime:
    """When the rule falls due for this ticket (before business_hours_only applies)."""
    if rule.after is not None:
        if rule.clock == "business":
            return calendar.add_business_time(facts.waiting_since, rule.after)
        return facts.waiting_since + rule.after
    if rule.before_due is not None:
        return max(facts.waiting_since, facts.due_at - rule.before_due)
    return facts.due_at


def fire_time(rule: EscalationRule, facts: TicketFacts, calendar: BusinessCalendar) -> datetime:
    """When it fires: a business_hours_only rule waits for the next opening."""
    when = trigger_time(rule, facts, calendar)
    return calendar.next_opening(when) if rule.business_hours_only else when


def plan(rules: list[EscalationRule], facts: TicketFacts, fired: set[str],
         calendar: BusinessCalendar) -> list[tuple[datetime, EscalationRule]]:
    """The rules still to fire in this cycle, in the order they fall due."""
    pending = [(fire_time(rule, facts, calendar), index, rule)
               for index, rule in enumerate(rules)
               if rule.name not in fired and matches(rule, facts)]
    return [(when, rule) for when, _, rule in sorted(pending, key=lambda p: (p[0], p[1]))]
