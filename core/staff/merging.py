"""`/merge`, `/link`: two tickets, or two customers, that are one.

``/merge A B`` moves B's conversation (messages, notes, its audit trail and escalation
history) into A and closes B with a pointer (``ticket.merged_into``): the customer's next
message on B's thread lands in A (``merge_target``, followed by the inbox's threading).
``/link A B`` makes the customers of A and B one person (``customer.person_id``): their
tags are merged, and tickets of the one person can be merged.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.config.channels import channel_label
from core.domain import merging
from core.domain.lifecycle import WAITING
from core.domain.records import Direction, TicketStatus
from core.staff.board import customer_name, queue_card_edit
from core.staff.handlers import Actor, Reply, handles
from core.staff.language import Command
from core.store.tables import Customer, Escalation, Event, Message, Ticket

# A chain of merges (B into A, A into X) is followed this far; a longer one is a loop
# nobody could have made through /merge, and is not followed.
MAX_HOPS = 20


# --- the person behind customers (read by the inbox, /customer and /history) -----------


def person_of(customer: Customer) -> int:
    """The id of the person a customer is (linked customers share it)."""
    return customer.person_id or customer.id


def same_person(one: Customer, other: Customer) -> bool:
    return person_of(one) == person_of(other)


async def person_customers(session: AsyncSession, customer: Customer,
                           for_update: bool = False) -> list[Customer]:
    """Every customer of the person (one, when it is linked to no one), first one first."""
    person = person_of(customer)
    query = (sa.select(Customer)
             .where(sa.or_(Customer.id == person, Customer.person_id == person))
             .order_by(Customer.id))
    if for_update:
        query = query.with_for_update()
    return list(await session.scalars(query))


async def merge_target(session: AsyncSession, ticket: Ticket,
                       reopen_after: datetime) -> Ticket | None:
    """The ticket a message threaded to ``ticket`` continues: itself, or -- when it was
    closed by /merge -- the ticket it was merged into (followed along a chain), if that
    one is open or was closed after ``reopen_after``; None: open a new ticket."""
    for _ in range(MAX_HOPS):
        if ticket.merged_into is None or ticket.status != TicketStatus.CLOSED:
            break
        ticket = await session.get(Ticket, ticket.merged_into)
        if ticket is None:
            return None
    else:
        return None
    if ticket.status == TicketStatus.CLOSED and (ticket.closed_at is None
                                                 or ticket.closed_at < reopen_after):
        return None
    return ticket


# --- /merge -----------------------------------------------------------------------------


@handles("merge")
async def merge(desk, session: AsyncSession, actor: Actor, command: Command,
                target: Ticket) -> Reply:
    """/merge A B: B's conversation moves into A; B is closed, pointing to A."""
    source = await session.get(Ticket, int(command.arg), with_for_update=True)
    refused = await _refuse_merge(session, target, source, command)
    if refused:
        return Reply(refused, ok=False)
    now = desk.clock.now()
    changes = merging.merged(target, source, now)
    source.merged_into = target.id
    # B's card first, while it still quotes B's first message.
    pointer = ticket_event(source, "merged_into", actor, now, {"into": target.id})
    session.add(pointer)
    await session.flush()
    await queue_card_edit(session, desk.policy, source,
                          f"merged into #{target.id} by {actor.name}", str(pointer.id), now)
    moved = await _move(session, source, target, keep_event=pointer.id)
    for change in changes:
        session.add(ticket_event(target, change.kind, actor, now, change.data))
    event = ticket_event(target, "merged", actor, now, {
        "from": source.id, **moved, "due_at": target.due_at.isoformat()
        if target.due_at else None})
    session.add(event)
    await session.flush()
    await queue_card_edit(session, desk.policy, target,
                          f"#{source.id} merged in by {actor.name}", str(event.id), now)
    what = f"{_count(moved['messages'], 'message')}" + (
        f", {_count(moved['notes'], 'note')}" if moved["notes"] else "")
    due = (f" #{target.id} is due {desk.policy.promise_for_staff(target.due_at, now)}."
           if target.status in WAITING and target.due_at else "")
    return Reply(f"#{source.id} merged into #{target.id} ({what} moved); #{source.id} is "
                 f"closed, and its customer's next message there goes to "
                 f"#{target.id}.{due}")


async def _refuse_merge(session: AsyncSession, target: Ticket, source: Ticket | None,
                        command: Command) -> str | None:
    """Why /merge A B cannot be done, or None."""
    a, b = target.id, int(command.arg)
    if source is None:
        return f"There is no ticket #{b}."
    if target.merged_into is not None and target.status == TicketStatus.CLOSED:
        return (f"#{a} was merged into #{target.merged_into}: merge into that one "
                f"(/merge {target.merged_into} {b}).")
    if source.merged_into is not None and source.status == TicketStatus.CLOSED:
        return f"#{b} is already merged into #{source.merged_into}."
    if target.status == TicketStatus.CLOSED:
        return (f"#{a} is closed: /reopen {a} first, or keep the other one "
                f"(/merge {b} {a}).")
    one = await session.get(Customer, target.customer_id)
    other = await session.get(Customer, source.customer_id)
    if not same_person(one, other):
        return (f"#{a} ({customer_name(one)} on {channel_label(target.channel)}) and #{b} "
                f"({customer_name(other)} on {channel_label(source.channel)}) are "
                f"different customers. If they are one person, /link {a} {b} first.")
    return None


async def _move(session: AsyncSession, source: Ticket, target: Ticket,
                keep_event: int) -> dict[str, int]:
    """Move B's messages, notes, audit trail and escalation history to A; say how many.

    B's "opened" event stays with B (the report judges each ticket's first promise by
    it), and so does an escalation whose rule and cycle A has fired too (the unique key
    of an escalation; its "escalated" event moves all the same)."""
    notes = await session.scalar(sa.select(sa.func.count()).select_from(Message).where(
        Message.ticket_id == source.id, Message.direction == Direction.NOTE))
    messages = (await session.execute(
        sa.update(Message).where(Message.ticket_id == source.id)
        .values(ticket_id=target.id))).rowcount
    events = (await session.execute(
        sa.update(Event).where(Event.ticket_id == source.id, Event.kind != "opened",
                               Event.id != keep_event)
        .values(ticket_id=target.id))).rowcount
    clash = aliased(Escalation)
    escalations = (await session.execute(
        sa.update(Escalation).where(
            Escalation.ticket_id == source.id,
            ~sa.exists().where(clash.ticket_id == target.id, clash.rule == Escalation.rule,
                               clash.cycle == Escalation.cycle))
        .values(ticket_id=target.id).execution_options(synchronize_session=False))).rowcount
    return {"messages": messages - notes, "notes": notes, "events": events,
            "escalations": escalations}


# --- /link ------------------------------------------------------------------------------


@handles("link")
async def link(desk, session: AsyncSession, actor: Actor, command: Command,
               ticket: Ticket) -> Reply:
    """/link A B: the customers of A and B are one person (tags merged)."""
    a, b = ticket.id, int(command.arg)
    other = await session.get(Ticket, b)
    if other is None:
        return Reply(f"There is no ticket #{b}.", ok=False)
    one = await session.get(Customer, ticket.customer_id, with_for_update=True)
    two = await session.get(Customer, other.customer_id, with_for_update=True)
    if one.id == two.id:
        return Reply(f"#{a} and #{b} are from the same customer ({customer_name(one)}): "
                     f"nothing to link. /merge {a} {b} joins the two tickets.", ok=False)
    if same_person(one, two):
        return Reply(f"{_account(one)} and {_account(two)} are already linked as one "
                     f"person. /merge {a} {b} joins the two tickets.", ok=False)
    customers = await person_customers(session, one, True) + await person_customers(
        session, two, True)
    person = min(person_of(one), person_of(two))  # the person's first customer
    tags = list(dict.fromkeys(tag for c in customers for tag in c.tags or ()))
    for customer in customers:
        customer.person_id = person
        customer.tags = list(tags)  # a new list: the JSON column sees the change
    now = desk.clock.now()
    data = {"customers": [c.id for c in customers], "person": person, "tags": tags}
    session.add(ticket_event(other, "linked", actor, now, {**data, "with_ticket": a}))
    session.add(ticket_event(ticket, "linked", actor, now, {**data, "with_ticket": b}))
    accounts = " and ".join(_account(c) for c in customers)
    lines = [f"Linked: {accounts} are one person now"
             f"{'; tags: ' + ', '.join(tags) if tags else ''}. /merge {a} {b} joins the "
             f"two tickets."]
    blocked = [c for c in customers if c.blocked_at is not None]
    if blocked and len(blocked) < len(customers):
        lines.append(f"Blocked: {', '.join(_account(c) for c in blocked)}; not blocked: "
                     f"{', '.join(_account(c) for c in customers if c not in blocked)}. "
                     f"/block {a} blocks the whole person.")
    return Reply("\n".join(lines))


# --- shared -----------------------------------------------------------------------------


def _account(customer: Customer) -> str:
    return f"{customer_name(customer)} ({channel_label(customer.channel)})"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def ticket_event(ticket: Ticket, kind: str, actor: Actor, at: datetime,
                 data: dict) -> Event:
    """An audit event of a staff command on a ticket."""
    return Event(ticket_id=ticket.id, channel=ticket.channel, kind=kind, actor=actor.name,
                 at=at, data=data)
