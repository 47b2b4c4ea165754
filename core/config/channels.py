"""What each installed channel declares about itself, and the registry that finds them.

A channel package (``bots/<platform>/``) exports one ``ChannelDescription`` and names it
in the ``sameday.channels`` entry-point group (pyproject.toml)::

    [project.entry-points."sameday.channels"]
    telegram = "bots.telegram:CHANNEL"

Everything in core that differs per channel reads it from here: the ``[channels.<name>]``
settings model, the label staff read, default rate limits, the text limit and how the
platform counts characters, the setting that bounds the time between two polls (health),
the shape of a reply target, and the extra staff keys a staff-chat channel needs. Adding a
channel therefore touches no file in ``core/`` (docs/architecture.md has the recipe).

Loading a description must be cheap and must not import the platform SDK: the adapter and
the emulator are factories that import their modules when called.
"""

from __future__ import annotations

import logging
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sameday.channels"
# The staff chat that needs no platform: `sameday console` prints cards and notices.
CONSOLE = "console"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


INT64 = 2**63 - 1  # the widest id any platform or database column holds


def _scalar_kinds(annotation: Any) -> set[type]:
    """The TOML scalar types (int, bool, float) a field's annotation asks for."""
    found = {annotation} if annotation in (int, bool, float) else set()
    for arg in typing.get_args(annotation):
        found |= {arg} if arg in (int, bool, float) else set()
    return found


class TomlTyped(BaseModel):
    """A TOML number or boolean keeps its type: ``true`` is not the number 1, ``"8"`` (in
    quotes) is not 8, and ``1`` is not ``true`` -- each is a typo the admin wants to hear
    about. Whole numbers fit in 64 bits (ids, counts)."""

    @field_validator("*", mode="before")
    @classmethod
    def _toml_types(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        kinds = _scalar_kinds(field.annotation) if field is not None else set()
        if not kinds or value is None:
            return value
        if bool in kinds:
            if not isinstance(value, bool):
                raise ValueError("must be true or false (without quotes)")
        elif int in kinds and float not in kinds:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("must be a valid integer: a whole number without quotes")
            if isinstance(value, int) and abs(value) > INT64:
                raise ValueError(f"is out of range; allowed: at most {INT64} either way")
        elif float in kinds and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError("must be a number without quotes")
        return value


class ChannelSettings(TomlTyped):
    """The base of every ``[channels.<name>]`` table. Unknown keys are errors; keys ending
    in ``_env`` name environment variables holding secrets (never the secret itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False

    @model_validator(mode="after")
    def _names_not_secrets(self) -> ChannelSettings:
        """A key ending in _env names a variable. An admin who pasted the token itself
        gets an error that does not repeat it."""
        for name in self.secret_fields():
            if not ENV_NAME.fullmatch(getattr(self, name)):
                raise ValueError(f"{name} must name an environment variable (like "
                                 f"SAMEDAY_TOKEN), not hold the token itself; export the "
                                 f"token in a variable and name it here")
        return self

    def secret(self, field_name: str) -> str:
        """The token named by ``<field_name>`` (an env var name), read at call time."""
        env_name = getattr(self, field_name)
        value = os.environ.get(env_name)
        if not value:
            raise KeyError(f"environment variable {env_name} is not set")
        return value

    def secret_fields(self) -> list[str]:
        return [name for name in type(self).model_fields if name.endswith("_env")]

    def secret_values(self) -> list[str]:
        """The secrets that are set (for masking them in logs)."""
        return [value for name in self.secret_fields()
                if (value := os.environ.get(getattr(self, name)))]


# A cross-check of a channel over the whole config: (key path, bad value, message) each.
Check = Callable[[Any], list[tuple[str, Any, str]]]


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one per channel
class ChannelDescription:
    """One channel, as it describes itself to the core."""

    name: str  # the config section, the channel column, the /queue filter
    label: str  # what staff read ("X" for twitter)
    settings: type[ChannelSettings]  # the model of [channels.<name>]
    adapter: Callable[[Any], Any]  # Settings -> ChannelAdapter (imports the SDK when called)
    limits: Mapping[str, str]  # default rate limits per bucket, e.g. {"per_bot": "30/1s"}
    text_limit: int  # the longest text one message may carry
    measure: Callable[[str], int] = len  # how the platform counts a text's length
    # The setting (a duration) that bounds the time between two successful polls of a
    # healthy channel; None: health uses a minute.
    poll_setting: str | None = None
    # The typed address of an answer (Inbound.reply_target / Outbound.target).
    reply_target: type[BaseModel] | None = None
    emulator: Callable[[], Any] | None = None  # -> the emulator class (tests, demo)
    # A channel that can carry the staff chat (staff.chat = name), and the keys it adds to
    # [staff] and to each [[staff.members]] (e.g. the staff group id, members' user ids).
    staff_chat: bool = False
    staff_settings: type[BaseModel] | None = None
    staff_member_settings: type[BaseModel] | None = None
    check: Check | None = None
    # The built-in acknowledgement for this channel by language, when it differs from the
    # default one (placeholders as in [ack.texts]).
    ack_texts: Mapping[str, str] = field(default_factory=dict)
    # Loggers of its libraries that log request URLs or headers (tokens) at debug level:
    # kept at warning, whatever the daemon's log level.
    loggers: tuple[str, ...] = ()


def lazy(target: str) -> Callable[..., Any]:
    """A factory for "package.module:Name" that imports the module only when called, so
    that describing a channel never imports its SDK. Called with arguments it makes one
    (an adapter from the settings); called without, it returns the class (an emulator)."""
    module_name, _, name = target.partition(":")

    def make(*args: Any) -> Any:
        found = getattr(import_module(module_name), name)
        return found(*args) if args else found

    return make


@cache
def installed_channels() -> dict[str, ChannelDescription]:
    """The channels installed in this environment, by name (entry points, loaded once)."""
    found: dict[str, ChannelDescription] = {}
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            description = entry.load()
        except Exception as error:  # a broken plugin must not take the others down
            log.error("channel %s (%s) cannot be loaded: %s", entry.name, entry.value, error)
            continue
        if not isinstance(description, ChannelDescription) or description.name != entry.name:
            log.error("channel %s (%s) is not a ChannelDescription named %r; ignored",
                      entry.name, entry.value, entry.name)
            continue
        found[entry.name] = description
    return found


def refresh_channels() -> None:
    """Look for installed channels again (after installing one in a running process)."""
    installed_channels.cache_clear()


def channel_names() -> tuple[str, ...]:
    return tuple(installed_channels())


def channel_label(name: str) -> str:
    description = installed_channels().get(name)
    return description.label if description else name


def text_rules(name: str) -> tuple[int, Callable[[str], int]]:
    """(the text limit, how length is counted) of a channel; 4096 characters if unknown."""
    description = installed_channels().get(name)
    return (description.text_limit, description.measure) if description else (4096, len)


def channel_ack_texts(name: str, language: str) -> dict[str, str]:
    """The channel's own built-in acknowledgement in `language`, as {name: text}."""
    description = installed_channels().get(name)
    text = description.ack_texts.get(language) if description else None
    return {name: text} if text else {}
