"""`sameday db migrate-from-sqlite`: a shop's SQLite database copied into PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel
from typer.testing import CliRunner

from core.app.cli import app
from core.config.settings import DatabaseSettings
from core.store.engine import Store, sync_url, upgrade
from core.store.tables import Message
from core.store.transfer import SKIPPED, TransferError, migrate_from_sqlite
from tests.test_merge_link import World

TABLES = [t for t in SQLModel.metadata.sorted_tables if t.name not in SKIPPED]


@pytest.fixture
async def shop(sqlite_url, clock):
    """A SQLite database the real core filled: tickets, a /note, an escalation, a ticket
    merged into a NEWER one (a reference to a later row of its own table), linked
    customers, an answer, outbox rows, events."""
    upgrade(DatabaseSettings(url=sqlite_url))
    store = Store(DatabaseSettings(url=sqlite_url))
    w = World(store, clock, escalation=[{"name": "nudge", "after": "1h", "clock": "wall"}])
    older = await w.write("c1", channel="vk", author="7", thread="wall:1_10:7",
                          text="где мой заказ 4411?")
    await w.ok(f"/note {older} курьер звонил")
    clock.advance(timedelta(minutes=50))
    newer = await w.write("c2", channel="vk", author="7", thread="wall:1_11:7",
                          text="hello?? order 4411")
    await w.deliver_cards()
    clock.advance(timedelta(minutes=15))
    assert await w.escalator.sweep()
    await w.ok(f"/merge {newer} {older}")
    telegram = await w.write("t1", channel="telegram", author="501", handle="@kate")
    await w.ok(f"/link {telegram} {newer}")
    await w.ok(f"/reply {telegram} Заказ в пути, будет завтра.")
    await store.close()
    return sqlite_url


def table_rows(url: str) -> dict[str, list[dict]]:
    """Every row of every copied table, as the daemon's column types read them."""
    engine = sa.create_engine(sync_url(url))
    with engine.connect() as connection:
        found = {t.name: [dict(r) for r in connection.execute(
            sa.select(t).order_by(*t.primary_key.columns)).mappings()] for t in TABLES}
    engine.dispose()
    return found


async def test_every_row_arrives_as_it_was_and_new_rows_continue_after(shop, postgres_url,
                                                                       clock):
    copied = migrate_from_sqlite(shop, DatabaseSettings(url=postgres_url))
    before, after = table_rows(shop), table_rows(postgres_url)
    assert after == before
    assert {c.table: c.rows for c in copied} == {t: len(r) for t, r in before.items()}
    assert len(before["ticket"]) == 3 and len(before["escalation"]) == 1
    [merged] = [t for t in after["ticket"] if t["merged_into"] is not None]
    assert merged["merged_into"] > merged["id"]  # filled in after the later row
    assert sum(c["person_id"] is not None for c in after["customer"]) == 2

    # The team goes on on PostgreSQL: new rows get new ids, the history stays searchable.
    store = Store(DatabaseSettings(url=postgres_url))
    w = World(store, clock)
    ticket = await w.write("t2", channel="telegram", author="900", text="новый вопрос")
    assert ticket > max(t["id"] for t in before["ticket"])
    async with store.session() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Message)) == \
            len(before["message"]) + 1
        assert (await w.ok("/find заказ")).text.count("#") >= 1
    await store.close()


async def test_a_database_in_use_is_refused_and_left_as_it_was(shop, postgres_url):
    migrate_from_sqlite(shop, DatabaseSettings(url=postgres_url))
    kept = table_rows(postgres_url)
    with pytest.raises(TransferError, match=r"not empty: customer \(2 rows\), ticket \(3 "):
        migrate_from_sqlite(shop, DatabaseSettings(url=postgres_url))
    assert table_rows(postgres_url) == kept


def test_wrong_sources_and_targets_say_what_is_expected(tmp_path, postgres_url):
    sqlite_file = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    with pytest.raises(TransferError, match="not a SQLite URL"):
        migrate_from_sqlite(postgres_url, DatabaseSettings(url=postgres_url))
    with pytest.raises(TransferError, match="the target must be PostgreSQL"):
        migrate_from_sqlite(sqlite_file, DatabaseSettings(url=sqlite_file))
    upgrade(DatabaseSettings(url=sqlite_file), "0014")  # an older version's database
    with pytest.raises(TransferError, match="run `sameday db upgrade` on the SQLite"):
        migrate_from_sqlite(sqlite_file, DatabaseSettings(url=postgres_url))


def test_the_command_prints_the_counts(shop, postgres_url, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{postgres_url}"\n')
    done = CliRunner().invoke(app, ["db", "migrate-from-sqlite", shop, "-c", str(config)])
    assert done.exit_code == 0, done.output
    assert "ticket                3 rows" in done.output
    assert "the row counts match" in done.output
    again = CliRunner().invoke(app, ["db", "migrate-from-sqlite", shop, "-c", str(config)])
    assert again.exit_code == 1
    assert "migrate-from-sqlite refused: the PostgreSQL database is not empty" in again.output

