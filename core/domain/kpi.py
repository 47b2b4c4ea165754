"""The support figures, defined once: local days, same-day answers, rates, percentiles.

The report (``sameday report``), ``/stats``, ``/metrics``, ``sameday replay`` and the demo
all show the same few figures; they read their facts differently (a database query, a
replayed history) but compute them with these pure functions, so one ticket counts the
same way everywhere. Nothing here reads the clock or does I/O. Moments passed in must be
timezone-aware (any zone); moments returned are aware UTC.

- A **local day** is a calendar day in the calendar's time zone (``calendar.timezone``),
  from one local midnight to the next: 23, 24 or 25 hours long. A midnight the clock skips
  is read with the offset from before the jump (the jump itself when the gap starts at
  midnight), one it shows twice means its first occurrence.
- A ticket is **answered the same day** when its first staff answer falls on the same local
  day as it was opened; an unanswered ticket is not. For an answer after the opening this
  is the same as "answered before the end of the local day it was opened", the form the
  database queries of ``/stats`` and ``/metrics`` use.
- The **same-day rate** is tickets answered the same day divided by all tickets opened in
  the period (unanswered ones count against it); a ``Rate`` of 0 tickets has no value.
- **Percentiles** are nearest-rank: the p-th percentile of n sorted values is the value at
  rank ``ceil(p/100 * n)``, always one real observation, checkable by hand.
- The **first response** of a ticket is the time from its opening to its first staff
  answer; its spread is the count, p50 and p90 of the answered tickets' waits in seconds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

ONE_DAY = timedelta(days=1)

# --- local days ----------------------------------------------------------------------------


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """The instant (UTC) the local `day` begins in `zone`."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def local_day(now: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """``[start, end)`` (UTC) of the local day `now` falls on: the day "today" means."""
    day = now.astimezone(zone).date()
    return local_midnight(day, zone), local_midnight(day + ONE_DAY, zone)


def local_days_between(earlier: datetime, later: datetime, zone: tzinfo) -> int:
    """How many local calendar days lie from `earlier` to `later` (0: the same day)."""
    return (later.astimezone(zone).date() - earlier.astimezone(zone).date()).days


def same_local_day(a: datetime, b: datetime, zone: tzinfo) -> bool:
    """Whether two instants fall on one calendar day *where the team works*, not in UTC."""
    return a.astimezone(zone).date() == b.astimezone(zone).date()


# --- same-day answers ----------------------------------------------------------------------


def answered_same_day(opened_at: datetime, first_response_at: datetime | None,
                      zone: tzinfo) -> bool:
    return first_response_at is not None and same_local_day(opened_at, first_response_at, zone)


@dataclass(frozen=True)
class Rate:
    """`part` of `whole`, e.g. tickets answered the same day of tickets opened."""

    part: int
    whole: int

    @property
    def fraction(self) -> float | None:
        """The exact share (None for a whole of 0)."""
        return self.part / self.whole if self.whole else None

    @property
    def value(self) -> float | None:
        """The share rounded to 4 places, as reports print and export it."""
        return round(self.part / self.whole, 4) if self.whole else None


def same_day_rate(tickets: Iterable[tuple[datetime, datetime | None]], zone: tzinfo) -> Rate:
    """Of (opened_at, first_response_at) pairs, those answered the same local day."""
    answered = opened = 0
    for opened_at, first_response_at in tickets:
        opened += 1
        answered += answered_same_day(opened_at, first_response_at, zone)
    return Rate(answered, opened)


# --- promises ------------------------------------------------------------------------------


def promise_kept(due: datetime | None, first_response_at: datetime | None,
                 as_of: datetime | None) -> bool | None:
    """True/False once a promise can be judged at `as_of`; None while it still may be kept.

    Kept when the first answer came at or before `due`; broken when it came later, or when
    `due` passed unanswered. A ticket without a promise is never judged.
    """
    if due is None:
        return None
    if first_response_at is not None:
        return first_response_at <= due
    return False if as_of is not None and due < as_of else None


# --- first response times ------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values): a real observation, checkable by hand."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float | None:
    """The classic median (the mean of the two middle values of an even count), None for
    no values. ``sameday replay`` shows it; the report shows the nearest-rank p50."""
    return statistics.median(values) if values else None


def seconds_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds()


def first_response_seconds(tickets: Iterable[tuple[datetime, datetime | None]]) -> list[float]:
    """The first-response waits (seconds) of the answered (opened_at, first_response_at)."""
    return [seconds_between(opened_at, first_response_at)
            for opened_at, first_response_at in tickets if first_response_at is not None]


@dataclass(frozen=True)
class Spread:
    """Nearest-rank p50/p90 of durations in seconds, and how many there were."""

    count: int
    p50: float | None
    p90: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Spread:
        return cls(len(seconds), percentile(seconds, 50), percentile(seconds, 90))


def first_response_spread(tickets: Iterable[tuple[datetime, datetime | None]]) -> Spread:
    """Count/p50/p90 of the first-response waits of (opened_at, first_response_at) pairs;
    unanswered tickets are left out."""
    return Spread.of(first_response_seconds(tickets))
