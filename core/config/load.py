"""Read config.toml into ``Settings``, with one readable message per problem.

Secrets never live in the file: each channel names the environment variables that hold
its tokens (``token_env = "SAMEDAY_TELEGRAM_TOKEN"``) and the adapter reads them when it
starts. A broken file raises ``ConfigError`` whose ``problems`` each name the file, the key
path, the bad value and what is allowed.

The model that validates a file is built from the installed channels
(``settings_model``): their ``[channels.<name>]`` tables, their default rate limits under
``[outbox.limits.<name>]``, and the keys a staff-chat channel adds to ``[staff]`` and
``[[staff.members]]``. A channel nobody installed is an unknown key like any typo.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError, create_model, model_validator

from core.config.channels import CONSOLE, ChannelDescription, installed_channels
from core.config.durations import DURATION_HELP
from core.config.rates import RateLimit
from core.config.settings import (
    ChannelsSettings,
    OutboxSettings,
    Rate,
    RateLimits,
    Settings,
    StaffMember,
    StaffSettings,
    Strict,
)
from core.config.shown import printable, shown

MAX_MESSAGE = 400  # characters of one problem's explanation
# Arrays or inline tables nested deeper than Python's parser can follow.
TOO_DEEP = "arrays or tables nested too deeply"


class ConfigProblem(BaseModel):
    file: str
    key: str
    value: Any = None
    message: str

    def __str__(self) -> str:
        """One line: the file, the key path, the value (short) and the message, with
        control characters escaped (a quoted TOML key may hold a newline)."""
        value = "" if self.value is None else f" = {shown(self.value)}"
        message = self.message if len(self.message) <= MAX_MESSAGE else \
            self.message[:MAX_MESSAGE] + "..."
        return printable(f"{self.file}: {self.key or '(top level)'}{value}: {message}")


class ConfigError(Exception):
    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def load_settings(path: str | Path, *, check_secrets: bool = True) -> Settings:
    """Read and validate a config file; raise ConfigError listing every problem."""
    path = Path(path)
    key = ""
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError:
        problem = "file not found"
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"unreadable: {exc}"
    except tomllib.TOMLDecodeError as exc:
        problem = f"not valid TOML: {exc}"
    except RecursionError:  # tomllib follows nested arrays by recursion
        key, problem = _too_deep(text)
    else:
        try:
            return settings_from_dict(raw, source=str(path), check_secrets=check_secrets)
        except RecursionError:  # a nesting deep enough to defeat the validation itself
            key, problem = "", f"{TOO_DEEP}; a config needs no more than a few levels"
    raise ConfigError([ConfigProblem(file=str(path), key=key, message=problem)])


def _too_deep(text: str) -> tuple[str, str]:
    """(the key path, the message) for a file nested too deeply to parse: the line where
    the nesting goes deepest, and the key assigned on it (under its table) when it names
    one. A rough scan: it only runs on a file the parser already gave up on."""
    depth, deepest, where, table, quote = 0, 0, (1, "", ""), "", ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE_HEADER.match(line) if depth == 0 else None
        if header:
            table = header.group(1).replace(" ", "")
            continue
        for char in line:
            if quote:
                quote = "" if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char == "#":
                break
            elif char in "[{":
                depth += 1
                if depth > deepest:
                    key = line.partition("=")[0].strip() if "=" in line else ""
                    deepest, where = depth, (number, table, key)
            elif char in "]}":
                depth = max(0, depth - 1)
        quote = ""
    number, table, key = where
    key = key.replace('"', "") if _BARE_KEY.fullmatch(key) else ""
    path = ".".join(part for part in (table, key) if part) if key else ""
    return path, (f"not valid TOML: {TOO_DEEP} (at line {number}); a config needs no more "
                  f"than a few levels")


_TABLE_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(#.*)?$")
_BARE_KEY = re.compile(r"[A-Za-z0-9_.\- \"]+")  # a dotted key, its parts quoted or not


def settings_from_dict(raw: dict[str, Any], *, source: str = "<config>",
                       check_secrets: bool = True) -> Settings:
    channels = installed_channels()
    model = settings_model(tuple(channels.values()))
    try:
        settings = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_problem(source, model, err, raw) for err in exc.errors()]) \
            from None
    problems = _cross_checks(settings, source, channels)
    if check_secrets:
        problems += _missing_secrets(settings, source)
    if problems:
        raise ConfigError(problems)
    return settings


# --- the model of the installed channels ----------------------------------------------------


@cache
def settings_model(channels: tuple[ChannelDescription, ...]) -> type[Settings]:
    """``Settings`` with a table per channel under [channels] and [outbox.limits], and the
    staff keys of the staff-chat channels."""
    channel_tables = create_model(
        "ChannelsSettings", __base__=ChannelsSettings,
        **{c.name: (c.settings, c.settings()) for c in channels})
    limit_tables = create_model("RateLimits", __base__=RateLimits, **{
        c.name: (model := _limits_model(c), model()) for c in channels})
    outbox = create_model("OutboxSettings", __base__=OutboxSettings,
                          limits=(limit_tables, limit_tables()))
    member = _with_fields("StaffMember", StaffMember,
                          [c.staff_member_settings for c in channels])
    staff = _with_fields("StaffSettings", StaffSettings, [c.staff_settings for c in channels],
                         members=(list[member], []))
    staff_chats = [c for c in channels if c.staff_chat]

    class InstalledSettings(Settings):
        @model_validator(mode="before")
        @classmethod
        def _default_staff_chat(cls, raw: Any) -> Any:
            """No staff.chat: the enabled staff-chat channel, else the console."""
            staff = raw.get("staff", {}) if isinstance(raw, dict) else None
            if not isinstance(staff, dict) or "chat" in staff:
                return raw
            tables = raw.get("channels") if isinstance(raw.get("channels"), dict) else {}
            enabled = [c.name for c in staff_chats if _enabled(c, tables.get(c.name))]
            return {**raw, "staff": {**staff, "chat": enabled[0] if enabled else CONSOLE}}

    return create_model("Settings", __base__=InstalledSettings,
                        channels=(channel_tables, channel_tables()), outbox=(outbox, outbox()),
                        staff=(staff, staff()))


def _enabled(channel: ChannelDescription, table: Any) -> bool:
    """Whether a [channels.<name>] table enables the channel, as its model reads it (a
    broken table is reported by the validation itself)."""
    try:
        return channel.settings.model_validate(table).enabled if isinstance(table, dict) \
            else False
    except ValidationError:
        return False


def _limits_model(channel: ChannelDescription) -> type[Strict]:
    return create_model(f"{channel.name}_limits", __base__=Strict, **{
        bucket: (Rate, RateLimit.parse(rate)) for bucket, rate in channel.limits.items()})


def _with_fields(name: str, base: type[BaseModel], extras: list[type[BaseModel] | None],
                 **more: Any) -> type[BaseModel]:
    fields = {field_name: (info.annotation, info) for extra in extras if extra is not None
              for field_name, info in extra.model_fields.items()}
    return create_model(name, __base__=base, **fields, **more)


# --- problems as an admin reads them ------------------------------------------------------------


def _problem(source: str, model: type[BaseModel], err: Any, raw: Any) -> ConfigProblem:
    loc = _real_loc(err["loc"], raw)
    key = _key_path(loc)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key" + _suggest_key(model, loc)
    elif err["type"] == "literal_error":
        message = message.replace("Input should be", "allowed:")
    elif err["type"] == "missing":
        message = "required key is missing"
    elif err["type"] == "greater_than" and "timedelta(0)" in str(err["ctx"]["gt"]):
        message = "must be longer than 0s"  # the daemon would spin
    if err["type"].startswith("time_"):
        message = f'{message}; allowed: a time like "17:00"'
    if "timedelta" in err["type"] or "duration" in err["msg"]:
        message = message if DURATION_HELP in message else f"{message}; allowed: {DURATION_HELP}"
    value = None if err["type"] == "missing" else err.get("input")
    if isinstance(value, dict):
        value = None  # a whole table is not helpful to print
    return ConfigProblem(file=source, key=key, value=value, message=message)


def _real_loc(loc: tuple[Any, ...], raw: Any) -> list[Any]:
    """The key path of an error: the keys and indexes of the file, without the names of
    union branches and validators pydantic adds. A key the file has is always kept, even
    when it looks like a tag (a quoted TOML key may hold "[")."""
    out: list[Any] = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif _is_validator_tag(part):
            continue
        else:
            node = None
        out.append(part)
    return out


def _is_validator_tag(part: Any) -> bool:
    # pydantic may add the names of union branches and validators to a location.
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _key_path(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        if not isinstance(part, int):
            part = _key_part(str(part))
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _key_part(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted (an empty key, a space,
    a dot), and cut short when it is long."""
    if re.fullmatch(r"[A-Za-z0-9_:-]{1,64}", key):
        return key
    return json.dumps(key[:40], ensure_ascii=False) + ("..." if len(key) > 40 else "")


def _suggest_key(model: type[BaseModel], loc: list[Any]) -> str:
    inner = _model_at(model, loc[:-1])
    known = list(inner.model_fields) if inner else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; allowed: {', '.join(known)}" if known else ""


def _model_at(model: type[BaseModel] | None, loc: list[Any]) -> type[BaseModel] | None:
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


def _cross_checks(settings: Settings, source: str,
                  channels: Mapping[str, ChannelDescription]) -> list[ConfigProblem]:
    def problem(key: str, value: Any, message: str) -> ConfigProblem:
        return ConfigProblem(file=source, key=key, value=value, message=message)

    problems = [problem(key, value, f"unknown channel; allowed: {', '.join(channels)}")
                for key, value in _channel_references(settings) if value not in channels]
    staff_chats = [name for name, c in channels.items() if c.staff_chat] + [CONSOLE]
    if settings.staff.chat not in staff_chats:
        problems.append(problem("staff.chat", settings.staff.chat,
                                f"allowed: {', '.join(staff_chats)}"))
    names = settings.staff.names()
    unknown = f"no such staff member; allowed: {sorted(names) or 'add [[staff.members]]'}"
    for i, rule in enumerate(settings.escalation):
        people = [(f"mention[{j}]", person) for j, person in enumerate(rule.mention)]
        people += [("assign", rule.assign)] if rule.assign else []
        problems += [problem(f"escalation[{i}].{key}", person, unknown)
                     for key, person in people if person not in names]
    problems += [problem(f"calendar.hours.{day}", None, f"{overlap}; allowed: intervals that do "
                         f"not overlap, like \"09:00-13:00\", \"14:00-18:00\"")
                 for day, overlap in settings.calendar.overlapping_hours()]
    rule_names = [r.name for r in settings.escalation]
    problems += [problem(f"escalation[{i}].name", name, "rule names must be unique")
                 for i, name in enumerate(rule_names) if name in rule_names[:i]]
    for channel in channels.values():
        if channel.check is not None:
            problems += [problem(*found) for found in channel.check(settings)]
    return problems


def _channel_references(settings: Settings) -> list[tuple[str, str]]:
    """Every place the config names a channel: (key path, name)."""
    found = [(f"promise[{i}].channels[{j}]", name) for i, rule in enumerate(settings.promise)
             for j, name in enumerate(rule.channels)]
    found += [(f"escalation[{i}].channels[{j}]", name)
              for i, rule in enumerate(settings.escalation)
              for j, name in enumerate(rule.channels)]
    found += [(f"ack.channel_languages.{name}", name) for name in settings.ack.channel_languages]
    found += [(f"ack.texts.{language}.{name}", name)
              for language, texts in (settings.ack.texts or {}).items() for name in texts
              if name != "default"]
    found += [(f"customers.tags.{key}", key.partition(":")[0])
              for key in settings.customers.tags]
    return found


# How variables are named (SAMEDAY_X_BEARER_TOKEN); a mixed-case "name" may be a token.
_CONVENTIONAL_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


def _missing_secrets(settings: Settings, source: str) -> list[ConfigProblem]:
    problems = []
    for name, channel in settings.channels.enabled().items():
        for field_name in channel.secret_fields():
            env_name = getattr(channel, field_name)
            if os.environ.get(env_name):
                continue
            if _CONVENTIONAL_ENV_NAME.fullmatch(env_name):
                problems.append(ConfigProblem(
                    file=source, key=f"channels.{name}.{field_name}", value=env_name,
                    message="this environment variable is not set; export the token in it "
                            "(or set enabled = false)"))
            else:  # X's secrets look like variable names: never repeat what may be one
                problems.append(ConfigProblem(
                    file=source, key=f"channels.{name}.{field_name}",
                    message="names no environment variable that is set (its value is not "
                            "shown: it looks like a token pasted here); name a variable "
                            "like SAMEDAY_TOKEN and export the token in it"))
    return problems
