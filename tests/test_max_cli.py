"""MAX through the core's own commands, unchanged: `/queue max`, replay's JSONL with
`"channel": "max"` lines, and the same-day report listing MAX next to the others.

Nothing here imports bots.max: the core finds the channel through its entry point
(`sameday.channels`), which is the point of adding a channel without touching core/.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rich.console import Console

from core.intake.inbox import Inbox
from core.replay.history import read_history
from core.replay.runner import replay_history
from core.reporting.period import make_period
from core.reporting.render import print_report, report_csv
from core.reporting.report import report_for_period
from core.staff.commands import StaffDesk
from core.store.tables import Ticket
from tests.conftest import make_settings
from tests.helpers import inbound

MSK = ZoneInfo("Europe/Moscow")
STAFF = {"chat": "console", "members": [{"name": "anna", "telegram_id": 1, "role": "admin"}]}
BOT = "sameday_bot"
# A MAX customer as the adapter files them: the message id is the mid, the thread the
# dialog with the user (see bots/max/adapter.py).
MID = "mid.0000000008a53b9b019c44bd612d33e0"


def max_message(external_id: str = MID, author: str = "10001", text: str = "Где заказ?"):
    return inbound(external_id, channel="max", author=author, thread=f"dialog:{author}",
                   text=text)


def ticket_ids(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^#(\d+) ", text, re.M)]


async def test_queue_max_lists_the_max_tickets_only(sqlite_store, clock):
    settings = make_settings(staff=STAFF)
    inbox, desk = Inbox(sqlite_store, settings, clock), StaffDesk(sqlite_store, settings, clock)
    opened = await inbox.ingest([max_message(), inbound("t1", author="u2"),
                                 inbound("v1", channel="vk", author="u3")])
    max_ticket, telegram_ticket, vk_ticket = opened.opened
    anna = desk.actor_named("anna")

    everything = await desk.execute(anna, "/queue", BOT)
    assert everything.ok, everything.text
    assert sorted(ticket_ids(everything.text)) == sorted(opened.opened)
    [max_line] = [line for line in everything.text.splitlines()
                  if line.startswith(f"#{max_ticket} ")]
    assert "MAX" in max_line  # the channel's label from its description

    only_max = await desk.execute(anna, "/queue max", BOT)
    assert only_max.ok, only_max.text
    assert ticket_ids(only_max.text) == [max_ticket]
    assert ticket_ids((await desk.execute(anna, "/queue vk", BOT)).text) == [vk_ticket]
    assert ticket_ids((await desk.execute(anna, "/queue telegram", BOT)).text) == \
        [telegram_ticket]


async def test_replay_reads_max_lines_of_a_jsonl_history(tmp_path):
    """Two MAX customers at 10:00 and 16:30 Moscow; the first answered 20 minutes later
    (an answer line without "channel" takes its question's), the second never."""
    lines = [
        {"at": "2026-11-24T10:00:00+03:00", "kind": "in", "channel": "max", "id": MID,
         "author": "10001", "thread": "dialog:10001", "text": "Где мой заказ?"},
        {"at": "2026-11-24T10:20:00+03:00", "kind": "answer", "answers": MID,
         "text": "Уже в пути"},
        {"at": "2026-11-24T16:30:00+03:00", "kind": "in", "channel": "max",
         "id": "mid.ffffbdb48e6c3775019d496b34394b84", "author": "123456789",
         "thread": "chat:-70801090403050:123456789", "text": "@sameday_bot не работает"},
    ]
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(item, ensure_ascii=False) for item in lines),
                    encoding="utf-8")
    kept = f"sqlite+aiosqlite:///{tmp_path / 'kept.db'}"
    settings = make_settings(calendar={"timezone": "Europe/Moscow", "country": ""})

    report = await replay_history(read_history(path), settings, database_url=kept)

    messages = report["messages"]
    assert messages["read"]["inbound"] == 2 and messages["inbound"]["ingested"] == 2
    assert messages["inbound"]["skipped_by_reason"] == {}
    assert messages["answers"]["applied"] == 1
    assert report["tickets"]["opened"] == 2
    assert report["answers"]["same_day"] == 1
    assert report["answers"]["median_first_response_seconds"] == 20 * 60
    engine = sa.create_engine(kept.replace("+aiosqlite", ""))
    with engine.connect() as db:
        channels = db.scalars(sa.select(Ticket.channel)).all()
    engine.dispose()
    assert channels == ["max", "max"]


async def test_the_report_lists_max_next_to_the_other_channels(sqlite_store, clock):
    """At 10:00 Moscow a MAX and a Telegram customer write; the MAX one is answered 30
    minutes later, the same day."""
    settings = make_settings(staff=STAFF)
    inbox, desk = Inbox(sqlite_store, settings, clock), StaffDesk(sqlite_store, settings, clock)
    opened = await inbox.ingest([max_message(), inbound("t1", author="u2")])
    clock.advance(timedelta(minutes=30))
    reply = await desk.execute(desk.actor_named("anna"), f"/reply {opened.opened[0]} Едет")
    assert reply.ok, reply.text
    period = make_period("2026-11-24", None, MSK, now=clock.now())

    report = await report_for_period(sqlite_store, period)
    assert set(report.same_day_by_channel) == {"max", "telegram"}
    max_rate = report.same_day_by_channel["max"]
    assert (max_rate.part, max_rate.whole) == (1, 1)
    assert report.first_response["max"].p50 == 30 * 60 + 1  # sent_at was START - 1s

    console = Console(file=io.StringIO(), width=120)
    print_report(report, console)
    table = console.file.getvalue()
    assert re.search(r"^\S\s*max\s.*\b1\b.*100%", table, re.M), table
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    assert ["same_day_rate", "max", "1.0"] in rows

    only_max = await report_for_period(sqlite_store, period, channel="max")
    assert (only_max.opened, only_max.scope) == (1, "max")
