"""Rates in config files: "30/1s", "20/1m", "100/15m" (messages per window)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from core.config.durations import format_duration, parse_duration
from core.config.shown import shown

RATE_HELP = 'a rate like "30/1s", "20/1m" or "100/15m" (messages per window)'
# Bounds that no platform's limit comes near; beyond them a rate is a typo.
MAX_COUNT = 1_000_000
MAX_WINDOW = timedelta(days=31)  # monthly caps (X's pay-per-use tiers) are the longest


@dataclass(frozen=True)
class RateLimit:
    count: int
    per: timedelta

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]*)\s*([a-z]+)\s*", text.lower())
        if not match:
            raise ValueError(f"{shown(text)} is not {RATE_HELP}")
        count, number, unit = match.groups()
        if len(count) > 12 or len(number) > 12:
            raise ValueError(f"{shown(text)} is too large; allowed: at most {MAX_COUNT} "
                             f"messages per at most {format_duration(MAX_WINDOW)}")
        per = parse_duration(f"{number or 1}{unit}")
        if int(count) < 1 or per.total_seconds() <= 0:
            raise ValueError(f"{shown(text)}: both the count and the window must be positive")
        if int(count) > MAX_COUNT or per > MAX_WINDOW:
            raise ValueError(f"{shown(text)} is too large; allowed: at most {MAX_COUNT} "
                             f"messages per at most {format_duration(MAX_WINDOW)}")
        return cls(int(count), per)

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.per)}"
