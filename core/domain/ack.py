"""Acknowledgements: the customer's first proof that someone listens, with an honest
promise of when a human will answer.

Pure functions over plain data: whether to acknowledge (the policy), in which language,
the promise and the "we are back at ..." sentence in human words (localized with babel),
and the text fitted to the platform's limit without cutting a word or a placeholder.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time

from core.config.channels import channel_ack_texts, text_rules
from core.config.settings import DEFAULT_ACK_TEXTS, AckSettings

ELLIPSIS = "…"
# Russian weekdays after "в" take the accusative (среду, пятницу, субботу); babel has no
# grammatical cases, so this one small table stays here.
RU_WEEKDAY_ACCUSATIVE = ("понедельник", "вторник", "среду", "четверг", "пятницу", "субботу",
                         "воскресенье")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[A-Za-z]")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class AckFacts:
    """What the policy needs to know about one new ticket's first message."""

    channel: str
    author_id: str
    text: str
    now: datetime
    last_acked_at: datetime | None  # the customer's latest acknowledgement, any ticket


def skip_reason(settings: AckSettings, facts: AckFacts) -> str | None:
    """Why this message gets no acknowledgement, or None to acknowledge it."""
    if not settings.enabled:
        return "acknowledgements are off"
    if f"{facts.channel}:{facts.author_id}" in settings.company_accounts:
        return "one of the company's own accounts"
    lowered = facts.text.casefold()
    if any(word.casefold() in lowered for word in settings.ignore_keywords):
        return "matches ack.ignore_keywords"
    if settings.only_keywords and not any(w.casefold() in lowered
                                          for w in settings.only_keywords):
        return "matches none of ack.only_keywords"
    if facts.last_acked_at is not None and \
            facts.now - facts.last_acked_at < settings.quiet_window:
        return "the customer was acknowledged within ack.quiet_window"
    return None


def choose_language(settings: AckSettings, channel: str, text: str) -> str:
    """A fixed language, the channel's, or the message's script (Cyrillic -> ru)."""
    if settings.language != "auto":
        return settings.language
    if channel in settings.channel_languages:
        return settings.channel_languages[channel]
    cyrillic, latin = len(_CYRILLIC.findall(text)), len(_LATIN.findall(text))
    if cyrillic or latin:
        # Russian speakers mix in Latin (brands, order codes); English speakers hardly
        # ever type Cyrillic: a modest share of Cyrillic letters means Russian.
        return "ru" if cyrillic >= 0.3 * (cyrillic + latin) else "en"
    return settings.default_language


def clock_words(moment: datetime, language: str) -> str:
    """18:00 / 6 pm / 6:30 pm."""
    return _clock_words(moment.hour, moment.minute, language)


@functools.cache  # at most 24 * 60 per language; every acknowledgement asks
def _clock_words(hour: int, minute: int, language: str) -> str:
    moment = time(hour, minute)
    if language == "ru":
        return format_time(moment, "HH:mm", locale="ru")
    pattern = "h a" if minute == 0 else "h:mm a"
    return format_time(moment, pattern, locale="en").lower()


def day_words(day: date, today: date, language: str) -> str:
    """сегодня / tomorrow / в пятницу / on Friday / 25 декабря / on December 25."""
    ahead = (day - today).days
    if language == "ru":
        if ahead == 0:
            return "сегодня"
        if ahead == 1:
            return "завтра"
        if ahead < 7:
            return f"в {RU_WEEKDAY_ACCUSATIVE[day.weekday()]}"
        return format_date(day, "d MMMM", locale="ru")
    if ahead == 0:
        return "today"
    if ahead == 1:
        return "tomorrow"
    if ahead < 7:
        return f"on {format_date(day, 'EEEE', locale='en')}"
    return f"on {format_date(day, 'MMMM d', locale='en')}"


def promise_words(due: datetime, now: datetime, zone: ZoneInfo, language: str) -> str:
    """The promise in human words: "сегодня до 18:00", "on Monday by 12 pm"."""
    local_due, today = due.astimezone(zone), now.astimezone(zone).date()
    day = day_words(local_due.date(), today, language)
    by = "до" if language == "ru" else "by"
    return f"{day} {by} {clock_words(local_due, language)}"


def back_words(opening: datetime, now: datetime, zone: ZoneInfo, language: str) -> str:
    """The out-of-hours sentence: when the team is back."""
    local = opening.astimezone(zone)
    day = day_words(local.date(), now.astimezone(zone).date(), language)
    if language == "ru":
        return f"Сейчас мы не работаем и вернёмся {day} в {clock_words(local, language)}."
    return f"We are closed now and back {day} at {clock_words(local, language)}."


def render(template: str, values: dict[str, str], channel: str) -> str:
    """Fill the placeholders and fit the platform's limit.

    When the text is too long it is shortened at a word boundary, treating each filled
    placeholder as one unbreakable word, and ends with "…".
    """
    limit, measure = text_rules(channel)  # e.g. X counts weighted characters
    units = _units(template, values)
    full = _join(units)
    if measure(full) <= limit:
        return full
    kept: list[str] = []
    for unit in units:
        candidate = _join(kept + [unit]).rstrip() + ELLIPSIS
        if measure(candidate) > limit:
            break
        kept.append(unit)
    return _join(kept).rstrip(" ,.;:—-") + ELLIPSIS


def _units(template: str, values: dict[str, str]) -> list[str]:
    """Words of the template and whole placeholder values, each keeping its spacing."""
    units: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        units += re.findall(r"\S+\s*|\s+", template[position:match.start()])
        value = values.get(match.group(1), "")
        trailing = re.match(r"\s*", template[match.end():]).group(0)
        units.append(value)
        position = match.end()
        if trailing:
            units[-1] += trailing
            position += len(trailing)
    units += re.findall(r"\S+\s*|\s+", template[position:])
    return units


def _join(units: list[str]) -> str:
    # An empty placeholder (a customer without a name) must not leave ", thanks" behind.
    return re.sub(r"[ \t]{2,}", " ", "".join(units)).strip().lstrip(",;: ")


@dataclass(frozen=True)
class AckText:
    """Inputs of one acknowledgement text."""

    channel: str
    language: str
    name: str
    handle: str
    ticket: int
    due: datetime
    now: datetime
    next_opening: datetime | None  # None while the team is at work


def ack_template(settings: AckSettings, language: str, channel: str) -> str:
    """The admin's texts if there are any, else the built-in ones with the channel's own."""
    if settings.texts is None:
        texts = {**DEFAULT_ACK_TEXTS[language], **channel_ack_texts(channel, language)}
    else:
        texts = settings.texts.get(language) or settings.texts[settings.default_language]
    return texts.get(channel) or texts["default"]


def ack_text(settings: AckSettings, zone: ZoneInfo, facts: AckText) -> str:
    template = ack_template(settings, facts.language, facts.channel)
    values = {
        "name": facts.name, "handle": facts.handle, "ticket": f"#{facts.ticket}",
        "promise": promise_words(facts.due, facts.now, zone, facts.language),
        "back": back_words(facts.next_opening, facts.now, zone, facts.language)
        if facts.next_opening is not None else "",
    }
    return render(template, values, facts.channel)
