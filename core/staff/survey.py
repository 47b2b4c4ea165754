"""The satisfaction survey: asked after a ticket is done, answered with a button or a
typed score, shown on the ticket's card and counted in ``/stats`` and the report.

- **When.** ``[survey] when`` names the trigger: ``after_close`` (staff closed the
  ticket) or ``after_first_answer`` (the first staff answer of a waiting cycle). The
  question goes out ``delay`` later and never in quiet hours (``core.domain.survey``).
  A ticket nobody answered gets none, a blocked customer gets none, and one survey per
  ticket and waiting cycle is enforced by the table (``UNIQUE (ticket_id, cycle)``).
- **How it waits.** The question is an outbox row keyed ``survey:<id>`` whose
  ``next_attempt_at`` is the due time: it survives restarts, and the dispatcher sends it
  once, under the channel's rate limits. A customer who writes again before it goes out
  starts a new cycle, and the waiting question is withdrawn (``cancel_waiting``).
- **Where.** Where the channel's adapter says a message is private (a private chat),
  unless ``[survey.channels]`` turns the channel off; in public places (an X post, a
  comment under a post) only where it turns the channel on (``asks_on``).
- **The answer.** A press on a native button (``answer_press``; the adapter calls it
  through the staff desk) or a typed score (``core.intake.survey``) is stored with the
  survey, edits the ticket's card and thanks the customer, inviting a comment: their
  next text message within ``comment_within`` is stored as the comment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.config.settings import Settings
from core.delivery.contract import adapter_class
from core.delivery.enqueue import Lane, enqueue, outbox_row
from core.domain import survey as rules
from core.domain.policy import Policy
from core.domain.records import Direction, OutboxState
from core.domain.survey import Csat
from core.staff.board import customer_name, queue_card_edit, queue_staff_message
from core.staff.cards import notice, quote
from core.store.tables import Customer, Event, Message, Outbox, Survey, Ticket

log = logging.getLogger(__name__)

KIND = "survey"  # the outbox kind of the question and of the thanks
QUEUED, ANSWERED, CANCELLED = "queued", "answered", "cancelled"
WAITING_ROWS = (OutboxState.PENDING, OutboxState.RETRY)


def question_key(survey_id: int) -> str:
    return f"survey:{survey_id}"


def question_key_of(column: Any) -> Any:
    """``question_key`` as SQL, to join a survey to its question's outbox row."""
    return sa.literal("survey:") + sa.cast(column, sa.String)


def asks_on(settings: Settings, channel: str, target: dict[str, Any] | None) -> bool:
    """Whether a customer at this reply target may be asked (``[survey.channels]``, else
    only where the channel's adapter says the message is private)."""
    if not target:
        return False
    switch = settings.survey.channels.get(channel)
    if switch is not None:
        return switch
    try:
        adapter = adapter_class(channel)
        return adapter is None or adapter.survey_private(target)
    except Exception:  # a channel that cannot tell must not stop the command that asks
        log.exception("survey: cannot tell whether a %s address is private", channel)
        return False


# --- asking ----------------------------------------------------------------------------------


async def after_close(desk: Any, session: AsyncSession, ticket: Ticket) -> str | None:
    """/close: the survey when ``when = "after_close"``; a line for the staff member."""
    return await _schedule(desk, session, ticket, "after_close")


async def after_answer(desk: Any, session: AsyncSession, ticket: Ticket,
                       ended_wait: bool) -> str | None:
    """A staff answer: the survey when ``when = "after_first_answer"`` and the answer
    ended a wait (the first answer of the cycle)."""
    if not ended_wait:
        return None
    return await _schedule(desk, session, ticket, "after_first_answer")


async def _schedule(desk: Any, session: AsyncSession, ticket: Ticket,
                    trigger: str) -> str | None:
    settings: Settings = desk.settings
    policy: Policy = desk.policy
    if settings.survey.when != trigger or not asks_on(settings, ticket.channel,
                                                       ticket.reply_target):
        return None
    customer = await session.get(Customer, ticket.customer_id)
    if customer is None or customer.blocked_at is not None:
        return None
    agent = await session.scalar(
        sa.select(Message.author).where(Message.ticket_id == ticket.id,
                                        Message.direction == Direction.OUT)
        .order_by(Message.id.desc()).limit(1))
    if agent is None:
        return None  # nobody answered: there is nothing to rate
    if await session.scalar(sa.select(Survey.id).where(Survey.ticket_id == ticket.id,
                                                       Survey.cycle == ticket.cycle)):
        return None  # this cycle's survey exists (queued, answered or withdrawn)
    now = desk.clock.now()
    due = rules.due_time(policy.calendar, now, settings.survey.delay)
    survey = Survey(ticket_id=ticket.id, cycle=ticket.cycle, channel=ticket.channel,
                    customer_id=customer.id, agent=agent, language=ticket.language or
                    settings.ack.default_language, state=QUEUED, created_at=now, due_at=due)
    session.add(survey)
    await session.flush()
    asked = rules.question(settings.survey, survey.language, ticket.channel,
                           _values(customer, ticket, agent))
    row = outbox_row(
        channel=ticket.channel, kind=KIND, ticket_id=ticket.id, text=asked.typed,
        target={**ticket.reply_target, "survey": {
            "id": survey.id, "question": asked.with_buttons, "buttons": list(rules.BUTTONS)}},
        key=question_key(survey.id), now=now, deadline=due, lane=Lane.CUSTOMER)
    row["next_attempt_at"] = due  # not before: the delay, out of quiet hours
    await enqueue(session, row)
    session.add(Event(ticket_id=ticket.id, channel=ticket.channel, kind="survey_queued",
                      at=now, data={"survey": survey.id, "cycle": ticket.cycle,
                                    "due_at": due.isoformat(), "agent": agent}))
    local = due.astimezone(policy.zone)
    when = f"{local:%H:%M}" if local.date() == now.astimezone(policy.zone).date() \
        else f"{local:%d.%m %H:%M}"
    return f"The satisfaction survey goes out at {when}."


async def cancel_waiting(session: AsyncSession, ticket_ids: list[int], now: datetime,
                         reason: str) -> list[int]:
    """Withdraw the questions of these tickets that have not gone out yet (the customer
    wrote again, staff reopened the ticket); returns the withdrawn surveys' ids."""
    if not ticket_ids:
        return []
    return await _withdraw(session, Survey.ticket_id.in_(ticket_ids), now, reason)


async def withdraw_for_customers(session: AsyncSession, customer_ids: list[int],
                                 now: datetime, reason: str) -> list[int]:
    """Withdraw the questions to these customers that have not gone out yet (``/block``:
    a blocked customer is never asked)."""
    if not customer_ids:
        return []
    return await _withdraw(session, Survey.customer_id.in_(customer_ids), now, reason)


async def _withdraw(session: AsyncSession, which: Any, now: datetime, reason: str
                    ) -> list[int]:
    queued = (await session.execute(
        sa.select(Survey.id, Survey.ticket_id, Survey.channel)
        .where(which, Survey.state == QUEUED))).all()
    if not queued:
        return []
    deleted = set(await session.scalars(
        sa.delete(Outbox).where(Outbox.idempotency_key.in_([question_key(s.id) for s in queued]),
                                Outbox.state.in_(WAITING_ROWS))
        .returning(Outbox.idempotency_key)))
    withdrawn = [s for s in queued if question_key(s.id) in deleted]
    if withdrawn:
        await session.execute(sa.update(Survey).where(Survey.id.in_([s.id for s in withdrawn]))
                              .values(state=CANCELLED))
        await session.execute(sa.insert(Event.__table__), [
            {"ticket_id": s.ticket_id, "channel": s.channel, "kind": "survey_cancelled",
             "actor": None, "at": now, "data": {"survey": s.id, "reason": reason}}
            for s in withdrawn])
    return [s.id for s in withdrawn]


# --- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pressed:
    """What a customer who pressed a survey button is told (a pop-up), and whether the
    survey has its score now (its buttons may go)."""

    text: str
    done: bool


async def answer_press(desk: Any, channel: str, survey_id: int, score: int,
                       author_id: str) -> Pressed:
    """A customer pressed a survey's button: store the score once."""
    now = desk.clock.now()
    async with desk.store.session() as session, session.begin():
        survey = await session.get(Survey, survey_id, with_for_update=True)
        customer = await session.get(Customer, survey.customer_id) if survey else None
        if survey is None or customer is None or survey.channel != channel \
                or customer.external_user_id != str(author_id) \
                or score not in rules.SCORES or survey.state == CANCELLED:
            # Someone else's button (a group chat), or a survey that never went out.
            return Pressed(rules.press_reply(survey.language if survey else "ru",
                                             "invalid"), False)
        if survey.score is not None:
            return Pressed(rules.press_reply(survey.language, "already"), True)
        sent_at = await session.scalar(sa.select(Outbox.sent_at).where(
            Outbox.idempotency_key == question_key(survey.id)))
        if sent_at is not None and now - sent_at > desk.settings.survey.answer_within:
            return Pressed(rules.press_reply(survey.language, "expired"), True)
        await record_score(session, desk.settings, desk.policy, survey, score, now,
                           via="button")
    desk.on_outbox()
    return Pressed(rules.press_reply(survey.language, "rated", score), True)


async def record_score(session: AsyncSession, settings: Settings, policy: Policy,
                       survey: Survey, score: int, now: datetime, via: str,
                       reply_to: dict[str, Any] | None = None) -> None:
    """Store the score; edit the ticket's card; thank the customer, inviting a comment
    (next to their typed answer, ``reply_to``, else where the ticket is answered)."""
    survey.score, survey.state, survey.answered_at = score, ANSWERED, now
    ticket = await session.get(Ticket, survey.ticket_id)
    customer = await session.get(Customer, survey.customer_id)
    event = Event(ticket_id=survey.ticket_id, channel=survey.channel, kind="survey_answered",
                  actor=customer.external_user_id if customer else None, at=now,
                  data={"survey": survey.id, "score": score, "via": via,
                        "agent": survey.agent})
    session.add(event)
    await session.flush()
    await queue_card_edit(session, policy, ticket, rating_line(survey), f"survey:{event.id}",
                          now)
    target = reply_to or ticket.reply_target
    if target and settings.survey.comment_within.total_seconds() > 0:
        await enqueue(session, outbox_row(
            channel=survey.channel, kind=KIND, ticket_id=ticket.id,
            text=rules.thanks(settings.survey, survey.language, survey.channel,
                              _values(customer, ticket, survey.agent)),
            target=dict(target), key=f"survey-thanks:{survey.id}", now=now,
            lane=Lane.CUSTOMER))


async def record_comment(session: AsyncSession, policy: Policy, survey: Survey, text: str,
                         now: datetime) -> None:
    """The customer's words after their score: stored with it, on the card, and told to
    staff (a customer writing deserves to be seen, not only an edit of an old card)."""
    survey.comment, survey.commented_at = text, now
    ticket = await session.get(Ticket, survey.ticket_id)
    customer = await session.get(Customer, survey.customer_id)
    event = Event(ticket_id=survey.ticket_id, channel=survey.channel, kind="survey_comment",
                  actor=customer.external_user_id if customer else None, at=now,
                  data={"survey": survey.id, "score": survey.score})
    session.add(event)
    await session.flush()
    await queue_card_edit(session, policy, ticket, rating_line(survey), f"survey:{event.id}",
                          now)
    await queue_staff_message(session, notice(
        ticket.id, f"#{ticket.id} {customer_name(customer)} rated the answer "
                   f"{survey.score}/5 and wrote:", quote(text),
        tone="warning" if (survey.score or 0) < rules.SATISFIED else "info"),
        f"survey-comment:{survey.id}", now, Lane.STAFF)


def rating_line(survey: Survey) -> str:
    """How the card shows the answer: "⭐ rated 4/5 by the customer · “quick, thanks”"."""
    line = f"⭐ rated {survey.score}/5 by the customer"
    if survey.agent:
        line += f" (answered by {survey.agent})"
    if survey.comment:
        line += f" · “{quote(survey.comment)[:300]}”"
    return line


def _values(customer: Customer | None, ticket: Ticket, agent: str | None) -> dict[str, Any]:
    handle = customer.handle if customer else None
    spoken = handle.lstrip("@") if handle and handle.startswith("@") else ""
    return {"name": (customer.name if customer else None) or spoken, "handle": handle or "",
            "ticket": f"#{ticket.id}", "agent": agent or ""}


# --- figures ---------------------------------------------------------------------------------


async def csat_between(session: AsyncSession, since: datetime, until: datetime) -> Csat:
    """The CSAT of the surveys asked (delivered) in ``[since, until)``: /stats's line."""
    rows = (await session.execute(
        sa.select(Survey.score).join(Outbox, Outbox.idempotency_key == question_key_of(
            Survey.id)).where(Outbox.state == OutboxState.SENT, Outbox.sent_at >= since,
                              Outbox.sent_at < until))).all()
    return Csat.of(len(rows), [score for (score,) in rows])


async def stats_line(desk: Any, session: AsyncSession, since: datetime,
                     until: datetime) -> str | None:
    """/stats: today's satisfaction, or None while the survey is off and none was asked."""
    csat = await csat_between(session, since, until)
    if desk.settings.survey.when == "off" and not csat.asked:
        return None
    return f"Satisfaction (surveys asked today): {csat.words()}."
