"""Business calendar and deadlines: hand-computed tables plus hypothesis properties.

Pure: no database, no wall clock. Expected values are written as local wall-clock times
of the calendar's zone (``msk`` / ``ber``, which convert them to UTC, as the calendar
returns) so each row reads like the promise a customer would see.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config.settings import CalendarSettings, PromiseRule
from core.domain.calendar import BusinessCalendar, choose_rule

MSK = ZoneInfo("Europe/Moscow")
BER = ZoneInfo("Europe/Berlin")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
LUNCH = ["09:00-13:00", "14:00-18:00"]


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK).astimezone(UTC)


def ber(*args: int, fold: int = 0) -> datetime:
    # In UTC: Python never finds an ambiguous local time (fold=1) equal to another zone's.
    return datetime(*args, tzinfo=BER, fold=fold).astimezone(UTC)


def calendar(**overrides) -> BusinessCalendar:
    values = {"timezone": "Europe/Moscow", "country": "RU",
              "hours": {day: LUNCH for day in WEEKDAYS},
              "same_day_cutoff": "17:00", "next_day_due_by": "12:00"}
    return BusinessCalendar(CalendarSettings(**(values | overrides)))


MOSCOW = calendar()
BERLIN = calendar(timezone="Europe/Berlin", country="DE",
                  hours={day: ["09:00-18:00"] for day in WEEKDAYS})
ONE_HOUR = PromiseRule(name="fast", kind="business_time", within="1h")
FOUR_HOURS = PromiseRule(name="vip", kind="business_time", within="4h")


# --- the holidays package, as these tables rely on it --------------------------------------


def test_holidays_package_lists_the_russian_dates_the_tables_use():
    ru = holidays.country_holidays("RU", years=[2025, 2026, 2027])
    for day in [date(2026, 1, 1), date(2026, 1, 5), date(2026, 1, 8), date(2026, 1, 9),
                date(2026, 11, 4), date(2025, 12, 31), date(2026, 12, 31),
                date(2027, 1, 8)]:
        assert day in ru, day
    assert date(2026, 11, 5) not in ru and date(2026, 1, 12) not in ru


# --- business days and intervals ------------------------------------------------------------


@pytest.mark.parametrize(("cal", "day", "expected"), [
    (MOSCOW, date(2026, 11, 3), True),  # a Tuesday
    (MOSCOW, date(2026, 11, 4), False),  # Unity Day
    (MOSCOW, date(2026, 11, 7), False),  # a Saturday
    (calendar(country=""), date(2026, 11, 4), True),  # no public holidays at all
    (calendar(closed_dates=[date(2026, 11, 3)]), date(2026, 11, 3), False),
    (calendar(working_dates=[date(2026, 11, 7)]), date(2026, 11, 7), True),
    (calendar(working_dates=[date(2026, 11, 4)]), date(2026, 11, 4), True),  # wins
])
def test_is_business_day(cal, day, expected):
    assert cal.is_business_day(day) is expected


def test_intervals_are_utc_and_a_closed_day_has_none():
    assert MOSCOW.intervals(date(2026, 11, 3)) == [
        (msk(2026, 11, 3, 9), msk(2026, 11, 3, 13)), (msk(2026, 11, 3, 14), msk(2026, 11, 3, 18))]
    assert all(s.tzinfo is UTC for span in MOSCOW.intervals(date(2026, 11, 3)) for s in span)
    assert MOSCOW.intervals(date(2026, 11, 4)) == []


def test_a_working_saturday_uses_the_configured_weekdays_hours():
    cal = calendar(working_dates=[date(2026, 11, 7)], working_date_hours_from="fri",
                   hours={"mon": LUNCH, "fri": ["09:00-16:45"]})
    assert cal.intervals(date(2026, 11, 7)) == [(msk(2026, 11, 7, 9), msk(2026, 11, 7, 16, 45))]


def test_24_00_ends_at_midnight_and_touching_intervals_merge():
    cal = calendar(country="", hours={"mon": ["20:00-24:00", "09:00-13:00", "13:00-15:00"]})
    assert cal.intervals(date(2026, 11, 2)) == [
        (msk(2026, 11, 2, 9), msk(2026, 11, 2, 15)), (msk(2026, 11, 2, 20), msk(2026, 11, 3))]


def test_dst_days_are_23_and_25_hours_long():
    always = calendar(timezone="Europe/Berlin", country="",
                      hours={day: ["00:00-24:00"] for day in (*WEEKDAYS, "sat", "sun")})

    def length(day: date) -> timedelta:
        return sum((e - s for s, e in always.intervals(day)), timedelta())

    assert length(date(2026, 3, 29)) == timedelta(hours=23)
    assert length(date(2026, 10, 25)) == timedelta(hours=25)
    assert length(date(2026, 3, 28)) == timedelta(hours=24)


def test_an_interval_in_the_spring_gap_is_clipped_or_dropped():
    # On 2026-03-29 Berlin's clocks jump from 02:00 to 03:00.
    cal = calendar(timezone="Europe/Berlin", country="",
                   hours={"sun": ["02:10-02:50", "02:30-04:00"], "mon": ["09:00-18:00"]})
    assert cal.intervals(date(2026, 3, 29)) == [(ber(2026, 3, 29, 3), ber(2026, 3, 29, 4))]
    only_gap = calendar(timezone="Europe/Berlin", country="",
                        hours={"sun": ["02:10-02:50"], "mon": ["09:00-18:00"]})
    assert only_gap.intervals(date(2026, 3, 29)) == []
    assert only_gap.intervals(date(2026, 4, 5)) == [
        (ber(2026, 4, 5, 2, 10), ber(2026, 4, 5, 2, 50))]


# --- moments ------------------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "is_open", "opening"), [
    (msk(2026, 11, 3, 10), True, msk(2026, 11, 3, 10)),
    (msk(2026, 11, 3, 9), True, msk(2026, 11, 3, 9)),  # starts are inside
    (msk(2026, 11, 3, 13), False, msk(2026, 11, 3, 14)),  # ends are not (lunch)
    (msk(2026, 11, 3, 7), False, msk(2026, 11, 3, 9)),
    (msk(2026, 11, 3, 18), False, msk(2026, 11, 5, 9)),  # Nov 4 is a holiday
    (msk(2026, 11, 6, 20), False, msk(2026, 11, 9, 9)),  # Friday evening
])
def test_is_open_and_next_opening(moment, is_open, opening):
    assert MOSCOW.is_open(moment) is is_open
    assert MOSCOW.next_opening(moment) == opening


def test_a_calendar_that_never_opens_raises_instead_of_looping():
    mondays = [date(2026, 1, 5) + timedelta(weeks=n) for n in range(160)]
    cal = calendar(country="", hours={"mon": ["09:00-18:00"]}, closed_dates=mondays)
    with pytest.raises(ValueError, match="no business"):
        cal.next_opening(msk(2026, 1, 1))
    with pytest.raises(ValueError, match="no business"):
        cal.deadline(msk(2026, 1, 1))


def test_naive_moments_are_refused():
    with pytest.raises(ValueError, match="time zone"):
        MOSCOW.deadline(datetime(2026, 11, 3, 10))


# --- same-day deadlines -------------------------------------------------------------------


@pytest.mark.parametrize(("cal", "arrival", "due"), [
    # A business-day morning: due by that day's close.
    (MOSCOW, msk(2026, 11, 3, 10), msk(2026, 11, 3, 18)),
    (MOSCOW, msk(2026, 11, 3, 7), msk(2026, 11, 3, 18)),  # before opening = before cutoff
    (MOSCOW, msk(2026, 11, 3, 13, 30), msk(2026, 11, 3, 18)),  # in the lunch break
    (MOSCOW, msk(2026, 11, 3, 16, 59), msk(2026, 11, 3, 18)),
    # At or after the cutoff: the next business day by 12:00.
    (MOSCOW, msk(2026, 11, 5, 17), msk(2026, 11, 6, 12)),
    (MOSCOW, msk(2026, 11, 5, 17, 30), msk(2026, 11, 6, 12)),
    (MOSCOW, msk(2026, 11, 5, 23, 59), msk(2026, 11, 6, 12)),
    # Friday evening and the weekend: Monday 12:00.
    (MOSCOW, msk(2026, 11, 6, 19), msk(2026, 11, 9, 12)),
    (MOSCOW, msk(2026, 11, 8, 10), msk(2026, 11, 9, 12)),
    # Unity Day (Wed 2026-11-04) is closed: the evening before and the day itself -> Thu.
    (MOSCOW, msk(2026, 11, 3, 18, 30), msk(2026, 11, 5, 12)),
    (MOSCOW, msk(2026, 11, 4, 10), msk(2026, 11, 5, 12)),
    # The New Year holidays: 2026-01-01..09 are closed, then a weekend.
    (MOSCOW, msk(2026, 1, 5, 10), msk(2026, 1, 12, 12)),
    (MOSCOW, msk(2025, 12, 31, 20), msk(2026, 1, 12, 12)),
    (MOSCOW, msk(2025, 12, 30, 19), msk(2026, 1, 12, 12)),
    # 2026-12-31 is a day off too; 2027-01-01..08 are holidays, 9-10 a weekend.
    (MOSCOW, msk(2026, 12, 31, 19), msk(2027, 1, 11, 12)),
    (MOSCOW, msk(2026, 12, 30, 19), msk(2027, 1, 11, 12)),
    # A moved working Saturday: a business day with Monday's hours.
    (calendar(working_dates=[date(2026, 11, 7)]), msk(2026, 11, 6, 19), msk(2026, 11, 7, 12)),
    (calendar(working_dates=[date(2026, 11, 7)]), msk(2026, 11, 7, 10), msk(2026, 11, 7, 18)),
    # A company closure.
    (calendar(closed_dates=[date(2026, 11, 5)]), msk(2026, 11, 3, 18), msk(2026, 11, 6, 12)),
    # next_day_due_by is moved into business hours.
    (calendar(next_day_due_by="13:30"), msk(2026, 11, 5, 18), msk(2026, 11, 6, 14)),  # lunch
    (calendar(next_day_due_by="07:00"), msk(2026, 11, 5, 18), msk(2026, 11, 6, 9)),  # opening
    (calendar(next_day_due_by="13:00"), msk(2026, 11, 5, 18), msk(2026, 11, 6, 13)),  # an end
    (calendar(next_day_due_by="20:00"), msk(2026, 11, 5, 18), msk(2026, 11, 6, 18)),  # close
    # A short day that closes before the cutoff: after its close -> the next business day.
    (calendar(hours={"mon": LUNCH, "fri": ["09:00-15:00"]}), msk(2026, 11, 6, 16),
     msk(2026, 11, 9, 12)),
    # A cutoff before the opening: after it, the next business day (never earlier than the
    # close promised to an arrival just before the cutoff).
    (calendar(same_day_cutoff="08:00"), msk(2026, 11, 5, 7, 59), msk(2026, 11, 5, 18)),
    (calendar(same_day_cutoff="08:00"), msk(2026, 11, 5, 8, 30), msk(2026, 11, 6, 12)),
    # Berlin across DST: Friday evening before the change -> Monday 12:00 in the new offset.
    (BERLIN, ber(2026, 3, 27, 19), ber(2026, 3, 30, 12)),
    (BERLIN, ber(2026, 10, 23, 19), ber(2026, 10, 26, 12)),
    # Good Friday and Easter Monday 2026 are German holidays.
    (BERLIN, ber(2026, 4, 2, 19), ber(2026, 4, 7, 12)),
])
def test_same_day_deadline(cal, arrival, due):
    assert cal.deadline(arrival) == due
    assert cal.deadline(arrival).tzinfo is UTC


def test_berlin_dst_deadlines_in_utc():
    # Spelled out in UTC, because the offset is what changes: CET +1 before, CEST +2 after.
    assert BERLIN.deadline(ber(2026, 3, 27, 19)) == datetime(2026, 3, 30, 10, tzinfo=UTC)
    assert BERLIN.deadline(ber(2026, 10, 23, 19)) == datetime(2026, 10, 26, 11, tzinfo=UTC)


def test_sunday_hours_across_the_dst_changes():
    # A shop open Sundays 00:00-04:00 local: the gap and the repeated hour fall inside.
    cal = calendar(timezone="Europe/Berlin", country="", same_day_cutoff="03:30",
                   next_day_due_by="03:00", hours={"sun": ["00:00-04:00"]})
    # Spring: 02:00 -> 03:00, so the day has 3 business hours and 01:59 CET + 1h = 03:59.
    rule = PromiseRule(name="r", kind="business_time", within="1h")
    assert cal.deadline(ber(2026, 3, 29, 1, 59), rule) == ber(2026, 3, 29, 3, 59)
    assert cal.deadline(ber(2026, 3, 29, 1, 59)) == ber(2026, 3, 29, 4)
    # Autumn: 03:00 -> 02:00, 5 business hours; the first 02:30 (CEST) + 1h is 02:30 CET.
    assert cal.deadline(ber(2026, 10, 25, 2, 30), rule) == ber(2026, 10, 25, 2, 30, fold=1)
    # The cutoff is a moment, not a clock reading: with a 02:30 cutoff in the repeated
    # hour, the first 02:20 (CEST) is before it, the second 02:10 (CET) an hour later is not.
    early = calendar(timezone="Europe/Berlin", country="", same_day_cutoff="02:30",
                     next_day_due_by="03:00", hours={"sun": ["00:00-04:00"]})
    assert early.deadline(ber(2026, 10, 25, 2, 20)) == ber(2026, 10, 25, 4)
    assert early.deadline(ber(2026, 10, 25, 2, 10, fold=1)) == ber(2026, 11, 1, 3)


# --- business-time deadlines -------------------------------------------------------------


@pytest.mark.parametrize(("cal", "rule", "arrival", "due"), [
    # The lunch break does not count.
    (MOSCOW, ONE_HOUR, msk(2026, 11, 3, 13, 30), msk(2026, 11, 3, 15)),
    (MOSCOW, ONE_HOUR, msk(2026, 11, 3, 12, 30), msk(2026, 11, 3, 14, 30)),
    (MOSCOW, ONE_HOUR, msk(2026, 11, 3, 12), msk(2026, 11, 3, 13)),  # may end at an end
    (MOSCOW, ONE_HOUR, msk(2026, 11, 3, 17, 30), msk(2026, 11, 5, 9, 30)),  # over Nov 4
    (MOSCOW, ONE_HOUR, msk(2026, 11, 3, 7), msk(2026, 11, 3, 10)),
    (MOSCOW, FOUR_HOURS, msk(2026, 11, 6, 16), msk(2026, 11, 9, 11)),  # over a weekend
    # Berlin: Friday 17:00 CET + 4h = Friday's last hour, then Monday 09:00-12:00 CEST.
    (BERLIN, FOUR_HOURS, ber(2026, 3, 27, 17), ber(2026, 3, 30, 12)),
    (BERLIN, FOUR_HOURS, ber(2026, 10, 23, 17), ber(2026, 10, 26, 12)),
])
def test_business_time_deadline(cal, rule, arrival, due):
    assert cal.deadline(arrival, rule) == due
    assert cal.business_time_between(arrival, due) == rule.within


def test_business_time_across_a_dst_change_counts_real_hours():
    always = calendar(timezone="Europe/Berlin", country="",
                      hours={day: ["00:00-24:00"] for day in (*WEEKDAYS, "sat", "sun")})
    day = timedelta(hours=24)
    assert always.add_business_time(ber(2026, 3, 28, 12), day) == ber(2026, 3, 29, 13)
    assert always.add_business_time(ber(2026, 10, 24, 12), day) == ber(2026, 10, 25, 11)


def test_zero_duration_is_the_next_opening_and_negative_is_refused():
    assert MOSCOW.add_business_time(msk(2026, 11, 3, 13, 10), timedelta()) == msk(2026, 11, 3, 14)
    with pytest.raises(ValueError, match="negative"):
        MOSCOW.add_business_time(msk(2026, 11, 3, 10), timedelta(minutes=-1))


def test_business_time_between():
    assert MOSCOW.business_time_between(msk(2026, 11, 3, 8), msk(2026, 11, 5, 10)) == \
        timedelta(hours=9)
    assert MOSCOW.business_time_between(msk(2026, 11, 3, 12), msk(2026, 11, 3, 12)) == \
        timedelta()
    assert MOSCOW.business_time_between(msk(2026, 11, 3, 15), msk(2026, 11, 3, 12)) == \
        timedelta()


def test_same_day_rule_object_behaves_like_the_default():
    rule = PromiseRule(name="plain", kind="same_day")
    assert MOSCOW.deadline(msk(2026, 11, 3, 10), rule) == msk(2026, 11, 3, 18)


# --- choosing a rule ----------------------------------------------------------------------

RULES = [
    PromiseRule(name="vip", tags=["vip"], kind="business_time", within="1h"),
    PromiseRule(name="outage", keywords=["Не работает", "down"], channels=["twitter", "vk"],
                kind="business_time", within="2h"),
    PromiseRule(name="telegram", channels=["telegram"]),
    PromiseRule(name="anything"),
]


@pytest.mark.parametrize(("rules", "channel", "text", "tags", "expected"), [
    (RULES, "vk", "сайт не работает", ["vip"], "vip"),  # first match wins
    (RULES, "vk", "Сайт НЕ РАБОТАЕТ", [], "outage"),  # case-insensitive keyword
    (RULES, "twitter", "is the app DOWN?", ["regular"], "outage"),
    (RULES, "telegram", "the app is down", [], "telegram"),  # outage is not for telegram
    (RULES, "vk", "hello", [], "anything"),  # empty conditions match anything
    (RULES[:3], "vk", "hello", [], None),  # nothing matches -> the default
    ([], "vk", "hello", [], None),
])
def test_choose_rule(rules, channel, text, tags, expected):
    chosen = choose_rule(rules, channel, text, tags)
    assert (chosen.name if chosen else None) == expected


# --- properties -----------------------------------------------------------------------------

ALL_DAYS = (*WEEKDAYS, "sat", "sun")
CALENDARS = {
    "moscow-lunch": MOSCOW,
    "moscow-plain": calendar(hours={day: ["09:00-18:00"] for day in WEEKDAYS},
                             working_dates=[date(2026, 11, 7)], closed_dates=[date(2027, 3, 1)]),
    "berlin-plain": BERLIN,
    "berlin-lunch": calendar(timezone="Europe/Berlin", country="DE", subdivision="BY",
                             hours={day: LUNCH for day in WEEKDAYS}, next_day_due_by="13:30"),
    # Weekend hours inside the DST changes, a night shift to 24:00, an early cutoff.
    "berlin-odd": calendar(timezone="Europe/Berlin", country="DE", same_day_cutoff="02:30",
                           next_day_due_by="02:15",
                           hours={"sat": ["20:00-24:00"], "sun": ["00:00-02:30", "02:45-05:00"],
                                  "wed": ["09:00-12:00"]}),
}
PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Local wall-clock times where the rules change: openings, closes, cutoffs, DST hours.
EDGE_TIMES = [time(0), time(1, 59, 59, 999999), time(2), time(2, 30), time(3), time(8, 59),
              time(9), time(12), time(13), time(13, 30), time(14), time(16, 59, 59), time(17),
              time(18), time(20), time(23, 59, 59, 999999)]


@st.composite
def arrivals(draw, cal: BusinessCalendar) -> datetime:
    """An aware UTC moment in 2024-2028, often exactly at a local edge time."""
    if draw(st.booleans()):
        return draw(st.datetimes(datetime(2024, 1, 1), datetime(2028, 12, 31),
                                 timezones=st.just(UTC)))
    day = draw(st.dates(date(2024, 1, 1), date(2028, 12, 31)))
    local = datetime.combine(day, draw(st.sampled_from(EDGE_TIMES)), tzinfo=cal.zone)
    return local.replace(fold=draw(st.integers(0, 1))).astimezone(UTC)


durations = st.one_of(st.timedeltas(timedelta(), timedelta(hours=2)),
                      st.timedeltas(timedelta(), timedelta(days=20)))
rules = st.one_of(st.none(), durations.filter(bool).map(
    lambda d: PromiseRule(name="p", kind="business_time", within=d)))


def inside_hours(cal: BusinessCalendar, moment: datetime) -> bool:
    # An interval ending at 24:00 belongs to the previous local day.
    day = moment.astimezone(cal.zone).date()
    spans = cal.intervals(day - timedelta(days=1)) + cal.intervals(day)
    return any(s <= moment <= e for s, e in spans)


@pytest.mark.parametrize("name", CALENDARS)
@PROPERTY
@given(data=st.data())
def test_deadlines_are_after_arrival_inside_hours_and_monotonic(name, data):
    cal = CALENDARS[name]
    first = data.draw(arrivals(cal))
    later = first + data.draw(st.one_of(st.timedeltas(timedelta(), timedelta(seconds=1)),
                                        st.timedeltas(timedelta(), timedelta(days=3))))
    rule = data.draw(rules)
    due = cal.deadline(first, rule)
    assert due >= first
    assert inside_hours(cal, due)
    assert cal.deadline(later, rule) >= due


@pytest.mark.parametrize("name", CALENDARS)
@PROPERTY
@given(data=st.data())
def test_business_time_added_is_business_time_between(name, data):
    cal = CALENDARS[name]
    start, duration = data.draw(arrivals(cal)), data.draw(durations)
    end = cal.add_business_time(start, duration)
    assert cal.business_time_between(start, end) == duration
    assert end >= start and inside_hours(cal, end)


@pytest.mark.parametrize("name", CALENDARS)
@PROPERTY
@given(data=st.data())
def test_next_opening_is_open_and_not_before(name, data):
    cal = CALENDARS[name]
    moment = data.draw(arrivals(cal))
    opening = cal.next_opening(moment)
    assert opening >= moment and cal.is_open(opening)
    assert cal.is_open(moment) == (opening == moment)


@pytest.mark.parametrize("name", CALENDARS)
def test_a_sweep_over_both_dst_weekends_is_monotonic(name):
    # Every 5 minutes of real time, so the skipped and the repeated hour are both walked.
    cal = CALENDARS[name]
    for start in (datetime(2026, 3, 26, tzinfo=UTC), datetime(2026, 10, 22, tzinfo=UTC)):
        previous = {None: start, "rule": start}
        for step in range(6 * 24 * 12):
            arrival = start + step * timedelta(minutes=5)
            for key, rule in ((None, None), ("rule", FOUR_HOURS)):
                due = cal.deadline(arrival, rule)
                assert due >= arrival and due >= previous[key] and inside_hours(cal, due)
                previous[key] = due
