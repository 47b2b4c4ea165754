"""`/edit`, `/delete`: fixing an answer already sent.

Both act on the ticket's last answer (a staff member who edits their own answer in the
staff group changes that answer: the staff chat passes its message as ``origin["edits"]``).
What happens depends on where the answer is:

- still waiting in the outbox: its text is changed, or it is taken out, before anything
  reaches the customer;
- being delivered this very moment: try again in a few seconds;
- never delivered (dead): there is nothing to change, a new answer is the way;
- delivered: where the platform allows it (``ChannelAdapter.can_edit`` / ``can_delete``)
  an ``edit`` or ``delete`` row is queued (core.delivery.actions) and goes through the
  outbox with its rate limits and retries; where it does not (X has no editing), staff are
  told so and offered ``/delete N`` and a new answer.

Every change is an Event of the ticket ("answer_edited", "answer_withdrawn"), the stored
answer follows it (its text; a note for a withdrawal), and the card says it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.config.channels import channel_label, text_rules
from core.delivery.actions import DELETE, EDIT
from core.delivery.contract import adapter_class
from core.delivery.enqueue import Lane, enqueue, outbox_row
from core.domain.records import Direction, OutboxKind, OutboxState
from core.staff.board import customer_name, queue_card_edit
from core.staff.handlers import Actor, Reply, handles
from core.staff.language import Command
from core.store.tables import Customer, Event, Message, Outbox, StaffFile, Ticket

WAITING = (OutboxState.PENDING, OutboxState.RETRY)


@handles("edit")
async def edit(desk, session: AsyncSession, actor: Actor, command: Command,
               ticket: Ticket) -> Reply:
    text = command.arg
    label = channel_label(ticket.channel)
    answer = await _answer(session, ticket, actor)
    if answer is None:
        return _no_answer(ticket, actor, "to change")
    refused = _unchangeable(ticket, answer, "change")
    if refused is not None:
        return refused
    limit, measure = text_rules(ticket.channel)
    limit = min(limit, desk.settings.staff.max_reply_chars)
    if measure(text) > limit:
        return Reply(f"The new text has {measure(text)} characters; an answer changed on "
                     f"{label} must fit one message of {limit}.", ok=False)
    if text == answer.text:
        return Reply(f"#{ticket.id}: the last answer already says that.", ok=False)
    now = desk.clock.now()
    old = answer.text
    if answer.state in WAITING:
        changed = await session.execute(
            sa.update(Outbox).where(Outbox.id == answer.id, Outbox.state.in_(WAITING))
            .values(text=text))
        if not changed.rowcount:
            return _busy(ticket, "change")
        await _record(desk, session, ticket, actor, "answer_edited", answer, now,
                      {"old": old, "new": text, "delivered": False}, new_text=text)
        return Reply(f"#{ticket.id}: the answer was not delivered yet; it goes out with "
                     f"the new text.", ticket_id=ticket.id, quiet=_quiet(actor))
    cls = _adapter_class(ticket.channel)
    if cls is not None and not cls.can_edit:
        return Reply(f"{label} does not let a sent answer be changed. /delete {ticket.id} "
                     f"withdraws it; then /reply {ticket.id} <the corrected text> sends a "
                     f"new one.", ok=False)
    event = await _record(desk, session, ticket, actor, "answer_edited", answer, now,
                          {"new": text, "delivered": True}, new_text=text)
    await _queue(session, ticket, actor, answer, EDIT, text, event, now)
    customer = await session.get(Customer, ticket.customer_id)
    return Reply(f"#{ticket.id}: the answer to {customer_name(customer)} on {label} will "
                 f"be changed to the new text.", ticket_id=ticket.id, quiet=_quiet(actor))


@handles("delete")
async def delete(desk, session: AsyncSession, actor: Actor, command: Command,
                 ticket: Ticket) -> Reply:
    label = channel_label(ticket.channel)
    answer = await _answer(session, ticket, actor)
    if answer is None:
        return _no_answer(ticket, actor, "to withdraw")
    refused = _unchangeable(ticket, answer, "withdraw")
    if refused is not None:
        return refused
    now = desk.clock.now()
    if answer.state in WAITING:
        taken = await session.execute(
            sa.delete(Outbox).where(Outbox.id == answer.id, Outbox.state.in_(WAITING)))
        if not taken.rowcount:
            return _busy(ticket, "withdraw")
        ref = answer.target.get("file") or {}
        if ref.get("id"):
            await session.execute(sa.delete(StaffFile).where(StaffFile.id == int(ref["id"])))
        await _record(desk, session, ticket, actor, "answer_withdrawn", answer, now,
                      {"delivered": False})
        return Reply(f"#{ticket.id}: the answer was withdrawn before it was delivered; the "
                     f"customer never saw it. /reply {ticket.id} <text> answers again.",
                     ticket_id=ticket.id)
    cls = _adapter_class(ticket.channel)
    if cls is not None and not cls.can_delete:
        return Reply(f"{label} does not let a sent answer be withdrawn; it stays as it is.",
                     ok=False)
    event = await _record(desk, session, ticket, actor, "answer_withdrawn", answer, now,
                          {"delivered": True})
    await _queue(session, ticket, actor, answer, DELETE, answer.text, event, now)
    # The answer is marked, so a second /delete does not reach for the one before it.
    answer.target = {**answer.target, "withdrawn": {"by": actor.name, "event": event.id}}
    customer = await session.get(Customer, ticket.customer_id)
    return Reply(f"#{ticket.id}: the answer to {customer_name(customer)} on {label} will be "
                 f"withdrawn. /reply {ticket.id} <text> answers again.", ticket_id=ticket.id)


# --- which answer, and whether it can change -----------------------------------------------


async def _answer(session: AsyncSession, ticket: Ticket, actor: Actor) -> Outbox | None:
    """The answer to change: the one the staff member's edited message queued, else the
    ticket's latest answer."""
    query = sa.select(Outbox).where(Outbox.ticket_id == ticket.id,
                                    Outbox.kind == OutboxKind.REPLY,
                                    Outbox.channel == ticket.channel)
    edits = actor.origin.get("edits")
    if edits:
        query = query.where(Outbox.idempotency_key == f"reply:{edits}")
    return await session.scalar(query.order_by(Outbox.id.desc()).limit(1))


def _no_answer(ticket: Ticket, actor: Actor, what: str) -> Reply:
    if actor.origin.get("edits"):  # an edited message that was no answer: chatter
        return Reply("That message was not an answer to a customer.", ok=False, quiet=True)
    return Reply(f"#{ticket.id} has no answer {what}. /reply {ticket.id} <text> answers.",
                 ok=False)


def _unchangeable(ticket: Ticket, answer: Outbox, verb: str) -> Reply | None:
    if answer.target.get("withdrawn"):
        return Reply(f"The last answer of #{ticket.id} was withdrawn already. "
                     f"/reply {ticket.id} <text> answers again.", ok=False)
    if answer.state == OutboxState.SENDING:
        return _busy(ticket, verb)
    if answer.state == OutboxState.DEAD:
        reason = f" ({answer.last_error[:200]})" if answer.last_error else ""
        return Reply(f"The last answer of #{ticket.id} was never delivered{reason}: there is "
                     f"nothing to {verb}. /reply {ticket.id} <text> sends a new one.",
                     ok=False)
    return None


def _busy(ticket: Ticket, verb: str) -> Reply:
    return Reply(f"The last answer of #{ticket.id} is being delivered right now; try to "
                 f"{verb} it again in a few seconds.", ok=False)


def _quiet(actor: Actor) -> bool:
    """A staff member's edited message in the group: its card shows the change."""
    return bool(actor.origin.get("edits"))


def _adapter_class(channel: str) -> Any:
    try:
        return adapter_class(channel)
    except Exception:  # its adapter cannot be loaded here: it decides when sending
        return None


# --- what is written -----------------------------------------------------------------------


async def _record(desk, session: AsyncSession, ticket: Ticket, actor: Actor, kind: str,
                  answer: Outbox, now, data: dict[str, Any],
                  new_text: str | None = None) -> Event:
    """The Event, the stored answer brought in line, and the card's note."""
    old = data.get("old", answer.text)  # (a queued answer's row may hold the new text)
    event = Event(ticket_id=ticket.id, channel=ticket.channel, kind=kind, actor=actor.name,
                  at=now, data={"outbox_id": answer.id, "old": old, **data})
    session.add(event)
    message = await _stored_answer(session, ticket, answer, old)
    if new_text is not None and message is not None:
        message.text = new_text
    if kind == "answer_withdrawn":
        local = (message.created_at if message else now).astimezone(desk.policy.zone)
        session.add(Message(ticket_id=ticket.id, channel=ticket.channel,
                            direction=Direction.NOTE, author=actor.name, created_at=now,
                            text=f"withdrew the answer of {local:%d.%m %H:%M}: {old}"))
    await session.flush()
    note = "answer edited" if kind == "answer_edited" else "answer withdrawn"
    await queue_card_edit(session, desk.policy, ticket, f"{note} by {actor.name}",
                          str(event.id), now)
    return event


async def _stored_answer(session: AsyncSession, ticket: Ticket, answer: Outbox,
                         text: str) -> Message | None:
    """The answer's message row: named by the outbox row, else the latest one with its
    text."""
    message_id = (answer.target.get("confirm") or {}).get("message")
    if message_id:
        found = await session.get(Message, int(message_id))
        if found is not None:
            return found
    return await session.scalar(
        sa.select(Message).where(Message.ticket_id == ticket.id,
                                 Message.direction == Direction.OUT,
                                 Message.text == text)
        .order_by(Message.id.desc()).limit(1))


async def _queue(session: AsyncSession, ticket: Ticket, actor: Actor, answer: Outbox,
                 kind: str, text: str, event: Event, now) -> None:
    """The edit or delete row: the answer's own address, which answer (as the platform
    knows it), and where the staff member hears if it fails."""
    target = {key: value for key, value in answer.target.items()
              if key not in ("confirm", "file", "withdrawn")}
    target["answer"] = {"outbox_id": answer.id, "external_id": answer.external_id,
                        "file": (answer.target.get("file") or {}).get("kind")}
    target["confirm"] = {"by": actor.name, "origin": actor.origin}
    origin_key = actor.origin.get("key")
    key = f"{kind}:{origin_key}" if origin_key else f"{kind}:{answer.id}:{event.id}"
    await enqueue(session, outbox_row(
        channel=ticket.channel, kind=kind, ticket_id=ticket.id, text=text, target=target,
        key=key, now=now, lane=Lane.CUSTOMER))
