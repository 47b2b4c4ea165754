"""Human durations in config files: "90s", "15m", "2h", "1h30m", "2d"."""

from __future__ import annotations

import re
from datetime import timedelta

from core.config.shown import shown

_PART = re.compile(r"([0-9]+)\s*(d|h|m|s)")  # ASCII digits: "٤h" is a typo, not 4h
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
DURATION_HELP = 'a duration like "30s", "15m", "2h", "1h30m" or "1d"'
MAX_DAYS = timedelta.max.days


class DurationTooLong(ValueError):
    """A well-formed duration beyond what a ``timedelta`` holds."""


def parse_duration(text: str) -> timedelta:
    """Parse a compact duration; raise ValueError naming the accepted forms."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"{shown(text)} is not {DURATION_HELP}")
    total = timedelta()
    if any(len(number) > 15 for number, _unit in parts):
        raise DurationTooLong(f"{shown(text)} is too long; at most {MAX_DAYS} days")
    try:
        for number, unit in parts:
            total += timedelta(**{_UNITS[unit]: int(number)})
    except OverflowError:
        raise DurationTooLong(f"{shown(text)} is too long; at most {MAX_DAYS} days") from None
    return total


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, for messages ("1h30m")."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
