"""The satisfaction survey on VK: the question with an inline keyboard of callback
buttons, and the customer's press on it.

The question's outbox row carries ``target["survey"]`` (core.staff.survey). In a
conversation it is sent with an inline keyboard (vk_api's ``VkKeyboard``) of callback
buttons whose payload is ``{"survey": <id>, "score": <1-5>}``. A press arrives in the
Bots Long Poll as a ``message_event`` (tests/fixtures/real/vk/message_event_callback_button.json:
``user_id``, ``peer_id``, ``event_id`` and the button's ``payload`` as an object); the score
is stored through the staff desk (``answer_survey``) and the press is answered with
``messages.sendMessageEventAnswer`` showing a snackbar, as VK requires of every callback
press. Comments under posts have no keyboards: there the question is the typed one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from vk_api.keyboard import VkKeyboard, VkKeyboardColor

from core.delivery.contract import DeliveryError
from core.domain.records import Outbound

log = logging.getLogger(__name__)

SNACKBAR = 90  # VK shows at most 90 characters in a snackbar


def survey_message(outbound: Outbound, conversation: bool) -> tuple[str, str | None]:
    """The text and keyboard (JSON) of a customer row: a survey's question with its
    buttons in a conversation, anything else as it is."""
    survey = outbound.target.get("survey")
    if not conversation or not isinstance(survey, dict) or "id" not in survey:
        return outbound.text, None
    keyboard = VkKeyboard(inline=True)
    for score, label in enumerate(survey.get("buttons") or (), start=1):
        keyboard.add_callback_button(label, color=VkKeyboardColor.PRIMARY if score >= 4
                                     else VkKeyboardColor.SECONDARY,
                                     payload={"survey": int(survey["id"]), "score": score})
    return survey.get("question") or outbound.text, keyboard.get_keyboard()


def press_of(event: Any) -> tuple[int, int, int, int, str] | None:
    """(survey id, score, user id, peer id, event id) of a survey button's press, or None
    for any other event."""
    if not isinstance(event, dict) or event.get("type") != "message_event":
        return None
    obj = event.get("object")
    payload = obj.get("payload") if isinstance(obj, dict) else None
    if isinstance(payload, str):  # a payload may come as the JSON text it was sent as
        try:
            payload = json.loads(payload)
        except ValueError:
            return None
    if not isinstance(payload, dict) or "survey" not in payload:
        return None
    try:
        return (int(payload["survey"]), int(payload["score"]), int(obj["user_id"]),
                int(obj["peer_id"]), str(obj["event_id"]))
    except (KeyError, TypeError, ValueError):
        return None


async def answer_press(adapter: Any, channel: str, press: tuple[int, int, int, int, str]
                       ) -> None:
    """Store the score (a press fetched again is "already rated") and answer the press."""
    survey_id, score, user_id, peer_id, event_id = press
    desk = adapter.context.staff_desk if adapter.context else None
    if desk is None:
        adapter.ignored("survey_press_without_desk")
        return
    pressed = await desk.answer_survey(channel, survey_id, score, str(user_id))
    event_data = json.dumps({"type": "show_snackbar", "text": pressed.text[:SNACKBAR]},
                            ensure_ascii=False)
    try:
        await adapter._call("messages.sendMessageEventAnswer", {
            "event_id": event_id, "user_id": user_id, "peer_id": peer_id,
            "event_data": event_data})
    except DeliveryError as error:  # the snackbar is a courtesy; the score is stored
        log.warning("vk: could not answer a survey press: %s", error.reason)
