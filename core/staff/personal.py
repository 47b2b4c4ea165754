"""A customer's personal data: find them, say what is held, forget them, gather an export.

Used by ``sameday forget`` / ``sameday export`` (core.app.privacy) and by ``/forget N``
(core.staff.forgetting), each in its own transaction.

**Forget** deletes what identifies the customer or what they wrote, and keeps the
tickets as anonymous rows (times, statuses, channel, cycles, priorities, assignees) and
the audit trail's kinds, times and figures, so the reports of past periods do not change:

- the customer row: name, handle, tags and the block reason go; the platform id becomes a
  random ``forgotten:<hex>`` token (nothing can lead back to the person);
- every message of their tickets (theirs, staff answers that may quote them, notes): the
  text, attachments, raw payload and platform id; their messages moved to a linked
  account's ticket too;
- staff files kept for their tickets (``staff_file`` bytes);
- outbox rows of their tickets (answers, acknowledgements, cards, notices): text, address,
  platform id and error; a row still queued is deleted (never sent; not a dead letter);
  a greeting sent to them (no ticket) likewise;
- the audit trail of their tickets: their platform id as actor becomes the token, texts
  (an edit's old and new text, a reason) and platform ids go;
- survey comments, their mentions (``mention``: author, text, payload) and quarantined
  payloads that name them (deleted);
- open tickets are closed first (an event ``closed``, a notice to staff); every card
  already in the staff chat is edited to the anonymous card.

One ``forgotten`` event records who asked and when, with counts and row ids only. A
forgotten customer is recognised by their token: forgetting again changes nothing.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.config.channels import channel_label, channel_names
from core.delivery.contract import STAFF_CHANNEL
from core.delivery.enqueue import Lane
from core.domain import lifecycle
from core.domain.payload import decode, unpack
from core.domain.policy import Policy
from core.domain.records import Direction, OutboxState, TicketStatus
from core.staff.board import customer_name, queue_card_edit, queue_staff_message
from core.staff.cards import notice
from core.staff.survey import cancel_waiting
from core.store.tables import (
    Customer,
    Event,
    Mention,
    Message,
    Outbox,
    Quarantine,
    StaffFile,
    Survey,
    Ticket,
)

FORGOTTEN = "forgotten:"  # the prefix of a forgotten customer's token
FORGOTTEN_EVENT = "forgotten"
SCRUBBED = "[forgotten]"  # what replaces a value of the audit trail that named them
# Keys of an event's data that hold what someone wrote (an edit's texts, a reason).
TEXT_KEYS = frozenset({"old", "new", "text", "comment", "reason", "quote", "caption",
                       "external_id", "name", "handle"})
QUEUED_ROWS = (OutboxState.PENDING, OutboxState.RETRY)
MAX_QUARANTINE = 10_000  # quarantined payloads of their channel read for their id
CUSTOMER_HELP = ("CUSTOMER is channel:user_id (telegram:123456), a handle (@kate) or a "
                 "ticket number (#12)")


class CustomerError(ValueError):
    """CUSTOMER names no one, or several: the message says why and what to write."""


@dataclass
class Held:
    """What is held about a customer (what forgetting deletes), as counts."""

    tickets: list[int] = field(default_factory=list)
    open_tickets: list[int] = field(default_factory=list)
    messages: int = 0  # theirs
    answers: int = 0  # staff answers and bot messages in their tickets
    notes: int = 0
    attachments: int = 0  # messages with attachments
    raw: int = 0  # messages with the platform's payload
    files: int = 0  # staff files kept for their tickets
    queued: int = 0  # outbox rows still to be sent (cancelled by forgetting)
    outbox: int = 0  # outbox rows of their tickets (texts and addresses)
    events: int = 0
    survey_comments: int = 0
    mentions: int = 0
    quarantined: int = 0

    def summary(self) -> str:
        parts = [_count(self.messages, "message"), _count(self.answers, "answer"),
                 _count(self.notes, "note"), _count(self.attachments, "message with media",
                                                    "messages with media"),
                 _count(self.raw, "raw payload"), _count(self.files, "staff file"),
                 _count(self.events, "audit event"), _count(self.survey_comments,
                                                            "survey comment"),
                 _count(self.mentions, "mention"), _count(self.quarantined,
                                                          "quarantined payload"),
                 _count(self.queued, "queued outbox row")]
        return ", ".join(p for p in parts if not p.startswith("0 "))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Forgotten:
    customer_id: int
    channel: str
    already: bool
    held: Held
    closed: list[int] = field(default_factory=list)


def is_forgotten(customer: Customer) -> bool:
    return customer.external_user_id.startswith(FORGOTTEN)


# --- who ----------------------------------------------------------------------------------


async def find_customer(session: AsyncSession, spec: str, *, for_update: bool = False
                        ) -> Customer | None:
    """The customer CUSTOMER names; None: a well-formed channel:user_id or handle that
    matches no one (never seen, or already forgotten). Raises ``CustomerError`` for a
    malformed CUSTOMER, an unknown channel or ticket, or a handle several customers have.
    """
    spec = (spec or "").strip()
    if match := re.fullmatch(r"#([0-9]{1,9})", spec):
        ticket = await session.get(Ticket, int(match.group(1)))
        if ticket is None:
            raise CustomerError(f"there is no ticket #{match.group(1)}")
        return await session.get(Customer, ticket.customer_id, with_for_update=for_update)
    if spec.startswith("@") and len(spec) > 1:
        handle = spec.lower()
        query = sa.select(Customer).where(sa.func.lower(Customer.handle).in_(
            [handle, handle[1:]])).order_by(Customer.id)
        found = list(await session.scalars(query.with_for_update() if for_update else query))
        if len(found) > 1:
            listed = "; ".join(f"{c.channel}:{c.external_user_id} ({customer_name(c)})"
                               for c in found)
            raise CustomerError(f"the handle {spec} matches {len(found)} customers: {listed}. "
                                f"Name one as channel:user_id")
        return found[0] if found else None
    channel, colon, user_id = spec.partition(":")
    if not colon or not channel or not user_id.strip():
        raise CustomerError(f"{spec!r} is not a customer. {CUSTOMER_HELP}")
    if channel not in channel_names():
        raise CustomerError(f"unknown channel {channel!r} in {spec!r}; installed: "
                            f"{', '.join(channel_names())}. {CUSTOMER_HELP}")
    query = sa.select(Customer).where(Customer.channel == channel,
                                      Customer.external_user_id == user_id.strip())
    return await session.scalar(query.with_for_update() if for_update else query)


async def tickets_of(session: AsyncSession, customer: Customer, *, for_update: bool = False
                     ) -> list[Ticket]:
    query = sa.select(Ticket).where(Ticket.customer_id == customer.id).order_by(Ticket.id)
    return list(await session.scalars(query.with_for_update() if for_update else query))


def _their_messages(customer: Customer, ticket_ids: list[int]) -> Any:
    """Every message of their tickets, and theirs moved into another ticket (/merge of
    a linked account's ticket)."""
    authors = [a for a in (customer.external_user_id, customer.handle) if a]
    return sa.or_(Message.ticket_id.in_(ticket_ids),
                  sa.and_(Message.channel == customer.channel,
                          Message.direction == Direction.IN, Message.author.in_(authors)))


def _their_events(customer: Customer, ticket_ids: list[int]) -> Any:
    return sa.or_(Event.ticket_id.in_(ticket_ids),
                  sa.and_(Event.channel == customer.channel,
                          Event.actor == customer.external_user_id))


# --- what is held ------------------------------------------------------------------------


async def held(session: AsyncSession, customer: Customer) -> Held:
    """What forgetting the customer would delete."""
    tickets = await tickets_of(session, customer)
    ids = [t.id for t in tickets]
    result = Held(tickets=ids, open_tickets=[t.id for t in tickets
                                             if t.status != TicketStatus.CLOSED])
    rows = (await session.execute(
        sa.select(Message.direction, Message.attachments.is_not(None), Message.raw.is_not(None))
        .where(_their_messages(customer, ids), Message.text != ""))).all()
    for direction, attached, raw in rows:
        if direction == Direction.IN:
            result.messages += 1
        elif direction == Direction.NOTE:
            result.notes += 1
        else:
            result.answers += 1
        result.attachments += bool(attached)
        result.raw += bool(raw)
    result.files = await _scalar(session, sa.select(sa.func.count()).select_from(StaffFile)
                                 .where(StaffFile.ticket_id.in_(ids)))
    result.outbox = await _scalar(session, sa.select(sa.func.count()).select_from(Outbox)
                                  .where(Outbox.ticket_id.in_(ids), Outbox.text != ""))
    result.queued = await _scalar(session, sa.select(sa.func.count()).select_from(Outbox)
                                  .where(Outbox.ticket_id.in_(ids),
                                         Outbox.state.in_(QUEUED_ROWS)))
    result.events = await _scalar(session, sa.select(sa.func.count()).select_from(Event)
                                  .where(_their_events(customer, ids)))
    result.survey_comments = await _scalar(
        session, sa.select(sa.func.count()).select_from(Survey).where(
            sa.or_(Survey.customer_id == customer.id, Survey.ticket_id.in_(ids)),
            Survey.comment.is_not(None)))
    result.mentions = await _scalar(session, sa.select(sa.func.count()).select_from(Mention)
                                    .where(Mention.channel == customer.channel,
                                           Mention.author_id == customer.external_user_id))
    result.quarantined = len(await _their_quarantine(session, customer))
    return result


# --- forget -------------------------------------------------------------------------------


async def forget(session: AsyncSession, policy: Policy, customer: Customer, actor: str,
                 now: datetime, via: str) -> Forgotten:
    """Forget the customer in the caller's transaction (see the module's docstring);
    ``actor``: who asked (a staff name, or who ran the command); ``via``: cli | staff."""
    if is_forgotten(customer):
        return Forgotten(customer.id, customer.channel, True, Held())
    if session.bind.dialect.name == "sqlite":
        # Deleted text is overwritten in the file, not left in free pages.
        await session.execute(sa.text("PRAGMA secure_delete = ON"))
    inventory = await held(session, customer)
    tickets = await tickets_of(session, customer, for_update=True)
    ids = [t.id for t in tickets]
    markers = _markers(customer)
    token = FORGOTTEN + secrets.token_hex(16)
    uid = customer.external_user_id

    # Open tickets are closed first, as /close would (no survey is asked).
    closed = []
    for ticket in tickets:
        if ticket.status != TicketStatus.CLOSED:
            lifecycle.closed(ticket, now)
            session.add(Event(ticket_id=ticket.id, channel=ticket.channel, kind="closed",
                              actor=actor, at=now, data={"why": FORGOTTEN_EVENT}))
            closed.append(ticket.id)
    await cancel_waiting(session, ids, now, "customer forgotten")

    for message in await session.scalars(sa.select(Message).where(
            _their_messages(customer, ids))):
        message.text, message.attachments, message.raw = "", None, None
        message.external_id = None
        if message.direction == Direction.IN:
            message.author = None
    await session.execute(sa.delete(StaffFile).where(StaffFile.ticket_id.in_(ids)))
    await _scrub_outbox(session, customer, ids, markers)
    for event in await session.scalars(sa.select(Event).where(
            _their_events(customer, ids))):
        if event.actor == uid:
            event.actor = token
        event.data = _scrubbed(event.data or {}, markers)
    await session.execute(sa.update(Survey).where(
        sa.or_(Survey.customer_id == customer.id, Survey.ticket_id.in_(ids)))
        .values(comment=None))
    for mention in await session.scalars(sa.select(Mention).where(
            Mention.channel == customer.channel, Mention.author_id == uid)):
        mention.author_id, mention.author_handle, mention.author_name = token, None, None
        mention.text, mention.attachments, mention.raw = "", None, None
        mention.external_id = f"{FORGOTTEN}{mention.id}"
    quarantined = await _their_quarantine(session, customer)
    if quarantined:
        await session.execute(sa.delete(Quarantine).where(Quarantine.id.in_(quarantined)))

    customer.external_user_id, customer.handle, customer.name = token, None, None
    customer.tags, customer.blocked_reason = [], None
    for ticket in tickets:
        ticket.thread_key, ticket.reply_target = f"{FORGOTTEN}{ticket.id}", None
    await session.flush()

    event = Event(ticket_id=None, channel=customer.channel, kind=FORGOTTEN_EVENT,
                  actor=actor, at=now, data={
                      "customer": customer.id, "via": via, "tickets": ids, "closed": closed,
                      "deleted": {k: v for k, v in inventory.as_dict().items()
                                  if isinstance(v, int)}})
    session.add(event)
    await session.flush()
    # The staff chat: the cards it shows become anonymous; a closed ticket is told.
    for ticket in tickets:
        await queue_card_edit(session, policy, ticket, "customer forgotten",
                              f"forgotten:{event.id}", now)
    for ticket_id in closed:
        await queue_staff_message(session, notice(
            ticket_id, f"#{ticket_id} closed: its customer asked to be forgotten, and "
                       f"{actor} deleted what was held about them."),
            f"forgotten:{event.id}:{ticket_id}", now, Lane.STAFF)
    return Forgotten(customer.id, customer.channel, False, inventory, closed)


async def _scrub_outbox(session: AsyncSession, customer: Customer, ids: list[int],
                        markers: list[str]) -> None:
    rows = list(await session.scalars(sa.select(Outbox).where(Outbox.ticket_id.in_(ids))))
    # A greeting (no ticket) went to their address on their channel.
    greetings = await session.scalars(sa.select(Outbox).where(
        Outbox.ticket_id.is_(None), Outbox.channel == customer.channel,
        sa.cast(Outbox.target, sa.Text).contains(customer.external_user_id,
                                                 autoescape=True)))
    rows += [row for row in greetings if _names(row.target, customer)]
    for row in rows:
        if row.state in QUEUED_ROWS:  # not sent yet: never sent now (as /block's survey)
            await session.delete(row)
            continue
        row.text, row.target, row.last_error = "", {}, None
        if row.channel != STAFF_CHANNEL:  # a staff chat's own message id is not theirs
            row.external_id = None
        if any(m in row.idempotency_key for m in markers):
            row.idempotency_key = f"{FORGOTTEN}outbox:{row.id}"


async def _their_quarantine(session: AsyncSession, customer: Customer) -> list[int]:
    """Quarantined payloads of their channel that carry their id or handle."""
    uid = customer.external_user_id
    if is_forgotten(customer) or not uid:
        return []
    rows = await session.execute(
        sa.select(Quarantine.id, Quarantine.payload)
        .where(Quarantine.channel == customer.channel,
               Quarantine.payload.contains(uid, autoescape=True))
        .order_by(Quarantine.id).limit(MAX_QUARANTINE))
    found = []
    for row_id, payload in rows:
        try:
            value = decode(payload)
        except ValueError:
            value = payload
        if _names(value, customer):
            found.append(row_id)
    return found


def _markers(customer: Customer) -> list[str]:
    """Strings that identify the customer, as they may appear inside other strings."""
    handle = (customer.handle or "").strip()
    return [m for m in {customer.external_user_id, handle, handle.lstrip("@"),
                        (customer.name or "").strip()} if m]


def _names(value: Any, customer: Customer) -> bool:
    """Whether a JSON value holds the customer's id or handle as one of its values."""
    uid, handle = customer.external_user_id, (customer.handle or "").lower()
    for leaf in _leaves(value):
        if isinstance(leaf, bool):
            continue
        if isinstance(leaf, int | str) and str(leaf) == uid:
            return True
        if handle and isinstance(leaf, str) and leaf.lower() in (handle, handle.lstrip("@")):
            return True
    return False


def _leaves(value: Any, depth: int = 0) -> Iterable[Any]:
    if depth > 64:
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item, depth + 1)
    else:
        yield value


def _scrubbed(data: dict[str, Any], markers: list[str]) -> dict[str, Any]:
    """An event's data without what they wrote and without their name, handle or id."""
    def clean(value: Any, depth: int = 0) -> Any:
        if depth > 64:
            return SCRUBBED
        if isinstance(value, dict):
            return {k: (None if k in TEXT_KEYS else clean(v, depth + 1))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v, depth + 1) for v in value]
        if isinstance(value, str) and any(m in value for m in markers):
            return SCRUBBED
        return value
    return clean(data)


# --- export --------------------------------------------------------------------------------


@dataclass
class Export:
    """Everything held about a customer, as JSON-ready rows, and the files held."""

    customer: dict[str, Any]
    tickets: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    events: list[dict[str, Any]]
    surveys: list[dict[str, Any]]
    mentions: list[dict[str, Any]]
    media: list[dict[str, Any]]  # attachments held as platform links or ids
    files: list[tuple[str, bytes]]  # (name in the archive, bytes): staff files held


async def gather(session: AsyncSession, customer: Customer) -> Export:
    tickets = await tickets_of(session, customer)
    ids = [t.id for t in tickets]
    messages = list(await session.scalars(sa.select(Message).where(
        _their_messages(customer, ids)).order_by(Message.id)))
    events = list(await session.scalars(sa.select(Event).where(
        _their_events(customer, ids)).order_by(Event.id)))
    surveys = list(await session.scalars(sa.select(Survey).where(
        sa.or_(Survey.customer_id == customer.id, Survey.ticket_id.in_(ids)))
        .order_by(Survey.id)))
    mentions = list(await session.scalars(sa.select(Mention).where(
        Mention.channel == customer.channel,
        Mention.author_id == customer.external_user_id).order_by(Mention.id)))
    staff_files = list(await session.scalars(sa.select(StaffFile).where(
        StaffFile.ticket_id.in_(ids)).order_by(StaffFile.id)))
    media = []
    for message in messages:
        for number, attachment in enumerate(message.attachments or ()):
            media.append({"message_id": message.id, "ticket_id": message.ticket_id,
                          "number": number, "direction": message.direction,
                          "held": "link or platform id only", **attachment})
    for mention in mentions:
        for number, attachment in enumerate(mention.attachments or ()):
            media.append({"mention_id": mention.id, "number": number,
                          "held": "link or platform id only", **attachment})
    files = []
    for kept in staff_files:
        entry = {"staff_file_id": kept.id, "ticket_id": kept.ticket_id, "kind": kept.kind,
                 "name": kept.name, "content_type": kept.content_type, "size": kept.size,
                 "source": kept.source}
        if kept.content is not None:
            name = f"media/{kept.id}-{_safe_name(kept.name or kept.kind)}"
            files.append((name, kept.content))
            entry["held"], entry["file"] = "bytes", name
        else:
            entry["held"] = "platform id only"
        media.append(entry)
    return Export(
        customer={**_row(customer), "channel_label": channel_label(customer.channel)},
        tickets=[_row(t) for t in tickets],
        messages=[{**_row(m, skip=("raw",)), "raw": unpack(m.raw)} for m in messages],
        events=[_row(e) for e in events], surveys=[_row(s) for s in surveys],
        mentions=[{**_row(m, skip=("raw",)), "raw": unpack(m.raw)} for m in mentions],
        media=media, files=files)


def _row(row: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {column.name: getattr(row, column.name) for column in row.__table__.columns
            if column.name not in skip}


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^\w.\-]+", "_", name).strip("._") or "file"
    return cleaned[:100]


async def _scalar(session: AsyncSession, query: Any) -> int:
    return int(await session.scalar(query) or 0)


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
