"""The period a report covers: ``[since, until)`` in UTC, read in the calendar's zone.

"Today" and a bare date mean local days of ``calendar.timezone`` (``core.domain.kpi``
defines them), so a report of "2026-11-24" starts at that local midnight, not in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from core.domain.kpi import local_day, local_midnight


@dataclass(frozen=True)
class Period:
    """``[since, until)`` in UTC, the local zone, and the moment the backlog is measured."""

    since: datetime
    until: datetime
    zone: ZoneInfo
    as_of: datetime


def parse_moment(text: str, zone: ZoneInfo, *, end: bool = False) -> datetime:
    """A date ("2026-11-24") or ISO datetime as an aware UTC instant.

    A bare date means a whole local day: its start for --since, and the next midnight for
    --until, so ``--since 2026-11-24 --until 2026-11-24`` is that one day. A datetime
    without an offset is local time (what an admin types); one with an offset is exact.
    Raises ValueError with the accepted forms.
    """
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None:
        return local_midnight(day + timedelta(days=1) if end else day, zone)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date like 2026-11-24 or a time like "
                         f"2026-11-24T18:00 (local) or 2026-11-24T15:00+00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def day_of_end(end: datetime, zone: ZoneInfo) -> datetime:
    """The start of the local day an exclusive `end` closes: the day of the instant just
    before it (an end at midnight closes the day before)."""
    return local_day(end - timedelta(microseconds=1), zone)[0]


def make_period(since: str | None, until: str | None, zone: ZoneInfo, now: datetime) -> Period:
    """The period the options describe; by default the local day of now (or of --until).

    Without --until the period runs to the end of *today*, so ``--since 2026-11-01`` reads
    "from the 1st up to now". Without --since it starts at the local midnight of the day
    --until falls in (or of today).
    """
    end = parse_moment(until, zone, end=True) if until else local_day(now, zone)[1]
    start = parse_moment(since, zone) if since else day_of_end(end, zone)
    if start >= end:
        raise ValueError(f"the period is empty: --since {start.astimezone(zone):%Y-%m-%d %H:%M} "
                         f"is not before --until {end.astimezone(zone):%Y-%m-%d %H:%M}")
    return Period(since=start, until=end, zone=zone, as_of=min(end, now))


def period_of(zone: ZoneInfo, moment: datetime, since: datetime | None = None,
              until: datetime | None = None) -> Period:
    """The period for aware datetimes (callers in code): by default the local day of
    `until`, or of `moment`; the backlog is measured at the earlier of the end and `moment`."""
    end = until.astimezone(UTC) if until else local_day(moment, zone)[1]
    start = since.astimezone(UTC) if since else day_of_end(end, zone)
    return Period(since=start, until=end, zone=zone, as_of=min(end, moment))


def hour_starts(period: Period) -> list[datetime]:
    """The local hours of the period (UTC instants); a DST day has 23 or 25."""
    first = period.since.astimezone(period.zone).replace(minute=0, second=0, microsecond=0)
    start = first.astimezone(UTC)
    hours = []
    while start < period.until:
        hours.append(start)
        start += timedelta(hours=1)  # UTC arithmetic: real hours across DST changes
    return hours
