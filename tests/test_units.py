"""Units of work (core.store.units) and many rows per statement (core.store.bulk), on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from core.delivery.enqueue import outbox_row
from core.domain.records import OutboxKind, OutboxState
from core.store.bulk import insert_returning, insert_rows, pairs_in
from core.store.tables import Customer, Outbox
from core.store.units import run_inline

NOW = datetime(2026, 11, 24, 7, 0, 0, 123456, tzinfo=UTC)


def customer(n: int, channel: str = "vk") -> dict:
    return {"channel": channel, "external_user_id": str(n), "handle": f"@u{n}",
            "name": "Анна" if n % 2 else None, "tags": ["vip"] if n % 3 else [],
            "created_at": NOW + timedelta(seconds=n)}


async def count(store, table) -> int:
    async with store.session() as session:
        return await session.scalar(sa.select(sa.func.count()).select_from(table))


async def test_a_unit_runs_in_a_database_thread_and_commits_as_one(store):
    threads = []

    async def work(session):
        threads.append(threading.current_thread())
        await insert_rows(session, Customer.__table__, [customer(1), customer(2)])
        return await session.scalar(sa.select(sa.func.count()).select_from(Customer))

    assert await store.unit(work) == 2  # its own writes, before the commit
    assert threads[0] is not threading.current_thread()
    assert await count(store, Customer) == 2


async def test_a_failing_unit_leaves_nothing_behind(store):
    async def work(session):
        await insert_rows(session, Customer.__table__, [customer(1)])
        raise ValueError("half-way")

    with pytest.raises(ValueError, match="half-way"):
        await store.unit(work)
    assert await count(store, Customer) == 0


class Elsewhere:
    """Something to wait for that is not the database (a future, a lock, a reply)."""

    def __await__(self):
        yield


async def test_a_unit_that_waits_for_anything_but_its_session_is_refused(store):
    async def work(session):
        await insert_rows(session, Customer.__table__, [customer(1)])
        await Elsewhere()

    with pytest.raises(RuntimeError, match="awaited something besides its database session"):
        await store.unit(work)

    async def sleeps(session):
        await insert_rows(session, Customer.__table__, [customer(2)])
        await asyncio.sleep(0.01)  # the database thread has no event loop to sleep on

    with pytest.raises(RuntimeError):
        await store.unit(sleeps)
    assert await count(store, Customer) == 0


def test_run_inline_returns_what_the_coroutine_returns():
    async def answer():
        return 42
    assert run_inline(answer()) == 42


async def test_results_outlive_the_unit(store):
    async def work(session):
        await insert_rows(session, Customer.__table__, [customer(n) for n in range(5)])
        return await session.execute(sa.select(Customer.external_user_id)
                                     .order_by(Customer.id))

    result = await store.unit(work)  # read after the commit, as an AsyncSession's
    assert [row[0] for row in result] == ["0", "1", "2", "3", "4"]


async def test_insert_rows_stores_what_sqlalchemy_would(store):
    """The same rows through SQLAlchemy's executemany and through the driver-level path
    read back identically: times, JSON, enums, Python-side defaults (lane, recovered)."""
    rows = [outbox_row(channel="vk", kind=OutboxKind.ACK, text=f"Спасибо {n}",
                       target={"peer_id": n, "nested": [1, "два"]}, key=f"k{n}:{path}",
                       now=NOW, ticket_id=None, deadline=NOW + timedelta(hours=n))
            for path in ("orm", "bulk") for n in range(3)]

    async with store.session() as session, session.begin():
        await session.execute(sa.insert(Outbox.__table__), rows[:3])

    async def bulk(session):
        await insert_rows(session, Outbox.__table__, rows[3:])
    await store.unit(bulk)

    async with store.session() as session:
        stored = list(await session.scalars(sa.select(Outbox).order_by(Outbox.id)))
    def seen(row: Outbox) -> tuple:
        return (row.channel, row.kind, row.text, row.target, row.state, row.attempts,
                row.lane, row.recovered, row.deadline_at, row.next_attempt_at,
                row.created_at, row.idempotency_key.split(":")[0])
    assert [seen(r) for r in stored[:3]] == [seen(r) for r in stored[3:]]
    assert stored[3].state == OutboxState.PENDING and stored[3].created_at == NOW


async def test_insert_returning_gives_every_row_its_id(store):
    rows = [customer(n, channel) for channel in ("vk", "telegram") for n in range(700)]

    async def work(session):
        return await insert_returning(session, Customer.__table__, rows,
                                      ("id", "channel", "external_user_id"))
    returned = await store.unit(work)
    assert len(returned) == 1400  # more rows than one statement carries
    async with store.session() as session:
        stored = {(c, u): i for i, c, u in await session.execute(
            sa.select(Customer.id, Customer.channel, Customer.external_user_id))}
    assert {(c, u): i for i, c, u in returned} == stored


async def test_pairs_in_finds_exactly_the_pairs_asked_for(store):
    async def work(session):
        await insert_rows(session, Customer.__table__, [
            customer(1, "vk"), customer(2, "telegram"), customer(2, "vk"), customer(3, "x")])
        rows = await session.execute(
            sa.select(Customer.channel, Customer.external_user_id)
            .where(pairs_in(Customer.channel, Customer.external_user_id,
                            [("vk", "1"), ("telegram", "2"), ("telegram", "9")])))
        return {tuple(row) for row in rows}

    assert await store.unit(work) == {("vk", "1"), ("telegram", "2")}
