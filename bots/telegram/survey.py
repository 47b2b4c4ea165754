"""The satisfaction survey on Telegram: the question with an inline keyboard, and the
customer's press on it.

The question's outbox row carries ``target["survey"]`` (core.staff.survey): its id, the
question worded for buttons and the buttons' labels. Each button's ``callback_data`` is
``survey:<id>:<score>`` (at most 64 bytes, as the Bot API allows). A press arrives as a
``callback_query`` from the customer -- not a staff member, not in the staff group -- so
the adapter routes it here before the staff chat sees it: the score is stored through
the staff desk (``answer_survey``), the customer gets a pop-up (``answerCallbackQuery``),
and the keyboard is taken off the question so it cannot be pressed again.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError

from core.domain.records import Outbound

log = logging.getLogger(__name__)

PRESS = re.compile(r"survey:(\d{1,18}):([1-5])")
POPUP = 200  # Telegram shows at most 200 characters of answerCallbackQuery's text


def survey_message(outbound: Outbound) -> tuple[str, InlineKeyboardMarkup | None]:
    """The text and keyboard of a customer row: a survey's question with its buttons,
    anything else as it is."""
    survey = outbound.target.get("survey")
    if not isinstance(survey, dict) or "id" not in survey:
        return outbound.text, None
    buttons = [InlineKeyboardButton(label, callback_data=f"survey:{survey['id']}:{score}")
               for score, label in enumerate(survey.get("buttons") or (), start=1)]
    return survey.get("question") or outbound.text, InlineKeyboardMarkup([buttons])


def is_press(update: Update, staff_chat_id: int | None) -> bool:
    """A customer's press on a survey button (never a staff group's card button)."""
    query = update.callback_query
    if query is None or not PRESS.fullmatch(query.data or ""):
        return False
    return query.message is None or query.message.chat.id != staff_chat_id


async def answer_press(adapter: Any, channel: str, update: Update) -> None:
    """Store the score (idempotent: a press delivered again is "already rated") and tell
    the customer; a staff desk is needed (the daemon always gives one)."""
    query: CallbackQuery = update.callback_query
    desk = adapter.context.staff_desk if adapter.context else None
    match = PRESS.fullmatch(query.data or "")
    if desk is None or match is None:
        adapter.ignored("survey_press_without_desk")
        return
    pressed = await desk.answer_survey(channel, int(match.group(1)), int(match.group(2)),
                                       str(query.from_user.id))
    try:
        await query.answer(pressed.text[:POPUP])
    except TelegramError as error:  # the pop-up is a courtesy; the score is stored
        log.warning("telegram: could not answer a survey press: %s", error)
    message = query.message
    if pressed.done and message is not None:
        try:  # one score per survey: the buttons go
            await adapter.bot.edit_message_reply_markup(
                chat_id=message.chat.id, message_id=message.message_id, reply_markup=None)
        except TelegramError as error:
            log.info("telegram: the survey's buttons stay (%s)", error)
