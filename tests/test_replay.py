"""`sameday replay`: a history through the real core, figures checked by hand."""

from __future__ import annotations

import csv
import itertools
import json
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from core.app.cli import app
from core.config.load import load_settings
from core.config.settings import DatabaseSettings
from core.replay.history import ReplayError, read_history, read_jsonl, read_twcs
from core.replay.runner import replay_history
from core.replay.stream import open_history
from core.store.engine import Store
from core.store.tables import Escalation, Event, Message, Ticket
from tests.conftest import make_settings

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "twcs_sample_5k.csv"
SAMPLE_ROWS = 1200  # enough for hundreds of tickets and escalations, in ~15 s

# UTC calendar, 09:00-18:00 on weekdays, same-day cutoff 17:00, next day due by 12:00.
CALENDAR = {"timezone": "UTC", "country": ""}
AT_DUE = [{"name": "breach", "at_due": True}]

# 2017-10-31 is a Tuesday. Promises (due):
#   101 @1 Tue 09:00 -> Tue 18:00; answered 10:00 (201): same day, kept, 1h
#   105 @1 Tue 11:00 answers our 201 -> same conversation (root 101): a 2nd cycle, answered
#       11:30 (204) before its promise, so it never escalates
#   102 @2 Tue 16:00 -> Tue 18:00; answered 19:00 (202): same day, BROKEN, 3h -> escalates
#   103 @3 Tue 17:30 (after the cutoff) -> Wed 12:00; answered Wed 09:30 (203): kept, 16h
#   104 @4 Tue 20:00 -> Wed 12:00; never answered
# Skipped: 102 again (duplicate), a customer row without a valid time, a company tweet
# answering a tweet not in the file, and a company tweet answering nothing.
TWCS = """tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id
101,1,True,Tue Oct 31 09:00:00 +0000 2017,@Shop my order is late,201,
201,Shop,False,Tue Oct 31 10:00:00 +0000 2017,@1 sorry! It ships today,105,101.0
105,1,True,Tue Oct 31 11:00:00 +0000 2017,@Shop which courier?,204,201.0
204,Shop,False,Tue Oct 31 11:30:00 +0000 2017,@1 DHL,,105
102,2,True,Tue Oct 31 16:00:00 +0000 2017,@Shop refund please,202,
102,2,True,Tue Oct 31 16:00:00 +0000 2017,@Shop refund please,202,
202,Shop,False,Tue Oct 31 19:00:00 +0000 2017,"@2 done,
see DM",,102
103,3,True,Tue Oct 31 17:30:00 +0000 2017,@Shop app crashes,203,
104,4,True,Tue Oct 31 20:00:00 +0000 2017,@Shop hello?,,
106,5,True,yesterday,@Shop broken row,,
203,Shop,False,Wed Nov 01 09:30:00 +0000 2017,@3 update the app,,103
299,Shop,False,Wed Nov 01 09:40:00 +0000 2017,@9 answer to a tweet we do not have,,999
298,Shop,False,Wed Nov 01 09:45:00 +0000 2017,Big sale today!,,
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def ticket_of(store: Store, external_id: str) -> int:
    async with store.session() as session:
        return await session.scalar(sa.select(Message.ticket_id)
                                    .where(Message.external_id == external_id))


async def escalations(store: Store) -> list[Escalation]:
    async with store.session() as session:
        return list(await session.scalars(sa.select(Escalation).order_by(Escalation.id)))


@pytest.fixture
def twcs_file(tmp_path) -> Path:
    path = tmp_path / "history.csv"
    path.write_text(TWCS, encoding="utf-8")
    return path


@pytest.fixture
def kept_db(tmp_path):
    """A database the test can open after the replay (--database)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'kept.db'}"


async def test_twcs_fixture_figures(twcs_file, kept_db):
    settings = make_settings(calendar=CALENDAR, escalation=AT_DUE)
    report = await replay_history(read_history(twcs_file), settings, database_url=kept_db)

    messages = report["messages"]
    assert messages["read"] == {"inbound": 7, "answer": 6}
    assert messages["inbound"] == {
        "rows": 7, "ingested": 5, "skipped": 2,
        "skipped_by_reason": {"created_at is not a Twitter time": 1,
                              "duplicate (already ingested)": 1}}
    assert messages["answers"]["applied"] == 4
    assert messages["answers"]["skipped_by_reason"] == {
        "answers no customer tweet in the file": 2}
    assert report["tickets"] == {"opened": 4, "acknowledgements": 4, "promises": 4,
                                 "promised_for": {"same day": 2, "next day": 2}}
    answers = report["answers"]
    assert answers["answered"] == 3
    assert (answers["same_day"], answers["same_day_rate"]) == (2, 0.5)
    assert (answers["promises_kept"], answers["promises_judged"]) == (2, 4)
    assert answers["unanswered_overdue"] == 1  # 104: due Wed 12:00, the replay ends Thu 00:00
    assert answers["median_first_response_seconds"] == 3 * 3600
    assert report["source"]["until"] == "2017-11-02T00:00:00+00:00"
    assert report["escalations"] == {"total": 2, "tickets": 2, "by_rule": {"breach": 2},
                                     "by_local_hour": {"12": 1, "18": 1}}

    store = Store(DatabaseSettings(url=kept_db))
    try:
        late, silent = await ticket_of(store, "102"), await ticket_of(store, "104")
        assert await ticket_of(store, "105") == await ticket_of(store, "101")  # one thread
        fired = await escalations(store)
        assert [(e.ticket_id, e.rule, e.cycle, e.fired_at) for e in fired] == [
            (late, "breach", 1, at("2017-10-31T18:00")),
            (silent, "breach", 1, at("2017-11-01T12:00"))]
        async with store.session() as session:
            cycles = dict((await session.execute(sa.select(Ticket.id, Ticket.cycle))).all())
        assert cycles[await ticket_of(store, "101")] == 2
    finally:
        await store.close()


async def test_until_stops_escalations_and_judges_only_due_promises(twcs_file):
    """Up to Wed 10:00 the only broken promise is 102's: its late answer escalated."""
    settings = make_settings(calendar=CALENDAR, escalation=AT_DUE)
    report = await replay_history(read_history(twcs_file), settings,
                                  until=at("2017-11-01T10:00"))
    assert report["escalations"]["by_rule"] == {"breach": 1}
    assert report["escalations"]["by_local_hour"] == {"18": 1}
    answers = report["answers"]
    assert (answers["promises_kept"], answers["promises_judged"]) == (2, 3)
    assert answers["unanswered_overdue"] == 0

    with pytest.raises(ReplayError, match="before the last event"):
        await replay_history(read_history(twcs_file), settings, until=at("2017-11-01T09:00"))


def test_conversation_roots_follow_company_answers():
    history = read_twcs(TWCS.splitlines(keepends=True))
    threads = {e.inbound.external_id: e.inbound.thread_key
               for e in history.events if hasattr(e, "inbound")}
    assert threads["101"] == threads["105"] == "conv:101:1"
    assert threads["102"] == "conv:102:2"
    inbound = next(e.inbound for e in history.events if hasattr(e, "inbound"))
    assert inbound.channel == "twitter" and inbound.author_handle == "@1"
    assert inbound.reply_target == {"in_reply_to_tweet_id": "101"}


JSONL = [
    {"at": "2026-11-24T10:00:00+03:00", "kind": "in", "channel": "telegram", "id": "m1",
     "author": "u1", "thread": "chat:u1", "text": "Где мой заказ?"},
    {"at": "2026-11-24T10:20:00+03:00", "kind": "answer", "answers": "m1",
     "text": "Уже в пути"},
    {"at": "2026-11-24T16:30:00+03:00", "kind": "in", "channel": "vk", "id": "c7",
     "author": "42", "text": "не работает оплата"},
    {"at": "2026-11-24T16:40:00+03:00", "kind": "in", "channel": "fax", "id": "f1",
     "author": "x"},
    {"at": "tomorrow", "kind": "in", "channel": "vk", "id": "c8", "author": "42"},
    {"at": "2026-11-24T17:00:00+03:00", "kind": "note", "text": "?"},
    {"at": "2026-11-24T17:05:00+03:00", "kind": "answer", "answers": "nope", "text": "hi"},
]


async def test_jsonl_history(tmp_path):
    """Moscow calendar (09-18, cutoff 17:00): m1 is answered after 20 minutes, c7 (an
    outage keyword, promised within 1h by a rule) is never answered and escalates."""
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(item, ensure_ascii=False) for item in JSONL)
                    + "\n{not json\n\n", encoding="utf-8")
    settings = make_settings(
        calendar={"timezone": "Europe/Moscow", "country": ""},
        promise=[{"name": "outage", "keywords": ["не работает"], "kind": "business_time",
                  "within": "1h"}],
        escalation=AT_DUE)
    report = await replay_history(read_history(path), settings)

    assert report["source"]["format"] == "jsonl"
    messages = report["messages"]
    assert messages["read"] == {"inbound": 4, "answer": 2, "unknown": 2}
    assert messages["inbound"]["ingested"] == 2
    assert messages["inbound"]["skipped_by_reason"] == {
        "channel is not one of max, telegram, twitter, vk": 1, '"at" is not an ISO time': 1}
    assert messages["answers"]["applied"] == 1
    assert messages["answers"]["skipped"] == 1
    assert report["tickets"]["opened"] == 2
    answers = report["answers"]
    assert (answers["same_day"], answers["same_day_rate"]) == (1, 0.5)
    assert (answers["promises_kept"], answers["promises_judged"]) == (1, 2)
    assert answers["median_first_response_seconds"] == 20 * 60
    # c7 at 16:30 Moscow + 1h of business time = 17:30 Moscow.
    assert report["escalations"]["by_local_hour"] == {"17": 1}


def test_jsonl_answers_default_to_the_channel_of_their_question():
    history = read_jsonl(json.dumps(item) for item in JSONL[:2])
    answer = history.events[-1]
    assert (answer.channel, answer.answers) == ("telegram", "m1")


def test_cli_replay_json_and_table(twcs_file, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[calendar]\ntimezone = "UTC"\ncountry = ""\n\n'
                      '[[escalation]]\nname = "breach"\nat_due = true\n', encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["replay", str(twcs_file), "-c", str(config),
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["run"]["staff"] == "replay"  # no staff in the config
    assert report["answers"]["same_day"] == 2

    result = runner.invoke(app, ["replay", str(twcs_file), "-c", str(config),
                                 "--until", "2017-11-01"])
    assert result.exit_code == 0, result.output
    assert "Escalations: 2 on 2 ticket(s)" in result.output
    assert "same-day answer rate" in result.output

    result = runner.invoke(app, ["replay", str(twcs_file), "-c", str(config),
                                 "--staff-name", "nobody"])
    assert result.exit_code == 2
    assert "--staff-name nobody: not a staff member" in result.output

    result = runner.invoke(app, ["replay", str(config), "-c", str(config)])
    assert result.exit_code == 2
    assert "not a TWCS CSV" in result.output


# --- the shared sample of the real TWCS data set ------------------------------------------

needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason=f"{SAMPLE} is absent")


def _inbound_rows(lines) -> int:
    return sum(1 for row in csv.DictReader(lines) if row["inbound"].strip() == "True")


@needs_sample
def test_sample_every_inbound_row_is_accounted_for_when_read():
    history = read_history(SAMPLE)
    with SAMPLE.open(encoding="utf-8", newline="") as handle:
        inbound_rows = _inbound_rows(handle)
    events = sum(1 for e in history.events if hasattr(e, "inbound"))
    skipped = sum(history.skipped.get("inbound", {}).values())
    assert history.read["inbound"] == inbound_rows
    assert events + skipped == inbound_rows


@needs_sample
async def test_sample_replay_is_consistent(kept_db):
    """The first rows of the real sample, with one at_due rule (Moscow calendar)."""
    with SAMPLE.open(encoding="utf-8", newline="") as handle:
        lines = list(itertools.islice(handle, SAMPLE_ROWS + 1))  # + the header
    history = read_twcs(lines, str(SAMPLE))
    history.sort()
    settings = make_settings(escalation=AT_DUE)
    report = await replay_history(history, settings, database_url=kept_db)

    inbound = report["messages"]["inbound"]
    assert inbound["rows"] == _inbound_rows(lines)
    assert inbound["ingested"] + inbound["skipped"] == inbound["rows"]
    tickets = report["tickets"]
    assert 0 < tickets["acknowledgements"] <= tickets["opened"] <= inbound["ingested"]
    assert tickets["promises"] == tickets["opened"]

    store = Store(DatabaseSettings(url=kept_db))
    try:
        async with store.session() as session:
            first_due = {ticket_id: datetime.fromisoformat(data["due_at"]) for ticket_id, data
                         in (await session.execute(sa.select(Event.ticket_id, Event.data)
                                                   .where(Event.kind == "opened"))).all()}
            answered = dict((await session.execute(
                sa.select(Ticket.id, Ticket.first_response_at))).all())
            per_cycle = (await session.execute(
                sa.select(Escalation.ticket_id, Escalation.cycle, sa.func.count())
                .group_by(Escalation.ticket_id, Escalation.cycle))).all()
        fired = await escalations(store)
    finally:
        await store.close()
    assert fired and len(fired) == report["escalations"]["total"]
    assert all(count == 1 for _, _, count in per_cycle)
    for escalation in fired:
        if escalation.cycle == 1:
            due = first_due[escalation.ticket_id]
            assert escalation.fired_at == due
            first_response = answered[escalation.ticket_id]
            assert first_response is None or first_response > due


# --- the fast replay: streamed, many events per transaction, the same results -------------

# Broken data read the same by both readers: a duplicate id whose rows disagree on
# `inbound`, answers that form a cycle (a -> b -> a), a follow-up of a follow-up.
ODD_TWCS = """tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id
1,7,True,Tue Oct 31 09:00:00 +0000 2017,first,,
2,Shop,False,Tue Oct 31 09:05:00 +0000 2017,answer,,1
3,7,True,Tue Oct 31 09:10:00 +0000 2017,again,,2
4,7,True,Tue Oct 31 09:10:00 +0000 2017,and again,,3
5,8,True,Tue Oct 31 10:00:00 +0000 2017,loop,,6
6,Shop,False,Tue Oct 31 10:00:00 +0000 2017,loop answer,,5
9,Shop,False,Tue Oct 31 11:00:00 +0000 2017,first a company tweet,,
9,9,True,Tue Oct 31 11:00:00 +0000 2017,then a customer one,,
10,9,True,Tue Oct 31 11:30:00 +0000 2017,below the odd one,,9
"""

REPLAY_ONLY = ("seconds", "database", "mode", "transactions", "refused_chunks")


def comparable(report: dict) -> dict:
    """A report without what says how it was made (time, mode, database)."""
    run = {k: v for k, v in report["run"].items() if k not in REPLAY_ONLY}
    return {**report, "run": run}


def stored(url: str) -> dict[str, list[tuple]]:
    """Every row of every table of a replay's SQLite database, in id order."""
    from sqlmodel import SQLModel

    path = sa.engine.make_url(url).database
    with sqlite3.connect(path) as connection:
        return {table.name: connection.execute(
            f"SELECT * FROM {table.name} ORDER BY {', '.join(table.primary_key.columns.keys())}"
        ).fetchall() for table in SQLModel.metadata.sorted_tables}


def readers_agree(path: Path) -> None:
    expected = read_history(path)
    with tempfile.TemporaryDirectory() as scratch:
        streamed = open_history(path, Path(scratch) / "index.db")
        try:
            assert list(streamed.events()) == expected.events
            assert streamed.span() == ((expected.events[0].at, expected.events[-1].at)
                                       if expected.events else None)
        finally:
            streamed.close()
    assert list(streamed.read.items()) == list(expected.read.items())  # same order too
    assert {k: list(v.items()) for k, v in streamed.skipped.items()} == \
        {k: list(v.items()) for k, v in expected.skipped.items()}


def test_streamed_history_reads_what_read_history_reads(twcs_file, tmp_path):
    readers_agree(twcs_file)
    odd = tmp_path / "odd.csv"
    odd.write_text(ODD_TWCS, encoding="utf-8")
    readers_agree(odd)
    threads = {e.inbound.external_id: e.inbound.thread_key
               for e in read_history(odd).events if hasattr(e, "inbound")}
    assert threads["1"] == threads["3"] == threads["4"] == "conv:1:7"
    jsonl = tmp_path / "history.jsonl"
    jsonl.write_text("\n".join(json.dumps(item, ensure_ascii=False) for item in JSONL)
                     + "\n{not json\n\n[1]\n", encoding="utf-8")
    readers_agree(jsonl)
    if SAMPLE.exists():
        readers_agree(SAMPLE)


async def replayed_both_ways(path: Path, settings, tmp_path: Path, **fast) -> tuple:
    """The figures and the stored rows of the event-by-event replay and the fast one."""
    urls = [f"sqlite+aiosqlite:///{tmp_path / name}" for name in ("step.db", "fast.db")]
    step = await replay_history(read_history(path), settings, database_url=urls[0],
                                step_by_step=True)
    quick = await replay_history(path, settings, database_url=urls[1], **fast)
    return step, quick, stored(urls[0]), stored(urls[1])


def example_settings():
    return load_settings(Path(__file__).resolve().parents[1] / "config.example.toml",
                         check_secrets=False)


async def test_fast_replay_of_conversations_equals_event_by_event(tmp_path):
    """Synthetic conversations (answers, follow-ups in new cycles, duplicates, answers to
    nothing), config.example.toml's four rules, chunks of 40 events."""
    from bench.replay import write_twcs

    path = tmp_path / "conversations.csv"
    write_twcs(path, 1500, seed=3)
    step, quick, step_rows, quick_rows = await replayed_both_ways(
        path, example_settings(), tmp_path, chunk_events=40)
    assert step["answers"]["answered"] > 100 and step["escalations"]["total"] > 100
    assert step["messages"]["answers"]["applied"] > step["answers"]["answered"]  # cycles
    assert comparable(quick) == comparable(step)
    assert quick["run"]["transactions"] > 10
    assert quick_rows == step_rows


async def test_fast_replay_of_jsonl_equals_event_by_event(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(item, ensure_ascii=False) for item in JSONL),
                    encoding="utf-8")
    step, quick, step_rows, quick_rows = await replayed_both_ways(path, example_settings(),
                                                                  tmp_path)
    assert comparable(quick) == comparable(step)
    assert quick_rows == step_rows


async def test_refused_chunk_is_replayed_event_by_event(tmp_path, monkeypatch):
    """A chunk whose transaction fails is rolled back and replayed through the daemon's
    entry points: the same results as a replay that never failed."""
    from bench.replay import write_twcs
    from core.replay.bulk import BulkReplayer

    path = tmp_path / "conversations.csv"
    write_twcs(path, 400, seed=5)
    chunk = BulkReplayer._chunk
    chunks = []

    async def refuse_the_second(self, groups, until, session):
        chunks.append(len(groups))
        await chunk(self, groups, until, session)  # all done; then the transaction fails
        if len(chunks) == 2:
            raise sa.exc.IntegrityError("INSERT ...", {}, Exception("refused"))

    monkeypatch.setattr(BulkReplayer, "_chunk", refuse_the_second)
    step, quick, step_rows, quick_rows = await replayed_both_ways(
        path, example_settings(), tmp_path, chunk_events=30)
    assert quick["run"]["refused_chunks"] == 1
    assert comparable(quick) == comparable(step)
    assert quick_rows == step_rows


@needs_sample
async def test_sample_fast_replay_equals_event_by_event(tmp_path):
    """The whole shared sample with config.example.toml: the same figures, escalations
    and rows in every table as the event-by-event replay."""
    step, quick, step_rows, quick_rows = await replayed_both_ways(
        SAMPLE, example_settings(), tmp_path)
    assert step["escalations"]["total"] > 1000
    assert comparable(quick) == comparable(step)
    assert quick_rows["escalation"] == step_rows["escalation"]
    assert quick_rows == step_rows
