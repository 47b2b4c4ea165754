"""/metrics counted incrementally (issue 16): the counters are counted from the tables
once and then by what was added since; at every step they must say what a count from the
tables says (a restart), through answers, dead letters, escalations, /merge, forgetting
and the retention purge; with another process writing to the same database; with rows
committed out of order on PostgreSQL; and the gauges must read through their indexes."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import sqlalchemy as sa

from core.app.health import DatabaseCollector, outbox_waiting, tickets_of_the_day
from core.app.tallies import GAP_HORIZON, snapshot
from core.config.settings import DatabaseSettings
from core.delivery.contract import DeliveryError
from core.delivery.dispatcher import DUE_STATES
from core.escalation.sweep import Escalator
from core.intake.inbox import Inbox
from core.retention.purge import Retention
from core.staff.commands import Actor, StaffDesk
from core.staff.personal import find_customer, forget
from core.store.engine import Store, sync_url, upgrade
from core.store.tables import OUTBOX_WAITING, Customer, Message, Ticket
from tests.conftest import START, make_settings
from tests.helpers import inbound
from tests.test_outbox import RecordingAdapter, dispatcher

ANNA = Actor("anna", "admin")
COUNTERS = ("sameday_messages_received", "sameday_tickets_opened",
            "sameday_tickets_acknowledged", "sameday_tickets_answered",
            "sameday_tickets_escalated", "sameday_dead_letters")


def counters(collector: DatabaseCollector) -> dict:
    """Every figure the tables keep: what must survive a restart unchanged."""
    assert collector.database_up
    return {**{name: collector.figures[name] for name in COUNTERS},
            "noted": collector.noted, "purged": collector.purged,
            "purged_at": collector.purged_at}


class World:
    """The inbox, the desk, the sweep, the dispatcher and the retention purge on one
    store, and the collector of a daemon that has been running all along."""

    def __init__(self, store, clock):
        self.store, self.clock = store, clock
        self.settings = make_settings(
            staff={"chat": "console", "members": [{"name": "anna", "role": "admin"}]},
            escalation=[{"name": "nudge", "after": "1h", "clock": "wall"}],
            retention={"messages": "1d", "raw": "1d", "media": "1d"})
        self.inbox = Inbox(store, self.settings, clock)
        self.desk = StaffDesk(store, self.settings, clock)
        self.escalator = Escalator(store, self.settings, clock)
        self.collector = self.new_collector()

    def new_collector(self) -> DatabaseCollector:
        return DatabaseCollector(self.store, self.clock, lambda: self.settings, dict)

    async def write(self, external_id: str, author: str, thread: str) -> int:
        await self.inbox.ingest([inbound(external_id, author=author, thread=thread,
                                         at=self.clock.now())])
        async with self.store.session() as session:
            return await session.scalar(sa.select(Message.ticket_id)
                                        .where(Message.external_id == external_id))

    async def ok(self, line: str) -> None:
        reply = await self.desk.execute(ANNA, line)
        assert reply.ok, reply.text

    async def figures(self) -> dict:
        """The running collector's counters, checked against a fresh count."""
        await self.collector.refresh()
        running = counters(self.collector)
        restarted = self.new_collector()
        await restarted.refresh()
        assert counters(restarted) == running
        return running


async def test_counters_stay_what_a_count_from_the_tables_says(store, clock):
    w = World(store, clock)
    assert (await w.figures())["sameday_tickets_opened"] == {}
    # 10:00 a customer asks in two threads (A, B), another customer once (C); an X
    # retweet is kept as a non-ticket.
    a = await w.write("a1", "7", "chat:7:a")
    clock.advance(timedelta(minutes=5))
    b = await w.write("b1", "7", "chat:7:b")
    c = await w.write("c1", "8", "chat:8")
    retweet = dataclasses.replace(inbound("rt1", channel="twitter", author="9"),
                                  note="retweet")
    await w.inbox.ingest([retweet])
    figures = await w.figures()
    assert figures["sameday_messages_received"] == {"telegram": 3}
    assert figures["sameday_tickets_opened"] == {"telegram": 3}
    assert figures["sameday_tickets_acknowledged"]["telegram"] >= 2
    assert figures["noted"] == {("twitter", "retweet"): 1}

    # The platform refuses the first row for good: one dead letter.
    adapter = RecordingAdapter([DeliveryError("bot was blocked by the user", permanent=True)])
    await dispatcher(store, clock, adapter).dispatch_once()
    assert (await w.figures())["sameday_dead_letters"] == {"telegram": 1}

    # A is answered twice (one first answer), then its customer writes again.
    clock.advance(timedelta(minutes=5))
    await w.ok(f"/reply {a} on its way")
    await w.ok(f"/reply {a} tracking: 4411")
    assert (await w.figures())["sameday_tickets_answered"] == {"telegram": 1}
    clock.advance(timedelta(minutes=10))
    assert await w.write("a2", "7", "chat:7:a") == a  # A's second waiting cycle

    # 11:25: "nudge" fires on A (cycle 2), B and C (cycle 1).
    clock.advance(timedelta(minutes=65))
    assert len(await w.escalator.sweep()) == 3
    assert (await w.figures())["sameday_tickets_escalated"] == {"telegram": 3}

    # /merge A B moves B's escalation to A: two tickets hold escalations now, and the
    # running collector says so too.
    await w.ok(f"/merge {a} {b}")
    figures = await w.figures()
    assert figures["sameday_tickets_escalated"] == {"telegram": 2}
    assert figures["sameday_messages_received"] == {"telegram": 4}

    # Forgetting C changes no counter (the reports of past periods keep their figures).
    async with store.session() as session, session.begin():  # as `sameday forget` does
        customer = await find_customer(session, f"#{c}", for_update=True)
        await forget(session, w.desk.policy, customer, "anna", clock.now(), "cli")
    after = await w.figures()
    assert after == figures

    # Two days on, the purge empties the forgotten and the merged tickets' texts.
    clock.advance(timedelta(days=2))
    run = await Retention(store, clock).run(w.settings.retention)
    after = await w.figures()
    assert after["purged"] == run.counts and after["purged"]["messages"] > 0
    assert after["purged_at"] == clock.now()
    assert {k: v for k, v in after.items() if k not in ("purged", "purged_at")} == \
        {k: v for k, v in figures.items() if k not in ("purged", "purged_at")}


async def test_rows_written_by_another_process_are_counted(store, database_url, clock):
    """Two replicas on one database: each one's /metrics counts the other's work too."""
    settings = make_settings()
    other = Store(DatabaseSettings(url=database_url))
    try:
        collector = DatabaseCollector(store, clock, lambda: settings, dict)
        await collector.refresh()
        await Inbox(other, settings, clock).ingest([inbound("m1"), inbound("m2", author="u2")])
        await Inbox(store, settings, clock).ingest([inbound("m3", author="u3")])
        await collector.refresh()
        assert collector.figures["sameday_tickets_opened"] == {"telegram": 3}
        assert collector.figures["sameday_messages_received"] == {"telegram": 3}
        elsewhere = DatabaseCollector(other, clock, lambda: settings, dict)
        await elsewhere.refresh()
        assert counters(elsewhere) == counters(collector)
    finally:
        await other.close()


async def test_rows_committed_out_of_order_are_counted_once(postgres_url, clock):
    """PostgreSQL hands out ids at insert, not at commit: a row with a lower id that
    commits after a higher one is counted when it appears, and a rolled-back id is
    looked for no longer than GAP_HORIZON."""
    upgrade(DatabaseSettings(url=postgres_url))
    store = Store(DatabaseSettings(url=postgres_url))
    settings = make_settings()
    inbox = Inbox(store, settings, clock)
    collector = DatabaseCollector(store, clock, lambda: settings, dict)

    async def opened() -> float:
        await collector.refresh()
        return collector.figures["sameday_tickets_opened"].get("vk", 0)

    try:
        await inbox.ingest([inbound("m1", channel="vk")])
        assert await opened() == 1
        async with store.engine.connect() as slow:
            transaction = await slow.begin()
            await insert_ticket(slow, "slow")  # takes the next id, commits last
            await inbox.ingest([inbound("m2", channel="vk", author="u2")])
            assert await opened() == 2
            await transaction.commit()
        assert await opened() == 3
        async with store.engine.connect() as failed:
            transaction = await failed.begin()
            await insert_ticket(failed, "failed")
            await inbox.ingest([inbound("m3", channel="vk", author="u3")])
            await transaction.rollback()
        assert await opened() == 4
        assert collector.tallies.tickets.mark.gaps  # still looked for...
        clock.advance(GAP_HORIZON + timedelta(seconds=1))
        assert await opened() == 4
        assert not collector.tallies.tickets.mark.gaps  # ...until the horizon
        restarted = DatabaseCollector(store, clock, lambda: settings, dict)
        await restarted.refresh()
        assert counters(restarted) == counters(collector)
    finally:
        await store.close()


async def insert_ticket(connection, key: str) -> None:
    customer = (await connection.execute(
        sa.insert(Customer.__table__).values(channel="vk", external_user_id=key, tags=[],
                                             created_at=START).returning(Customer.id))).scalar()
    await connection.execute(sa.insert(Ticket.__table__).values(
        channel="vk", thread_key=key, customer_id=customer, status="open",
        priority="normal", cycle=1, opened_at=START, last_customer_at=START,
        escalation_level=0))


async def test_a_reading_locks_nothing(sqlite_url, clock):
    """The count at the start reads a whole table: on SQLite it must not hold the write
    lock meanwhile (ingest would wait, or fail after its busy timeout)."""
    database = DatabaseSettings(url=sqlite_url, sqlite_busy_timeout_ms=100)
    upgrade(database)
    store = Store(database)
    try:
        inbox = Inbox(store, make_settings(), clock)
        await inbox.ingest([inbound("m1")])
        async with snapshot(store) as session:
            before = await session.scalar(sa.select(sa.func.count()).select_from(Ticket))
            await inbox.ingest([inbound("m2", author="u2")])  # not blocked by the reader
            again = await session.scalar(sa.select(sa.func.count()).select_from(Ticket))
        assert before == again == 1  # one state of the database throughout
    finally:
        await store.close()


def test_the_waiting_rows_index_has_the_dispatchers_states():
    assert OUTBOX_WAITING == "state IN (" + ", ".join(f"'{s}'" for s in DUE_STATES) + ")"


def test_the_gauges_read_only_through_their_indexes(sqlite_url):
    """The outbox depth reads the partial index of waiting rows, today's figures the
    index on opening time: neither reads the history."""
    upgrade(DatabaseSettings(url=sqlite_url))
    engine = sa.create_engine(sync_url(sqlite_url))
    try:
        with engine.connect() as connection:
            for query, index in ((outbox_waiting(), "ix_outbox_waiting"),
                                 (tickets_of_the_day(START, START + timedelta(days=1)),
                                  "ix_ticket_opened")):
                compiled = query.compile(dialect=engine.dialect)
                params = ["2026-11-24 00:00:00"] * len(compiled.positiontup or ())
                plan = connection.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {compiled}", tuple(params)).fetchall()
                assert any(index in row[-1] for row in plan), plan
    finally:
        engine.dispose()
