"""Migrations build the schema from nothing on SQLite and on the real local PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from typer.testing import CliRunner

from core.app.cli import app
from core.config.settings import DatabaseSettings
from core.store.engine import current_revision, sync_url, upgrade

TABLES = {"customer", "ticket", "message", "outbox", "escalation", "cursor", "event",
          "quarantine", "heartbeat", "mention"}


def schema(url: str) -> tuple[set[str], dict[str, set[str]], dict[str, list]]:
    engine = sa.create_engine(sync_url(url))
    try:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names())
        indexes = {t: {i["name"] for i in inspector.get_indexes(t)} for t in tables}
        uniques = {t: [tuple(u["column_names"]) for u in inspector.get_unique_constraints(t)]
                   for t in tables}
        return tables, indexes, uniques
    finally:
        engine.dispose()


def check_schema(url: str) -> None:
    tables, indexes, uniques = schema(url)
    assert TABLES <= tables
    assert "ix_ticket_sweep" in indexes["ticket"]
    assert ("channel", "external_id") in uniques["message"]
    assert ("idempotency_key",) in uniques["outbox"]
    assert ("ticket_id", "rule", "cycle") in uniques["escalation"]
    assert ("channel", "external_id") in uniques["mention"]
    assert "ix_mention_kind" in indexes["mention"]


def test_migrations_on_empty_sqlite_file(tmp_path):
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    assert current_revision(settings) is None
    upgrade(settings)
    check_schema(settings.url)
    assert current_revision(settings) == "0016"
    upgrade(settings)  # running again is a no-op
    assert current_revision(settings) == "0016"


def test_migrations_on_local_postgresql(postgres_url):
    settings = DatabaseSettings(url=postgres_url)
    upgrade(settings)
    check_schema(postgres_url)
    assert current_revision(settings) == "0016"


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path):
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")
    upgrade(settings)
    engine = sa.create_engine(sync_url(settings.url))
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


async def test_store_sessions_have_pragmas(tmp_path):
    from core.store.engine import Store

    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
                                sqlite_busy_timeout_ms=1234)
    store = Store(settings)
    async with store.engine.connect() as connection:
        assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 1234
        assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
    await store.close()


def test_db_upgrade_command(tmp_path):
    db = tmp_path / "cli.db"
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n')
    result = CliRunner().invoke(app, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "0016" in result.output
    check_schema(f"sqlite+aiosqlite:///{db}")


def test_migrations_match_the_models(tmp_path):
    """A model change without a migration would only show up on a deployed database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import core.store.tables  # noqa: F401 - the tables

    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'cmp.db'}")
    upgrade(settings)
    engine = sa.create_engine(sync_url(settings.url))
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert differences == []


async def test_the_sqlite_files_are_private(tmp_path):
    """Issue 12: customers' messages must not be readable by every user of the host."""
    import os
    import stat

    from core.store.engine import Store

    loose = tmp_path / "loose.db"
    loose.touch(mode=0o644)
    for path in (tmp_path / "new.db", loose):
        settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{path}")
        upgrade(settings)
        store = Store(settings)
        async with store.engine.begin() as connection:  # a write: the WAL exists now
            await connection.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            assert name.exists(), name
            assert stat.S_IMODE(os.stat(name).st_mode) == 0o600, name
        await store.close()


def test_migrations_rebuild_tables_that_hold_referenced_rows(tmp_path):
    """SQLite batch migrations copy, drop and rename a table; with rows pointing at it
    (a ticket at its customer) the drop must not fail, and every reference must hold."""
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'full.db'}")
    upgrade(settings, "0011")
    engine = sa.create_engine(sync_url(settings.url))
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO customer (id, channel, external_user_id, tags, created_at) "
            "VALUES (1, 'telegram', '7', '[]', '2026-11-30 09:00:00')")
        connection.exec_driver_sql(
            "INSERT INTO ticket (id, channel, thread_key, customer_id, status, priority, "
            "opened_at, last_customer_at, cycle, escalation_level) VALUES (1, "
            "'telegram', 'chat:7', 1, 'open', 'normal', '2026-11-30 09:00:00', "
            "'2026-11-30 09:00:00', 1, 0)")
    upgrade(settings)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT customer_id FROM ticket").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    engine.dispose()
