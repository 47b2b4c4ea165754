"""`/block`, `/unblock`, `/blocked`: customers whose messages are kept but not acknowledged.

A block is on the person: every customer linked with the one blocked (core.staff.merging)
is blocked with them. Their messages are still stored and counted (the inbox records a
``held`` event for each, core.intake.held), but get no acknowledgement, staff card or
follow-up; their waiting tickets stop escalating (the sweep skips them); ``/unblock``
undoes all of it and says how many messages came meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.config.channels import channel_label
from core.domain.lifecycle import WAITING
from core.domain.merging import escalations_held, escalations_resumed
from core.staff.board import customer_name, queue_card_edit
from core.staff.handlers import Actor, Reply, handles
from core.staff.language import Command
from core.staff.merging import person_customers, ticket_event
from core.staff.survey import withdraw_for_customers
from core.store.tables import Customer, Event, Ticket

HELD = "held"  # the event of a blocked customer's message: stored, nothing sent
MAX_REASON = 500  # characters of a reason kept (customer.blocked_reason)
SHOWN_REASON = 100  # and shown in /blocked
BLOCKED_LINES = 30


async def is_blocked(session: AsyncSession, customer_id: int) -> bool:
    return await session.scalar(sa.select(Customer.blocked_at.is_not(None))
                                .where(Customer.id == customer_id)) or False


@handles("block")
async def block(desk, session: AsyncSession, actor: Actor, command: Command,
                ticket: Ticket) -> Reply:
    """/block N [reason]: the customer of #N (and the customers linked with them)."""
    customer = await session.get(Customer, ticket.customer_id, with_for_update=True)
    accounts = await person_customers(session, customer, for_update=True)
    fresh = [c for c in accounts if c.blocked_at is None]
    if not fresh:
        return Reply(f"{customer_name(customer)} is already blocked "
                     f"({_since(desk, customer)}). /unblock {ticket.id} undoes it.", ok=False)
    now = desk.clock.now()
    reason = command.arg.strip()[:MAX_REASON] or None
    for account in fresh:
        account.blocked_at, account.blocked_by, account.blocked_reason = now, actor.name, reason
    waiting = list(await session.scalars(
        sa.select(Ticket).where(Ticket.customer_id.in_([c.id for c in fresh]),
                                Ticket.status.in_(WAITING))
        .order_by(Ticket.id).with_for_update()))
    for held in waiting:
        escalations_held(held)
    # A satisfaction question queued before the block is not sent either.
    await withdraw_for_customers(session, [c.id for c in fresh], now, "customer blocked")
    event = ticket_event(ticket, "blocked", actor, now, {
        "customers": [c.id for c in fresh], "reason": reason,
        "tickets": [t.id for t in waiting]})
    session.add(event)
    await session.flush()
    await queue_card_edit(session, desk.policy, ticket, f"customer blocked by {actor.name}",
                          str(event.id), now)
    stopped = (f"; {_tickets(waiting)} will not escalate" if waiting else "")
    return Reply(f"{_accounts(fresh)} blocked: their messages are still kept and counted "
                 f"(/blocked), but get no acknowledgement, card or escalation{stopped}. "
                 f"/unblock {ticket.id} undoes it.")


@handles("unblock")
async def unblock(desk, session: AsyncSession, actor: Actor, command: Command,
                  ticket: Ticket) -> Reply:
    """/unblock N: undo /block; their waiting tickets escalate again."""
    customer = await session.get(Customer, ticket.customer_id, with_for_update=True)
    accounts = await person_customers(session, customer, for_update=True)
    blocked = [c for c in accounts if c.blocked_at is not None]
    if not blocked:
        return Reply(f"{customer_name(customer)} is not blocked. /blocked lists who is.",
                     ok=False)
    now = desk.clock.now()
    held = await held_since(session, blocked)
    for account in blocked:
        account.blocked_at = account.blocked_by = account.blocked_reason = None
    waiting = list(await session.scalars(
        sa.select(Ticket).where(Ticket.customer_id.in_([c.id for c in blocked]),
                                Ticket.status.in_(WAITING))
        .order_by(Ticket.id).with_for_update()))
    for resumed in waiting:
        escalations_resumed(resumed, now)
    count = sum(n for n, _ in held.values())
    where = sorted({t for _, tickets in held.values() for t in tickets})
    event = ticket_event(ticket, "unblocked", actor, now, {
        "customers": [c.id for c in blocked], "held": count, "held_in": where})
    session.add(event)
    await session.flush()
    await queue_card_edit(session, desk.policy, ticket,
                          f"customer unblocked by {actor.name}", str(event.id), now)
    came = (f" {_messages(count)} came while blocked"
            f"{' (in ' + ', '.join(f'#{t}' for t in where) + ')' if where else ''}; "
            f"/show to read them." if count else " No message came while blocked.")
    return Reply(f"{_accounts(blocked)} unblocked: new messages are acknowledged and "
                 f"carded again.{came}")


@handles("blocked")
async def blocked(desk, session: AsyncSession, actor: Actor, command: Command) -> Reply:
    """/blocked: who is blocked, why, by whom, since when, and how many messages since."""
    customers = list(await session.scalars(
        sa.select(Customer).where(Customer.blocked_at.is_not(None))
        .order_by(Customer.blocked_at.desc(), Customer.id).limit(BLOCKED_LINES + 1)))
    if not customers:
        return Reply("No one is blocked.")
    shown = customers[:BLOCKED_LINES]
    held = await held_since(session, shown)
    latest = dict((await session.execute(
        sa.select(Ticket.customer_id, sa.func.max(Ticket.id))
        .where(Ticket.customer_id.in_([c.id for c in shown]))
        .group_by(Ticket.customer_id))).all())
    lines = []
    for customer in shown:
        reason = customer.blocked_reason or ""
        if len(reason) > SHOWN_REASON:
            reason = reason[:SHOWN_REASON] + "…"
        undo = f" · /unblock {latest[customer.id]}" if customer.id in latest else ""
        lines.append(f"{customer_name(customer)} ({channel_label(customer.channel)}) · "
                     f"{_since(desk, customer)} · {_messages(held[customer.id][0])} since"
                     f"{undo}" + (f"\n   “{reason}”" if reason else ""))
    if len(customers) > BLOCKED_LINES:
        lines.append(f"… and more (the {BLOCKED_LINES} blocked last are shown)")
    return Reply("\n".join(lines))


async def held_since(session: AsyncSession, customers: Sequence[Customer]
                     ) -> dict[int, tuple[int, list[int]]]:
    """Each blocked customer's messages since the block: how many, and in which tickets."""
    held: dict[int, tuple[int, list[int]]] = {c.id: (0, []) for c in customers}
    if not customers:
        return held
    by_author = {(c.channel, c.external_user_id): c for c in customers}
    rows = await session.execute(
        sa.select(Event.channel, Event.actor, Event.ticket_id, Event.at)
        .where(Event.kind == HELD, Event.at >= min(c.blocked_at for c in customers),
               sa.or_(*(sa.and_(Event.channel == c.channel,
                                Event.actor == c.external_user_id) for c in customers))))
    for channel, author, ticket_id, at in rows:
        customer = by_author.get((channel, author))
        if customer is None or at < customer.blocked_at:
            continue
        count, tickets = held[customer.id]
        held[customer.id] = (count + 1, tickets if ticket_id in tickets
                             else [*tickets, ticket_id])
    return held


def _since(desk, customer: Customer) -> str:
    local = customer.blocked_at.astimezone(desk.policy.zone)
    return f"blocked {local:%d.%m %H:%M} by {customer.blocked_by or '?'}"


def _accounts(customers: Sequence[Customer]) -> str:
    if len(customers) == 1:
        return customer_name(customers[0])
    return ", ".join(f"{customer_name(c)} ({channel_label(c.channel)})" for c in customers)


def _tickets(tickets: Sequence[Ticket]) -> str:
    numbers = ", ".join(f"#{t.id}" for t in tickets)
    return f"their waiting ticket{'s' if len(tickets) > 1 else ''} {numbers}"


def _messages(count: int) -> str:
    return f"{count} message{'' if count == 1 else 's'}"
