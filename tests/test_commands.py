"""The staff command language: parsing, every command against real tickets, authorization,
card edits, escaping of customer text, and fuzzing of the parser and the desk."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.delivery.contract import STAFF_CHANNEL
from core.delivery.enqueue import Lane
from core.domain.records import Direction, OutboxKind, OutboxState, TicketStatus
from core.intake.inbox import Inbox
from core.staff.cards import Button, StaffMessage, card_buttons
from core.staff.commands import Actor, Reply, StaffDesk
from core.staff.language import SPECS, Command, UsageError, parse
from core.store.engine import Store
from core.store.tables import Event, Message, Outbox, Ticket
from tests.conftest import START, make_settings
from tests.helpers import count, inbound, rows, update

STAFF = {"chat": "console", "members": [
    {"name": "anna", "telegram_id": 1, "role": "admin"},
    {"name": "boris", "telegram_id": 2},
]}
ANNA = Actor("anna", "admin", {"chat": -100, "message": 7})
BORIS = Actor("boris", "agent")
STRANGER = Actor(None)
BOT = "sameday_bot"
YESTERDAY = START - timedelta(days=1)  # Monday 10:00 Moscow: due Monday 18:00 (15:00 UTC)
TODAY_CLOSE = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tuesday 18:00 Moscow


@pytest.fixture
def staff_settings():
    return make_settings(staff=STAFF)


@pytest.fixture
def inbox(store, staff_settings, clock) -> Inbox:
    return Inbox(store, staff_settings, clock)


@pytest.fixture
def desk(store, staff_settings, clock) -> StaffDesk:
    return StaffDesk(store, staff_settings, clock)


@pytest.fixture
def lite_desk(sqlite_store, staff_settings, clock) -> StaffDesk:
    """For answers that do not depend on the database engine (SQLite only, faster)."""
    return StaffDesk(sqlite_store, staff_settings, clock)


async def open_ticket(inbox: Inbox, external_id: str, **kwargs) -> int:
    result = await inbox.ingest([inbound(external_id, **kwargs)])
    [ticket_id] = result.opened
    return ticket_id


async def load(store: Store, ticket_id: int) -> Ticket:
    async with store.session() as session:
        return await session.get(Ticket, ticket_id)


async def outbox_of(store: Store, ticket_id: int, kind: str) -> list[Outbox]:
    return await rows(store, sa.select(Outbox).where(Outbox.ticket_id == ticket_id,
                                                     Outbox.kind == kind).order_by(Outbox.id))


async def events_of(store: Store, ticket_id: int, kind: str) -> list[Event]:
    return await rows(store, sa.select(Event).where(Event.ticket_id == ticket_id,
                                                    Event.kind == kind).order_by(Event.id))


async def ok(desk: StaffDesk, actor: Actor, line: str) -> Reply:
    reply = await desk.execute(actor, line, BOT)
    assert reply.ok, reply.text
    return reply


async def refused(desk: StaffDesk, actor: Actor, line: str) -> Reply:
    reply = await desk.execute(actor, line, BOT)
    assert not reply.ok, reply.text
    return reply


def ticket_ids(text: str) -> list[int]:
    """The tickets a /queue or /sla reply lists, one a line."""
    return [int(n) for n in re.findall(r"^#(\d+) ", text, re.M)]


# --- parse (pure) --------------------------------------------------------------------------


def test_parse_ticket_numbers_and_bot_addressing():
    assert parse("/reply@sameday_bot #12 hello there", BOT) == Command("reply", 12, "hello there")
    assert parse("/show 12", BOT) == parse("/show #12", BOT) == Command("show", 12)
    assert parse("  /REPLY  5   Hi  ", BOT) == Command("reply", 5, "Hi")
    assert parse("/assign 3 @boris", BOT) == Command("assign", 3, "boris")
    assert parse("/priority 3 URGENT", BOT) == Command("priority", 3, "urgent")
    assert parse("/queue VK", BOT) == Command("queue", arg="vk")
    with pytest.raises(UsageError, match="@other_bot"):
        parse("/reply@other_bot 12 hello", BOT)


@pytest.mark.parametrize(("line", "usage"), [
    ("/reply 5", "Usage: /reply N <text>"),
    ("/note #5", "Usage: /note N <text>"),
    ("/snooze 5 soon", "Usage: /snooze N <duration>"),
    ("/snooze 5 0m", "Usage: /snooze N <duration>"),
    ("/snooze 5", "Usage: /snooze N <duration>"),
    ("/priority 5 max", "Usage: /priority N low|normal|high|urgent"),
    ("/assign 5", "Usage: /assign N <agent>"),
    ("/take abc", "Usage: /take N"),
    ("/take", "Usage: /take N"),
    ("/close #x", "Usage: /close N"),
    ("/show 1234567890", "Usage: /show N"),
    ("/close ٤", "Usage: /close N"),  # ASCII digits only (issue 12)
    ("/queue everything", "|vk|"),  # the installed channels, then mine and overdue
    ("hello", "Commands start with /"),
])
def test_parse_refuses_wrong_forms_with_the_usage(line, usage):
    with pytest.raises(UsageError) as error:
        parse(line, BOT)
    assert usage in str(error.value)


@pytest.mark.parametrize(("typo", "meant"), [
    ("/stast", "/stats"), ("/shwo 5", "/show"), ("/clsoe 5", "/close"),
    ("/reopn 5", "/reopen"), ("/relaod", "/reload"), ("/tkae 5", "/take"),
])
def test_unknown_command_suggests_the_closest(typo, meant):
    with pytest.raises(UsageError) as error:
        parse(typo, BOT)
    assert f"Did you mean {meant}?" in str(error.value)


def test_reply_text_may_start_on_the_next_line():
    # Staff often type "/reply 12", then Shift+Enter, then a multi-line answer.
    assert parse("/reply 12\nHello,\nit is fixed.", BOT) == Command(
        "reply", 12, "Hello,\nit is fixed.")


def test_absurd_snooze_duration_is_a_usage_error():
    with pytest.raises(UsageError, match="Usage: /snooze"):
        parse("/snooze 5 99999999999d", BOT)


@hypothesis_settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text())
def test_parse_raises_only_usage_errors_for_any_text(line):
    try:
        assert isinstance(parse(line, BOT), Command)
    except UsageError:
        pass


DURATION = st.builds("{}{}".format, st.integers(0, 10**6) | st.integers(10**6, 10**15),
                     st.sampled_from("dhmsDH"))
ARGUMENT = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"#?\d{1,12}", fullmatch=True),
    DURATION,
    DURATION,  # twice: durations are the richest argument grammar
    st.sampled_from(["low", "URGENT", "@boris", "mine", "vk", "2h", "1h30m", "#", "@", ""]),
)


@hypothesis_settings(max_examples=1000, deadline=None, derandomize=True)
@given(name=st.sampled_from(list(SPECS)),
       addressee=st.sampled_from(["", "@" + BOT, "@other", "@"]),
       number=st.sampled_from(["12", "#12", "x"]),
       arguments=st.lists(ARGUMENT, min_size=1, max_size=2),
       separator=st.sampled_from([" ", "  ", "\n"]))
def test_parse_raises_only_usage_errors_for_command_like_text(name, addressee, number,
                                                              arguments, separator):
    saved = " late" if name == "t" else ""  # /t names its saved answer first
    line = "/" + name + addressee + saved + " " + number + " " + separator.join(arguments)
    try:
        command = parse(line, BOT)
    except UsageError:
        return
    assert command.name == name
    assert (command.ticket == 12) == SPECS[name].needs_ticket


def test_actor_named_maps_configured_members_only(staff_settings, clock):
    desk = StaffDesk(None, staff_settings, clock)  # no database needed to look people up
    anna = desk.actor_named("anna", {"chat": -100})
    assert (anna.name, anna.role, anna.is_staff, anna.origin) == (
        "anna", "admin", True, {"chat": -100})
    boris = desk.actor_named("boris")
    assert (boris.name, boris.role, boris.is_staff) == ("boris", "agent", True)
    for stranger in ("", "Anna", "nobody"):
        actor = desk.actor_named(stranger)
        assert (actor.name, actor.is_staff) == (None, False)


# --- authorization ---------------------------------------------------------------------------


async def test_non_staff_are_refused_every_command_and_nothing_changes(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    lines = {"help": "/help", "queue": "/queue", "show": f"/show {ticket_id}",
             "take": f"/take {ticket_id}", "assign": f"/assign {ticket_id} boris",
             "reply": f"/reply {ticket_id} hi", "note": f"/note {ticket_id} hi",
             "close": f"/close {ticket_id}", "reopen": f"/reopen {ticket_id}",
             "snooze": f"/snooze {ticket_id} 1h", "priority": f"/priority {ticket_id} high",
             "stats": "/stats", "sla": "/sla", "whoami": "/whoami", "reload": "/reload",
             "edit": f"/edit {ticket_id} hi", "delete": f"/delete {ticket_id}",
             "t": f"/t late {ticket_id}", "templates": "/templates",
             "history": f"/history {ticket_id}", "customer": f"/customer {ticket_id}",
             "find": "/find order", "merge": f"/merge {ticket_id} {ticket_id + 1}",
             "link": f"/link {ticket_id} {ticket_id + 1}", "block": f"/block {ticket_id}",
             "unblock": f"/unblock {ticket_id}", "blocked": "/blocked",
             "forget": f"/forget {ticket_id} yes"}
    assert set(lines) == set(SPECS)  # every command is tried
    before = {table.__name__: await count(store, table) for table in (Message, Outbox, Event)}
    for line in [*lines.values(), "/nonsense", "hello"]:
        reply = await refused(desk, STRANGER, line)
        assert "only for the support team" in reply.text and not reply.reload
        assert f"#{ticket_id}" not in reply.text
    after = {table.__name__: await count(store, table) for table in (Message, Outbox, Event)}
    assert after == before
    ticket = await load(store, ticket_id)
    assert (ticket.status, ticket.assignee, ticket.priority) == ("open", None, "normal")


async def test_reload_is_for_admins_only(lite_desk):
    reply = await refused(lite_desk, BORIS, "/reload")
    assert "admins only" in reply.text and not reply.reload
    reply = await ok(lite_desk, ANNA, "/reload")
    assert reply.reload


async def test_help_lists_reload_for_admins_only(lite_desk):
    admin = (await ok(lite_desk, ANNA, "/help")).text
    agent = (await ok(lite_desk, BORIS, "/help")).text
    for name, spec in SPECS.items():
        assert f"/{name}" in admin
        assert (f"/{name}" in agent) == (not spec.admin)
    assert "/reload" not in agent
    assert "/reply N <text>" in admin  # plain text: the staff chat escapes it


async def test_whoami(lite_desk):
    assert (await ok(lite_desk, ANNA, "/whoami")).text == "You are anna (admin)."
    assert (await ok(lite_desk, BORIS, "/whoami")).text == "You are boris (agent)."


# --- reply and note --------------------------------------------------------------------------


async def test_reply_queues_the_answer_and_records_the_first_response(desk, inbox, store,
                                                                      clock):
    ticket_id = await open_ticket(inbox, "m1", author="u1")
    clock.advance(timedelta(minutes=30))
    reply = await ok(desk, ANNA, f"/reply@{BOT} #{ticket_id} Hello, it is fixed.")
    assert reply.ticket_id == ticket_id and "Telegram" in reply.text and "u1" in reply.text

    [message] = await rows(store, sa.select(Message).where(Message.direction == Direction.OUT))
    assert (message.ticket_id, message.author, message.text, message.created_at) == (
        ticket_id, "anna", "Hello, it is fixed.", clock.now())
    [row] = await outbox_of(store, ticket_id, OutboxKind.REPLY)
    assert (row.channel, row.text, row.state) == ("telegram", "Hello, it is fixed.",
                                                  OutboxState.PENDING)
    assert row.target == {"chat_id": "u1",
                          "confirm": {"by": "anna", "origin": {"chat": -100, "message": 7}}}
    assert row.idempotency_key == f"reply:{message.id}"

    ticket = await load(store, ticket_id)
    assert ticket.status == TicketStatus.ANSWERED
    assert ticket.first_response_at == START + timedelta(minutes=30)
    assert ticket.assignee == "anna" and ticket.next_escalation_at is None
    [event] = await events_of(store, ticket_id, "answered")
    assert (event.actor, event.data["first"], event.data["message_id"]) == (
        "anna", True, message.id)
    assert event.data["response_seconds"] == 30 * 60 + 1  # the message arrived at START - 1s

    # A second answer: another message and outbox row, but the first response time stays.
    clock.advance(timedelta(minutes=10))
    await ok(desk, BORIS, f"/reply {ticket_id} One more thing.")
    ticket = await load(store, ticket_id)
    assert ticket.first_response_at == START + timedelta(minutes=30)
    assert ticket.assignee == "anna"  # an existing assignee is kept
    assert len(await outbox_of(store, ticket_id, OutboxKind.REPLY)) == 2
    events = await events_of(store, ticket_id, "answered")
    assert [e.data["first"] for e in events] == [True, False]


async def test_reply_to_a_snoozed_ticket_wakes_it_and_keeps_the_assignee(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    await ok(desk, ANNA, f"/assign {ticket_id} boris")
    await ok(desk, ANNA, f"/snooze {ticket_id} 1h")
    await ok(desk, ANNA, f"/reply {ticket_id} done")
    ticket = await load(store, ticket_id)
    assert (ticket.status, ticket.assignee, ticket.snoozed_until) == ("answered", "boris", None)


async def test_reply_without_an_address_is_refused(desk, inbox, store):
    message = dataclasses.replace(inbound("m1"), reply_target={})
    [ticket_id] = (await inbox.ingest([message])).opened
    reply = await refused(desk, ANNA, f"/reply {ticket_id} hi")
    assert "no address" in reply.text
    assert await outbox_of(store, ticket_id, OutboxKind.REPLY) == []
    assert (await load(store, ticket_id)).status == TicketStatus.OPEN


async def test_note_is_stored_but_never_sent(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    outbox_before = await count(store, Outbox)
    reply = await ok(desk, BORIS, f"/note {ticket_id} customer is a VIP")
    assert "not sent" in reply.text
    [note] = await rows(store, sa.select(Message).where(Message.direction == Direction.NOTE))
    assert (note.ticket_id, note.author, note.text) == (ticket_id, "boris", "customer is a VIP")
    assert await count(store, Outbox) == outbox_before  # nothing to the customer
    assert len(await events_of(store, ticket_id, "note")) == 1
    ticket = await load(store, ticket_id)
    assert (ticket.status, ticket.first_response_at) == ("open", None)


# --- take, assign, close, reopen, snooze, priority -----------------------------------------


async def test_take_and_assign_set_the_assignee(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    reply = await ok(desk, BORIS, f"/take {ticket_id}")
    assert "yours, boris" in reply.text
    assert (await load(store, ticket_id)).assignee == "boris"
    assert [e.actor for e in await events_of(store, ticket_id, "taken")] == ["boris"]

    await ok(desk, BORIS, f"/assign #{ticket_id} @anna")
    assert (await load(store, ticket_id)).assignee == "anna"
    [event] = await events_of(store, ticket_id, "assigned")
    assert event.data == {"to": "anna"}


async def test_a_reopened_ticket_gets_the_promise_and_escalation_rules(store, clock):
    """/reopen and a customer's new message start a waiting cycle by the same rules: the
    promise rule matched on the customer's messages, and the first escalation planned."""
    settings = make_settings(
        staff=STAFF, promise=[{"name": "refunds", "keywords": ["refund"],
                               "kind": "business_time", "within": "1h"}],
        escalation=[{"name": "nudge", "after": "30m", "clock": "wall"}])
    inbox, desk = Inbox(store, settings, clock), StaffDesk(store, settings, clock)
    ticket_id = await open_ticket(inbox, "m1", text="I want a refund")
    await ok(desk, ANNA, f"/close {ticket_id}")
    clock.advance(timedelta(days=1))  # Wednesday 10:00 Moscow
    await ok(desk, BORIS, f"/reopen {ticket_id}")
    ticket = await load(store, ticket_id)
    assert ticket.due_at == clock.now() + timedelta(hours=1)  # the refund rule, not same day
    assert ticket.next_escalation_at == clock.now() + timedelta(minutes=30)
    # The same audit trail as when the customer reopens it: "reopened", then "cycle".
    [reopened] = await events_of(store, ticket_id, "reopened")
    [cycle] = await events_of(store, ticket_id, "cycle")
    assert reopened.actor == cycle.actor == "boris" and reopened.id < cycle.id
    assert cycle.data["cycle"] == 2


async def test_assign_to_someone_who_is_not_staff(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    reply = await refused(desk, ANNA, f"/assign {ticket_id} nobody")
    assert reply.text == "No staff member nobody. Staff: anna, boris."
    assert (await load(store, ticket_id)).assignee is None


async def test_close_and_reopen(desk, inbox, store, clock):
    ticket_id = await open_ticket(inbox, "m1")
    await ok(desk, ANNA, f"/close {ticket_id}")
    ticket = await load(store, ticket_id)
    assert (ticket.status, ticket.closed_at, ticket.next_escalation_at) == (
        "closed", START, None)
    reply = await refused(desk, ANNA, f"/close {ticket_id}")
    assert "already closed" in reply.text

    clock.advance(timedelta(days=1))  # Wednesday 10:00 Moscow
    reply = await ok(desk, BORIS, f"/reopen {ticket_id}")
    assert "reopened" in reply.text
    ticket = await load(store, ticket_id)
    wednesday_close = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    assert (ticket.status, ticket.closed_at, ticket.cycle) == ("open", None, 2)
    assert ticket.due_at == wednesday_close
    assert ticket.waiting_since == clock.now()
    assert ticket.next_escalation_at is None  # no escalation rule to plan
    assert ticket.escalation_level == 0
    assert len(await events_of(store, ticket_id, "reopened")) == 1

    reply = await refused(desk, BORIS, f"/reopen {ticket_id}")
    assert "is not closed" in reply.text
    assert (await load(store, ticket_id)).cycle == 2


async def test_snooze_moves_the_escalation_clock(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    reply = await ok(desk, ANNA, f"/snooze {ticket_id} 1h30m")
    assert "snoozed until 24.11 11:30" in reply.text  # Moscow time
    ticket = await load(store, ticket_id)
    until = START + timedelta(hours=1, minutes=30)
    assert (ticket.status, ticket.snoozed_until, ticket.next_escalation_at) == (
        "snoozed", until, until)
    [event] = await events_of(store, ticket_id, "snoozed")
    assert event.data == {"until": until.isoformat()}


async def test_snooze_of_an_answered_ticket_is_explained(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    await ok(desk, ANNA, f"/reply {ticket_id} hi")
    reply = await refused(desk, ANNA, f"/snooze {ticket_id} 1h")
    assert "answered" in reply.text
    assert (await load(store, ticket_id)).status == TicketStatus.ANSWERED


async def test_absurd_snooze_duration_is_refused_not_a_crash(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    for duration in ("3000000d", "99999999999d"):
        reply = await refused(desk, ANNA, f"/snooze {ticket_id} {duration}")
        assert "/snooze" in reply.text
    assert (await load(store, ticket_id)).status == TicketStatus.OPEN


async def test_nul_characters_in_a_note_or_reply_do_not_crash(desk, inbox, store):
    # PostgreSQL text cannot hold NUL; a pasted or console line may contain one.
    ticket_id = await open_ticket(inbox, "m1")
    for line in (f"/note {ticket_id} a\x00b", f"/reply {ticket_id} c\x00d"):
        reply = await desk.execute(ANNA, line, BOT)  # must not raise
        assert reply.ok, reply.text
    directions = await rows(store, sa.select(Message.direction).where(
        Message.ticket_id == ticket_id, Message.direction != Direction.IN))
    assert sorted(directions) == ["note", "out"]


async def test_priority(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    reply = await ok(desk, BORIS, f"/priority {ticket_id} Urgent")
    assert "urgent" in reply.text
    assert (await load(store, ticket_id)).priority == "urgent"
    [event] = await events_of(store, ticket_id, "priority")
    assert event.data == {"priority": "urgent"}


async def test_commands_on_a_closed_ticket_are_explained(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    await ok(desk, ANNA, f"/close {ticket_id}")
    for line in (f"/reply {ticket_id} hi", f"/take {ticket_id}",
                 f"/assign {ticket_id} boris", f"/snooze {ticket_id} 1h"):
        reply = await refused(desk, BORIS, line)
        assert f"#{ticket_id} is closed" in reply.text, line
    replies = await refused(desk, BORIS, f"/reply {ticket_id} hi")
    assert f"/reopen {ticket_id}" in replies.text
    ticket = await load(store, ticket_id)
    assert (ticket.status, ticket.assignee, ticket.snoozed_until) == ("closed", None, None)
    assert await count(store, Message) == 1  # only the customer's message
    assert await outbox_of(store, ticket_id, OutboxKind.REPLY) == []


async def test_unknown_ticket_numbers(desk, inbox):
    await open_ticket(inbox, "m1")
    for name, spec in SPECS.items():
        if not spec.needs_ticket:
            continue
        arg = {"assign": " boris", "snooze": " 1h", "priority": " high",
               "merge": " 1", "link": " 1"}.get(name, " text" if spec.rest else "")
        head = f"/{name} late" if name == "t" else f"/{name}"  # /t names its answer first
        reply = await refused(desk, ANNA, f"{head} #9999{arg}")
        assert reply.text == "There is no ticket #9999.", name


@pytest.mark.parametrize(("line", "expected"), [
    ("/reply 5", "Usage: /reply N <text>"),
    ("/snooze 5 soon", "Usage: /snooze N <duration>"),
    ("/priority 5 max", "Usage: /priority N low|normal|high|urgent"),
    ("/take abc", "Usage: /take N"),
    ("/stast", "Did you mean /stats?"),
    ("/take@other_bot 5", "That command is for @other_bot."),
])
async def test_wrong_forms_get_a_short_usage_reply(lite_desk, line, expected):
    reply = await refused(lite_desk, ANNA, line)
    assert expected in reply.text and len(reply.text) < 200



async def test_command_for_another_bot_changes_nothing(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    await refused(desk, ANNA, f"/reply@other_bot {ticket_id} hi")
    assert await outbox_of(store, ticket_id, OutboxKind.REPLY) == []
    assert (await load(store, ticket_id)).status == TicketStatus.OPEN


# --- queue, show, stats, sla -------------------------------------------------------------------


async def test_queue_lists_waiting_tickets_due_first_with_filters(desk, inbox, store):
    today = await open_ticket(inbox, "m1", author="u1")  # due today 18:00
    late = await open_ticket(inbox, "m2", channel="vk", author="u2", at=YESTERDAY)
    snoozed = await open_ticket(inbox, "m3", channel="twitter", author="u3")
    closed = await open_ticket(inbox, "m4", author="u4")
    answered = await open_ticket(inbox, "m5", author="u5")
    await ok(desk, BORIS, f"/take {snoozed}")
    await ok(desk, BORIS, f"/snooze {snoozed} 2h")
    await ok(desk, ANNA, f"/close {closed}")
    await ok(desk, ANNA, f"/reply {answered} hi")

    reply = await ok(desk, ANNA, "/queue")
    assert ticket_ids(reply.text) == [late, today, snoozed]  # due first, then by number
    lines = reply.text.splitlines()
    assert "⚠ overdue" in lines[0] and "VK" in lines[0] and "u2" in lines[0]
    assert "⚠ overdue" not in lines[1] and "сегодня до 18:00" in lines[1]
    assert "· boris" in lines[2] and "X" in lines[2]
    assert ticket_ids((await ok(desk, ANNA, "/queue telegram")).text) == [today]
    assert ticket_ids((await ok(desk, ANNA, "/queue vk")).text) == [late]
    assert ticket_ids((await ok(desk, ANNA, "/queue twitter")).text) == [snoozed]
    assert ticket_ids((await ok(desk, BORIS, "/queue mine")).text) == [snoozed]
    assert (await ok(desk, ANNA, "/queue mine")).text == "Nothing waiting (mine)."
    assert ticket_ids((await ok(desk, ANNA, "/queue overdue")).text) == [late]


async def test_queue_overdue_follows_the_clock(desk, inbox, clock):
    ticket_id = await open_ticket(inbox, "m1")
    assert (await ok(desk, ANNA, "/queue overdue")).text == "Nothing waiting (overdue)."
    clock.set(TODAY_CLOSE + timedelta(minutes=1))
    reply = await ok(desk, ANNA, "/queue overdue")
    assert ticket_ids(reply.text) == [ticket_id] and "⚠ overdue" in reply.text


async def test_queue_when_nothing_waits(lite_desk):
    assert (await ok(lite_desk, ANNA, "/queue")).text == "Nothing waiting."


async def test_show_lists_the_messages(desk, inbox, clock):
    ticket_id = await open_ticket(inbox, "m1", author="u1", handle="@kate", text="where is it?")
    clock.advance(timedelta(minutes=5))
    await ok(desk, BORIS, f"/note {ticket_id} checking the warehouse")
    await ok(desk, BORIS, f"/reply {ticket_id} on its way")
    reply = await ok(desk, ANNA, f"/show #{ticket_id}")
    assert reply.ticket_id == ticket_id
    assert reply.text.startswith(f"#{ticket_id} · Telegram · @kate")
    history = reply.text.split("\n\n", 1)[1].splitlines()[-3:]
    assert history == ["👤 24.11 09:59 @kate: where is it?",
                       "📝 24.11 10:05 boris: checking the warehouse",
                       "💬 24.11 10:05 boris: on its way"]
    assert "✅ answered · boris" in reply.text


async def test_stats_counts_today(desk, inbox, clock):
    # Monday: a ticket received and answered; it is not part of today's figures.
    clock.set(YESTERDAY)
    monday = await open_ticket(inbox, "y1", author="u0", at=YESTERDAY)
    await ok(desk, ANNA, f"/reply {monday} hi")
    clock.set(START)
    # Today: 5 messages received; 2 tickets opened today (u1, u3), 2 opened yesterday by
    # the platform's clock (u2, u5); answered today: u1's (same day) and u2's.
    result = await inbox.ingest([
        inbound("m1", author="u1"), inbound("m2", channel="vk", author="u2", at=YESTERDAY),
        inbound("m3", channel="twitter", author="u3"),
        inbound("m5", channel="vk", author="u5", at=YESTERDAY)])
    t1, t2, _t3, _t5 = result.opened
    await inbox.ingest([inbound("m4", author="u1", text="any news?")])
    await ok(desk, ANNA, f"/reply {t1} hi")
    await ok(desk, ANNA, f"/reply {t2} hi")
    reply = await ok(desk, BORIS, "/stats")
    assert reply.text == ("Today (24.11): received 5, new tickets 2, acknowledged 2, "
                          "answered 2.\nSame-day answer rate: 50% (1 of 2). Overdue now: 1.")


async def test_stats_on_an_empty_day(lite_desk):
    reply = await ok(lite_desk, ANNA, "/stats")
    assert "received 0, new tickets 0" in reply.text and "rate: — (0 of 0)" in reply.text


async def test_sla_lists_the_tickets_closest_to_their_promise(desk, inbox, clock):
    today = await open_ticket(inbox, "m1", author="u1")
    late = await open_ticket(inbox, "m2", channel="vk", author="u2", at=YESTERDAY)
    answered = await open_ticket(inbox, "m3", author="u3")
    snoozed = await open_ticket(inbox, "m4", author="u4")
    await ok(desk, ANNA, f"/reply {answered} hi")
    await ok(desk, ANNA, f"/snooze {snoozed} 1h")
    reply = await ok(desk, ANNA, "/sla")
    assert ticket_ids(reply.text) == [late, today]
    first, second = reply.text.splitlines()
    assert first.endswith("overdue by 16h") and second.endswith("8h left")

    clock.set(TODAY_CLOSE + timedelta(minutes=30, seconds=20))
    second = (await ok(desk, ANNA, "/sla")).text.splitlines()[1]
    assert second.endswith("overdue by 30m")


async def test_sla_when_nothing_waits(lite_desk):
    assert "every promise is safe" in (await ok(lite_desk, ANNA, "/sla")).text


# --- card edits ---------------------------------------------------------------------------------


async def deliver_card(store: Store, ticket_id: int, external_id: str) -> None:
    """What the dispatcher does once the staff card is sent."""
    await update(store, sa.update(Outbox).where(
        Outbox.ticket_id == ticket_id, Outbox.kind == OutboxKind.STAFF_CARD,
    ).values(external_id=external_id, state=OutboxState.SENT))


async def test_take_edits_a_delivered_card(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1", text="my order is late")
    await deliver_card(store, ticket_id, "501")
    await ok(desk, ANNA, f"/take {ticket_id}")
    [edit] = await outbox_of(store, ticket_id, OutboxKind.CARD_EDIT)
    assert edit.channel == STAFF_CHANNEL
    message = StaffMessage.from_row(edit.target)
    assert message.edit == "501" and message.ticket_id == ticket_id
    assert message.buttons == card_buttons(ticket_id, TicketStatus.OPEN)
    assert edit.lane == Lane.CHATTER
    assert "👤 anna" in edit.text and "taken by anna" in edit.text
    assert "my order is late" in edit.text

    await ok(desk, ANNA, f"/close {ticket_id}")
    edits = await outbox_of(store, ticket_id, OutboxKind.CARD_EDIT)
    assert len(edits) == 2 and edits[1].target["edit"] == "501"
    assert StaffMessage.from_row(edits[1].target).buttons == (
        Button("Reopen", f"/reopen {ticket_id}"),)
    assert "🔒 closed" in edits[1].text


async def test_no_card_edit_when_the_card_was_never_delivered(desk, inbox, store):
    ticket_id = await open_ticket(inbox, "m1")
    await ok(desk, ANNA, f"/take {ticket_id}")
    await ok(desk, ANNA, f"/reply {ticket_id} hi")
    assert await outbox_of(store, ticket_id, OutboxKind.CARD_EDIT) == []


# --- customer text cannot inject markup ----------------------------------------------------------

EVIL = "<b>bold</b> <a href='http://evil'>x</a>"


async def test_customer_markup_stays_data_on_the_card_and_in_show(desk, inbox, store):
    """Core keeps the customer's text as it is (data, no markup of its own); the staff
    chat escapes it when it renders (tests/test_staff_telegram.py checks Telegram's)."""
    ticket_id = await open_ticket(inbox, "m1", text=EVIL, handle="@<i>kate</i>")
    [card] = await outbox_of(store, ticket_id, OutboxKind.STAFF_CARD)
    data = StaffMessage.from_row(card.target).card
    assert data.quote == EVIL and data.customer == "@<i>kate</i>"
    show = (await ok(desk, ANNA, f"/show {ticket_id}")).text
    for text in (card.text, show):
        assert EVIL in text and "@<i>kate</i>" in text and "&lt;" not in text


# --- fuzzing the desk (SQLite only, to stay fast) -------------------------------------------------


LINE = st.one_of(
    st.text(max_size=40),
    st.builds("/snooze 1 {}{}".format, st.integers(0, 10**12), st.sampled_from("dhms")),
    st.builds(lambda name, args: "/" + name + " " + " ".join(args),
              st.sampled_from([*SPECS, "repyl", ""]),
              st.lists(st.one_of(st.sampled_from(["1", "#1", "#2", "999", "boris", "nobody",
                                                  "high", "2h", "0s", "mine", "overdue"]),
                                 st.from_regex(r"\d{1,8}[dhm]", fullmatch=True),
                                 st.text(max_size=10)), max_size=3)),
)


@hypothesis_settings(max_examples=60, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture],
                     phases=[Phase.explicit, Phase.generate])  # shrinking the DB is slow
@given(lines=st.lists(LINE, min_size=1, max_size=3))
async def test_execute_never_raises_for_a_staff_member(sqlite_store, staff_settings, clock,
                                                       lines):
    inbox = Inbox(sqlite_store, staff_settings, clock)
    await inbox.ingest([inbound("m1"), inbound("m2", author="u2")])  # tickets 1 and 2, once
    desk = StaffDesk(sqlite_store, staff_settings, clock)
    for line in lines:
        reply = await desk.execute(BORIS, line, BOT)
        assert isinstance(reply, Reply) and reply.text
        assert not reply.reload  # boris is an agent


async def test_a_redelivered_staff_message_answers_the_customer_once(desk, inbox, store):
    """A chat may deliver the same staff message again after a crash; the customer must
    not get the answer twice."""
    ticket_id = await open_ticket(inbox, "m-redelivered")
    staff = Actor("anna", "admin", {"chat_id": -100, "message_id": 42, "key": "-100:42"})
    await ok(desk, staff, f"/reply {ticket_id} Your order ships today")
    again = await desk.execute(staff, f"/reply {ticket_id} Your order ships today")
    assert not again.ok and "Already done" in again.text
    replies = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.REPLY))
    assert len(replies) == 1
    messages = await rows(store, sa.select(Message).where(Message.direction == "out"))
    assert len(messages) == 1



async def test_a_reply_longer_than_the_limit_is_refused_with_the_limit_named(store, clock):
    settings = make_settings(staff={**STAFF, "max_reply_chars": 50})
    inbox, desk = Inbox(store, settings, clock), StaffDesk(store, settings, clock)
    ticket_id = await open_ticket(inbox, "m1")
    reply = await refused(desk, ANNA, f"/reply {ticket_id} " + "x" * 51)
    assert "51 characters; the limit is 50 (staff.max_reply_chars)" in reply.text
    assert await outbox_of(store, ticket_id, OutboxKind.REPLY) == []
    await ok(desk, ANNA, f"/reply {ticket_id} " + "x" * 50)
