"""`/history`, `/customer`, `/find`: who the customer is and what they wrote before.

Read-only: nothing here changes a ticket. ``/find`` searches customers' messages with the
database's own full-text search (core.store.search says what SQLite and PostgreSQL each
match).
"""

from __future__ import annotations

import re
from datetime import tzinfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.config.channels import channel_label
from core.config.shown import printable
from core.domain import lifecycle
from core.domain.kpi import answered_same_day
from core.domain.records import Direction, TicketStatus
from core.staff.board import customer_name
from core.staff.cards import state_line
from core.staff.handlers import Actor, Reply, handles
from core.staff.language import Command
from core.staff.merging import person_customers
from core.store.search import has_words, search_messages, search_terms
from core.store.tables import Customer, Event, Message, Ticket

HISTORY_LINES = 20  # tickets /history lists
FIND_LINES = 20  # lines /find answers with, the "more" hint included
QUOTE = 70  # characters of a customer's message quoted on one line
MAX_ECHO = 40  # characters of a search repeated in a reply
FIND_SYNTAX = ('/find <words>: all words must occur; "a phrase"; -word leaves out; '
               'or between alternatives')


# --- /history ----------------------------------------------------------------------------------


@handles("history")
async def history(desk, session: AsyncSession, actor: Actor, command: Command,
                  ticket: Ticket) -> Reply:
    zone = desk.policy.zone
    customer = await session.get(Customer, ticket.customer_id)
    accounts = await person_customers(session, customer)  # /link: one person, all channels
    ids = [a.id for a in accounts]
    total = await session.scalar(sa.select(sa.func.count()).select_from(Ticket)
                                 .where(Ticket.customer_id.in_(ids)))
    tickets = list(await session.scalars(
        sa.select(Ticket).where(Ticket.customer_id.in_(ids))
        .order_by(Ticket.opened_at.desc(), Ticket.id.desc()).limit(HISTORY_LINES)))
    firsts = await _first_texts(session, [t.id for t in tickets])
    places = ", ".join(channel_label(c) for c in dict.fromkeys(a.channel for a in accounts))
    lines = [f"{customer_name(customer)} on {places}: {_tickets(total)}, newest first"]
    for row in tickets:
        here = "  ← this one" if row.id == ticket.id else ""
        lines.append(f"#{row.id} {channel_label(row.channel)} · opened "
                     f"{row.opened_at.astimezone(zone):%d.%m.%Y} · {outcome(row, zone)} · "
                     f"{_quote(firsts.get(row.id, ''))}{here}")
    if total > len(tickets):
        lines.append(f"… and {total - len(tickets)} older")
    if total == 1:
        lines.append("No earlier or later tickets: this is their only one.")
    return Reply("\n".join(lines))


def outcome(ticket: Ticket, zone: tzinfo) -> str:
    """How a ticket went, in a few words: its first answer (the same day or not) and
    where it stands now."""
    waiting = {TicketStatus.OPEN: "waiting", TicketStatus.SNOOZED: "snoozed"}
    first = ticket.first_response_at
    if first is None:
        if ticket.status == TicketStatus.CLOSED:
            said = "closed without an answer"
        else:
            said = f"not answered yet, {waiting.get(ticket.status, ticket.status)}"
    else:
        said = "answered the same day" if answered_same_day(ticket.opened_at, first, zone) \
            else f"answered {first.astimezone(zone):%d.%m}, not the same day"
        if ticket.status == TicketStatus.CLOSED:
            said += " · closed"
        elif ticket.status in lifecycle.WAITING:  # the customer wrote again
            said += f" · {waiting[ticket.status]} again"
    merged_into = getattr(ticket, "merged_into", None)  # /merge closed it into another
    return said + (f" · merged into #{merged_into}" if merged_into else "")


async def _first_texts(session: AsyncSession, ticket_ids: list[int]) -> dict[int, str]:
    """The customer's first message of each ticket (one query)."""
    if not ticket_ids:
        return {}
    first = (sa.select(Message.ticket_id, sa.func.min(Message.id).label("id"))
             .where(Message.ticket_id.in_(ticket_ids), Message.direction == Direction.IN)
             .group_by(Message.ticket_id).subquery())
    rows = await session.execute(sa.select(Message.ticket_id, Message.text)
                                 .join(first, Message.id == first.c.id))
    return {ticket_id: text for ticket_id, text in rows}


# --- /customer ---------------------------------------------------------------------------------


@handles("customer")
async def customer(desk, session: AsyncSession, actor: Actor, command: Command,
                   ticket: Ticket) -> Reply:
    zone = desk.policy.zone
    person = await session.get(Customer, ticket.customer_id)
    accounts = await person_customers(session, person)  # /link: one person, all channels
    ids = [a.id for a in accounts]
    counts = dict((await session.execute(
        sa.select(Ticket.status, sa.func.count()).where(Ticket.customer_id.in_(ids))
        .group_by(Ticket.status))).all())
    total = sum(counts.values())
    waiting = sum(counts.get(status, 0) for status in lifecycle.WAITING)
    notes = await session.scalar(
        sa.select(sa.func.count()).select_from(Event).join(Ticket, Event.ticket_id == Ticket.id)
        .where(Ticket.customer_id.in_(ids), Event.kind == "note"))
    lines = [
        person.name or person.handle or person.external_user_id,
        *(f"{channel_label(a.channel)}: {f'{a.handle} · ' if a.handle else ''}"
          f"id {a.external_user_id}" for a in accounts),
        f"Tags: {', '.join(person.tags) if person.tags else 'none'}",
        f"Tickets: {total}" + (f" ({waiting} waiting)" if waiting else "")
        + f" — /history {ticket.id}",
        f"First seen: {min(a.created_at for a in accounts).astimezone(zone):%d.%m.%Y %H:%M}",
        f"Internal notes: {notes}" + (" — /show N shows a ticket's notes" if notes else ""),
    ]
    return Reply("\n".join(lines))


# --- /find -------------------------------------------------------------------------------------


@handles("find")
async def find(desk, session: AsyncSession, actor: Actor, command: Command) -> Reply:
    query = search_terms(command.arg)
    if not has_words(query):
        return Reply(f"Nothing to search for. {FIND_SYNTAX}", ok=False)
    matches = await search_messages(session, query, FIND_LINES + 1)
    if not matches:
        return Reply(f"No customer message matches {_echo(query)}.")
    shown = matches if len(matches) <= FIND_LINES else matches[:FIND_LINES - 1]
    rows = {ticket.id: (ticket, person) for ticket, person in await session.execute(
        sa.select(Ticket, Customer).join(Customer)
        .where(Ticket.id.in_([m.ticket_id for m in shown])))}
    zone = desk.policy.zone
    lines = []
    for match in shown:
        ticket, person = rows[match.ticket_id]
        state = state_line(ticket.status, ticket.assignee, ticket.snoozed_until, zone)
        lines.append(f"#{ticket.id} {channel_label(ticket.channel)} · {customer_name(person)}"
                     f" · {ticket.opened_at.astimezone(zone):%d.%m.%Y} · {state} · "
                     f"{_quote(match.text, query)}")
    if len(shown) < len(matches):
        lines.append("… and more; narrow the search: add a word, or -word to leave one out")
    return Reply("\n".join(lines))


# --- shared ------------------------------------------------------------------------------------


def _tickets(count: int) -> str:
    return f"{count} ticket{'' if count == 1 else 's'}"


def _echo(text: str) -> str:
    text = printable(" ".join(text.split()))
    return f"“{text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + '…'}”"


def _quote(text: str, query: str = "") -> str:
    """A customer's message on one line, cut short; with a search, from a little before
    the first word searched for, so the line shows why it matched."""
    text = " ".join(text.split())
    start = 0
    for word in re.findall(r"[^\W_]+", query):
        found = text.lower().find(word.lower())
        if found >= 0:
            start = max(0, found - 20) if found + len(word) > QUOTE - 10 else 0
            break
    if start:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < start + 15 else start
    part = text[start:start + QUOTE]
    return (f"“{'…' if start else ''}{part}{'…' if start + QUOTE < len(text) else ''}”"
            if text else "(no text)")
