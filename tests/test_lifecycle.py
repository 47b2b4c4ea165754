"""One ticket lifecycle: the pure transitions, and the same rules whoever moves a ticket
(ingest, /reopen, a reload)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.domain import lifecycle
from core.domain.policy import Policy
from core.domain.records import TicketStatus
from core.escalation.sweep import Escalator
from core.intake.inbox import Inbox
from core.staff.commands import StaffDesk
from tests.conftest import START, make_settings
from tests.helpers import inbound
from tests.test_commands import ANNA, STAFF, load, ok

RULES = dict(staff=STAFF,
             promise=[{"name": "refunds", "keywords": ["refund"], "kind": "business_time",
                       "within": "1h"}],
             escalation=[{"name": "refund-lead", "keywords": ["refund"], "after": "10m",
                          "clock": "wall"}])


@dataclass
class Plain:
    """A ticket as plain data (what ingest builds before the insert)."""

    channel: str = "telegram"
    status: str = TicketStatus.OPEN
    priority: str = "normal"
    assignee: str | None = None
    cycle: int = 1
    escalation_level: int = 2
    waiting_since: datetime | None = START
    due_at: datetime | None = START
    next_escalation_at: datetime | None = START
    first_response_at: datetime | None = None
    snoozed_until: datetime | None = None
    closed_at: datetime | None = None
    opened_at: datetime = START


def test_an_answer_stops_the_clock_and_a_new_message_starts_a_cycle():
    policy = Policy(make_settings(**RULES))
    ticket = Plain()
    assert lifecycle.answered(ticket, "anna", START) is True
    assert (ticket.status, ticket.assignee, ticket.next_escalation_at) == ("answered", "anna",
                                                                          None)
    assert lifecycle.answered(ticket, "boris", START) is False  # not the first any more
    later = START + timedelta(hours=2)
    changes = lifecycle.customer_wrote(policy, ticket, ["hi", "a refund?"], [], later, later)
    assert [c.kind for c in changes] == ["cycle"]
    assert (ticket.status, ticket.cycle, ticket.escalation_level) == ("open", 2, 0)
    assert ticket.due_at == later + timedelta(hours=1)  # the refund rule on all texts
    assert ticket.next_escalation_at == later + timedelta(minutes=10)


def test_a_closed_ticket_is_reopened_and_a_snoozed_one_waits():
    policy = Policy(make_settings(**RULES))
    ticket = Plain()
    lifecycle.closed(ticket, START)
    changes = lifecycle.wait_again(policy, ticket, ["hello"], [], START)
    assert [c.kind for c in changes] == ["reopened", "cycle"] and ticket.closed_at is None
    assert ticket.next_escalation_at is None  # no rule matches "hello"
    until = START + timedelta(hours=1)
    lifecycle.snoozed(ticket, until)
    assert lifecycle.customer_wrote(policy, ticket, ["more"], [], START, START) == []
    assert (ticket.status, ticket.next_escalation_at) == ("snoozed", until)
    lifecycle.snooze_ended(ticket)
    assert (ticket.status, ticket.snoozed_until) == ("open", None)


async def test_rules_match_the_same_texts_at_ingest_reopen_and_reload(store, clock):
    """The refund keyword in the customer's SECOND message: a new cycle, a staff /reopen
    and a reload all give the promise of the refund rule (before, ingest matched the
    first text only and a reload matched all of them)."""
    settings = make_settings(**RULES)
    inbox, desk = Inbox(store, settings, clock), StaffDesk(store, settings, clock)
    escalator = Escalator(store, settings, clock)
    [ticket_id] = (await inbox.ingest([inbound("m1", text="hello")])).opened
    await inbox.ingest([inbound("m2", text="I want a refund")])
    await ok(desk, ANNA, f"/reply {ticket_id} checking")
    clock.advance(timedelta(minutes=5))
    await inbox.ingest([inbound("m3", text="any news?", at=clock.now())])
    ticket = await load(store, ticket_id)
    assert ticket.cycle == 2 and ticket.due_at == clock.now() + timedelta(hours=1)
    due_at_ingest = ticket.due_at

    assert await escalator.recompute_open_tickets() == 1
    assert (await load(store, ticket_id)).due_at == due_at_ingest

    await ok(desk, ANNA, f"/close {ticket_id}")
    await ok(desk, ANNA, f"/reopen {ticket_id}")
    ticket = await load(store, ticket_id)
    assert ticket.due_at == clock.now() + timedelta(hours=1)
    assert ticket.next_escalation_at == clock.now() + timedelta(minutes=10)


def test_the_message_that_starts_a_cycle_always_counts():
    """Rules read the latest messages: a long conversation cannot hide a new keyword."""
    policy = Policy(make_settings(**RULES))
    ticket = Plain(status=TicketStatus.ANSWERED)
    texts = [f"message {i}" for i in range(lifecycle.RULE_TEXTS)] + ["I want a refund"]
    later = START + timedelta(hours=1)
    lifecycle.customer_wrote(policy, ticket, texts, [], later, later)
    assert ticket.due_at == later + timedelta(hours=1)  # the refund rule
    assert lifecycle.texts_for_rules(texts)[-1] == "I want a refund"
    assert len(lifecycle.texts_for_rules(texts)) == lifecycle.RULE_TEXTS
