"""The staff commands, shared by every staff chat (a channel's staff group, the console).

``StaffDesk.execute`` authorizes the actor (resolved by the staff chat), parses the line
(core.staff.language), runs the command in ONE transaction and returns the reply for the
staff member as plain text; the staff chat renders it. Changes that customers or the
staff chat must see (an answer, a card edit) are outbox rows in that same transaction,
and every change of a ticket goes through core.domain.lifecycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.config.channels import channel_label, channel_names
from core.config.durations import format_duration, parse_duration
from core.config.settings import Settings
from core.delivery.contract import STAFF_CHANNEL
from core.delivery.enqueue import Lane, enqueue, outbox_row
from core.delivery.outfiles import OutgoingFile
from core.domain import lifecycle
from core.domain.kpi import Rate, local_day
from core.domain.policy import Policy
from core.domain.records import Attachment, Direction, OutboxKind, TicketStatus
from core.staff import blocking, files, forgetting, lookup, merging, survey, templates  # noqa: F401
from core.staff.board import (
    customer_name,
    customer_texts,
    first_message,
    queue_card_edit,
    queue_staff_message,
    ticket_card,
)
from core.staff.cards import StaffMessage, attachment_line
from core.staff.file_answers import CHAT_OPTION, as_attachment, attach, prepared, typed_option
from core.staff.handlers import HANDLERS, Actor, Reply
from core.staff.language import SPECS, Command, UsageError, parse
from core.store.engine import Store
from core.store.tables import Customer, Event, Message, Outbox, Ticket

QUEUE_LINES = 20


class StaffDesk:
    """Runs staff commands against the store: its own methods, and the handlers of
    core.staff.handlers (one module per group of commands)."""

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

    def actor_named(self, name: str, origin: dict[str, Any] | None = None) -> Actor:
        """The staff member of that name; ``origin`` is where the staff chat answers
        (its own address of the member's message)."""
        for member in self.settings.staff.members:
            if member.name == name:
                return Actor(member.name, member.role, origin or {})
        return Actor(None, None, origin or {})

    # --- running commands ------------------------------------------------------------------

    async def execute(self, actor: Actor, line: str | Command,
                      bot_username: str | None = None, *,
                      file: OutgoingFile | None = None) -> Reply:
        """Run a line (or a parsed Command); ``file``: an answer that carries it (a
        staff chat's file, the console's --file; core.staff.file_answers)."""
        if not actor.is_staff:
            return Reply("Sorry, staff commands are only for the support team listed in "
                         "the config.", ok=False)
        try:
            command = line if isinstance(line, Command) else parse(line, bot_username)
        except UsageError as error:
            return Reply(str(error), ok=False)
        if SPECS[command.name].admin and actor.role != "admin":
            return Reply(f"/{command.name} is for admins only.", ok=False)
        # The commands of a group of their own live in their module (core.staff.handlers).
        handler = getattr(self, f"_{command.name}", None) or partial(HANDLERS[command.name],
                                                                     self)
        if file is not None:  # fetched (if it must be) before the transaction
            file = await prepared(self, command, file)
            if isinstance(file, Reply):
                return file
            handler = partial(handler, file=file)
        try:
            reply = await self.store.unit(partial(self.run_command, actor=actor,
                                                  command=command, handler=handler))
        except IntegrityError:
            # The same staff message again (the chat redelivered it after a crash): its
            # answer is already queued under the message's idempotency key.
            # Quiet: a staff group must not get a second message for a redelivered one.
            return Reply("Already done: this message was handled before.", ok=False,
                         quiet=True)
        self.on_outbox()
        return reply

    async def run_command(self, session: AsyncSession, *, actor: Actor, command: Command,
                          handler: Callable[..., Awaitable[Reply]]) -> Reply:
        """A checked command's transaction (replay runs many of them in one)."""
        if command.ticket is None:
            return await handler(session, actor, command)
        ticket = await session.get(Ticket, command.ticket, with_for_update=True)
        if ticket is None:
            return Reply(f"There is no ticket #{command.ticket}.", ok=False)
        reply = await handler(session, actor, command, ticket)
        reply.ticket_id = ticket.id
        return reply

    async def run_line(self, session: AsyncSession, actor: Actor, line: str) -> Reply:
        """``execute(actor, line)`` in the caller's transaction, for a staff actor and a
        command of any role (``sameday replay`` runs many answers in one unit); a
        failed statement raises instead of being answered."""
        try:
            command = parse(line)
        except UsageError as error:
            return Reply(str(error), ok=False)
        handler = getattr(self, f"_{command.name}", None) or partial(HANDLERS[command.name],
                                                                     self)
        return await self.run_command(session, actor=actor, command=command, handler=handler)

    async def tell_staff(self, message: StaffMessage, key: str) -> None:
        """A message to the staff chat (an answer to a command), through the outbox: rate
        limits and retries apply, and a repeated key is queued once."""
        now = self.clock.now()
        async with self.store.session() as session, session.begin():
            exists = await session.scalar(sa.select(Outbox.id)
                                          .where(Outbox.idempotency_key == key))
            if exists is None:
                await queue_staff_message(session, message, key, now, Lane.CHATTER)
        self.on_outbox()

    async def _help(self, session: AsyncSession, actor: Actor, command: Command) -> Reply:
        lines = [f"{s.usage} — {s.help}" for n, s in SPECS.items()
                 if not s.admin or actor.role == "admin"]
        lines.append("Reply to a ticket card (or write in the ticket's own thread, where the "
                     "staff chat has them) to answer the customer.")
        return Reply("\n".join(lines))

    async def _whoami(self, session: AsyncSession, actor: Actor, command: Command) -> Reply:
        return Reply(f"You are {actor.name} ({actor.role}).")

    async def _reload(self, session: AsyncSession, actor: Actor, command: Command) -> Reply:
        return Reply("Reloading the config…", reload=True)

    async def _queue(self, session: AsyncSession, actor: Actor, command: Command) -> Reply:
        now = self.clock.now()
        query = (sa.select(Ticket, Customer).join(Customer)
                 .where(Ticket.status.in_(lifecycle.WAITING)).order_by(Ticket.due_at, Ticket.id))
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
        return (f"#{ticket.id} {channel_label(ticket.channel)} · "
                f"{customer_name(customer)} · ⏰ "
                f"{self.policy.promise_for_staff(ticket.due_at, now)}{owner}{late}")

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
            lines.append(f"#{ticket.id} {channel_label(ticket.channel)} · "
                         f"{customer_name(customer)} · {when}")
        return Reply("\n".join(lines))

    async def _stats(self, session: AsyncSession, actor: Actor, command: Command) -> Reply:
        now = self.clock.now()
        local_now = now.astimezone(self.policy.zone)
        start, end = local_day(now, self.policy.zone)
        received = await _count_events(session, "received", start)
        answered = await _count_events(session, "answered", start)
        opened = await session.scalar(sa.select(sa.func.count()).select_from(Ticket)
                                      .where(Ticket.opened_at >= start,
                                             Ticket.merged_into.is_(None)))
        acknowledged = await session.scalar(sa.select(sa.func.count()).select_from(Ticket)
                                            .where(Ticket.opened_at >= start,
                                                   Ticket.acked_at.is_not(None)))
        # kpi.answered_same_day as a query: first answered before the local day ends.
        same_day = await session.scalar(sa.select(sa.func.count()).select_from(Ticket).where(
            Ticket.opened_at >= start, Ticket.first_response_at.is_not(None),
            Ticket.first_response_at < end, Ticket.merged_into.is_(None)))
        overdue = await session.scalar(sa.select(sa.func.count()).select_from(Ticket)
                                       .where(Ticket.status == TicketStatus.OPEN,
                                              Ticket.due_at < now))
        rate = Rate(same_day, opened)
        percent = "—" if rate.fraction is None else f"{rate.fraction:.0%}"
        satisfaction = await survey.stats_line(self, session, start, end)
        return Reply(f"Today ({local_now:%d.%m}): received {received}, new tickets {opened}, "
                     f"acknowledged {acknowledged}, answered {answered}.\n"
                     f"Same-day answer rate: {percent} ({rate.part} of {rate.whole}). "
                     f"Overdue now: {overdue}." + (f"\n{satisfaction}" if satisfaction else ""))

    async def _show(self, session: AsyncSession, actor: Actor, command: Command,
                    ticket: Ticket) -> Reply:
        now = self.clock.now()
        customer = await session.get(Customer, ticket.customer_id)
        messages = list(await session.scalars(
            sa.select(Message).where(Message.ticket_id == ticket.id)
            .order_by(Message.id.desc()).limit(10)))
        card = ticket_card(self.policy, ticket, customer, await first_message(session, ticket.id),
                           now)
        lines = [StaffMessage(card=card).text(), ""]
        for message in reversed(messages):
            mark = {"in": "👤", "out": "💬", "note": "📝"}.get(message.direction, "·")
            local = message.created_at.astimezone(self.policy.zone)
            lines.append(f"{mark} {local:%d.%m %H:%M} {message.author}: "
                         f"{message.text[:500]}")
            lines += [f"   {attachment_line(Attachment.from_json(a))}"
                      for a in message.attachments or ()]
        return Reply("\n".join(lines))

    async def _take(self, session: AsyncSession, actor: Actor, command: Command,
                    ticket: Ticket) -> Reply:
        if closed := _closed(ticket):
            return closed
        previous = ticket.assignee
        lifecycle.assigned(ticket, actor.name, self.clock.now())
        await self._changed(session, ticket, "taken", actor, {"from": previous})
        taken_from = f" (taken over from {previous})" if previous and \
            previous != actor.name else ""
        return Reply(f"#{ticket.id} is yours, {actor.name}{taken_from}.")

    async def _assign(self, session: AsyncSession, actor: Actor, command: Command,
                      ticket: Ticket) -> Reply:
        names = {name.lower(): name for name in self.settings.staff.names()}
        agent = names.get(command.arg)
        if agent is None:
            listed = ", ".join(sorted(names.values()))
            return Reply(f"No staff member {command.arg}. Staff: {listed}.", ok=False)
        if closed := _closed(ticket):
            return closed
        lifecycle.assigned(ticket, agent, self.clock.now())
        await self._changed(session, ticket, "assigned", actor, {"to": agent})
        return Reply(f"#{ticket.id} assigned to {agent}.")

    async def _reply(self, session: AsyncSession, actor: Actor, command: Command,
                     ticket: Ticket, file: OutgoingFile | None = None) -> Reply:
        if closed := _closed(ticket):
            return closed
        if not ticket.reply_target:
            return Reply(f"#{ticket.id} has no address to answer to.", ok=False)
        limit = self.settings.staff.max_reply_chars
        if len(command.arg) > limit:
            return Reply(f"That answer has {len(command.arg)} characters; the limit is {limit} "
                         f"(staff.max_reply_chars). Shorten it or send it in parts.", ok=False)
        if file is None and typed_option(command.arg):
            return Reply(CHAT_OPTION, ok=False)
        now = self.clock.now()
        if file is not None:  # checked against what the channel takes, and kept
            file = await attach(self, session, ticket, file, now)
            if isinstance(file, Reply):
                return file
        message = Message(ticket_id=ticket.id, channel=ticket.channel,
                          direction=Direction.OUT, author=actor.name, text=command.arg,
                          created_at=now, attachments=[
                              as_attachment(file).to_json()] if file else None)
        session.add(message)
        await session.flush()
        # Who answered and where they asked: the staff chat hears of the delivery there.
        target = {**ticket.reply_target, "confirm": {"by": actor.name, "origin": actor.origin}}
        if file is not None:
            target["file"] = file.ref()
        # Keyed by the staff message when there is one, so a redelivered message cannot
        # answer the customer twice (a repeat fails here, before anything else changes).
        key = f"reply:{actor.origin['key']}" if actor.origin.get("key") else \
            f"reply:{message.id}"
        await enqueue(session, outbox_row(
            channel=ticket.channel, kind=OutboxKind.REPLY, ticket_id=ticket.id,
            text=command.arg, target=target, key=key, now=now))
        ended_wait = ticket.status in lifecycle.WAITING
        first = lifecycle.answered(ticket, actor.name, now)
        await survey.after_answer(self, session, ticket, ended_wait)
        # The card changes once, when the answer is delivered (StaffNotices), not now:
        # one edit per answer in a staff group that may allow only 20 messages a minute.
        session.add(_event(ticket, "answered", actor, now, {
            "first": first, "message_id": message.id,
            "response_seconds": (now - ticket.last_customer_at).total_seconds()}))
        customer = await session.get(Customer, ticket.customer_id)
        return Reply(f"Queued to {customer_name(customer)} on "
                     f"{channel_label(ticket.channel)} (#{ticket.id}); the card shows when it "
                     f"is delivered.", quiet=True)

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
        asked = await survey.after_close(self, session, ticket)
        return Reply(f"#{ticket.id} closed.{' ' + asked if asked else ''}")

    async def _reopen(self, session: AsyncSession, actor: Actor, command: Command,
                      ticket: Ticket) -> Reply:
        if ticket.status != TicketStatus.CLOSED:
            return Reply(f"#{ticket.id} is not closed.", ok=False)
        now = self.clock.now()
        customer = await session.get(Customer, ticket.customer_id)
        # The same promise and escalation rules as when the customer reopens it by writing.
        changes = lifecycle.wait_again(self.policy, ticket, await customer_texts(
            session, ticket.id), list(customer.tags or []), now)
        for change in changes[:-1]:  # "reopened"; the card edit goes with the last change
            session.add(_event(ticket, change.kind, actor, now, change.data))
        await self._changed(session, ticket, changes[-1].kind, actor, changes[-1].data)
        await survey.cancel_waiting(session, [ticket.id], now, f"reopened by {actor.name}")
        return Reply(f"#{ticket.id} reopened; due "
                     f"{self.policy.promise_for_staff(ticket.due_at, now)}.")

    async def _snooze(self, session: AsyncSession, actor: Actor, command: Command,
                      ticket: Ticket) -> Reply:
        if ticket.status not in lifecycle.WAITING:
            state = "closed" if ticket.status == TicketStatus.CLOSED else "answered"
            return Reply(f"#{ticket.id} is {state}: there is nothing to snooze.", ok=False)
        until = self.clock.now() + parse_duration(command.arg)
        lifecycle.snoozed(ticket, until)
        await self._changed(session, ticket, "snoozed", actor, {"until": until.isoformat()})
        local = until.astimezone(self.policy.zone)
        return Reply(f"#{ticket.id} snoozed until {local:%d.%m %H:%M}.")

    async def _priority(self, session: AsyncSession, actor: Actor, command: Command,
                        ticket: Ticket) -> Reply:
        lifecycle.prioritized(ticket, command.arg, self.clock.now())
        await self._changed(session, ticket, "priority", actor, {"priority": command.arg})
        return Reply(f"#{ticket.id} priority: {command.arg}.")

    # --- shared by the commands ------------------------------------------------------------

    async def answer(self, session: AsyncSession, actor: Actor, ticket: Ticket,
                     text: str) -> Reply:
        """Answer the ticket's customer with ``text`` in the caller's transaction, exactly
        as ``/reply N text`` does (a saved answer, /t, is sent this way)."""
        return await self._reply(session, actor, Command("reply", ticket.id, text), ticket)

    async def _changed(self, session: AsyncSession, ticket: Ticket, kind: str, actor: Actor,
                       data: dict | None = None) -> None:
        """Record the change and queue an edit of the ticket's card."""
        now = self.clock.now()
        event = _event(ticket, kind, actor, now, data or {})
        session.add(event)
        await session.flush()
        await queue_card_edit(session, self.policy, ticket, f"{kind} by {actor.name}",
                              str(event.id), now)

    # --- what staff UIs ask ----------------------------------------------------------------

    async def ticket_for_staff_message(self, external_id: str) -> int | None:
        """The ticket a staff-chat message (a card, a notice) belongs to."""
        async with self.store.session() as session:
            return await session.scalar(
                sa.select(Outbox.ticket_id)
                .where(Outbox.channel == STAFF_CHANNEL, Outbox.external_id == external_id)
                .limit(1))

    async def ticket_for_staff_thread(self, thread_id: int) -> int | None:
        """The ticket whose own thread (a forum topic) in the staff chat this is."""
        async with self.store.session() as session:
            return await session.scalar(sa.select(Ticket.id)
                                        .where(Ticket.staff_topic == thread_id).limit(1))

    async def staff_thread_of(self, ticket_id: int) -> int | None:
        async with self.store.session() as session:
            return await session.scalar(sa.select(Ticket.staff_topic)
                                        .where(Ticket.id == ticket_id))

    async def remember_staff_thread(self, ticket_id: int, thread_id: int) -> None:
        async with self.store.session() as session, session.begin():
            await session.execute(sa.update(Ticket).where(Ticket.id == ticket_id)
                                  .values(staff_topic=thread_id))

    async def answer_survey(self, channel: str, survey_id: int, score: int,
                            author_id: str) -> survey.Pressed:
        """A customer pressed a satisfaction survey's button (core.staff.survey)."""
        return await survey.answer_press(self, channel, survey_id, score, author_id)

    async def ticket_title(self, ticket_id: int) -> str:
        async with self.store.session() as session:
            row = (await session.execute(sa.select(Ticket, Customer).join(Customer)
                                         .where(Ticket.id == ticket_id))).first()
        if row is None:
            return f"#{ticket_id}"
        ticket, customer = row
        return f"#{ticket.id} {channel_label(ticket.channel)} {customer_name(customer)}"


def _closed(ticket: Ticket) -> Reply | None:
    if ticket.merged_into is not None:
        return Reply(f"#{ticket.id} was merged into #{ticket.merged_into}: answer there.",
                     ok=False)
    if ticket.status == TicketStatus.CLOSED:
        return Reply(f"#{ticket.id} is closed. /reopen {ticket.id} first.", ok=False)
    return None


def _event(ticket: Ticket, kind: str, actor: Actor, at: datetime, data: dict) -> Event:
    return Event(ticket_id=ticket.id, channel=ticket.channel, kind=kind, actor=actor.name,
                 at=at, data=data)


async def _count_events(session: AsyncSession, kind: str, since: datetime) -> int:
    return await session.scalar(sa.select(sa.func.count()).select_from(Event)
                                .where(Event.kind == kind, Event.at >= since))


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return format_duration(timedelta(minutes=minutes)) if minutes else "under a minute"

