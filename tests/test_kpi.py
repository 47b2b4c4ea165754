"""core.domain.kpi: the one definition of local days, same-day answers, rates, percentiles.

Expected values are worked out by hand in the comments (Moscow is UTC+3 all year; Berlin
is UTC+1 in winter and UTC+2 in summer, changing on the last Sundays of March and October).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain.kpi import (
    Rate,
    Spread,
    answered_same_day,
    first_response_spread,
    local_day,
    local_days_between,
    local_midnight,
    median,
    percentile,
    promise_kept,
    same_day_rate,
    same_local_day,
)

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- local days ----------------------------------------------------------------------------


def test_the_local_day_of_a_late_utc_instant_is_the_next_local_day():
    # 23:30 UTC on the 24th is 02:30 on the 25th in Moscow: the day runs 21:00 to 21:00 UTC.
    start, end = local_day(utc(2026, 11, 24, 23, 30), MSK)
    assert (start, end) == (utc(2026, 11, 24, 21), utc(2026, 11, 25, 21))
    assert start.tzinfo is UTC and end.tzinfo is UTC


def test_an_instant_at_local_midnight_begins_its_day():
    start, end = local_day(utc(2026, 11, 24, 21), MSK)  # 00:00 on the 25th in Moscow
    assert start == utc(2026, 11, 24, 21) and end == utc(2026, 11, 25, 21)


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 29), 23),  # spring forward
                                            (date(2026, 10, 25), 25),  # fall back
                                            (date(2026, 11, 24), 24)])
def test_a_dst_change_makes_the_local_day_23_or_25_hours(day, hours):
    start, end = local_day(datetime(day.year, day.month, day.day, 12, tzinfo=BERLIN), BERLIN)
    assert end - start == timedelta(hours=hours)
    assert start == local_midnight(day, BERLIN)
    # 29 March: midnight is still winter time (UTC+1), so the day starts at 23:00 UTC.
    if hours == 23:
        assert start == utc(2026, 3, 28, 23) and end == utc(2026, 3, 29, 22)


def test_local_days_between_counts_calendar_days_not_24_hour_spans():
    # 23:50 -> 00:10 Moscow: twenty minutes, but the next day; 00:10 -> 23:50: the same day.
    assert local_days_between(utc(2026, 11, 24, 20, 50), utc(2026, 11, 24, 21, 10), MSK) == 1
    assert local_days_between(utc(2026, 11, 24, 21, 10), utc(2026, 11, 25, 20, 50), MSK) == 0
    assert local_days_between(utc(2026, 11, 25, 21, 10), utc(2026, 11, 24, 20, 50), MSK) == -2


# --- same-day answers ----------------------------------------------------------------------


def test_opened_2330_answered_0010_is_not_the_same_day_although_the_same_utc_day():
    opened = utc(2026, 11, 24, 20, 30)  # 23:30 Moscow
    answered = utc(2026, 11, 24, 21, 10)  # 00:10 Moscow, the 25th; still the 24th in UTC
    assert opened.date() == answered.date()
    assert not same_local_day(opened, answered, MSK)
    assert not answered_same_day(opened, answered, MSK)


def test_the_same_local_day_across_two_utc_days_is_the_same_day():
    opened = utc(2026, 11, 24, 21, 30)  # 00:30 Moscow on the 25th
    answered = utc(2026, 11, 25, 20, 0)  # 23:00 Moscow on the 25th
    assert answered_same_day(opened, answered, MSK)


def test_an_unanswered_ticket_is_not_answered_the_same_day():
    assert not answered_same_day(utc(2026, 11, 24, 9), None, MSK)


def test_same_day_on_the_long_dst_day():
    # 25 Oct 2026 in Berlin has 25 hours: 00:30 (UTC+2) and 23:30 (UTC+1) are 24 hours apart.
    opened = utc(2026, 10, 24, 22, 30)  # 00:30 CEST on the 25th
    answered = utc(2026, 10, 25, 22, 30)  # 23:30 CET on the 25th, a real 24 hours later
    assert answered.astimezone(BERLIN).day == opened.astimezone(BERLIN).day == 25
    assert answered_same_day(opened, answered, BERLIN)
    assert not answered_same_day(opened, answered + timedelta(hours=1), BERLIN)


def test_the_same_day_rate_counts_unanswered_tickets_against_it():
    opened = utc(2026, 11, 24, 7)  # 10:00 Moscow
    tickets = [(opened, opened + timedelta(hours=1)),  # same day
               (opened, opened + timedelta(hours=14)),  # 00:00 the next day: not
               (opened, None)]  # unanswered: not
    rate = same_day_rate(tickets, MSK)
    assert rate == Rate(1, 3)
    assert rate.value == 0.3333 and rate.fraction == 1 / 3


# --- rates ---------------------------------------------------------------------------------


def test_a_rate_of_nothing_has_no_value():
    assert Rate(0, 0).value is None and Rate(0, 0).fraction is None
    assert same_day_rate([], MSK) == Rate(0, 0)


def test_a_rate_is_rounded_to_four_places():
    assert Rate(2, 3).value == 0.6667 and Rate(3, 3).value == 1.0 and Rate(0, 5).value == 0.0


# --- promises ------------------------------------------------------------------------------


def test_a_promise_is_judged_once_answered_or_past():
    due = utc(2026, 11, 24, 15)
    assert promise_kept(due, due, None) is True  # answered at the deadline: kept
    assert promise_kept(due, due + timedelta(seconds=1), None) is False
    assert promise_kept(due, None, due) is None  # due now, not yet past
    assert promise_kept(due, None, due + timedelta(seconds=1)) is False
    assert promise_kept(due, None, None) is None
    assert promise_kept(None, due, due + timedelta(days=1)) is None  # no promise made


# --- percentiles and first response --------------------------------------------------------


def test_percentile_is_nearest_rank_not_interpolated():
    # n = 4: p50 is rank ceil(2) = 2 -> 20 (interpolation would say 25); p90 rank 4 -> 40.
    values = [40, 10, 30, 20]
    assert percentile(values, 50) == 20 and percentile(values, 90) == 40
    assert percentile(values, 0) == 10  # rank is at least 1
    assert percentile(values, 25) == 10 and percentile(values, 26) == 20
    assert percentile([], 50) is None and percentile([7.5], 99) == 7.5


def test_median_averages_the_middle_pair_unlike_p50():
    assert median([10, 20, 30, 40]) == 25 and percentile([10, 20, 30, 40], 50) == 20
    assert median([]) is None


def test_the_first_response_spread_leaves_unanswered_tickets_out():
    opened = utc(2026, 11, 24, 7)
    spread = first_response_spread([(opened, opened + timedelta(minutes=m)) for m in
                                    (30, 5, 120)] + [(opened, None)])
    assert spread == Spread(count=3, p50=1800.0, p90=7200.0)
    assert first_response_spread([]) == Spread(0, None, None)


# --- properties ----------------------------------------------------------------------------

ZONES = [ZoneInfo(name) for name in ("Europe/Moscow", "Europe/Berlin", "America/New_York",
                                     "America/Havana", "Australia/Lord_Howe", "Asia/Kolkata",
                                     "Pacific/Chatham", "UTC")]
INSTANTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 12, 31),
                        timezones=st.just(UTC))


@given(opened=INSTANTS, wait=st.timedeltas(min_value=timedelta(0),
                                           max_value=timedelta(days=3)),
       zone=st.sampled_from(ZONES))
def test_same_day_is_answered_before_the_local_day_of_opening_ends(opened, wait, zone):
    """The database form of /stats and /metrics (opened in the day, answered before its
    end) counts exactly the tickets the definition counts; the day holds its instant."""
    start, end = local_day(opened, zone)
    assert start <= opened < end
    assert answered_same_day(opened, opened + wait, zone) == (opened + wait < end)


@given(values=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1),
       p=st.floats(min_value=0, max_value=100))
def test_a_percentile_is_an_observed_value_with_enough_values_at_or_below_it(values, p):
    result = percentile(values, p)
    assert result in values
    assert sum(1 for v in values if v <= result) >= p / 100 * len(values)
