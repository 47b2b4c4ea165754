"""Typed answers to the satisfaction survey, taken out of an ingested batch.

Where a platform has no buttons (X), or a customer types rather than presses, the
answer is a message: a bare score ("5", "4/5", "⭐⭐⭐⭐") from a customer whose survey was
delivered within ``survey.answer_within`` answers it; after the score, the customer's
next text message within ``survey.comment_within`` is its comment. Such a message is
stored on the survey's ticket (so a redelivered one is recognised and nothing is lost)
but opens no ticket and no new waiting cycle: it is not a new question.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

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
from core.store.tables import Customer, Message, Outbox, Survey


async def take_answers(session: AsyncSession, settings: Settings, policy: Policy,
                       messages: Sequence[Inbound], now: datetime
                       ) -> tuple[list[Inbound], int]:
    """The messages that are not survey answers, and how many were (stored here)."""
    texts = [m for m in messages if m.text.strip() and not m.attachments]
    if not texts:
        return list(messages), 0
    surveys = await _open_surveys(session, settings, texts, now)
    if not surveys:
        return list(messages), 0
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


async def _open_surveys(session: AsyncSession, settings: Settings, messages: list[Inbound],
                        now: datetime) -> dict[tuple[str, str], Survey]:
    """Per (channel, author): the latest survey waiting for their score (delivered
    within answer_within) or for their comment (scored within comment_within)."""
    by_channel: dict[str, set[str]] = {}
    for message in messages:
        by_channel.setdefault(message.channel, set()).add(message.author_id)
    waiting_score = sa.and_(Survey.state == QUEUED, Outbox.state == OutboxState.SENT,
                            Outbox.sent_at >= now - settings.survey.answer_within)
    waiting_comment = sa.and_(Survey.state == ANSWERED, Survey.comment.is_(None),
                              Survey.answered_at >= now - settings.survey.comment_within)
    found: dict[tuple[str, str], Survey] = {}
    for channel, authors in by_channel.items():
        rows = await session.execute(
            sa.select(Survey, Customer.external_user_id)
            .join(Customer, Customer.id == Survey.customer_id)
            .join(Outbox, Outbox.idempotency_key == question_key_of(Survey.id))
            .where(Customer.channel == channel, Customer.external_user_id.in_(authors),
                   Survey.state.in_((QUEUED, ANSWERED)),
                   sa.or_(waiting_score, waiting_comment))
            .order_by(Outbox.sent_at).with_for_update(of=Survey))
        for survey, author in rows:
            found[(channel, author)] = survey  # the latest question wins
    return found
