"""`sameday db migrate-from-sqlite`: a shop's SQLite database copied into PostgreSQL.

A team that outgrows one process moves to PostgreSQL without losing its history. The
copy reads the SQLite file in ONE read transaction (a consistent snapshot, while the
daemon keeps running on it: WAL lets readers and the writer go on together) and writes
the empty PostgreSQL database in ONE transaction: a copy that fails leaves the target as
empty as it was. Every table of the schema is copied in foreign-key order, rows with their
ids (answers, cards and audit events name them), values through the same column types
the daemon uses (times stay UTC, JSON stays JSON); what points at a later row of its own
table (a ticket merged into a newer one, a customer linked to another) is filled in once
the table is in. The id sequences then continue after the copied ids, and the row counts
of both databases are compared table by table before the commit.

Not copied: ``heartbeat`` (which processes were alive, on the old database: the new
replicas write their own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import SQLModel

from core.config.settings import DatabaseSettings
from core.store import tables  # noqa: F401 - registers the tables in SQLModel.metadata
from core.store.engine import is_sqlite, sync_url, upgrade
from core.store.revision import database_revision, head_revision

SKIPPED = ("heartbeat",)
CHUNK = 1_000  # rows read and written at a time: memory stays flat


class TransferError(Exception):
    """Why the copy was refused (nothing was written)."""


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


def migrate_from_sqlite(source_url: str, target: DatabaseSettings,
                        progress: Callable[[str, int], None] = lambda table, rows: None
                        ) -> list[Copied]:
    """Copy every sameday table from the SQLite database at ``source_url`` into the
    empty PostgreSQL database of ``target`` (brought to the newest schema first)."""
    source = DatabaseSettings(url=source_url)
    _check(source, target)
    # The sqlite3 module in autocommit mode: the BEGIN below is the snapshot's own.
    reader = sa.create_engine(sync_url(source.url), connect_args={"isolation_level": None})
    writer = sa.create_engine(sync_url(target.url))
    try:
        with writer.connect() as probe:
            _refuse_rows(probe)  # before migrating it: a database in use stays untouched
        upgrade(target)
        with reader.connect() as read, writer.begin() as write:
            read.exec_driver_sql("BEGIN")  # one snapshot of the running shop's database
            _refuse_rows(write)  # (again, inside the transaction that writes)
            copied = [_copy_table(read, write, table, progress) for table in _tables()]
            _continue_sequences(write)
            _compare(read, write)
        return copied
    finally:
        reader.dispose()
        writer.dispose()


def _check(source: DatabaseSettings, target: DatabaseSettings) -> None:
    if not is_sqlite(source.url):
        raise TransferError(f"{source.url}: not a SQLite URL (sqlite+aiosqlite:///path/to/"
                            "sameday.db)")
    path = sa.engine.make_url(sync_url(source.url)).database
    if not path or path == ":memory:":
        raise TransferError(f"{source.url}: name the SQLite file to copy")
    if is_sqlite(target.url) or not target.url.startswith("postgresql"):
        raise TransferError(f"[database] url = {target.url!r}: the target must be "
                            "PostgreSQL (postgresql+psycopg://user@host:5432/db)")
    head, revision = head_revision(), database_revision(source)
    if revision != head:
        raise TransferError(f"{source.url} is at schema revision {revision!r}, this version "
                            f"at {head!r}: stop the daemon, run `sameday db upgrade` on the "
                            "SQLite database (or start this version's daemon on it once), "
                            "then copy")


def _tables() -> list[sa.Table]:
    return [t for t in SQLModel.metadata.sorted_tables if t.name not in SKIPPED]


def _refuse_rows(target: sa.Connection) -> None:
    present = set(sa.inspect(target).get_table_names())
    filled = [f"{t.name} ({n} rows)" for t in _tables() if t.name in present
              and (n := target.execute(sa.select(sa.func.count()).select_from(t)).scalar())]
    if filled:
        raise TransferError("the PostgreSQL database is not empty: " + ", ".join(filled)
                            + "; copy into a new, empty database")


def _copy_table(read: sa.Connection, write: sa.Connection, table: sa.Table,
                progress: Callable[[str, int], None]) -> Copied:
    # Columns naming a row of the same table may name a later one: written afterwards.
    own = [fk.parent.name for fk in table.foreign_keys if fk.column.table is table]
    later: list[dict] = []
    rows = 0
    result = read.execution_options(yield_per=CHUNK).execute(
        sa.select(table).order_by(*table.primary_key.columns))
    for chunk in result.mappings().partitions():
        values = [dict(row) for row in chunk]
        for row in values:
            if any(row[name] is not None for name in own):
                later.append({"pk": row["id"], **{name: row[name] for name in own}})
                row.update(dict.fromkeys(own, None))
        write.execute(table.insert(), values)
        rows += len(values)
        progress(table.name, rows)
    if later:
        write.execute(table.update().where(table.c.id == sa.bindparam("pk"))
                      .values({name: sa.bindparam(name) for name in own}), later)
    return Copied(table.name, rows)


def _continue_sequences(write: sa.Connection) -> None:
    """New rows get ids after the copied ones (the copy wrote the ids itself)."""
    for table in _tables():
        if [c.name for c in table.primary_key.columns] != ["id"]:
            continue  # a key of its own (cursor: channel and name)
        write.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
            f"coalesce(max(id), 1), max(id) IS NOT NULL) FROM {table.name}")


def _compare(read: sa.Connection, write: sa.Connection) -> None:
    for table in _tables():
        count = sa.select(sa.func.count()).select_from(table)
        there, here = read.execute(count).scalar(), write.execute(count).scalar()
        if there != here:
            raise TransferError(f"{table.name}: {there} rows in SQLite, {here} copied; "
                                "nothing was committed")
