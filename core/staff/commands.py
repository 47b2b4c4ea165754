"""The staff command language, shared by every staff UI (Telegram group, console).

``parse`` turns a line into a ``Command`` (pure; a bad line raises ``UsageError`` with the
right form). ``StaffDesk.execute`` authorizes the actor, runs the command in ONE
transaction and returns the reply for the staff member. Changes that customers or the
staff chat must see (an answer, a card edit) are outbox rows in that same transaction.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.config.channels import channel_label, channel_names
from core.config.durations import DURATION_HELP, format_duration, parse_duration
from core.config.settings import Settings
from core.delivery.contract import STAFF_CHANNEL
from core.domain import lifecycle
from core.domain.kpi import Rate, local_day
from core.domain.policy import Policy
from core.domain.records import Direction, OutboxKind, Priority, TicketStatus
from core.staff.cards import card_buttons, card_text, esc, state_line, who
from core.store.engine import Store
from core.store.tables import Customer, Event, Message, Outbox, Ticket

WAITING = (TicketStatus.OPEN, TicketStatus.SNOOZED)
QUEUE_LINES = 20
MAX_SNOOZE = timedelta(days=365)


class UsageError(ValueError):
    """A line that is not a valid command; the message says the right form."""


@dataclass(frozen=True)
class Spec:
    usage: str
    help: str
    needs_ticket: bool = False
    rest: str | None = None  # name of the free-text argument after the ticket, if any
    admin: bool = False


SPECS: dict[str, Spec] = {
    "help": Spec("/help", "this list"),
    "queue": Spec("/queue [<channel>|mine|overdue]", "waiting tickets, due first"),
    "show": Spec("/show N", "a ticket with its messages", needs_ticket=True),
    "take": Spec("/take N", "assign a ticket to yourself", needs_ticket=True),
    "assign": Spec("/assign N <agent>", "assign a ticket to a colleague", needs_ticket=True,
                   rest="agent"),
    "reply": Spec("/reply N <text>", "answer the customer on their channel",
                  needs_ticket=True, rest="text"),
    "note": Spec("/note N <text>", "an internal note (never sent)", needs_ticket=True,
                 rest="text"),
    "close": Spec("/close N", "close a ticket", needs_ticket=True),
    "reopen": Spec("/reopen N", "reopen a closed ticket", needs_ticket=True),
    "snooze": Spec("/snooze N <duration>", "put aside, e.g. /snooze 12 2h", needs_ticket=True,
                   rest="duration"),
    "priority": Spec("/priority N low|normal|high|urgent", "set the priority",
                     needs_ticket=True, rest="priority"),
    "stats": Spec("/stats", "today: received, acknowledged, answered, same-day rate"),
    "sla": Spec("/sla", "tickets closest to breaking their promise"),
    "whoami": Spec("/whoami", "who the bot thinks you are"),
    "reload": Spec("/reload", "re-read the config file (admins)", admin=True),
}
QUEUE_OWN_FILTERS = ("mine", "overdue")


def queue_filters() -> tuple[str, ...]:
    """/queue narrows to a channel (any installed one), to mine, or to overdue."""
    return (*channel_names(), *QUEUE_OWN_FILTERS)


@dataclass(frozen=True)
class Command:
    name: str
    ticket: int | None = None
    arg: str = ""


def parse(line: str, bot_username: str | None = None) -> Command:
    """Parse "/reply 12 text", "/reply@bot #12 text" and the like."""
    # NUL cannot be stored by PostgreSQL and means nothing in a chat line.
    line = (line or "").replace("\x00", "").strip()
    if not line.startswith("/"):
        raise UsageError("Commands start with /. Send /help for the list.")
    head, rest = _split_word(line[1:])
    name, _, addressee = head.partition("@")
    name = name.lower()
    if addressee and bot_username and addressee.lower() != bot_username.lower():
        raise UsageError(f"That command is for @{addressee}.")
    spec = SPECS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(SPECS), n=1, cutoff=0.5)
        hint = f" Did you mean /{close[0]}?" if close else ""
        raise UsageError(f"Unknown command /{name}.{hint} Send /help for the list.")
    if not spec.needs_ticket:
        if name == "queue" and rest and rest.lower() not in queue_filters():
            raise UsageError(f"Usage: /queue [{'|'.join(queue_filters())}]")
        return Command(name, arg=rest.lower() if name == "queue" else rest)
    number, arg = _split_word(rest)
    ticket = _ticket_number(number)
    if ticket is None:
        raise UsageError(f"Usage: {spec.usage} (N is the ticket number, like 12 or #12)")
    arg = arg.strip()
    if spec.rest and not arg:
        raise UsageError(f"Usage: {spec.usage}")
    if name == "priority" and arg.lower() not in {p.value for p in Priority}:
        raise UsageError(f"Usage: {spec.usage}")
    if name == "snooze":
        try:
            if not timedelta() < parse_duration(arg) <= MAX_SNOOZE:
                raise ValueError
        except (ValueError, OverflowError):
            raise UsageError(f"Usage: {spec.usage}; the duration is {DURATION_HELP}, "
                             f"at most {MAX_SNOOZE.days} days") from None
    if name == "assign":
        arg = arg.lstrip("@").lower()
    return Command(name, ticket, arg.lower() if name == "priority" else arg)


def _split_word(text: str) -> tuple[str, str]:
    """The first word and the rest; any whitespace separates (a reply may start on the
    next line)."""
    parts = re.split(r"\s+", text.strip(), maxsplit=1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


def _ticket_number(text: str) -> int | None:
    match = re.fullmatch(r"#?(\d{1,9})", text.strip())
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Actor:
    """Who is typing: a configured staff member, or someone who is not staff."""

    name: str | None  # the staff member's name; None: not staff
    role: str | None = None  # "agent" | "admin"
    origin: dict[str, Any] = field(default_factory=dict)  # where to confirm (chat, message)

    @property
    def is_staff(self) -> bool:
        return self.name is not None


@dataclass
class Reply:
    text: str  # Telegram HTML (the console strips it)
    ok: bool = True
    ticket_id: int | None = None
    reload: bool = False  # the transport should reload the config and say how it went


class StaffDesk:
    """Runs staff commands against the store; the one place they are implemented."""

    def __init__(self, store: Store, settings: Settings, clock: Clock,
                 on_outbox: Callable[[], None] | None = None):
        self.store = store
        self.clock = clock
        self.on_outbox = on_outbox or (lambda: None)
        self.reconfigure(settings)

    def reconfigure(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = Policy(settings)

    # --- who is who ----------------------------------------------------------------------

    def actor_for_telegram(self, user_id: int, origin: dict[str, Any] | None = None) -> Actor:
        for member in self.settings.staff.members:
            if member.telegram_id == user_id:
                return Actor(member.name, member.role, origin or {})
        return Actor(None, None, origin or {})

    def actor_named(self, name: str) -> Actor:
        for member in self.settings.staff.members:
            if member.name == name:
                return Actor(member.name, member.role)
        return Actor(None)

    # --- running commands ------------------------------------------------------------------

    async def execute(self, actor: Actor, line: str, bot_username: str | None = None) -> Reply:
        if not actor.is_staff:
            return Reply("Sorry, staff commands are only for the support team listed in "
                         "the config.", ok=False)
        try:
            command = parse(line, bot_username)
        except UsageError as error:
            return Reply(esc(str(error)), ok=False)
        if SPECS[command.name].admin and actor.role != "admin":
            return Reply(f"/{command.name} is for admins only.", ok=False)
        handler = getattr(self, f"_{command.name}")
        try:
            async with self.store.session() as session, session.begin():
                if command.ticket is None:
                    reply = await handler(session, actor, command)
                else:
                    ticket = await session.get(Ticket, command.ticket, with_for_update=True)
                    if ticket is None:
                        return Reply(f"There is no ticket #{command.ticket}.", ok=False)
                    reply = await handler(session, actor, command, ticket)
                    reply.ticket_id = ticket.id
        except IntegrityError:
            # The same staff message again (the chat redelivered it after a crash): its
            # answer is already queued under the message's idempotency key.
            return Reply("Already done: this message was handled before.", ok=False)
        self.on_outbox()
        return reply

    async def tell_staff(self, text: str, target: dict[str, Any], key: str,
                         ticket_id: int | None = None) -> None:
        """A reply to a staff member, through the outbox (rate limits, retries)."""
        now = self.clock.now()
        async with self.store.session() as session, session.begin():
            exists = await session.scalar(sa.select(Outbox.id)
                                          .where(Outbox.idempotency_key == key))
            if exists is None:
                session.add(Outbox(channel=STAFF_CHANNEL, kind=OutboxKind.NOTICE,
                                   ticket_id=ticket_id, target=target, text=text,
                                   idempotency_key=key, deadline_at=now,
                                   next_attempt_at=now, created_at=now))
        self.on_outbox()

    async def _help(self, session: AsyncSession, actor: Actor, command: Command) -> Reply:
        lines = [f"{esc(s.usage)} — {esc(s.help)}" for n, s in SPECS.items()
                 if not s.admin or actor.role == "admin"]
        lines.append("Reply to a ticket card (or write in its topic) to answer the customer.")
        return Reply("\n".join(lines))

    async def _whoami(self, session: AsyncSession, actor: Actor, command: Command) -> Reply:
        return Reply(f"You are {esc(actor.name)} ({actor.role}).")

    async def _reload(self, session: AsyncSession, actor: Actor, command: Command) -> Reply:
        return Reply("Reloading the config…", reload=True)

    async def _queue(self, session: AsyncSession, actor: Actor, command: Command) -> Reply:
        now = self.clock.now()
        query = (sa.select(Ticket, Customer).join(Customer)
                 .where(Ticket.status.in_(WAITING)).order_by(Ticket.due_at, Ticket.id))
        if command.arg in channel_names():
            query = query.where(Ticket.channel == command.arg)
        elif command.arg == "mine":
            query = query.where(Ticket.assignee == actor.name)
        elif command.arg == "overdue":
            query = query.where(Ticket.due_at < now)
        rows = (await session.execute(query.limit(QUEUE_LINES + 1))).all()
        if not rows:
            return Reply(f"Nothing waiting{' (' + command.arg + ')' if command.arg else ''}.")
        lines = [self._queue_line(ticket, customer, now) for ticket, customer in
                 rows[:QUEUE_LINES]]
        if len(rows) > QUEUE_LINES:
            lines.append(f"… and more; narrow it: {SPECS['queue'].usage}")
        return Reply("\n".join(lines))

    def _queue_line(self, ticket: Ticket, customer: Customer, now: datetime) -> str:
        late = " ⚠ overdue" if ticket.due_at and ticket.due_at < now else ""
        owner = f" · {ticket.assignee}" if ticket.assignee else ""
        return (f"<b>#{ticket.id}</b> {channel_label(ticket.channel)} · "
                f"{esc(_customer_name(customer))} · ⏰ "
                f"{esc(self.policy.promise_for_staff(ticket.due_at, now))}{owner}{late}")

    async def _sla(self, session: AsyncSession, actor: Actor, command: Command) -> Reply:
        now = self.clock.now()
        rows = (await session.execute(
            sa.select(Ticket, Customer).join(Customer)
            .where(Ticket.status == TicketStatus.OPEN).order_by(Ticket.due_at).limit(10))).all()
        if not rows:
            return Reply("No ticket is waiting: every promise is safe.")
        lines = []
        for ticket, customer in rows:
            left = ticket.due_at - now
            when = (f"{_minutes(left)} left" if left > timedelta()
                    else f"overdue by {_minutes(-left)}")
            lines.append(f"<b>#{ticket.id}</b> {channel_label(ticket.channel)} · "
                         f"{esc(_customer_name(customer))} · {when}")
        return Reply("\n".join(lines))

    async def _stats(self, session: AsyncSession, actor: Actor, command: Command) -> Reply:
        now = self.clock.now()
        local_now = now.astimezone(self.policy.zone)
        start, end = local_day(now, self.policy.zone)
        received = await _count_events(session, "received", start)
        answered = await _count_events(session, "answered", start)
        opened = await session.scalar(sa.select(sa.func.count()).select_from(Ticket)
                                      .where(Ticket.opened_at >= start))
        acknowledged = await session.scalar(sa.select(sa.func.count()).select_from(Ticket)
                                            .where(Ticket.opened_at >= start,
                                                   Ticket.acked_at.is_not(None)))
        # kpi.answered_same_day as a query: first answered before the local day ends.
        same_day = await session.scalar(sa.select(sa.func.count()).select_from(Ticket).where(
            Ticket.opened_at >= start, Ticket.first_response_at.is_not(None),
            Ticket.first_response_at < end))
        overdue = await session.scalar(sa.select(sa.func.count()).select_from(Ticket)
                                       .where(Ticket.status == TicketStatus.OPEN,
                                              Ticket.due_at < now))
        rate = Rate(same_day, opened)
        percent = "—" if rate.fraction is None else f"{rate.fraction:.0%}"
        return Reply(f"Today ({local_now:%d.%m}): received {received}, new tickets {opened}, "
                     f"acknowledged {acknowledged}, answered {answered}.\n"
                     f"Same-day answer rate: {percent} ({rate.part} of {rate.whole}). "
                     f"Overdue now: {overdue}.")

    async def _show(self, session: AsyncSession, actor: Actor, command: Command,
                    ticket: Ticket) -> Reply:
        now = self.clock.now()
        customer = await session.get(Customer, ticket.customer_id)
        messages = list(await session.scalars(
            sa.select(Message).where(Message.ticket_id == ticket.id)
            .order_by(Message.id.desc()).limit(10)))
        lines = [ticket_card(self.policy, ticket, customer,
                             await _first_text(session, ticket.id), now), ""]
        for message in reversed(messages):
            mark = {"in": "👤", "out": "💬", "note": "📝"}.get(message.direction, "·")
            local = message.created_at.astimezone(self.policy.zone)
            lines.append(f"{mark} {local:%d.%m %H:%M} {esc(message.author)}: "
                         f"{esc(message.text[:500])}")
        return Reply("\n".join(lines))

    async def _take(self, session: AsyncSession, actor: Actor, command: Command,
                    ticket: Ticket) -> Reply:
        if closed := _closed(ticket):
            return closed
        previous = ticket.assignee
        ticket.assignee = actor.name
        await self._changed(session, ticket, "taken", actor, {"from": previous})
        taken_from = f" (taken over from {esc(previous)})" if previous and \
            previous != actor.name else ""
        return Reply(f"#{ticket.id} is yours, {esc(actor.name)}{taken_from}.")

    async def _assign(self, session: AsyncSession, actor: Actor, command: Command,
                      ticket: Ticket) -> Reply:
        names = {name.lower(): name for name in self.settings.staff.names()}
        agent = names.get(command.arg)
        if agent is None:
            listed = ", ".join(sorted(names.values()))
            return Reply(f"No staff member {esc(command.arg)}. Staff: {esc(listed)}.", ok=False)
        if closed := _closed(ticket):
            return closed
        ticket.assignee = agent
        await self._changed(session, ticket, "assigned", actor, {"to": agent})
        return Reply(f"#{ticket.id} assigned to {esc(agent)}.")

    async def _reply(self, session: AsyncSession, actor: Actor, command: Command,
                     ticket: Ticket) -> Reply:
        if closed := _closed(ticket):
            return closed
        if not ticket.reply_target:
            return Reply(f"#{ticket.id} has no address to answer to.", ok=False)
        now = self.clock.now()
        message = Message(ticket_id=ticket.id, channel=ticket.channel,
                          direction=Direction.OUT, author=actor.name, text=command.arg,
                          created_at=now)
        session.add(message)
        await session.flush()
        target = {**ticket.reply_target, "confirm": {"ticket": ticket.id, **actor.origin}}
        origin = actor.origin
        # Keyed by the staff message when there is one, so a redelivered message cannot
        # answer the customer twice.
        key = (f"reply:{origin['chat_id']}:{origin['message_id']}"
               if origin.get("chat_id") and origin.get("message_id") else f"reply:{message.id}")
        session.add(Outbox(channel=ticket.channel, kind=OutboxKind.REPLY, ticket_id=ticket.id,
                           target=target, text=command.arg, idempotency_key=key,
                           deadline_at=now, next_attempt_at=now, created_at=now))
        await session.flush()  # a repeat fails here, before anything else changes
        first = lifecycle.answered(ticket, actor.name, now)
        await self._changed(session, ticket, "answered", actor, {
            "first": first, "message_id": message.id,
            "response_seconds": (now - ticket.last_customer_at).total_seconds()})
        customer = await session.get(Customer, ticket.customer_id)
        return Reply(f"Queued to {esc(_customer_name(customer))} on "
                     f"{channel_label(ticket.channel)} (#{ticket.id}); you will see when it is "
                     f"delivered.")

    async def _note(self, session: AsyncSession, actor: Actor, command: Command,
                    ticket: Ticket) -> Reply:
        now = self.clock.now()
        session.add(Message(ticket_id=ticket.id, channel=ticket.channel,
                            direction=Direction.NOTE, author=actor.name, text=command.arg,
                            created_at=now))
        session.add(_event(ticket, "note", actor, now, {}))
        return Reply(f"Note added to #{ticket.id} (not sent to the customer).")

    async def _close(self, session: AsyncSession, actor: Actor, command: Command,
                     ticket: Ticket) -> Reply:
        if ticket.status == TicketStatus.CLOSED:
            return Reply(f"#{ticket.id} is already closed.", ok=False)
        lifecycle.closed(ticket, self.clock.now())
        await self._changed(session, ticket, "closed", actor)
        return Reply(f"#{ticket.id} closed.")

    async def _reopen(self, session: AsyncSession, actor: Actor, command: Command,
                      ticket: Ticket) -> Reply:
        if ticket.status != TicketStatus.CLOSED:
            return Reply(f"#{ticket.id} is not closed.", ok=False)
        now = self.clock.now()
        customer = await session.get(Customer, ticket.customer_id)
        # The same promise and escalation rules as when the customer reopens it by writing.
        changes = lifecycle.wait_again(self.policy, ticket, await customer_texts(
            session, ticket.id), list(customer.tags or []), now)
        await self._changed(session, ticket, "reopened", actor,
                            next(c.data for c in changes if c.kind == "cycle"))
        return Reply(f"#{ticket.id} reopened; due "
                     f"{esc(self.policy.promise_for_staff(ticket.due_at, now))}.")

    async def _snooze(self, session: AsyncSession, actor: Actor, command: Command,
                      ticket: Ticket) -> Reply:
        if ticket.status not in WAITING:
            state = "closed" if ticket.status == TicketStatus.CLOSED else "answered"
            return Reply(f"#{ticket.id} is {state}: there is nothing to snooze.", ok=False)
        until = self.clock.now() + parse_duration(command.arg)
        lifecycle.snoozed(ticket, until)
        await self._changed(session, ticket, "snoozed", actor, {"until": until.isoformat()})
        local = until.astimezone(self.policy.zone)
        return Reply(f"#{ticket.id} snoozed until {local:%d.%m %H:%M}.")

    async def _priority(self, session: AsyncSession, actor: Actor, command: Command,
                        ticket: Ticket) -> Reply:
        ticket.priority = command.arg
        await self._changed(session, ticket, "priority", actor, {"priority": command.arg})
        return Reply(f"#{ticket.id} priority: {command.arg}.")

    # --- shared by the commands ------------------------------------------------------------

    async def _changed(self, session: AsyncSession, ticket: Ticket, kind: str, actor: Actor,
                       data: dict | None = None) -> None:
        """Record the change and queue an edit of the ticket's card."""
        now = self.clock.now()
        event = _event(ticket, kind, actor, now, data or {})
        session.add(event)
        await session.flush()
        await queue_card_edit(session, self.policy, ticket, f"{kind} by {actor.name}",
                              event.id, now)

    # --- what staff UIs ask ----------------------------------------------------------------

    async def ticket_for_staff_message(self, external_id: str) -> int | None:
        """The ticket a staff-chat message (a card, a notice) belongs to."""
        async with self.store.session() as session:
            return await session.scalar(
                sa.select(Outbox.ticket_id)
                .where(Outbox.channel == STAFF_CHANNEL, Outbox.external_id == external_id)
                .limit(1))

    async def ticket_for_topic(self, thread_id: int) -> int | None:
        async with self.store.session() as session:
            return await session.scalar(sa.select(Ticket.id)
                                        .where(Ticket.staff_topic == thread_id).limit(1))

    async def topic_of(self, ticket_id: int) -> int | None:
        async with self.store.session() as session:
            return await session.scalar(sa.select(Ticket.staff_topic)
                                        .where(Ticket.id == ticket_id))

    async def remember_topic(self, ticket_id: int, thread_id: int) -> None:
        async with self.store.session() as session, session.begin():
            await session.execute(sa.update(Ticket).where(Ticket.id == ticket_id)
                                  .values(staff_topic=thread_id))

    async def ticket_title(self, ticket_id: int) -> str:
        async with self.store.session() as session:
            row = (await session.execute(sa.select(Ticket, Customer).join(Customer)
                                         .where(Ticket.id == ticket_id))).first()
        if row is None:
            return f"#{ticket_id}"
        ticket, customer = row
        return f"#{ticket.id} {channel_label(ticket.channel)} {_customer_name(customer)}"[:128]


def ticket_card(policy: Policy, ticket: Ticket, customer: Customer | None, first_text: str,
                now: datetime, note: str | None = None) -> str:
    """The ticket's card as it stands now (posted, edited, re-posted by escalations)."""
    return card_text(
        ticket_id=ticket.id, channel=ticket.channel,
        customer=_customer_name(customer) if customer else "?",
        promise=policy.promise_for_staff(ticket.due_at, now),
        opened_at=ticket.opened_at, zone=policy.zone,
        state=state_line(ticket.status, ticket.assignee, ticket.snoozed_until, policy.zone),
        priority=ticket.priority, first_text=first_text, note=note)


async def queue_card_edit(session: AsyncSession, policy: Policy, ticket: Ticket, note: str,
                          change_id: int, now: datetime) -> None:
    """Edit the ticket's card to show its state (if the card was delivered)."""
    card = (await session.execute(
        sa.select(Outbox.external_id, Outbox.target).where(
            Outbox.ticket_id == ticket.id, Outbox.kind == OutboxKind.STAFF_CARD,
            Outbox.external_id.is_not(None)))).first()
    if card is None:
        return
    first_text = await _first_text(session, ticket.id)
    customer = await session.get(Customer, ticket.customer_id)
    session.add(Outbox(
        channel=STAFF_CHANNEL, kind=OutboxKind.CARD_EDIT, ticket_id=ticket.id,
        target={"ticket": ticket.id, "edit": card.external_id, "parse_mode": "HTML",
                "buttons": card_buttons(ticket.id, ticket.status)},
        text=ticket_card(policy, ticket, customer, first_text, now, note),
        idempotency_key=f"edit:{ticket.id}:{change_id}", deadline_at=ticket.due_at or now,
        next_attempt_at=now, created_at=now))


async def customer_texts(session: AsyncSession, ticket_id: int) -> list[str]:
    """The customer's messages of a ticket, oldest first, as many as rules look at."""
    return list(await session.scalars(
        sa.select(Message.text).where(Message.ticket_id == ticket_id,
                                      Message.direction == Direction.IN)
        .order_by(Message.id).limit(lifecycle.RULE_TEXTS)))


async def _first_text(session: AsyncSession, ticket_id: int) -> str:
    """The customer's first message of the ticket: what its card quotes."""
    return await session.scalar(
        sa.select(Message.text).where(Message.ticket_id == ticket_id,
                                      Message.direction == Direction.IN)
        .order_by(Message.id).limit(1)) or ""


def _closed(ticket: Ticket) -> Reply | None:
    if ticket.status == TicketStatus.CLOSED:
        return Reply(f"#{ticket.id} is closed. /reopen {ticket.id} first.", ok=False)
    return None


def _customer_name(customer: Customer) -> str:
    return who(customer.handle, customer.name, customer.external_user_id)


def _event(ticket: Ticket, kind: str, actor: Actor, at: datetime, data: dict) -> Event:
    return Event(ticket_id=ticket.id, channel=ticket.channel, kind=kind, actor=actor.name,
                 at=at, data=data)


async def _count_events(session: AsyncSession, kind: str, since: datetime) -> int:
    return await session.scalar(sa.select(sa.func.count()).select_from(Event)
                                .where(Event.kind == kind, Event.at >= since))


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return format_duration(timedelta(minutes=minutes)) if minutes else "under a minute"

