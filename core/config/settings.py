"""config.toml -> validated settings, with one readable message per problem.

Secrets never live in the file: each channel names the environment variables that hold
its tokens (``token_env = "SAMEDAY_TELEGRAM_TOKEN"``) and ``Settings`` reads them when an
adapter asks. A broken file raises ``ConfigError`` whose ``problems`` each name the file,
the key path, the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import typing
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.config.durations import DURATION_HELP, format_duration, parse_duration
from core.config.rates import RateLimit

CHANNELS = ("telegram", "vk", "twitter")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- database, daemon ---------------------------------------------------------------


class DatabaseSettings(Strict):
    url: str = "sqlite+aiosqlite:///./sameday.db"
    # FULL survives power loss: the platform cursor is committed with the messages, and a
    # lost commit after the platform forgot the updates would lose them for good.
    sqlite_synchronous: Literal["full", "normal"] = "full"
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)

    @field_validator("url")
    @classmethod
    def _known_driver(cls, url: str) -> str:
        allowed = ("sqlite+aiosqlite://", "postgresql+psycopg://")
        if not url.startswith(allowed):
            raise ValueError(f"unsupported database URL; allowed: {' or '.join(allowed)}...")
        return url


class DaemonSettings(Strict):
    health_host: str = "127.0.0.1"
    health_port: int = Field(default=8787, ge=0, le=65535)  # 0 turns the endpoint off
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    shutdown_grace: Duration = timedelta(seconds=10)
    # How often the escalation sweep runs (it also wakes at the next due time).
    sweep_interval: Duration = timedelta(seconds=1)


class InboxSettings(Strict):
    # A customer message within this time after a ticket was closed reopens it; later
    # messages open a new ticket. "0s" never reopens.
    reopen_within: Duration = timedelta(hours=24)


# --- channels -------------------------------------------------------------------------


class ChannelBase(Strict):
    enabled: bool = False

    def secret(self, field_name: str) -> str:
        """The token named by ``<field_name>`` (an env var name), read at call time."""
        env_name = getattr(self, field_name)
        value = os.environ.get(env_name)
        if not value:
            raise KeyError(f"environment variable {env_name} is not set")
        return value

    def secret_fields(self) -> list[str]:
        return [name for name in type(self).model_fields if name.endswith("_env")]


class TelegramSettings(ChannelBase):
    token_env: str = "SAMEDAY_TELEGRAM_TOKEN"
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    poll_timeout: Duration = timedelta(seconds=30)


class VKSettings(ChannelBase):
    token_env: str = "SAMEDAY_VK_TOKEN"
    group_id: int = Field(default=0, ge=0)
    api_version: str = "5.199"
    # vk_api has no base-URL option; the adapter rewrites api.vk.ru / api.vk.com to this.
    base_url: str = "https://api.vk.ru"
    long_poll_wait: Duration = timedelta(seconds=25)

    @model_validator(mode="after")
    def _group_when_enabled(self) -> VKSettings:
        if self.enabled and not self.group_id:
            raise ValueError("group_id is required when VK is enabled (your community's id)")
        return self


class TwitterSettings(ChannelBase):
    bearer_token_env: str = "SAMEDAY_X_BEARER_TOKEN"
    consumer_key_env: str = "SAMEDAY_X_CONSUMER_KEY"
    consumer_secret_env: str = "SAMEDAY_X_CONSUMER_SECRET"
    access_token_env: str = "SAMEDAY_X_ACCESS_TOKEN"
    access_token_secret_env: str = "SAMEDAY_X_ACCESS_TOKEN_SECRET"
    user_id: str = ""
    base_url: str = "https://api.twitter.com"
    # Every mentions read is billed on X's pay-per-use API: see docs/channels.md.
    poll_interval: Duration = timedelta(seconds=60)

    @field_validator("poll_interval")
    @classmethod
    def _not_too_fast(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=5):
            raise ValueError("poll_interval must be at least 5s (each read is billed by X)")
        return value


class ChannelsSettings(Strict):
    telegram: TelegramSettings = TelegramSettings()
    vk: VKSettings = VKSettings()
    twitter: TwitterSettings = TwitterSettings()

    def enabled(self) -> dict[str, ChannelBase]:
        return {name: getattr(self, name) for name in CHANNELS if getattr(self, name).enabled}


# --- staff ----------------------------------------------------------------------------


class StaffMember(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    telegram_id: int | None = None
    role: Literal["agent", "admin"] = "agent"


class StaffSettings(Strict):
    # Where cards and notices go: the Telegram staff group, or only `sameday console`.
    chat: Literal["telegram", "console"] = "telegram"
    telegram_chat_id: int | None = None
    members: list[StaffMember] = []

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
        raise ValueError(f'{value!r} is not an interval like "09:00-18:00"')
    h1, m1, h2, m2 = (int(x) for x in match.groups())
    end = time(0, 0) if (h2, m2) == (24, 0) else None
    try:
        start, end = time(h1, m1), end or time(h2, m2)
    except ValueError:
        raise ValueError(f"{value!r} has an hour or minute out of range") from None
    if end != time(0, 0) and end <= start:
        raise ValueError(f"{value!r} ends before it starts")
    return (start, end)


Interval = Annotated[tuple[time, time], BeforeValidator(_interval)]


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
            raise ValueError(f"unknown day {wrong[0]!r}; allowed: {', '.join(WEEKDAYS)}")
        if not any(value.values()):
            raise ValueError("at least one day must have business hours")
        return value

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
    channels: list[Literal["telegram", "vk", "twitter"]] = []
    keywords: list[str] = []
    tags: list[str] = []
    # same_day: the calendar's same-day rule; business_time: `within` of business hours.
    kind: Literal["same_day", "business_time"] = "same_day"
    within: Duration | None = None

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
            if channel not in CHANNELS or not user:
                raise ValueError(f'key {key!r} must look like "twitter:12345"; '
                                 f"channels: {', '.join(CHANNELS)}")
        return value


# --- acknowledgement -------------------------------------------------------------------


class AckSettings(Strict):
    enabled: bool = True
    # "auto" picks by the channel (channel_languages) or else by the message's script
    # (Cyrillic -> ru); or force one language.
    language: Literal["auto", "ru", "en"] = "auto"
    channel_languages: dict[Literal["telegram", "vk", "twitter"], Literal["ru", "en"]] = {}
    default_language: Literal["ru", "en"] = "ru"
    # One acknowledgement per customer within this window, however many messages.
    quiet_window: Duration = timedelta(minutes=10)
    # The company's own accounts ("twitter:12345", "vk:-1"): never acknowledged.
    company_accounts: list[str] = []
    # Messages containing any of these words are not acknowledged (spam, thanks-only).
    ignore_keywords: list[str] = []
    # If set, only messages containing one of these words are acknowledged.
    only_keywords: list[str] = []
    # texts[language][channel or "default"] with {name}, {ticket}, {promise} placeholders.
    texts: dict[Literal["ru", "en"], dict[str, str]] = {
        "ru": {"default": "{name}, спасибо! Обращение {ticket} принято, ответим {promise}. "
                          "{back}",
               "twitter": "{handle} спасибо! Обращение {ticket}, ответим {promise}. {back}"},
        "en": {"default": "{name}, thank you! Ticket {ticket} is open; we will answer "
                          "{promise}. {back}",
               "twitter": "{handle} thanks! Ticket {ticket}; we will answer {promise}. {back}"},
    }

    @field_validator("texts")
    @classmethod
    def _texts(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        allowed = {"name", "handle", "ticket", "promise", "back"}
        for language, by_channel in value.items():
            if "default" not in by_channel:
                raise ValueError(f'texts.{language} needs a "default" text')
            for channel, text in by_channel.items():
                if channel not in (*CHANNELS, "default"):
                    raise ValueError(f"texts.{language}.{channel}: unknown channel; allowed: "
                                     f"default, {', '.join(CHANNELS)}")
                for placeholder in re.findall(r"{(\w*)}", text):
                    if placeholder not in allowed:
                        raise ValueError(f"texts.{language}.{channel}: unknown placeholder "
                                         f"{{{placeholder}}}; allowed: "
                                         + ", ".join(f"{{{p}}}" for p in sorted(allowed)))
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
    channels: list[Literal["telegram", "vk", "twitter"]] = []
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
    return RateLimit.parse(value) if isinstance(value, str) else value


Rate = Annotated[RateLimit, BeforeValidator(_rate)]


class TelegramLimits(Strict):
    per_bot: Rate = RateLimit.parse("30/1s")
    per_chat: Rate = RateLimit.parse("1/1s")
    per_group: Rate = RateLimit.parse("20/1m")


class VKLimits(Strict):
    per_token: Rate = RateLimit.parse("20/1s")


class TwitterLimits(Strict):
    per_user: Rate = RateLimit.parse("100/15m")


class RateLimits(Strict):
    telegram: TelegramLimits = TelegramLimits()
    vk: VKLimits = VKLimits()
    twitter: TwitterLimits = TwitterLimits()

    def of(self, channel: str) -> dict[str, RateLimit]:
        limits = getattr(self, channel, None)
        return dict(limits) if limits is not None else {}


class OutboxSettings(Strict):
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base: Duration = timedelta(seconds=2)
    retry_max: Duration = timedelta(minutes=10)
    # Sends in flight per platform (each waits for the platform's answer).
    concurrency: int = Field(default=8, ge=1, le=100)
    # A row left in "sending" this long was abandoned by a crashed process.
    lease: Duration = timedelta(seconds=60)
    # Widens each rate window by this share, for a platform that counts more strictly
    # than its published figure (windows already run from each send's answer).
    rate_margin: float = Field(default=0.0, ge=0, le=1)
    limits: RateLimits = RateLimits()


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
    escalation: list[EscalationRule] = []
    outbox: OutboxSettings = OutboxSettings()


class ConfigProblem(BaseModel):
    file: str
    key: str
    value: Any = None
    message: str

    def __str__(self) -> str:
        shown = "" if self.value is None else f" = {self.value!r}"
        return f"{self.file}: {self.key or '(top level)'}{shown}: {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def load_settings(path: str | Path, *, check_secrets: bool = True) -> Settings:
    """Read and validate a config file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problem = "file not found"
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"unreadable: {exc}"
    except tomllib.TOMLDecodeError as exc:
        problem = f"not valid TOML: {exc}"
    else:
        return settings_from_dict(raw, source=str(path), check_secrets=check_secrets)
    raise ConfigError([ConfigProblem(file=str(path), key="", message=problem)])


def settings_from_dict(raw: dict[str, Any], *, source: str = "<config>",
                       check_secrets: bool = True) -> Settings:
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_problem(source, raw, err) for err in exc.errors()]) from None
    problems = _cross_checks(settings, source)
    if check_secrets:
        problems += _missing_secrets(settings, source)
    if problems:
        raise ConfigError(problems)
    return settings


def _problem(source: str, raw: dict[str, Any], err: Any) -> ConfigProblem:
    loc = [part for part in err["loc"] if not _is_validator_tag(part)]
    key = _key_path(loc)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key" + _suggest_key(loc)
    elif err["type"] == "literal_error":
        message = message.replace("Input should be", "allowed:")
    elif err["type"] == "missing":
        message = "required key is missing"
    if err["type"].startswith("time_"):
        message = f'{message}; allowed: a time like "17:00"'
    if "timedelta" in err["type"] or "duration" in err["msg"]:
        message = message if DURATION_HELP in message else f"{message}; allowed: {DURATION_HELP}"
    value = None if err["type"] == "missing" else err.get("input")
    if isinstance(value, dict):
        value = None  # a whole table is not helpful to print
    return ConfigProblem(file=source, key=key, value=value, message=message)


def _is_validator_tag(part: Any) -> bool:
    # pydantic may add the names of union branches and validators to a location.
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _key_path(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _suggest_key(loc: list[Any]) -> str:
    model = _model_at(loc[:-1])
    known = list(model.model_fields) if model else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; allowed: {', '.join(known)}" if known else ""


def _model_at(loc: list[Any]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if found := _inner_model(arg):
            return found
    return None


def _cross_checks(settings: Settings, source: str) -> list[ConfigProblem]:
    problems = []
    names = settings.staff.names()
    unknown = f"no such staff member; allowed: {sorted(names) or 'add [[staff.members]]'}"
    for i, rule in enumerate(settings.escalation):
        people = [(f"mention[{j}]", person) for j, person in enumerate(rule.mention)]
        people += [("assign", rule.assign)] if rule.assign else []
        for key, person in people:
            if person not in names:
                problems.append(ConfigProblem(file=source, key=f"escalation[{i}].{key}",
                                              value=person, message=unknown))
    rule_names = [r.name for r in settings.escalation]
    for i, name in enumerate(rule_names):
        if name in rule_names[:i]:
            problems.append(ConfigProblem(file=source, key=f"escalation[{i}].name", value=name,
                                          message="rule names must be unique"))
    staff = settings.staff
    if staff.chat == "telegram" and settings.channels.telegram.enabled \
            and staff.telegram_chat_id is None:
        problems.append(ConfigProblem(
            file=source, key="staff.telegram_chat_id", message='required when staff.chat = '
            '"telegram": the id of the staff group (a negative number like -1001234567890)'))
    return problems


def _missing_secrets(settings: Settings, source: str) -> list[ConfigProblem]:
    problems = []
    for name, channel in settings.channels.enabled().items():
        for field_name in channel.secret_fields():
            env_name = getattr(channel, field_name)
            if not os.environ.get(env_name):
                problems.append(ConfigProblem(
                    file=source, key=f"channels.{name}.{field_name}", value=env_name,
                    message="this environment variable is not set; export the token in it "
                            "(or set enabled = false)"))
    return problems
