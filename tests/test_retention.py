"""Retention ([retention]): the daily purge empties only what is due, in bounded batches,
raw payloads before media before texts; reports, /metrics and the CLI."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from typer.testing import CliRunner

from core.app.cli import app
from core.app.health import DatabaseCollector
from core.clock import VirtualClock
from core.config.load import ConfigError
from core.config.settings import DatabaseSettings
from core.domain.payload import unpack
from core.domain.records import Attachment, Direction, OutboxState, TicketStatus
from core.intake.inbox import Inbox
from core.reporting.render import print_report
from core.reporting.report import build_report
from core.retention.purge import PURGED_EVENT, Retention, steps
from core.staff.commands import Actor, StaffDesk
from core.store.engine import Store, upgrade
from core.store.tables import (
    Customer,
    Event,
    Mention,
    Message,
    Outbox,
    Quarantine,
    Survey,
    Ticket,
)
from tests.conftest import START, make_settings
from tests.helpers import inbound, rows, update

DAY = timedelta(days=1)
STAFF = {"chat": "console", "members": [{"name": "anna", "role": "admin"}]}
KEEP = {"messages": "365d", "raw": "30d", "media": "90d"}
runner = CliRunner()


def message(external_id: str, author: str, text: str, at: datetime,
            edited: bool = False):
    """A customer message with a photo and the platform payload, as adapters make it."""
    return dataclasses.replace(
        inbound(external_id, author=author, text=text, at=at, handle=f"@{author}"),
        raw={"message_id": external_id, "text": text},
        attachments=(Attachment("photo", file_id=f"photo-{external_id}"),), edited=edited)


class World:
    def __init__(self, store, **retention):
        self.store = store
        self.clock = VirtualClock(START)
        self.settings = make_settings(staff=STAFF, retention={**KEEP, **retention})
        self.inbox = Inbox(store, self.settings, self.clock)
        self.desk = StaffDesk(store, self.settings, self.clock)
        self.retention = Retention(store, self.clock)

    async def write(self, external_id: str, author: str, text: str, edited: bool = False):
        await self.inbox.ingest([message(external_id, author, text, self.clock.now(), edited)])

    async def staff(self, line: str) -> None:
        reply = await self.desk.execute(Actor("anna", "admin"), line)
        assert reply.ok, reply.text

    async def run(self, at: datetime, **options):
        self.clock.set(at)
        return await self.retention.run(self.settings.retention, **options)

    async def messages(self, ticket_id: int) -> list[Message]:
        return await rows(self.store, sa.select(Message).where(Message.ticket_id == ticket_id)
                          .order_by(Message.id))


async def three_tickets(world: World) -> None:
    """#1 closed at START, #2 closed two days later, #3 open; each answered; every
    outbox row delivered; #1's message was edited by the customer."""
    await world.write("a1", "u1", "my order 1001 is late")
    await world.write("a1", "u1", "my order 1002 is late", edited=True)
    await world.write("b1", "u2", "my phone is +7 900 000 00 00")
    await world.write("c1", "u3", "where is my parcel")
    for ticket in (1, 2, 3):
        await world.staff(f"/reply {ticket} we are on it")
    await world.staff("/close 1")
    world.clock.set(START + 2 * DAY)
    await world.staff("/close 2")
    await update(world.store, sa.update(Outbox).values(state=OutboxState.SENT,
                                                         sent_at=START))


def texts(messages: list[Message]) -> list[str]:
    return [m.text for m in messages]


async def test_only_what_is_due_is_purged_and_open_tickets_never(store):
    world = World(store)
    await three_tickets(world)
    before = {t: await world.messages(t) for t in (1, 2, 3)}
    assert all(m.text for t in before for m in before[t])
    customer_texts = {t: [m.text for m in before[t] if m.direction == Direction.IN]
                      for t in before}
    assert customer_texts[1] == ["my order 1002 is late"]
    [edited] = await rows(store, sa.select(Event).where(Event.kind == "edited"))
    assert edited.data["old"] == "my order 1001 is late"

    # #1 closed 366 days ago, #2 364 days ago: a dry run counts, changes nothing.
    dry = await world.run(START + 366 * DAY, dry_run=True)
    assert dry.counts["messages"] == len(before[1])  # the customer's and the answer
    assert dry.counts["raw"] == 2 and dry.counts["media"] == 2  # #1 and #2
    assert dry.counts["copies"] >= 2  # #1's sent rows, its edit event
    for ticket in (1, 2, 3):
        assert texts(await world.messages(ticket)) == texts(before[ticket])
    assert not await rows(store, sa.select(Event).where(Event.kind == PURGED_EVENT))

    run = await world.run(START + 366 * DAY)
    assert run.counts == dry.counts and run.complete
    one, two, three = [await world.messages(t) for t in (1, 2, 3)]
    assert texts(one) == [""] * len(before[1])
    assert all(m.raw is None and not m.attachments for m in one)
    # #2: texts kept (364 days < 365), raw payload (30d) and media (90d) gone.
    assert texts(two) == texts(before[2])
    incoming = [m for m in two if m.direction == Direction.IN]
    assert incoming and all(m.raw is None and not m.attachments for m in incoming)
    # #3 is open: everything kept, however old.
    assert texts(three) == texts(before[3])
    [customer] = [m for m in three if m.direction == Direction.IN]
    assert unpack(customer.raw)["text"] == "where is my parcel"
    assert customer.attachments[0]["file_id"] == "photo-c1"
    # Copies of #1's texts: its edit's old and new text, its sent outbox rows.
    [edited] = await rows(store, sa.select(Event).where(Event.kind == "edited"))
    assert "old" not in edited.data and "new" not in edited.data and edited.data["purged"]
    outbox = await rows(store, sa.select(Outbox).order_by(Outbox.id))
    assert all(row.text == "" for row in outbox if row.ticket_id == 1)
    assert all(row.text for row in outbox if row.ticket_id in (2, 3))
    assert not any("1001" in row.text or "1002" in row.text for row in outbox)
    # The tickets stay, with their times.
    tickets = await rows(store, sa.select(Ticket).order_by(Ticket.id))
    assert [t.status for t in tickets] == [TicketStatus.CLOSED, TicketStatus.CLOSED,
                                           TicketStatus.ANSWERED]
    # Nothing is purged twice; the run is recorded either way.
    again = await world.run(START + 366 * DAY + timedelta(hours=1))
    assert again.total == 0
    events = await rows(store, sa.select(Event).where(Event.kind == PURGED_EVENT)
                        .order_by(Event.id))
    assert [e.data["messages"] for e in events] == [len(before[1]), 0]
    assert events[0].data["kept"] == KEEP


async def test_raw_payloads_go_first_then_media_then_texts(store):
    world = World(store)
    await world.write("a1", "u1", "the text")
    await world.staff("/close 1")

    async def state():
        [customer] = [m for m in await world.messages(1) if m.direction == Direction.IN]
        return customer.raw is not None, bool(customer.attachments), customer.text

    assert (await world.run(START + 29 * DAY)).total == 0
    assert await state() == (True, True, "the text")
    assert (await world.run(START + 31 * DAY)).counts["raw"] == 1
    assert await state() == (False, True, "the text")
    assert (await world.run(START + 89 * DAY)).total == 0
    assert (await world.run(START + 91 * DAY)).counts["media"] == 1
    assert await state() == (False, False, "the text")
    assert (await world.run(START + 364 * DAY)).total == 0
    assert (await world.run(START + 366 * DAY)).counts["messages"] >= 1
    assert await state() == (False, False, "")


async def test_forever_keeps_and_a_text_purge_takes_raw_and_media_along(store):
    world = World(store, messages="forever", raw="forever", media="forever")
    await world.write("a1", "u1", "the text")
    await world.staff("/close 1")
    assert (await world.run(START + 3000 * DAY)).total == 0
    # texts kept 10 days, raw and media "forever": they go with the text.
    world.settings = make_settings(staff=STAFF, retention={"messages": "10d",
                                                           "raw": "forever",
                                                           "media": "400d"})
    run = await world.run(START + 11 * DAY)
    assert run.counts["raw"] == 1 and run.counts["media"] == 1
    [customer] = [m for m in await world.messages(1) if m.direction == Direction.IN]
    assert (customer.text, customer.raw, customer.attachments) == ("", None, None)


async def test_mentions_quarantine_and_survey_comments(store):
    world = World(store)
    async with store.session() as session, session.begin():
        for name, at in (("old", START - 400 * DAY),):
            session.add(Mention(channel="twitter", external_id=name, kind="retweet",
                                author_id="u9", author_handle="@nine", author_name="Nine",
                                text=f"{name} post", created_at=at, raw=b"x",
                                attachments=[{"kind": "photo", "url": "https://x/p"}]))
            session.add(Quarantine(channel="vk", external_id=f"held-{name}", payload="{}",
                                   error="boom", quarantined_at=at))
            session.add(Quarantine(channel="vk", external_id=f"released-{name}",
                                   payload="{}", error="boom", quarantined_at=at,
                                   state="released", released_at=at))
    await world.write("a1", "u1", "the text")
    await world.staff("/close 1")
    async with store.session() as session, session.begin():
        session.add(Survey(ticket_id=1, cycle=1, channel="telegram", customer_id=1,
                           created_at=START, due_at=START, state="answered", score=2,
                           comment="you were rude, call me at +7 900", answered_at=START))
    await world.run(START + 366 * DAY)
    mentions = {m.external_id: m for m in await rows(store, sa.select(Mention))}
    assert (mentions["old"].text, mentions["old"].author_name, mentions["old"].raw,
            mentions["old"].attachments) == ("", None, None, None)
    quarantine = {q.external_id: q for q in await rows(store, sa.select(Quarantine))}
    assert quarantine["held-old"].payload == "" and quarantine["held-old"].state == "purged"
    assert quarantine["released-old"].payload == ""
    [survey] = await rows(store, sa.select(Survey))
    assert survey.comment is None and survey.score == 2  # the score is a figure: kept


async def test_young_mentions_and_held_payloads_are_kept(store):
    world = World(store)
    async with store.session() as session, session.begin():
        session.add(Mention(channel="twitter", external_id="m", kind="retweet",
                            author_id="u9", author_name="Nine", text="post",
                            created_at=START - 40 * DAY, raw=b"x",
                            attachments=[{"kind": "photo"}]))
        session.add(Quarantine(channel="vk", external_id="held", payload="{}",
                               error="boom", quarantined_at=START - 400 * DAY))
        session.add(Quarantine(channel="vk", external_id="released", payload="{}",
                               error="boom", quarantined_at=START - 400 * DAY,
                               state="released", released_at=START - 20 * DAY))
    run = await world.run(START)
    # The mention is 40 days old: its raw payload goes, media (90d) and text stay.
    [mention] = await rows(store, sa.select(Mention))
    assert (mention.raw, mention.text, mention.author_name) == (None, "post", "Nine")
    assert mention.attachments == [{"kind": "photo"}]
    quarantine = {q.external_id: q for q in await rows(store, sa.select(Quarantine))}
    # Held for 400 days: the only copy of that message, gone with texts (365d);
    # released 20 days ago: kept until 30 days.
    assert quarantine["held"].state == "purged"
    assert quarantine["released"].payload == "{}"
    assert run.counts["raw"] == 2  # the mention's payload and the held one


async def closed_ticket_with_messages(store, count: int, closed_at: datetime) -> None:
    async with store.session() as session, session.begin():
        session.add(Customer(channel="telegram", external_user_id="u1", created_at=START))
        await session.flush()
        session.add(Ticket(channel="telegram", thread_key="chat:u1", customer_id=1,
                           status=TicketStatus.CLOSED, opened_at=closed_at,
                           last_customer_at=closed_at, closed_at=closed_at))
        await session.flush()
        await session.execute(sa.insert(Message), [
            {"ticket_id": 1, "channel": "telegram", "direction": Direction.IN,
             "external_id": f"m{i}", "text": f"message {i}", "created_at": closed_at}
            for i in range(count)])


async def test_batches_are_bounded_short_transactions(store, clock):
    await closed_ticket_with_messages(store, 1200, START - 400 * DAY)
    run = await Retention(store, clock, batch=500).run(
        make_settings(retention=KEEP).retention)
    assert run.counts["messages"] == 1200
    assert run.transactions == 3 and run.largest == 500
    left = await rows(store, sa.select(Message.text).where(Message.text != ""))
    assert left == []


async def test_the_batch_bound_leaves_the_rest_for_the_next_run(store, clock):
    await closed_ticket_with_messages(store, 25, START - 400 * DAY)
    retention = Retention(store, clock, batch=10, max_batches=2)
    first = await retention.run(make_settings(retention=KEEP).retention)
    assert first.counts["messages"] == 20 and not first.complete
    second = await retention.run(make_settings(retention=KEEP).retention)
    assert second.counts["messages"] == 5 and second.complete


async def test_a_stopping_daemon_ends_the_run_between_batches(store, clock):
    await closed_ticket_with_messages(store, 30, START - 400 * DAY)
    settings = make_settings(retention=KEEP).retention
    names = [step.name for step in steps(settings, clock.now())]
    calls = []

    def stopping() -> bool:  # asked before each step and after each batch
        calls.append(1)
        return len(calls) > names.index("message text") + 1  # after its first batch

    run = await Retention(store, clock, batch=10).run(settings, stopping=stopping)
    assert run.counts["messages"] == 10 and not run.complete


async def test_the_report_of_a_purged_period_does_not_change(store):
    world = World(store)
    await three_tickets(world)
    week = dict(since=START - DAY, until=START + 7 * DAY, now=START + 7 * DAY)
    before = (await build_report(store, world.settings, **week)).to_dict(by_agent=True)
    assert before["tickets_opened"] == 3 and before["messages_received"] == 3
    run = await world.run(START + 366 * DAY)
    assert run.counts["messages"] > 0
    after = (await build_report(store, world.settings, **week)).to_dict(by_agent=True)
    assert after == before
    assert after["purged"] == {"messages": 0, "raw": 0, "media": 0, "copies": 0}
    # The report of the day of the purge says what was purged.
    today = await build_report(store, world.settings, since=START + 366 * DAY - DAY,
                               until=START + 367 * DAY, now=START + 367 * DAY)
    assert today.purged == run.counts
    assert ("purged.messages", "all", run.counts["messages"]) in today.figures()
    console = Console(record=True, width=120)
    print_report(today, console)
    assert "purged by retention" in console.export_text()


async def test_metrics_count_what_was_purged_and_when(store):
    world = World(store)
    await three_tickets(world)

    async def scrape() -> dict[tuple[str, str | None], float]:
        collector = DatabaseCollector(store, world.clock, lambda: world.settings, dict)
        await collector.refresh()
        registry = CollectorRegistry()
        registry.register(collector)
        text = generate_latest(registry).decode()
        return {(s.name, s.labels.get("kind")): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}

    first = await scrape()
    assert first[("sameday_purged_total", "messages")] == 0
    assert ("sameday_retention_last_run_timestamp_seconds", None) not in first
    run = await world.run(START + 366 * DAY)
    assert (await world.run(START + 366 * DAY + timedelta(hours=1))).total == 0
    figures = await scrape()
    for kind in ("messages", "raw", "media", "copies"):
        assert figures[("sameday_purged_total", kind)] == run.counts[kind]
    assert figures[("sameday_retention_last_run_timestamp_seconds", None)] == \
        (START + 366 * DAY + timedelta(hours=1)).timestamp()


@pytest.mark.parametrize(("value", "message"), [
    ("1y", 'allowed: a time like "30d", "90d" or "365d" (units d, h, m, s), or "forever"'),
    (365, "must be text in quotes"),
    ("99999d", 'too long; at most 3660d, or "forever"'),
    ("", "allowed: a time like"),
])
def test_config_errors_name_the_key_the_value_and_what_is_allowed(value, message):
    with pytest.raises(ConfigError) as caught:
        make_settings(retention={"raw": value})
    [problem] = caught.value.problems
    assert problem.key == "retention.raw" and problem.value == value
    assert message in problem.message


def test_config_defaults_and_forever():
    kept = make_settings().retention
    assert (kept.messages, kept.raw, kept.media) == (365 * DAY, 30 * DAY, 90 * DAY)
    forever = make_settings(retention={"messages": "Forever", "media": "0d"}).retention
    assert forever.messages is None and forever.media == timedelta(0)
    assert forever.kept("raw") == 30 * DAY and forever.kept("messages") is None
    with pytest.raises(ConfigError, match="unknown key"):
        make_settings(retention={"texts": "1d"})


def test_the_cli_runs_it_and_a_dry_run_changes_nothing(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'sameday.db'}"
    config = tmp_path / "sameday.toml"
    config.write_text(f'[database]\nurl = "{url}"\n\n[retention]\nmessages = "365d"\n')
    upgrade(DatabaseSettings(url=url))

    async def fill():
        store = Store(DatabaseSettings(url=url))
        try:
            await closed_ticket_with_messages(store, 3, datetime.now(UTC) - 400 * DAY)
        finally:
            await store.close()

    async def left():
        store = Store(DatabaseSettings(url=url))
        try:
            return await rows(store, sa.select(Message.text).where(Message.text != ""))
        finally:
            await store.close()

    asyncio.run(fill())
    result = runner.invoke(app, ["retention", "run", "-c", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would purge messages: 3" in result.stdout
    assert len(asyncio.run(left())) == 3
    result = runner.invoke(app, ["retention", "run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "purged messages: 3" in result.stdout and "texts 365d" in result.stdout
    assert asyncio.run(left()) == []


async def test_the_daemon_purges_daily_and_records_the_run(store, clock, tmp_path):
    from core.app.daemon import PURGE_FIRST_AFTER, Daemon
    from core.escalation.sweep import Escalator

    await closed_ticket_with_messages(store, 3, START - 400 * DAY)
    settings = make_settings(retention=KEEP)
    daemon = Daemon(tmp_path / "sameday.toml", settings, clock=clock, factories={})
    daemon.store = store
    daemon.escalator = Escalator(store, settings, clock)
    daemon.retention = Retention(store, clock)
    daemon._start_scheduler()
    try:
        job = daemon.scheduler.get_job("retention")
        assert job.trigger.interval == DAY
        wait = job.next_run_time - datetime.now(UTC)
        assert PURGE_FIRST_AFTER - timedelta(seconds=30) < wait <= PURGE_FIRST_AFTER
    finally:
        daemon.scheduler.shutdown(wait=False)
    await daemon._purge()
    assert await rows(store, sa.select(Message.text).where(Message.text != "")) == []
    [event] = await rows(store, sa.select(Event).where(Event.kind == PURGED_EVENT))
    assert event.data["messages"] == 3 and event.at == clock.now()
    daemon.stop()
    await daemon._purge()  # a stopping daemon starts no purge
    assert len(await rows(store, sa.select(Event).where(Event.kind == PURGED_EVENT))) == 1
