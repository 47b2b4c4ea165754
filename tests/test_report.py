"""`sameday report`: figures checked against hand-computed values, the formats, the chart.

The main fixture is one local day (Tue 17 Nov 2026, Europe/Moscow = UTC+3) written
straight into the tables, so every expected figure below is worked out by hand in the
comments, not by calling the report's own helpers.
"""

from __future__ import annotations

import csv
import io
import json
import struct
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console
from typer.testing import CliRunner

from core.app.cli import app
from core.config.settings import DatabaseSettings
from core.domain.kpi import percentile, same_local_day
from core.domain.records import OutboxKind, TicketStatus
from core.intake.inbox import Inbox
from core.reporting.chart import write_chart
from core.reporting.facts import TicketFacts
from core.reporting.period import hour_starts, make_period, parse_moment
from core.reporting.render import print_report
from core.reporting.report import backlog_bucket, build_report, report_for_period, waiting_since_at
from core.staff.commands import StaffDesk
from core.store.engine import Store, upgrade
from core.store.tables import Customer, Event, Outbox, Ticket
from tests.conftest import make_settings
from tests.helpers import inbound

MSK = ZoneInfo("Europe/Moscow")
DAY = (2026, 11, 17)  # a Tuesday in the past, so the real clock is after it


def local(hour: int, minute: int = 0, second: int = 0, day: int = 0) -> datetime:
    """A local Moscow time on DAY (+day days), as the aware UTC instant the store keeps."""
    moment = datetime(*DAY, hour, minute, second, tzinfo=MSK) + timedelta(days=day)
    return moment.astimezone(UTC)


# --- the hand-made day ---------------------------------------------------------------------
#
#  #  chan  opened      ack sent         first answer     promise       state
#  1  tg    09:00       09:00:30 (30s)   09:30 (1800s)    18:00         answered
#  2  tg    10:00       10:02 (120s)     12:00 (7200s)    18:00         closed 12:30
#  3  tg    17:30       17:30:10 (10s)   next day 10:00   next day 12   answered
#                                        (16h30m = 59400s)
#  4  vk    11:00       pending (none)   19:00 (28800s)   18:00         answered
#  5  vk    20:30       no ack           -                next day 12   open
#  6  vk    23:30       23:31 (60s)      -                next day 12   open
#  7  tg    day before 15:00, no ack     -                day before 18 open (overdue)
#  8  vk    12:00       no ack           -                14:00         open

TICKETS = [
    # id, channel, opened, acked_at, ack_sent, ack_state, first_response, due, status, closed
    (1, "telegram", local(9), local(9), local(9, 0, 30), "sent", local(9, 30), local(18),
     "answered", None),
    (2, "telegram", local(10), local(10), local(10, 2), "sent", local(12), local(18),
     "closed", local(12, 30)),
    (3, "telegram", local(17, 30), local(17, 30), local(17, 30, 10), "sent", local(10, day=1),
     local(12, day=1), "answered", None),
    (4, "vk", local(11), local(11), None, "pending", local(19), local(18), "answered", None),
    (5, "vk", local(20, 30), None, None, None, None, local(12, day=1), "open", None),
    (6, "vk", local(23, 30), local(23, 30), local(23, 31), "sent", None, local(12, day=1),
     "open", None),
    (7, "telegram", local(15, day=-1), None, None, None, None, local(18, day=-1), "open", None),
    (8, "vk", local(12), None, None, None, None, local(14), "open", None),
]

EVENTS = [
    # kind, channel, at, data
    *[("received", ch, opened, {}) for _, ch, opened, *_ in TICKETS],  # #7's is the day before
    ("received", "telegram", local(9, 10), {}),  # a follow-up to #1
    ("answered", "telegram", local(9, 30), {"first": True}),
    ("answered", "telegram", local(12), {"first": True}),
    ("answered", "vk", local(19), {"first": True}),
    ("answered", "telegram", local(10, day=1), {"first": True}),  # #3: the next day
    ("escalated", "vk", local(13), {"rule": "2h-unanswered"}),  # #4
    ("escalated", "vk", local(14), {"rule": "2h-unanswered"}),  # #8
    ("escalated", "telegram", local(9), {"rule": "at-due"}),  # #7, re-posted in the morning
    ("escalated", "telegram", local(18, day=-1), {"rule": "at-due"}),  # the day before
    ("dead_letter", "vk", local(11, 5), {"kind": "reply"}),
    ("dead_letter", "telegram", local(8, day=-1), {"kind": "ack"}),  # the day before
]


async def fill(store: Store) -> None:
    """Write the day above into the tables, as the core would have left them."""
    async with store.session() as session, session.begin():
        session.add(Customer(id=1, channel="telegram", external_user_id="t", created_at=local(0)))
        session.add(Customer(id=2, channel="vk", external_user_id="v", created_at=local(0)))
        await session.flush()
        for (ticket_id, channel, opened, acked, _, _, first, due, status,
             closed) in TICKETS:
            session.add(Ticket(id=ticket_id, channel=channel, thread_key=f"t{ticket_id}",
                               customer_id=1 if channel == "telegram" else 2, status=status,
                               opened_at=opened, waiting_since=opened, last_customer_at=opened,
                               acked_at=acked, first_response_at=first, due_at=due,
                               closed_at=closed))
        await session.flush()
        for (ticket_id, channel, opened, _, ack_sent, ack_state, *_) in TICKETS:
            if ack_state:
                session.add(Outbox(channel=channel, kind=OutboxKind.ACK, ticket_id=ticket_id,
                                   text="we will answer today", idempotency_key=f"ack:{ticket_id}",
                                   state=ack_state, next_attempt_at=opened, created_at=opened,
                                   sent_at=ack_sent))
        for kind, channel, at, data in EVENTS:
            session.add(Event(kind=kind, channel=channel, at=at, data=data))


@pytest.fixture
async def day_store(store):
    await fill(store)
    return store


def the_day():
    """--since 2026-11-17 --until 2026-11-17, read a week later."""
    return make_period("2026-11-17", "2026-11-17", MSK, now=local(12, day=7))


async def test_the_figures_of_a_day_match_the_hand_computed_ones(day_store):
    report = await report_for_period(day_store, the_day())

    assert report.period.since == datetime(2026, 11, 16, 21, tzinfo=UTC)
    assert report.period.until == report.period.as_of == datetime(2026, 11, 17, 21, tzinfo=UTC)
    # Opened on the day: #1-#6 and #8 (7 tickets); #7 was opened the day before.
    assert report.opened == 7
    # received events on the day: 7 openings + the follow-up to #1.
    assert report.received == 8
    # The headline: answered on the same local day: #1, #2 (tg) and #4 (vk; 19:00 is late
    # for its promise but still the same day). #3 was answered the next morning.
    assert (report.same_day.part, report.same_day.whole) == (3, 7)
    assert report.same_day.value == round(3 / 7, 4)
    assert {c: (r.part, r.whole) for c, r in report.same_day_by_channel.items()} == {
        "telegram": (2, 3), "vk": (1, 4)}
    # acked_at set: #1, #2, #3, #4, #6.
    assert report.acknowledged == 5
    # Sent acknowledgements: 30, 120, 10, 60 s -> sorted 10, 30, 60, 120.
    # Nearest rank: p50 = rank ceil(0.5*4) = 2 -> 30 s; p90 = rank ceil(3.6) = 4 -> 120 s.
    assert (report.ack_latency.count, report.ack_latency.p50, report.ack_latency.p90) == \
        (4, 30, 120)
    # First responses: tg 1800, 7200, 59400; vk 28800.
    # all: 1800, 7200, 28800, 59400 -> p50 rank 2 = 7200, p90 rank 4 = 59400.
    # tg: p50 rank ceil(1.5) = 2 -> 7200, p90 rank ceil(2.7) = 3 -> 59400. vk: one value.
    spreads = {c: (s.count, s.p50, s.p90) for c, s in report.first_response.items()}
    assert spreads == {"all": (4, 7200, 59400), "telegram": (3, 7200, 59400),
                       "vk": (1, 28800, 28800)}
    # Promises judged: #1, #2, #3 kept; #4 answered after 18:00 and #8 past 14:00 unanswered
    # are broken; #5 and #6 are due tomorrow noon: not judged yet.
    assert (report.promises.part, report.promises.whole) == (3, 5)
    # Escalations on the day: 2h-unanswered twice (#4, #8), at-due once (#7 this morning).
    assert report.escalations == {"2h-unanswered": 2, "at-due": 1}
    # Backlog at midnight: #6 30m, #5 3h30m, #3 6h30m (answered only the next day),
    # #8 12h, #7 33h.
    assert report.backlog == {"<1h": 1, "1-4h": 1, "4-24h": 2, ">1d": 1}
    assert report.dead_letters == 1


async def test_the_hourly_series(day_store):
    report = await report_for_period(day_store, the_day())
    hours = report.hourly

    assert len(hours) == 24 and hours[0].start == local(0)
    assert [h.arrivals for h in hours][9:13] == [2, 1, 1, 1]  # 09 has #1 and its follow-up
    assert sum(h.arrivals for h in hours) == 8
    assert [i for i, h in enumerate(hours) if h.answers] == [9, 12, 19]
    # Overdue at the end of each hour: #7 all day; #8 (due 14:00) from the 15:00 mark on.
    # #4 (due 18:00) is answered exactly at 19:00, so it is never counted at an hour's end.
    assert [h.overdue for h in hours[:14]] == [1] * 14
    assert [h.overdue for h in hours[14:]] == [2] * 10


async def test_the_channel_filter(day_store):
    report = await report_for_period(day_store, the_day(), channel="vk")

    assert report.scope == "vk"
    # vk opened: #4, #5, #6, #8; same day: #4 only.
    assert (report.opened, report.same_day.part, report.same_day.whole) == (4, 1, 4)
    assert list(report.same_day_by_channel) == ["vk"]
    assert report.received == 4
    assert report.acknowledged == 2  # #4, #6
    assert (report.ack_latency.p50, report.ack_latency.p90) == (60, 60)  # #6 only
    assert report.first_response["all"].p50 == 28800
    assert (report.promises.part, report.promises.whole) == (0, 2)  # #4, #8 broken
    assert report.escalations == {"2h-unanswered": 2}
    assert report.backlog == {"<1h": 1, "1-4h": 1, "4-24h": 1, ">1d": 0}
    assert report.dead_letters == 1


async def test_a_later_period_sees_the_ticket_left_waiting(day_store):
    """The next morning 08:00: #7 and #8 are still overdue, #5 and #6 not yet."""
    period = make_period("2026-11-18", "2026-11-18T08:00", MSK, now=local(12, day=7))
    report = await report_for_period(day_store, period)

    assert report.opened == 0 and report.same_day.value is None
    # #3 (14h30m), #5 (11h30m), #8 (20h): 4-24h; #6 8h30m: 4-24h; #7 41h: >1d.
    assert report.backlog == {"<1h": 0, "1-4h": 0, "4-24h": 4, ">1d": 1}
    assert len(report.hourly) == 8 and report.hourly[-1].overdue == 2


async def test_the_entry_point_for_code_takes_settings_and_datetimes(day_store, tmp_path):
    """What ``sameday demo`` calls: the backlog is measured at `until` by default."""
    since, until = datetime(*DAY, tzinfo=MSK), datetime(*DAY, tzinfo=MSK) + timedelta(days=1)
    report = await build_report(day_store, make_settings(), since=since, until=until)
    assert report.period.as_of == until and (report.same_day.part, report.opened) == (3, 7)
    assert report.backlog == {"<1h": 1, "1-4h": 1, "4-24h": 2, ">1d": 1}
    chart = await write_chart(day_store, make_settings(), tmp_path / "c.png", until=until)
    assert png_size(chart) == (1200, 840)


async def test_the_table_puts_the_headline_first(day_store):
    report = await report_for_period(day_store, the_day())
    console = Console(file=io.StringIO(), width=100)
    print_report(report, console)
    text = console.file.getvalue()

    assert text.index("Answered the same day: 43%") < text.index("messages received")
    assert "3 of 7 tickets opened" in text
    assert "2h / 16h30m" in text  # first response p50 / p90


# --- through the real core -----------------------------------------------------------------


async def test_tickets_made_by_the_real_inbox_and_desk(sqlite_url, clock):
    """Two tickets at 10:00 Moscow; one answered 45 minutes later, one left waiting."""
    settings = make_settings(staff={"members": [{"name": "anna", "telegram_id": 1}]})
    database = DatabaseSettings(url=sqlite_url)
    upgrade(database)
    store = Store(database)
    inbox, desk = Inbox(store, settings, clock), StaffDesk(store, settings, clock)
    try:
        opened = await inbox.ingest([inbound("m1", author="a"),
                                     inbound("m2", channel="vk", author="b")])
        clock.advance(timedelta(minutes=45))
        reply = await desk.execute(desk.actor_named("anna"), f"/reply {opened.opened[0]} hi")
        assert reply.ok, reply.text
        period = make_period("2026-11-24", None, MSK, now=clock.now())
        report = await report_for_period(store, period)
    finally:
        await store.close()

    assert (report.received, report.opened) == (2, 2)
    assert (report.same_day.part, report.same_day.whole) == (1, 2)
    assert report.first_response["telegram"].p50 == 45 * 60 + 1  # sent_at was START - 1s
    assert report.first_response["vk"].count == 0
    assert sum(h.answers for h in report.hourly) == 1
    assert report.backlog["<1h"] == 1  # the vk ticket, 45 minutes old
    assert report.acknowledged == 2 and report.ack_latency.count == 0  # not delivered yet


# --- the small pure helpers ----------------------------------------------------------------


def test_percentile_is_nearest_rank():
    values = [15, 20, 35, 40, 50]  # the textbook example
    assert [percentile(values, p) for p in (5, 30, 40, 50, 100)] == [15, 20, 20, 35, 50]
    assert percentile([7], 90) == 7 and percentile([], 50) is None


def test_backlog_buckets_include_their_lower_bound():
    hour = timedelta(hours=1)
    assert [backlog_bucket(age) for age in (timedelta(0), hour - timedelta(seconds=1), hour,
                                            4 * hour, 24 * hour - timedelta(seconds=1),
                                            24 * hour)] == \
        ["<1h", "<1h", "1-4h", "4-24h", "4-24h", ">1d"]


def test_same_day_is_the_local_day_not_utc():
    # 20:30 and 21:30 UTC on the 17th are 23:30 on the 17th and 00:30 on the 18th in Moscow.
    assert not same_local_day(datetime(2026, 11, 17, 20, 30, tzinfo=UTC),
                              datetime(2026, 11, 17, 21, 30, tzinfo=UTC), MSK)
    assert same_local_day(datetime(2026, 11, 17, 21, 30, tzinfo=UTC),
                          datetime(2026, 11, 18, 20, 0, tzinfo=UTC), MSK)


def test_a_ticket_waits_again_in_a_new_cycle():
    ticket = TicketFacts(id=1, channel="vk", status=TicketStatus.OPEN, opened_at=local(9),
                         first_due_at=local(18), due_at=local(12, day=1),
                         waiting_since=local(15), first_response_at=local(10))
    assert waiting_since_at(ticket, local(9, 30)) == local(9)
    assert waiting_since_at(ticket, local(11)) is None  # answered, customer not back yet
    assert waiting_since_at(ticket, local(16)) == local(15)


def test_dates_and_times_are_local_to_the_calendar():
    assert parse_moment("2026-11-24", MSK) == datetime(2026, 11, 23, 21, tzinfo=UTC)
    assert parse_moment("2026-11-24", MSK, end=True) == datetime(2026, 11, 24, 21, tzinfo=UTC)
    assert parse_moment("2026-11-24T18:00", MSK) == datetime(2026, 11, 24, 15, tzinfo=UTC)
    assert parse_moment("2026-11-24T18:00+00:00", MSK) == datetime(2026, 11, 24, 18, tzinfo=UTC)
    with pytest.raises(ValueError, match="2026-11-24T18:00"):
        parse_moment("yesterday", MSK)


def test_the_default_period_is_today():
    now = datetime(2026, 11, 24, 22, 30, tzinfo=UTC)  # 01:30 on the 25th in Moscow
    period = make_period(None, None, MSK, now)
    assert (period.since, period.until, period.as_of) == (
        datetime(2026, 11, 24, 21, tzinfo=UTC), datetime(2026, 11, 25, 21, tzinfo=UTC), now)
    only_until = make_period(None, "2026-11-20T15:00", MSK, now)
    assert only_until.since == datetime(2026, 11, 19, 21, tzinfo=UTC)
    with pytest.raises(ValueError, match="empty"):
        make_period("2026-11-25", "2026-11-24", MSK, now)


def test_a_dst_day_has_25_local_hours():
    berlin = ZoneInfo("Europe/Berlin")
    period = make_period("2026-10-25", "2026-10-25", berlin, datetime(2027, 1, 1, tzinfo=UTC))
    assert len(hour_starts(period)) == 25


# --- the command ---------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path):
    """A config whose database is a migrated temporary SQLite file."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'report.db'}"
    upgrade(DatabaseSettings(url=url))
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{url}"\n[calendar]\ntimezone = "Europe/Moscow"\n')
    return path, url


@pytest.fixture
async def filled_config(config_file):
    path, url = config_file
    store = Store(DatabaseSettings(url=url))
    await fill(store)
    await store.close()
    return path


runner = CliRunner()
DAY_ARGS = ["--since", "2026-11-17", "--until", "2026-11-17"]


def test_json_format(filled_config):
    result = runner.invoke(app, ["report", "-c", str(filled_config), *DAY_ARGS,
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["same_day"] == {"answered": 3, "opened": 7, "rate": 0.4286}
    assert data["same_day_by_channel"]["vk"] == {"answered": 1, "opened": 4, "rate": 0.25}
    assert data["first_response_seconds"]["all"] == {"count": 4, "p50": 7200, "p90": 59400}
    assert data["ack_latency_seconds"] == {"count": 4, "p50": 30, "p90": 120}
    assert data["promises"] == {"kept": 3, "judged": 5, "rate": 0.6}
    assert data["escalations"] == {"2h-unanswered": 2, "at-due": 1}
    assert data["backlog"] == {"<1h": 1, "1-4h": 1, "4-24h": 2, ">1d": 1}
    assert data["period"]["timezone"] == "Europe/Moscow"
    assert data["period"]["since"] == "2026-11-16T21:00:00+00:00"


def test_csv_format_with_a_channel(filled_config):
    result = runner.invoke(app, ["report", "-c", str(filled_config), *DAY_ARGS,
                                 "--channel", "telegram", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["name", "channel", "value"]
    assert rows[1] == ["same_day_rate", "telegram", str(round(2 / 3, 4))]  # the headline
    figures = {(name, channel): value for name, channel, value in rows[1:]}
    assert figures[("tickets_opened", "telegram")] == "3"
    assert figures[("first_response_p90_seconds", "telegram")] == "59400.0"
    assert figures[("escalations.at-due", "telegram")] == "1"
    assert figures[("backlog.>1d", "telegram")] == "1"  # #7
    assert figures[("dead_letters", "telegram")] == "0"
    assert not any(channel == "vk" for _, channel, _ in rows[1:])


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_chart_is_written(filled_config, tmp_path):
    chart = tmp_path / "day.png"
    result = runner.invoke(app, ["report", "-c", str(filled_config), *DAY_ARGS,
                                 "--chart", str(chart)])
    assert result.exit_code == 0, result.output
    assert "Answered the same day" in result.stdout
    assert png_size(chart) == (1200, 840)  # 10 x 7 in at 120 dpi


def test_an_empty_database_is_not_an_error(config_file, tmp_path):
    path, _ = config_file
    chart = tmp_path / "empty.png"
    for fmt in ("table", "csv", "json"):
        result = runner.invoke(app, ["report", "-c", str(path), "--format", fmt,
                                     "--chart", str(chart)])
        assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["same_day"] == {"answered": 0, "opened": 0, "rate": None}
    width, height = png_size(chart)
    assert width > 600 and height > 400


@pytest.mark.parametrize("args, message", [
    (["--channel", "fax"], "allowed: max, telegram, twitter, vk"),
    (["--format", "xml"], "allowed: table, csv, json"),
    (["--since", "last week"], "is not a date"),
    (["--since", "2026-11-25", "--until", "2026-11-24"], "the period is empty"),
])
def test_bad_options_are_explained(config_file, args, message):
    path, _ = config_file
    result = runner.invoke(app, ["report", "-c", str(path), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_an_unmigrated_database_is_explained(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "new.db"}"\n')
    result = runner.invoke(app, ["report", "-c", str(path)])
    assert result.exit_code == 1
    assert "sameday db upgrade" in result.output


def test_report_has_help():
    result = runner.invoke(app, ["report", "--help"])
    assert result.exit_code == 0 and "same local calendar day" in result.output
