"""Rates in config files: "30/1s", "20/1m", "100/15m" (messages per window)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from core.config.durations import parse_duration

RATE_HELP = 'a rate like "30/1s", "20/1m" or "100/15m" (messages per window)'


@dataclass(frozen=True)
class RateLimit:
    count: int
    per: timedelta

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*", text.lower())
        if not match:
            raise ValueError(f"{text!r} is not {RATE_HELP}")
        count, number, unit = match.groups()
        per = parse_duration(f"{number or 1}{unit}")
        if int(count) < 1 or per.total_seconds() <= 0:
            raise ValueError(f"{text!r}: both the count and the window must be positive")
        return cls(int(count), per)

    def __str__(self) -> str:
        from core.config.durations import format_duration

        return f"{self.count}/{format_duration(self.per)}"
