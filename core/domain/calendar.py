"""Business hours, holidays and time zones -> the deadline a customer is promised.

Pure functions over plain data: nothing here reads the wall clock or does I/O. Every
moment passed in must be timezone-aware (any zone); every moment returned is aware UTC.

Business days and hours
    * A date listed in ``working_dates`` is a business day (even on a weekend or a public
      holiday) with the hours of ``working_date_hours_from`` (if that weekday has no
      hours, neither has the date).
    * Otherwise a date in ``closed_dates`` or a public holiday of ``country`` /
      ``subdivision`` (the ``holidays`` package, observed days included; ``country = ""``
      means none) is closed.
    * Otherwise a date is a business day when its weekday has hours.
    * Hours are local wall-clock intervals ``[start, end)``; an end of 00:00 means 24:00,
      the midnight that ends the day. Each is turned into UTC with the calendar's zone.
      A time the clock skips (spring-forward gap) is moved to the moment of the jump, so an
      interval partly inside the gap is clipped and one wholly inside it disappears; a time
      the clock shows twice (fall-back) means its first occurrence. The same goes for the
      cutoff and the due-by time below. Overlapping or touching intervals of one day are
      merged. "D has business hours" below means D has at least one non-empty interval.

"Same day" (``same_day_deadline``); D is the local date of the arrival
    1. If D has business hours, the arrival is before D's ``same_day_cutoff`` and before
       D's close (the end of its last interval), the deadline is D's close. An arrival
       before the opening (07:00) counts: it is before the cutoff, so due by D's close.
    2. Otherwise (after the cutoff, after the close, or on a closed day) the deadline is on
       N, the first business day after D, at ``next_day_due_by``, moved into N's hours:
       the first business moment at or after that time, or N's close if there is none.
       An arrival after the cutoff but before the opening of D (possible only with a cutoff
       at or before the opening) also goes to the next business day, never to D at
       ``next_day_due_by``: that moment is before D's close, so an arrival just after the
       cutoff would be promised earlier than one just before it.
    The cutoff and the due-by time are local wall-clock times compared as instants, so both
    rules stay monotonic across DST changes: a later arrival never gets an earlier deadline,
    and no deadline is before its arrival.

"Inside business hours" includes an interval's end: "by 18:00" is a deadline at the close
(and a ``next_day_due_by`` of 13:00 with a 13:00-14:00 lunch stays 13:00, while 13:30 moves
to 14:00). ``add_business_time`` starts at the next opening and consumes the duration
interval by interval, so its result may equal an interval's end; a zero duration gives the
next opening. ``business_time_between(a, add_business_time(a, d)) == d``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from core.config.settings import WEEKDAYS, CalendarSettings, PromiseRule

Span = tuple[datetime, datetime]

ONE_DAY = timedelta(days=1)
# Longest run of closed days we search through before deciding the calendar never opens.
HORIZON_DAYS = 2 * 366
# Per-day results are cached; this bounds the caches (about ten years of dates).
CACHE_DAYS = 4096


class BusinessCalendar:
    """A company's business hours in its zone, with its holidays and special dates."""

    def __init__(self, settings: CalendarSettings):
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)
        self._closed = frozenset(settings.closed_dates)
        self._working = frozenset(settings.working_dates)
        self._hours_by_weekday = tuple(
            tuple(sorted(settings.hours.get(name, []))) for name in WEEKDAYS
        )
        self._working_date_hours = self._hours_by_weekday[
            WEEKDAYS.index(settings.working_date_hours_from)
        ]
        self._holidays_by_year: dict[int, frozenset[date]] = {}
        # Instance-level caches (not decorators on methods): they die with the calendar,
        # and a reloaded config builds a fresh calendar with fresh caches.
        self._spans_of = lru_cache(maxsize=CACHE_DAYS)(self._build_spans)
        self._instant = lru_cache(maxsize=CACHE_DAYS)(self._local_to_utc)

    # --- days ---------------------------------------------------------------------------

    def is_business_day(self, day: date) -> bool:
        """Whether the local date has business hours (working dates win over closures)."""
        return bool(self._local_hours(day))

    def is_public_holiday(self, day: date) -> bool:
        if not self.settings.country:
            return False
        if day.year not in self._holidays_by_year:
            self._holidays_by_year[day.year] = self._load_holidays(day.year)
        return day in self._holidays_by_year[day.year]

    def _load_holidays(self, year: int) -> frozenset[date]:
        import holidays  # heavy; a calendar without a country never needs it

        found = holidays.country_holidays(
            self.settings.country, subdiv=self.settings.subdivision, years=year
        )
        return frozenset(found)

    def _local_hours(self, day: date) -> tuple[tuple[time, time], ...]:
        """The wall-clock intervals of a day; () when it is closed."""
        if day in self._working:
            return self._working_date_hours
        if day in self._closed or self.is_public_holiday(day):
            return ()
        return self._hours_by_weekday[day.weekday()]

    def intervals(self, day: date) -> list[Span]:
        """The day's business intervals as sorted aware UTC pairs; [] when closed."""
        return list(self._spans_of(day))

    def _build_spans(self, day: date) -> tuple[Span, ...]:
        spans: list[Span] = []
        for start, end in self._local_hours(day):
            start_at = self._instant(day, start)
            end_at = self._instant(day + ONE_DAY, end) if end == time(0) else \
                self._instant(day, end)
            if end_at <= start_at:
                continue  # swallowed by a DST gap
            if spans and start_at <= spans[-1][1]:
                # Overlapping or touching intervals are one stretch of business time.
                spans[-1] = (spans[-1][0], max(spans[-1][1], end_at))
            else:
                spans.append((start_at, end_at))
        return tuple(spans)

    # --- local wall-clock time -> UTC -----------------------------------------------------

    def _local_to_utc(self, day: date, at: time) -> datetime:
        """The instant the local clock shows `at` on `day` (first time; gap -> the jump)."""
        naive = datetime.combine(day, at)
        instant = naive.replace(tzinfo=self.zone).astimezone(UTC)
        if instant.astimezone(self.zone).replace(tzinfo=None) == naive:
            return instant
        # The clock never shows this time. fold=0 read it with the offset from before the
        # jump, which lands after the jump by the gap's size; fold=1 lands before it.
        before = naive.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        return self._jump_between(min(before, instant), max(before, instant))

    def _jump_between(self, low: datetime, high: datetime) -> datetime:
        """The first second in (low, high] whose UTC offset is that of `high`."""
        offset = high.astimezone(self.zone).utcoffset()
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            middle = middle.replace(microsecond=0)
            if middle <= low:
                break
            if middle.astimezone(self.zone).utcoffset() == offset:
                high = middle
            else:
                low = middle
        return high

    def _local_date(self, moment: datetime) -> date:
        _require_aware(moment)
        return moment.astimezone(self.zone).date()

    # --- moments ----------------------------------------------------------------------------

    def is_open(self, moment: datetime) -> bool:
        """Whether `moment` is inside some interval's [start, end)."""
        return any(s <= moment < e for s, e in self._spans_of(self._local_date(moment)))

    def next_opening(self, moment: datetime) -> datetime:
        """`moment` (in UTC) if open, else the start of the next interval."""
        # _spans_from raises ValueError rather than ending, so next() always has a value.
        return next(self._spans_from(moment))[0]

    def _spans_from(self, moment: datetime) -> Iterator[Span]:
        """Business intervals from `moment` on, the first one clipped to start at it.

        Raises ValueError after HORIZON_DAYS days in a row without business hours.
        """
        day = self._local_date(moment)
        moment = moment.astimezone(UTC)
        closed_run = 0
        while closed_run <= HORIZON_DAYS:
            spans = self._spans_of(day)
            for start, end in spans:
                if end > moment:
                    yield max(start, moment), end
            closed_run = 0 if spans else closed_run + 1
            day += ONE_DAY
        raise ValueError(f"the calendar has no business hours for {HORIZON_DAYS} days "
                         f"after {day - HORIZON_DAYS * ONE_DAY}")

    def _next_business_day(self, day: date) -> date:
        for offset in range(1, HORIZON_DAYS + 1):
            candidate = day + offset * ONE_DAY
            if self._spans_of(candidate):
                return candidate
        raise ValueError(f"the calendar has no business day within {HORIZON_DAYS} days "
                         f"after {day}")

    # --- deadlines ------------------------------------------------------------------------

    def same_day_deadline(self, arrival: datetime) -> datetime:
        """The same-day promise for a message arriving at `arrival` (see module doc)."""
        day = self._local_date(arrival)
        spans = self._spans_of(day)
        if spans:
            close = spans[-1][1]
            if arrival < self._instant(day, self.settings.same_day_cutoff) and arrival < close:
                return close
        return self._due_on(self._next_business_day(day))

    def _due_on(self, day: date) -> datetime:
        """`next_day_due_by` on a business day, moved into its hours (ends count)."""
        target = self._instant(day, self.settings.next_day_due_by)
        spans = self._spans_of(day)
        for start, end in spans:
            if end >= target:
                return max(start, target)
        return spans[-1][1]

    def add_business_time(self, start: datetime, duration: timedelta) -> datetime:
        """The moment `duration` of business time after `start` has elapsed."""
        if duration < timedelta(0):
            raise ValueError(f"duration must not be negative, got {duration}")
        remaining = duration
        for span_start, span_end in self._spans_from(start):
            length = span_end - span_start
            if remaining <= length:
                return span_start + remaining
            remaining -= length
        raise AssertionError("unreachable: _spans_from raises when it finds nothing")

    def business_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Business time inside [start, end); zero when end <= start."""
        total = timedelta(0)
        if end <= start:
            return total
        day, last = self._local_date(start), self._local_date(end)
        while day <= last:
            for span_start, span_end in self._spans_of(day):
                overlap = min(span_end, end) - max(span_start, start)
                if overlap > timedelta(0):
                    total += overlap
            day += ONE_DAY
        return total

    def deadline(self, arrival: datetime, rule: PromiseRule | None = None) -> datetime:
        """The promise for `arrival` under `rule` (None: the default same-day rule)."""
        if rule is None or rule.kind == "same_day":
            return self.same_day_deadline(arrival)
        assert rule.within is not None  # PromiseRule validates this for business_time
        return self.add_business_time(arrival, rule.within)


def choose_rule(rules: list[PromiseRule], channel: str, text: str,
                tags: list[str]) -> PromiseRule | None:
    """The first rule whose every non-empty condition holds; None means the default."""
    folded = text.casefold()
    for rule in rules:
        if rule.channels and channel not in rule.channels:
            continue
        if rule.keywords and not any(word.casefold() in folded for word in rule.keywords):
            continue
        if rule.tags and not set(rule.tags) & set(tags):
            continue
        return rule
    return None


def _require_aware(moment: datetime) -> None:
    # A naive moment has no meaning here: is 10:00 Moscow time, UTC or the server's zone?
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone; pass an aware datetime")
