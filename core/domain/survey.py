"""The satisfaction survey's rules, as pure functions: when a survey may go out, what it
says, how a typed answer is read, and the one definition of the CSAT figures.

- A survey goes out ``survey.delay`` after its trigger (a close, or a staff answer that
  ended a wait), never in quiet hours: a moment outside the business calendar's hours is
  moved to the next opening.
- A customer answers with a button (where the platform has them) or by writing a bare
  score: "5", "4/5", "3 из 5", "⭐⭐⭐⭐" (a leading @mention is left out, as on X).
- **CSAT** of a set of surveys: the **responses** are the surveys answered with a score;
  the **satisfied share** is the responses that scored 4 or 5 divided by all responses;
  the **average** is the mean score; the **response rate** is responses divided by the
  surveys asked (delivered to the customer). ``/stats``, ``sameday report`` (per channel
  and per agent) and the chart all use ``Csat``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.config.settings import DEFAULT_SURVEY_TEXTS, SurveySettings
from core.domain.ack import render
from core.domain.calendar import BusinessCalendar
from core.domain.kpi import Rate

SCORES = (1, 2, 3, 4, 5)
SATISFIED = 4  # a score of 4 or 5 counts as satisfied
# The buttons' labels, lowest score first (the platforms show them in one row).
BUTTONS = ("😞 1", "🙁 2", "😐 3", "🙂 4", "😍 5")

# "5", "5.", "5/5", "4 of 5", "4 из 5", "4 ⭐", or stars alone; a leading @mention (a reply
# on X starts with one) and surrounding spaces are allowed.
_MENTIONS = re.compile(r"^(?:@\w+[\s,]+)+")
_SCORE = re.compile(r"\s*([1-5])\s*(?:(?:/|of|из)\s*5|[⭐★]+)?\s*[.!)]*\s*", re.IGNORECASE)
_STARS = re.compile(r"\s*([⭐★]\ufe0f?){1,5}\s*")

# What a customer who pressed a button is told on the spot (a pop-up), by language.
PRESS_REPLIES = {
    "ru": {"rated": "Спасибо! Ваша оценка: {score}", "already": "Вы уже оценили наш ответ. "
           "Спасибо!", "expired": "Этот опрос уже закрыт.",
           "invalid": "Эта кнопка больше не действует."},
    "en": {"rated": "Thank you! Your rating: {score}", "already": "You have rated this "
           "already. Thank you!", "expired": "This survey is closed.",
           "invalid": "This button is no longer valid."},
}


def parse_score(text: str) -> int | None:
    """The score a typed answer gives (1-5), or None when the text is not a bare score."""
    text = _MENTIONS.sub("", text.strip())
    if _STARS.fullmatch(text):
        return sum(1 for char in text if char in "⭐★")
    match = _SCORE.fullmatch(text)
    return int(match.group(1)) if match else None


def due_time(calendar: BusinessCalendar, trigger: datetime, delay: timedelta) -> datetime:
    """When a survey triggered at `trigger` may go out: after the delay, and never in
    quiet hours (outside the calendar's business hours: moved to the next opening)."""
    due = trigger + delay
    return due if calendar.is_open(due) else calendar.next_opening(due)


def survey_texts(settings: SurveySettings, language: str) -> dict[str, str]:
    """The question, the hint for a typed answer and the thanks in `language`: the
    admin's texts over the built-in ones."""
    language = language if language in DEFAULT_SURVEY_TEXTS else "ru"
    return {**DEFAULT_SURVEY_TEXTS[language], **settings.texts.get(language, {})}


@dataclass(frozen=True)
class Question:
    """A survey's texts as sent: ``with_buttons`` under native buttons, ``typed`` (the
    question with "reply with a number") where the platform has no buttons."""

    with_buttons: str
    typed: str


def question(settings: SurveySettings, language: str, channel: str,
             values: dict[str, Any]) -> Question:
    """The question for one customer; `values` fill {name} {handle} {ticket} {agent}, and
    the text is fitted to the channel's limit like an acknowledgement."""
    texts = survey_texts(settings, language)
    shown = {key: str(value) if value is not None else "" for key, value in values.items()}
    return Question(render(texts["question"], shown, channel),
                    render(f"{texts['question']} {texts['reply_hint']}", shown, channel))


def thanks(settings: SurveySettings, language: str, channel: str,
           values: dict[str, Any]) -> str:
    shown = {key: str(value) if value is not None else "" for key, value in values.items()}
    return render(survey_texts(settings, language)["thanks"], shown, channel)


def press_reply(language: str, outcome: str, score: int | None = None) -> str:
    """The pop-up for a button press: rated, already, expired or invalid."""
    replies = PRESS_REPLIES.get(language, PRESS_REPLIES["ru"])
    return replies[outcome].format(score=score)


# --- the figures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Csat:
    """The satisfaction figures of a set of surveys: ``asked`` delivered, ``scores`` of
    those answered (1-5 each)."""

    asked: int
    scores: tuple[int, ...] = ()

    @classmethod
    def of(cls, asked: int, scores: Iterable[int | None]) -> Csat:
        return cls(asked, tuple(score for score in scores if score is not None))

    @property
    def responses(self) -> int:
        return len(self.scores)

    @property
    def satisfied(self) -> Rate:
        """Responses that scored 4 or 5, of all responses (the CSAT headline)."""
        return Rate(sum(1 for s in self.scores if s >= SATISFIED), len(self.scores))

    @property
    def average(self) -> float | None:
        """The mean score, rounded to 2 places; None without responses."""
        return round(sum(self.scores) / len(self.scores), 2) if self.scores else None

    @property
    def response_rate(self) -> Rate:
        """Surveys answered, of the surveys asked."""
        return Rate(len(self.scores), self.asked)

    def distribution(self) -> dict[int, int]:
        """How many responses gave each score, 1 to 5."""
        return {score: self.scores.count(score) for score in SCORES}

    def to_dict(self) -> dict[str, Any]:
        return {"asked": self.asked, "responses": self.responses,
                "response_rate": self.response_rate.value, "average": self.average,
                "satisfied": self.satisfied.part, "satisfied_rate": self.satisfied.value,
                "scores": {str(k): v for k, v in self.distribution().items()}}

    def words(self) -> str:
        """One line: "80% rated 4-5, average 4.4 (5 answers of 8 asked)"."""
        if not self.asked and not self.scores:
            return "no survey asked"
        if not self.scores:
            return f"no answer yet (0 of {self.asked} asked)"
        return (f"{self.satisfied.fraction:.0%} rated 4-5, average {self.average:.1f} "
                f"({self.responses} answer{'s' if self.responses != 1 else ''} of "
                f"{self.asked} asked)")
