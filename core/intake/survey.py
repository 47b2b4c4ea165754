"""Typed answers to the satisfaction survey, taken out of an ingested batch.

Where a platform has no buttons (X), or a customer types rather than presses, the
answer is a message: a bare score ("5", "4/5", "⭐⭐⭐⭐") from a customer whose survey was
delivered within ``survey.answer_within`` answers it; after the score, the customer's
next text message within ``survey.comment_within`` is its comment. Such a message is
stored on the survey's ticket (so a redelivered one is recognised and nothing is lost)
but opens no ticket and no new waiting cycle: it is not a new question.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.config.settings import Settings
from core.domain.payload import pack
from core.domain.policy import Policy
from core.domain.records import Direction, Inbound, OutboxState
from core.domain.survey import parse_score
from core.staff.survey import (
    ANSWERED,
    QUEUED,
    question_key_of,
    record_comment,
    record_score,
)
from core.store.tables import Message, Outbox, Survey


async def take_answers(session: AsyncSession, settings: Settings, policy: Policy,
                       messages: Sequence[Inbound], customers: Mapping[tuple[str, str], Any],
                       now: datetime) -> tuple[list[Inbound], int]:
    """The messages that are not survey answers, and how many were (stored here);
    ``customers``: the authors' customers by (channel, author id)."""
    texts = [m for m in messages if m.text.strip() and not m.attachments]
    by_customer = await _open_surveys(
        session, settings, {customers[(m.channel, m.author_id)].id for m in texts}, now)
    if not by_customer:
        return list(messages), 0
    surveys = {(m.channel, m.author_id): by_customer[customers[(m.channel, m.author_id)].id]
               for m in texts if customers[(m.channel, m.author_id)].id in by_customer}
    rest: list[Inbound] = []
    stored: list[dict] = []
    readable = {id(m) for m in texts}
    for message in messages:
        survey = surveys.get((message.channel, message.author_id))
        if survey is None or id(message) not in readable:
            rest.append(message)
            continue
        arrival = min(message.sent_at, now)
        if survey.state == QUEUED:
            score = parse_score(message.text)
            if score is None:
                rest.append(message)  # not an answer: a new question
                continue
            await record_score(session, settings, policy, survey, score, now, via="message",
                               reply_to=dict(message.reply_target) or None)
            if settings.survey.comment_within.total_seconds() <= 0:
                surveys.pop((message.channel, message.author_id))
        else:
            await record_comment(session, policy, survey, message.text.strip(), now)
            surveys.pop((message.channel, message.author_id))
        stored.append({
            "ticket_id": survey.ticket_id, "channel": message.channel,
            "direction": Direction.IN, "author": message.author_handle or message.author_id,
            "external_id": message.external_id, "text": message.text, "created_at": arrival,
            "attachments": None, "raw": pack(message.raw)})
    if stored:
        await session.execute(sa.insert(Message.__table__), stored)
    return rest, len(stored)


async def _open_surveys(session: AsyncSession, settings: Settings, customer_ids: set[int],
                        now: datetime) -> dict[int, Survey]:
    """Per customer: the latest survey waiting for their score (delivered within
    answer_within) or for their comment (scored within comment_within)."""
    open_states = Survey.state.in_((QUEUED, ANSWERED))
    if not customer_ids or await session.scalar(
            sa.select(Survey.id).where(Survey.customer_id.in_(customer_ids), open_states)
            .limit(1)) is None:
        return {}  # the usual case, answered from the index alone
    waiting_score = sa.and_(Survey.state == QUEUED, Outbox.state == OutboxState.SENT,
                            Outbox.sent_at >= now - settings.survey.answer_within)
    waiting_comment = sa.and_(Survey.state == ANSWERED, Survey.comment.is_(None),
                              Survey.answered_at >= now - settings.survey.comment_within)
    rows = await session.scalars(
        sa.select(Survey)
        .join(Outbox, Outbox.idempotency_key == question_key_of(Survey.id))
        .where(Survey.customer_id.in_(customer_ids), open_states,
               sa.or_(waiting_score, waiting_comment))
        .order_by(Outbox.sent_at).with_for_update(of=Survey))
    return {survey.customer_id: survey for survey in rows}  # the latest question wins
