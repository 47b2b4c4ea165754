"""The settings models of config.toml (``core.config.load`` reads and checks a file).

The channel tables (``[channels.<name>]``, ``[outbox.limits.<name>]``) and the keys a
staff-chat channel adds to ``[staff]`` come from the installed channels' descriptions
(``core.config.channels``); the models here are the parts every installation shares.
"""

from __future__ import annotations

import difflib
import re
from datetime import date, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from core.config.channels import CONSOLE, ChannelSettings, TomlTyped
from core.config.durations import DurationTooLong, format_duration, parse_duration
from core.config.rates import RATE_HELP, RateLimit
from core.config.shown import shown

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return timedelta(seconds=value)
        except (OverflowError, ValueError):  # inf, nan, 1e300
            raise ValueError(f"{value!r} is not a finite number of seconds") from None
    return value


# No timing of sameday makes sense beyond a year; a longer one is a typo ("999d" for "9d"),
# and an absurd one would overflow the clock arithmetic it feeds.
MAX_DURATION = timedelta(days=366)


def duration(*, positive: bool = False, most: timedelta = MAX_DURATION) -> Any:
    """A duration field: "90s", "1h30m" or a number of seconds, never negative, at most
    ``most``; ``positive``: longer than 0s too (an interval the daemon waits between
    rounds of work: zero would make it spin)."""

    def parse(value: Any) -> Any:
        try:
            return _duration(value)
        except DurationTooLong:
            raise ValueError(f"{shown(value)} is too long; at most "
                             f"{format_duration(most)}") from None

    def bounded(value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        if positive and value == timedelta(0):
            raise ValueError("must be longer than 0s")
        if value > most:
            raise ValueError(f"is too long; at most {format_duration(most)}")
        return value

    return Annotated[timedelta, BeforeValidator(parse), AfterValidator(bounded)]


Duration = duration()
PositiveDuration = duration(positive=True)
# The daemon's own intervals, bounded more tightly (a lease of a week would hold a crashed
# send that long; a sweep every day would escalate nothing in time).
SweepInterval = duration(positive=True, most=timedelta(hours=1))
ShutdownGrace = duration(most=timedelta(hours=1))
RetryBase = duration(positive=True, most=timedelta(hours=1))
RetryMax = duration(positive=True, most=timedelta(days=7))
Lease = duration(positive=True, most=timedelta(days=1))


class Strict(TomlTyped):
    """Unknown keys are errors: a typo must not silently fall back to a default; numbers
    and booleans keep their TOML types (``TomlTyped``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- database, daemon ---------------------------------------------------------------


class DatabaseSettings(Strict):
    url: str = "sqlite+aiosqlite:///./sameday.db"
    # FULL survives power loss: the platform cursor is committed with the messages, and a
    # lost commit after the platform forgot the updates would lose them for good.
    sqlite_synchronous: Literal["full", "normal"] = "full"
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0, le=3_600_000)  # at most 1h

    @field_validator("url")
    @classmethod
    def _known_driver(cls, url: str) -> str:
        allowed = ("sqlite+aiosqlite://", "postgresql+psycopg://")
        if not url.startswith(allowed):
            raise ValueError(f"unsupported database URL; allowed: {' or '.join(allowed)}...")
        return url


# The one logger that may carry customers' texts and payloads, always at debug level; it
# is silent unless [daemon] log_texts is on (core.app.logs.setup_logging).
TEXTS_LOGGER = "sameday.texts"


class DaemonSettings(Strict):
    health_host: str = "127.0.0.1"
    health_port: int = Field(default=8787, ge=0, le=65535, strict=True)  # 0: no endpoint
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    # Customers' texts and payloads never reach the log at info or above (ids only); on,
    # they are written at debug level through the TEXTS_LOGGER logger (for debugging).
    log_texts: bool = False
    shutdown_grace: ShutdownGrace = timedelta(seconds=10)
    # How often the escalation sweep runs (it also wakes at the next due time).
    sweep_interval: SweepInterval = timedelta(seconds=1)


MAX_FLOOD_WINDOW = timedelta(hours=1)


def _flood(value: Any) -> Any:
    """inbox.flood: a rate like "10/1m", or "off"."""
    if isinstance(value, str) and value.strip().lower() == "off":
        return None
    if isinstance(value, str):
        limit = RateLimit.parse(value)
        if limit.per > MAX_FLOOD_WINDOW:
            raise ValueError(f"{shown(value)}: the window is at most "
                             f"{format_duration(MAX_FLOOD_WINDOW)}")
        return limit
    if value is None or isinstance(value, RateLimit):
        return value
    raise ValueError(f'{shown(value)} is not {RATE_HELP}, nor "off"')


class InboxSettings(Strict):
    # A customer message within this time after a ticket was closed reopens it; later
    # messages open a new ticket. "0s" never reopens.
    reopen_within: Duration = timedelta(hours=24)
    # A customer who sends more than this many messages within the window (from the
    # first one) is flooding: the rest of the window is stored and folded into one card
    # update, with no follow-up notices or acknowledgements (core.intake.flood). "off".
    flood: Annotated[RateLimit | None, BeforeValidator(_flood)] = RateLimit(
        10, timedelta(minutes=1))


# --- channels -------------------------------------------------------------------------


class ChannelsSettings(Strict):
    """``[channels.*]``: one field per installed channel, added by ``core.config.load``."""

    def enabled(self) -> dict[str, ChannelSettings]:
        return {name: value for name, value in self if value.enabled}


# --- staff ----------------------------------------------------------------------------


class StaffMember(Strict):
    """``[[staff.members]]``; a staff-chat channel adds its own keys (a user id)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    role: Literal["agent", "admin"] = "agent"


class StaffSettings(Strict):
    # Where cards and notices go: a channel that carries a staff chat, or only
    # `sameday console`. Unset: the enabled staff-chat channel, else the console.
    chat: str = CONSOLE
    members: list[StaffMember] = []
    # The longest answer /reply queues (a platform splits long texts into several
    # messages); longer ones are refused with this limit named.
    max_reply_chars: int = Field(default=4000, ge=1, le=100_000)

    @model_validator(mode="after")
    def _unique_members(self) -> StaffSettings:
        names = [m.name for m in self.members]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"staff member names must be unique; repeated: {duplicated}")
        return self

    def names(self) -> set[str]:
        return {m.name for m in self.members}


# --- calendar and promises -------------------------------------------------------------

_INTERVAL = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def _interval(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    match = _INTERVAL.match(value.strip())
    if not match:
        raise ValueError(f'{shown(value)} is not an interval like "09:00-18:00"')
    h1, m1, h2, m2 = (int(x) for x in match.groups())
    end = time(0, 0) if (h2, m2) == (24, 0) else None
    try:
        start, end = time(h1, m1), end or time(h2, m2)
    except ValueError:
        raise ValueError(f"{shown(value)} has an hour or minute out of range") from None
    if end != time(0, 0) and end <= start:
        raise ValueError(f"{shown(value)} ends before it starts")
    return (start, end)


Interval = Annotated[tuple[time, time], BeforeValidator(_interval)]


def _minutes(moment: time, *, end: bool = False) -> int:
    """Minutes since midnight; an interval's end of 00:00 is 24:00."""
    minutes = moment.hour * 60 + moment.minute
    return 24 * 60 if end and minutes == 0 else minutes


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class CalendarSettings(Strict):
    timezone: str = "Europe/Moscow"
    # Public holidays from the `holidays` package; "" turns them off.
    country: str = "RU"
    subdivision: str | None = None
    hours: dict[str, list[Interval]] = {
        day: [(time(9), time(18))] for day in WEEKDAYS[:5]
    }
    closed_dates: list[date] = []
    # Days that are working days although their weekday is closed (Russia moves working
    # days to Saturdays); they use the hours of `working_date_hours_from`.
    working_dates: list[date] = []
    working_date_hours_from: Literal["mon", "tue", "wed", "thu", "fri"] = "mon"
    # "Same day": before the cutoff of a business day -> due by that day's close;
    # after it or on a closed day -> due by `next_day_due_by` on the next business day.
    same_day_cutoff: time = time(17)
    next_day_due_by: time = time(12)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown time zone; allowed: an IANA name{hint}") from None
        return value

    @field_validator("hours")
    @classmethod
    def _weekdays(cls, value: dict[str, Any]) -> dict[str, Any]:
        wrong = [day for day in value if day not in WEEKDAYS]
        if wrong:
            raise ValueError(f"unknown day {shown(wrong[0])}; allowed: {', '.join(WEEKDAYS)}")
        if not any(value.values()):
            raise ValueError("at least one day must have business hours")
        return value

    def overlapping_hours(self) -> list[tuple[str, str]]:
        """(weekday, what overlaps) for each day whose intervals overlap: "09:00-13:00"
        and "12:00-18:00" is a typo to point out, not a rule to guess at (intervals that
        only touch, "09:00-13:00" and "13:00-18:00", are fine)."""
        found = []
        for day, intervals in self.hours.items():
            spans = sorted((_minutes(start), _minutes(end, end=True))
                           for start, end in intervals)
            for (start1, end1), (start2, end2) in zip(spans, spans[1:], strict=False):
                if start2 < end1:
                    found.append((day, f"{_hhmm(start1)}-{_hhmm(end1)} and "
                                       f"{_hhmm(start2)}-{_hhmm(end2)} overlap"))
        return found

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if not value:
            return value
        import holidays  # imported here: only config checking and the calendar need it

        if value.upper() not in holidays.list_supported_countries():
            raise ValueError("unknown country; allowed: an ISO 3166 code the holidays "
                             "package supports, like 'RU', 'DE', 'US', or '' for none")
        return value.upper()


class PromiseRule(Strict):
    """Which promise a message gets; the first matching rule wins, then the default."""

    name: str
    channels: list[str] = []  # installed channel names
    keywords: list[str] = []
    tags: list[str] = []
    # same_day: the calendar's same-day rule; business_time: `within` of business hours.
    kind: Literal["same_day", "business_time"] = "same_day"
    within: PositiveDuration | None = None

    @model_validator(mode="after")
    def _within_for_business_time(self) -> PromiseRule:
        if self.kind == "business_time" and not self.within:
            raise ValueError('kind = "business_time" needs `within`, e.g. within = "4h"')
        return self


class CustomersSettings(Strict):
    # Tags per customer, keyed "channel:user_id" (e.g. "twitter:12345" = ["vip"]).
    tags: dict[str, list[str]] = {}

    @field_validator("tags")
    @classmethod
    def _keys(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key in value:
            channel, _, user = key.partition(":")
            if not channel or not user:
                raise ValueError(f'key {shown(key)} must look like "<channel>:<user id>"')
        return value


# --- acknowledgement -------------------------------------------------------------------


# What an acknowledgement text may say: core.domain.ack fills them in.
ACK_PLACEHOLDERS = ("name", "handle", "ticket", "promise", "back")

# The acknowledgement every channel gets unless the admin writes texts of their own.
DEFAULT_ACK_TEXTS = {
    "ru": {"default": "{name}, спасибо! Обращение {ticket} принято, ответим {promise}. {back}"},
    "en": {"default": "{name}, thank you! Ticket {ticket} is open; we will answer {promise}. "
                      "{back}"},
}


class AckSettings(Strict):
    enabled: bool = True
    # "auto" picks by the channel (channel_languages) or else by the message's script
    # (Cyrillic -> ru); or force one language.
    language: Literal["auto", "ru", "en"] = "auto"
    channel_languages: dict[str, Literal["ru", "en"]] = {}
    default_language: Literal["ru", "en"] = "ru"
    # One acknowledgement per customer within this window, however many messages.
    quiet_window: Duration = timedelta(minutes=10)
    # The company's own accounts ("twitter:12345", "vk:-1"): never acknowledged.
    company_accounts: list[str] = []
    # Messages containing any of these words are not acknowledged (spam, thanks-only).
    ignore_keywords: list[str] = []
    # If set, only messages containing one of these words are acknowledged.
    only_keywords: list[str] = []
    # The answer to a chat's opening (Telegram's "/start"), which opens no ticket.
    greeting: dict[Literal["ru", "en"], str] = {
        "ru": "Здравствуйте! Напишите, чем мы можем помочь, и мы ответим.",
        "en": "Hello! Tell us how we can help, and we will answer."}
    # texts[language][channel or "default"] with {name}, {ticket}, {promise} placeholders.
    # Unset: the built-in texts below, plus each channel's own (X's "@handle ..." form).
    texts: dict[Literal["ru", "en"], dict[str, str]] | None = None

    @field_validator("texts")
    @classmethod
    def _texts(cls, value: dict[str, dict[str, str]] | None) -> dict[str, dict[str, str]] | None:
        if value is None:
            return value
        allowed = set(ACK_PLACEHOLDERS)
        for language, by_channel in value.items():
            if "default" not in by_channel:
                raise ValueError(f'texts.{language} needs a "default" text')
            for channel, text in by_channel.items():
                for placeholder in re.findall(r"{(\w*)}", text):
                    if placeholder not in allowed:
                        raise ValueError(f"texts.{language}.{channel}: unknown placeholder "
                                         f"{{{placeholder}}}; allowed: "
                                         + ", ".join(f"{{{p}}}" for p in sorted(allowed)))
        return value


# --- saved answers ---------------------------------------------------------------------

# A saved answer says what an acknowledgement may say, and who answers ({agent}).
TEMPLATE_PLACEHOLDERS = (*ACK_PLACEHOLDERS, "agent")
_TEMPLATE_NAME = re.compile(r"[^\W\d_][\w-]{0,31}")


def _template_text(text: str) -> str:
    if not text.strip():
        raise ValueError("is empty; allowed: the text of the answer")
    for placeholder in re.findall(r"{(\w*)}", text):
        if placeholder not in TEMPLATE_PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{placeholder}}}; allowed: "
                             + ", ".join(f"{{{p}}}" for p in TEMPLATE_PLACEHOLDERS))
    return text


def _template_name(name: str) -> str:
    if not _TEMPLATE_NAME.fullmatch(name):
        raise ValueError("is not a saved answer's name; allowed: a letter, then up to 31 "
                         "letters, digits, _ or - (/t <name> N)")
    return name


def _texts_table(texts: Any) -> Any:
    if not isinstance(texts, dict):
        raise ValueError('must be a table of texts by language; allowed: [templates.<name>] '
                         'with ru = "..." and/or en = "..."')
    if not texts:
        raise ValueError('has no text; allowed: ru = "..." and/or en = "..."')
    return texts


def _names_unique(templates: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, str] = {}
    for name in templates:
        if name.lower() in seen:
            raise ValueError(f"{name!r} and {seen[name.lower()]!r} are one name to /t "
                             f"(case does not count); allowed: different names")
        seen[name.lower()] = name
    return templates


# [templates.<name>]: the texts of one saved answer by language (like ack.texts), with the
# acknowledgement's placeholders and {agent}; core.staff.templates sends them (/t).
TemplateTexts = Annotated[dict[Literal["ru", "en"], Annotated[str, AfterValidator(
    _template_text)]], BeforeValidator(_texts_table)]
Templates = Annotated[dict[Annotated[str, AfterValidator(_template_name)], TemplateTexts],
                      AfterValidator(_names_unique)]


# --- the satisfaction survey ------------------------------------------------------------


# What the survey says unless the admin writes texts of their own (core.domain.survey).
DEFAULT_SURVEY_TEXTS = {
    "ru": {"question": "{name}, оцените, пожалуйста, как мы помогли с обращением {ticket}: "
                       "от 1 (плохо) до 5 (отлично).",
           "reply_hint": "Ответьте одной цифрой от 1 до 5.",
           "thanks": "Спасибо за оценку! Если хотите что-то добавить к обращению {ticket}, "
                     "просто напишите."},
    "en": {"question": "{name}, how did we do with ticket {ticket}? Rate us from 1 (poor) "
                       "to 5 (excellent).",
           "reply_hint": "Just reply with a number from 1 to 5.",
           "thanks": "Thank you for rating us! If you want to add anything about ticket "
                     "{ticket}, just write it here."},
}
SURVEY_PLACEHOLDERS = ("name", "handle", "ticket", "agent")
SurveyText = Literal["question", "reply_hint", "thanks"]


def _toml_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("must be true or false (without quotes)")
    return value


Switch = Annotated[bool, BeforeValidator(_toml_bool)]


class SurveySettings(Strict):
    """``[survey]``: the satisfaction question after a ticket is done (core.staff.survey)."""

    # off | after_close (staff closed the ticket) | after_first_answer (the first staff
    # answer of each waiting cycle); one survey per ticket and cycle either way.
    when: Literal["off", "after_close", "after_first_answer"] = "off"
    # How long after that the question goes out; a moment outside business hours (the
    # calendar) moves to the next opening. A customer who writes first cancels it.
    delay: Duration = timedelta(minutes=10)
    # A button press or a typed "1".."5" counts this long after the question arrived.
    answer_within: PositiveDuration = timedelta(days=3)
    # The customer's next text message this soon after their score is its comment
    # (stored with the score, not a new question); "0s": no comments.
    comment_within: Duration = timedelta(minutes=30)
    # Per channel: true asks there, false never. Unset: asked where an answer is seen by
    # the customer alone (a private chat), not where it is public (an X post, a comment).
    channels: dict[str, Switch] = {}
    # texts.<language>.question / reply_hint / thanks, with {name} {handle} {ticket}
    # {agent}; unset ones are the built-in texts (DEFAULT_SURVEY_TEXTS).
    texts: dict[Literal["ru", "en"], dict[SurveyText, str]] = {}

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: dict[str, bool]) -> dict[str, bool]:
        from core.config.channels import channel_names

        for name in value:
            if name not in channel_names():
                raise ValueError(f"unknown channel {shown(name)}; allowed: "
                                 f"{', '.join(channel_names())}")
        return value

    @field_validator("texts")
    @classmethod
    def _placeholders(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for language, texts in value.items():
            for name, text in texts.items():
                if not text.strip():
                    raise ValueError(f"texts.{language}.{name} is empty")
                for placeholder in re.findall(r"{(\w*)}", text):
                    if placeholder not in SURVEY_PLACEHOLDERS:
                        raise ValueError(f"texts.{language}.{name}: unknown placeholder "
                                         f"{{{placeholder}}}; allowed: " + ", ".join(
                                             f"{{{p}}}" for p in SURVEY_PLACEHOLDERS))
        return value


# --- escalation ------------------------------------------------------------------------


class EscalationRule(Strict):
    name: str = Field(min_length=1, max_length=128)
    # Trigger: exactly one of these.
    after: Duration | None = None  # after the customer's message (see `clock`)
    before_due: Duration | None = None  # this long before the promise
    at_due: bool = False  # at the promise itself
    clock: Literal["business", "wall"] = "business"
    # Conditions (all must hold; an empty list means "any").
    channels: list[str] = []  # installed channel names
    keywords: list[str] = []
    priorities: list[Literal["low", "normal", "high", "urgent"]] = []
    tags: list[str] = []
    unassigned: bool = False
    # Actions.
    notify: bool = True
    mention: list[str] = []
    assign: str | None = None
    raise_priority: Literal["low", "normal", "high", "urgent"] | None = None
    business_hours_only: bool = False

    @model_validator(mode="after")
    def _one_trigger(self) -> EscalationRule:
        given = [n for n in ("after", "before_due") if getattr(self, n) is not None]
        given += ["at_due"] if self.at_due else []
        if len(given) != 1:
            raise ValueError("a rule needs exactly one trigger: after = \"2h\", "
                             f"before_due = \"1h\" or at_due = true (got {given or 'none'})")
        return self

    def describe(self) -> str:
        """The rule in words, as `sameday check-config` prints it."""
        if self.after is not None:
            clock = "business time" if self.clock == "business" else "wall-clock time"
            when = f"after {format_duration(self.after)} of {clock} without an answer"
        elif self.before_due is not None:
            when = f"{format_duration(self.before_due)} before the promise"
        else:
            when = "at the promise"
        conditions = []
        if self.channels:
            conditions.append("on " + "/".join(self.channels))
        if self.priorities:
            conditions.append("priority " + "/".join(self.priorities))
        if self.keywords:
            conditions.append("mentioning " + "/".join(repr(k) for k in self.keywords))
        if self.tags:
            conditions.append("customers tagged " + "/".join(self.tags))
        if self.unassigned:
            conditions.append("unassigned")
        actions = []
        if self.notify:
            actions.append("re-post the card to the staff group")
        actions += [f"mention @{name}" for name in self.mention]
        if self.assign:
            actions.append(f"assign to {self.assign}")
        if self.raise_priority:
            actions.append(f"raise priority to {self.raise_priority}")
        text = f"{when}{' (' + ', '.join(conditions) + ')' if conditions else ''}: "
        text += ", ".join(actions) or "record only"
        if self.business_hours_only:
            text += "; at night it waits for the next opening"
        return text


# --- outbox ----------------------------------------------------------------------------


def _rate(value: Any) -> Any:
    if isinstance(value, str):
        return RateLimit.parse(value)
    if not isinstance(value, RateLimit):
        raise ValueError(f"{shown(value)} is not {RATE_HELP}")
    return value


Rate = Annotated[RateLimit, BeforeValidator(_rate)]


class RateLimits(Strict):
    """``[outbox.limits.<channel>]``: one table per installed channel, its buckets as
    fields with the channel's own defaults (added by ``core.config.load``)."""

    def of(self, channel: str) -> dict[str, RateLimit]:
        limits = getattr(self, channel, None)
        return dict(limits) if limits is not None else {}


class OutboxSettings(Strict):
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base: RetryBase = timedelta(seconds=2)
    retry_max: RetryMax = timedelta(minutes=10)
    # Sends in flight per platform (each waits for the platform's answer).
    concurrency: int = Field(default=8, ge=1, le=100)
    # A row left in "sending" this long was abandoned by a crashed process.
    lease: Lease = timedelta(seconds=60)
    # Widens each rate window by this share, for a platform that counts more strictly
    # than its published figure (windows already run from each send's answer).
    rate_margin: float = Field(default=0.0, ge=0, le=1)
    limits: RateLimits = RateLimits()

    @model_validator(mode="after")
    def _backoff_grows(self) -> OutboxSettings:
        if self.retry_base > self.retry_max:
            raise ValueError(f"retry_base ({format_duration(self.retry_base)}) must not be "
                             f"longer than retry_max ({format_duration(self.retry_max)})")
        return self


# --- retention --------------------------------------------------------------------------


FOREVER = "forever"
# At most ten years: a longer keep is likely a typo ("forever" says so plainly).
MAX_RETENTION = timedelta(days=3660)
RETENTION_HELP = f'allowed: a time like "30d", "90d" or "365d" (units d, h, m, s), or "{FOREVER}"'


def _retention(value: Any) -> Any:
    """How long something is kept after its ticket closed: a duration, or "forever"
    (None: never purged)."""
    if value is None or isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be text in quotes; {RETENTION_HELP}")
    if value.strip().lower() == FOREVER:
        return None
    try:
        kept = parse_duration(value)
    except DurationTooLong:
        kept = MAX_RETENTION + timedelta(days=1)
    except ValueError:
        raise ValueError(RETENTION_HELP) from None
    if kept > MAX_RETENTION:
        raise ValueError(f"too long; at most {format_duration(MAX_RETENTION)}, or "
                         f"\"{FOREVER}\"")
    return kept


Retention = Annotated[timedelta | None, BeforeValidator(_retention)]


class RetentionSettings(Strict):
    """``[retention]``: how long a closed ticket's personal data is kept (core.retention).

    Counted from the ticket's close (a mention's arrival, a quarantined payload's release
    or arrival); a daily job empties what is due. What is purged of a message: ``raw``
    the platform payload as received, ``media`` its attachments (file ids, links, names),
    ``messages`` its text (and copies of it: sent outbox rows, edit history in the audit
    trail, survey comments); a shorter ``raw``/``media`` than ``messages`` goes first, a
    purged text takes its raw payload and media with it. Figures stay (tickets' times,
    events). docs/privacy.md explains the defaults (152-FZ: no longer than needed)."""

    messages: Retention = timedelta(days=365)
    raw: Retention = timedelta(days=30)
    media: Retention = timedelta(days=90)

    def kept(self, kind: str) -> timedelta | None:
        """The effective keep of ``kind`` (messages, raw, media): a purged text takes
        its raw payload and media with it. None: kept forever."""
        own = getattr(self, kind)
        periods = [p for p in (own, self.messages) if p is not None]
        return min(periods) if periods else None


# --- the whole file ----------------------------------------------------------------------


class Settings(Strict):
    database: DatabaseSettings = DatabaseSettings()
    daemon: DaemonSettings = DaemonSettings()
    inbox: InboxSettings = InboxSettings()
    channels: ChannelsSettings = ChannelsSettings()
    staff: StaffSettings = StaffSettings()
    calendar: CalendarSettings = CalendarSettings()
    promise: list[PromiseRule] = []
    customers: CustomersSettings = CustomersSettings()
    ack: AckSettings = AckSettings()
    templates: Templates = {}
    escalation: list[EscalationRule] = []
    outbox: OutboxSettings = OutboxSettings()
    survey: SurveySettings = SurveySettings()
    retention: RetentionSettings = RetentionSettings()
