"""`sameday report`: the satisfaction survey (CSAT per channel and per staff member, the
response rate) and `--by agent`, checked against figures worked out by hand.

One local day, Tue 17 Nov 2026 in Moscow (UTC+3), written straight into the tables.
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
from core.domain.records import OutboxState
from core.intake.inbox import Inbox
from core.reporting.agents import UNASSIGNED
from core.reporting.chart import render_chart
from core.reporting.period import make_period
from core.reporting.render import print_report
from core.reporting.report import report_for_period
from core.staff.commands import StaffDesk
from core.store.engine import Store, upgrade
from core.store.tables import Customer, Event, Outbox, Survey, Ticket
from tests.conftest import START, make_settings
from tests.helpers import update
from tests.test_survey import said

MSK = ZoneInfo("Europe/Moscow")
DAY = (2026, 11, 17)


def local(hour: int, minute: int = 0, day: int = 0) -> datetime:
    return (datetime(*DAY, hour, minute, tzinfo=MSK) + timedelta(days=day)).astimezone(UTC)


# --- the hand-made day ---------------------------------------------------------------------
#
#  #  chan  opened     first answer (by)          promise      assignee  whose
#  1  tg    09:00      09:30 anna   (1800s)       18:00 kept   anna      anna
#  2  tg    10:00      12:00 boris  (7200s)       18:00 kept   boris     boris
#  3  vk    11:00      19:00 anna   (28800s)      18:00 broken anna      anna
#  4  vk    17:30      +1d 10:00 boris (59400s)   +1d 12 kept  boris     boris (not same day)
#  5  tg    12:00      -                          14:00 broken boris     boris (assignee)
#  6  vk    13:00      -                          18:00 broken -         (unassigned)
#  7  tg    14:00      14:10 anna (600s); boris answers again at 15:00     anna
#  8  vk    -1d 15:00  09:05 boris: opened the day before, answered today
#
# Answers during the day: anna #1 #3 #7 (3 tickets), boris #2 #7 #8 (3 tickets); #4's is
# the next day.
# anna:  tickets 1, 3, 7: waits 600, 1800, 28800 -> p50 1800, p90 28800 (nearest rank);
#        same day 3 of 3; promises 2 of 3.
# boris: tickets 2, 4, 5: waits 7200, 59400 -> p50 7200, p90 59400; same day 1 of 3 (#2);
#        promises 2 of 3 (#5 passed unanswered).
# (unassigned): ticket 6: same day 0 of 1, promises 0 of 1.
#
# Surveys (question delivered at; score):
#  S1 #1 tg anna   10:00  5
#  S2 #2 tg boris  13:00  3
#  S3 #3 vk anna   19:30  4
#  S4 #7 tg anna   15:00  -          (not answered)
#  S5 #8 vk boris  -1d 20:00  1      (delivered the day before: not this day's)
#  S6 #4 vk boris  queued, not delivered (not asked)
# All: asked 4, answered 3 (75%), 2 of 3 rated 4-5, average (5+3+4)/3 = 4.0.
# Telegram: asked 3, answered 2 (5, 3): 1 of 2 rated 4-5, average 4.0. VK: 1 of 1, 4.0.
# anna: asked 3 (S1 S3 S4), answered 2 (5, 4): 2 of 2, average 4.5. boris: 1 of 1 (3).

TICKETS = [
    # id, channel, opened, first answer, due, status, assignee
    (1, "telegram", local(9), local(9, 30), local(18), "closed", "anna"),
    (2, "telegram", local(10), local(12), local(18), "answered", "boris"),
    (3, "vk", local(11), local(19), local(18), "answered", "anna"),
    (4, "vk", local(17, 30), local(10, day=1), local(12, day=1), "answered", "boris"),
    (5, "telegram", local(12), None, local(14), "open", "boris"),
    (6, "vk", local(13), None, local(18), "open", None),
    (7, "telegram", local(14), local(14, 10), local(18), "answered", "anna"),
    (8, "vk", local(15, day=-1), local(9, 5), local(18, day=-1), "answered", "boris"),
]
ANSWERS = [  # ticket, by, at
    (1, "anna", local(9, 30)), (2, "boris", local(12)), (3, "anna", local(19)),
    (4, "boris", local(10, day=1)), (7, "anna", local(14, 10)), (7, "boris", local(15)),
    (8, "boris", local(9, 5)),
]
SURVEYS = [  # id, ticket, channel, agent, delivered at (None: queued), score
    (1, 1, "telegram", "anna", local(10), 5),
    (2, 2, "telegram", "boris", local(13), 3),
    (3, 3, "vk", "anna", local(19, 30), 4),
    (4, 7, "telegram", "anna", local(15), None),
    (5, 8, "vk", "boris", local(20, day=-1), 1),
    (6, 4, "vk", "boris", None, None),
]


async def fill(store: Store) -> None:
    async with store.session() as session, session.begin():
        session.add(Customer(id=1, channel="telegram", external_user_id="t", created_at=local(0)))
        session.add(Customer(id=2, channel="vk", external_user_id="v", created_at=local(0)))
        await session.flush()
        for ticket_id, channel, opened, first, due, status, assignee in TICKETS:
            session.add(Ticket(id=ticket_id, channel=channel, thread_key=f"t{ticket_id}",
                               customer_id=1 if channel == "telegram" else 2, status=status,
                               opened_at=opened, waiting_since=opened, last_customer_at=opened,
                               first_response_at=first, due_at=due, assignee=assignee,
                               closed_at=local(9, 40) if status == "closed" else None))
        await session.flush()
        for ticket_id, by, at in ANSWERS:
            channel = TICKETS[ticket_id - 1][1]
            session.add(Event(ticket_id=ticket_id, channel=channel, kind="answered",
                              actor=by, at=at, data={}))
        for survey_id, ticket_id, channel, agent, asked, score in SURVEYS:
            created = asked or local(16)
            session.add(Survey(id=survey_id, ticket_id=ticket_id, cycle=1, channel=channel,
                               customer_id=1 if channel == "telegram" else 2, agent=agent,
                               state="answered" if score else "queued", created_at=created,
                               due_at=created, score=score,
                               answered_at=created + timedelta(minutes=5) if score else None))
            session.add(Outbox(channel=channel, kind="survey", ticket_id=ticket_id,
                               text="rate us", idempotency_key=f"survey:{survey_id}",
                               state=OutboxState.SENT if asked else OutboxState.PENDING,
                               next_attempt_at=created, created_at=created, sent_at=asked))


@pytest.fixture
async def day_store(store):
    await fill(store)
    return store


def the_day():
    return make_period("2026-11-17", "2026-11-17", MSK, now=local(12, day=7))


def by_hand(csat) -> tuple:
    return (csat.asked, csat.responses, csat.satisfied.part, csat.average,
            csat.response_rate.value)


async def test_csat_per_channel_by_hand(day_store):
    report = await report_for_period(day_store, the_day())
    assert by_hand(report.csat) == (4, 3, 2, 4.0, 0.75)
    assert report.csat.satisfied.value == 0.6667
    assert {c: by_hand(v) for c, v in report.csat_by_channel.items()} == {
        "telegram": (3, 2, 1, 4.0, 0.6667), "vk": (1, 1, 1, 4.0, 1.0)}
    assert report.csat.distribution() == {1: 0, 2: 0, 3: 1, 4: 1, 5: 1}


async def test_per_agent_figures_by_hand(day_store):
    report = await report_for_period(day_store, the_day())
    assert list(report.agents) == ["anna", "boris", UNASSIGNED]
    anna, boris, nobody = (report.agents[n] for n in ("anna", "boris", UNASSIGNED))
    assert (anna.tickets_answered, anna.answers, anna.opened) == (3, 3, 3)
    assert (anna.first_response.count, anna.first_response.p50,
            anna.first_response.p90) == (3, 1800, 28800)
    assert (anna.same_day.part, anna.same_day.whole) == (3, 3)
    assert (anna.promises.part, anna.promises.whole) == (2, 3)
    assert by_hand(anna.csat) == (3, 2, 2, 4.5, 0.6667)

    assert (boris.tickets_answered, boris.answers, boris.opened) == (3, 3, 3)
    assert (boris.first_response.count, boris.first_response.p50,
            boris.first_response.p90) == (2, 7200, 59400)
    assert (boris.same_day.part, boris.same_day.whole) == (1, 3)
    assert (boris.promises.part, boris.promises.whole) == (2, 3)
    assert by_hand(boris.csat) == (1, 1, 0, 3.0, 1.0)

    assert (nobody.tickets_answered, nobody.opened, nobody.first_response.count) == (0, 1, 0)
    assert (nobody.same_day.part, nobody.same_day.whole) == (0, 1)
    assert (nobody.promises.part, nobody.promises.whole) == (0, 1)
    # The rows add up to the report's totals.
    assert sum(a.opened for a in report.agents.values()) == report.opened == 7
    assert sum(a.same_day.part for a in report.agents.values()) == report.same_day.part
    assert sum(a.promises.whole for a in report.agents.values()) == report.promises.whole


async def test_a_channel_filter_narrows_the_survey_and_the_agents(day_store):
    period = the_day()
    report = await report_for_period(day_store, period, "vk")
    assert by_hand(report.csat) == (1, 1, 1, 4.0, 1.0)
    assert list(report.csat_by_channel) == ["vk"]
    assert report.agents["anna"].opened == 1 and report.agents["boris"].opened == 1
    assert report.agents["boris"].tickets_answered == 1  # #8, answered today on VK


async def test_the_tables_show_satisfaction_and_staff(day_store):
    report = await report_for_period(day_store, the_day())
    console = Console(file=io.StringIO(), width=140)
    print_report(report, console, by_agent=True)
    text = console.file.getvalue()
    assert "67% · 4.0 · 3 of 4" in text  # the summary: rated 4-5 · average · answered
    assert "Satisfaction survey" in text and "By staff member" in text
    anna = next(line for line in text.splitlines() if "│ anna" in line)
    assert "30m" in anna and "8h" in anna and "100% (3 of 3)" in anna
    assert "67% (2 of 3)" in anna and "100% · 4.5 · 2 of 3" in anna
    console = Console(file=io.StringIO(), width=140)
    print_report(report, console)
    assert "By staff member" not in console.file.getvalue()


async def test_the_chart_adds_the_survey(day_store, tmp_path):
    report = await report_for_period(day_store, the_day())
    path = render_chart(report, tmp_path / "day.png")
    data = path.read_bytes()
    assert struct.unpack(">II", data[16:24]) == (1200, 1140)  # 10 x 9.5 in at 120 dpi


# --- the command -----------------------------------------------------------------------------

runner = CliRunner()
DAY_ARGS = ["--since", "2026-11-17", "--until", "2026-11-17"]


@pytest.fixture
async def config_file(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'report.db'}"
    upgrade(DatabaseSettings(url=url))
    store = Store(DatabaseSettings(url=url))
    await fill(store)
    await store.close()
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{url}"\n[calendar]\ntimezone = "Europe/Moscow"\n')
    return path


def test_csv_by_agent(config_file):
    result = runner.invoke(app, ["report", "-c", str(config_file), *DAY_ARGS, "--format",
                                 "csv", "--by", "agent"])
    assert result.exit_code == 0, result.output
    figures = {(n, c): v for n, c, v in list(csv.reader(io.StringIO(result.stdout)))[1:]}
    assert figures[("surveys_asked", "all")] == "4"
    assert figures[("survey_response_rate", "all")] == "0.75"
    assert figures[("csat_satisfied_rate", "telegram")] == "0.5"
    assert figures[("csat_average", "vk")] == "4.0"
    assert figures[("agent.anna.tickets_answered", "all")] == "3"
    assert figures[("agent.anna.first_response_p90_seconds", "all")] == "28800.0"
    assert figures[("agent.boris.same_day_rate", "all")] == "0.3333"
    assert figures[("agent.boris.csat_average", "all")] == "3.0"
    assert figures[(f"agent.{UNASSIGNED}.promises_kept_rate", "all")] == "0.0"
    plain = runner.invoke(app, ["report", "-c", str(config_file), *DAY_ARGS, "--format",
                                "csv"])
    assert "agent." not in plain.stdout and "surveys_asked" in plain.stdout


def test_json_by_agent(config_file):
    result = runner.invoke(app, ["report", "-c", str(config_file), *DAY_ARGS, "--format",
                                 "json", "--by", "agent"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["csat"]["all"] == {
        "asked": 4, "responses": 3, "response_rate": 0.75, "average": 4.0, "satisfied": 2,
        "satisfied_rate": 0.6667, "scores": {"1": 0, "2": 0, "3": 1, "4": 1, "5": 1}}
    assert data["agents"]["anna"]["first_response_seconds"] == {"count": 3, "p50": 1800,
                                                                "p90": 28800}
    assert data["agents"]["boris"]["promises"] == {"kept": 2, "judged": 3, "rate": 0.6667}
    assert data["agents"]["anna"]["csat"]["average"] == 4.5
    assert "agents" not in json.loads(runner.invoke(app, [
        "report", "-c", str(config_file), *DAY_ARGS, "--format", "json"]).stdout)


def test_table_by_agent_and_a_bad_by(config_file):
    result = runner.invoke(app, ["report", "-c", str(config_file), *DAY_ARGS, "--by",
                                 "agent"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "By staff member" in result.stdout and "boris" in result.stdout
    result = runner.invoke(app, ["report", "-c", str(config_file), "--by", "person"])
    assert result.exit_code == 2
    assert "--by person: allowed: channel, agent" in result.output


# --- through the real core -----------------------------------------------------------------


async def test_the_real_desk_and_inbox_make_the_same_figures(store, clock):
    """Anna answers and closes #1, Boris #2; both surveys go out at 10:10; the customer
    of #1 types "5", the customer of #2 presses 2. Report of the day, by agent."""
    settings = make_settings(
        staff={"members": [{"name": "anna", "telegram_id": 1},
                           {"name": "boris", "telegram_id": 2}]},
        survey={"when": "after_close", "delay": "10m"})
    inbox, desk = Inbox(store, settings, clock), StaffDesk(store, settings, clock)
    await inbox.ingest([said("m1", 501), said("m2", 502)])
    clock.advance(timedelta(minutes=30))
    for ticket, name in ((1, "anna"), (2, "boris")):
        await desk.execute(desk.actor_named(name), f"/reply {ticket} готово")
        await desk.execute(desk.actor_named(name), f"/close {ticket}")
    clock.advance(timedelta(minutes=10))
    await update(store, Outbox.__table__.update().where(Outbox.kind == "survey")
                 .values(state=OutboxState.SENT, sent_at=clock.now()))
    clock.advance(timedelta(minutes=3))
    await inbox.ingest([said("m3", 501, "5")])
    await desk.answer_survey("telegram", 2, 2, "502")
    report = await report_for_period(store, make_period("2026-11-24", None, MSK,
                                                        now=clock.now()))
    assert by_hand(report.csat) == (2, 2, 1, 3.5, 1.0)
    assert by_hand(report.agents["anna"].csat) == (1, 1, 1, 5.0, 1.0)
    assert by_hand(report.agents["boris"].csat) == (1, 1, 0, 2.0, 1.0)
    assert report.agents["anna"].first_response.p50 == 30 * 60 + 1  # sent_at START - 1s
    assert (report.agents["boris"].tickets_answered, report.agents["boris"].opened) == (1, 1)
    assert report.received == 2  # the typed "5" is an answer, not a message received
    assert clock.now() - START == timedelta(minutes=43)
