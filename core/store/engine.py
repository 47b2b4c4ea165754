"""The database: async engine and sessions, SQLite pragmas, alembic migrations.

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys on,
and every transaction starts with BEGIN IMMEDIATE: two writers in one process then wait
for each other instead of failing with "database is locked" when a read transaction
tries to become a write one. PostgreSQL is chosen by URL and needs nothing special.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from core.config.settings import TEXTS_LOGGER, DatabaseSettings
from core.store.process import THIS_PROCESS
from core.store.tables import Heartbeat
from core.store.units import T, UnitRunner, Work
from core.store.writes import WriteHealth

if TYPE_CHECKING:  # alembic is loaded only to migrate (~10 MB a process keeps)
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
# Execution option of a session that only reads and wants one state of the database
# throughout (core.app.tallies): SQLite begins it deferred, not IMMEDIATE.
READ_SNAPSHOT = "sameday_read_snapshot"
UNIT_THREADS = 4  # PostgreSQL: transactions of units that may run at once


def sync_url(url: str) -> str:
    """The same database for synchronous use (alembic): aiosqlite -> pysqlite."""
    return url.replace("sqlite+aiosqlite://", "sqlite://", 1)


def sqlite_pragmas(settings: DatabaseSettings) -> list[str]:
    return [
        "PRAGMA journal_mode=WAL",
        f"PRAGMA busy_timeout={settings.sqlite_busy_timeout_ms}",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA synchronous={settings.sqlite_synchronous.upper()}",
    ]


def _prepare_sqlite(engine: sa.Engine, settings: DatabaseSettings) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001 - DB-API objects
        # Take over transaction control from the sqlite3 module so BEGIN IMMEDIATE works.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in sqlite_pragmas(settings):
            cursor.execute(pragma)
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection):  # noqa: ANN001
        # A read-only snapshot (/metrics: READ_SNAPSHOT) takes no write lock: in WAL mode
        # a deferred reader sees one state of the database, never waits for a writer
        # and never holds one up.
        read_only = connection.get_execution_options().get(READ_SNAPSHOT)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _hide_parameters() -> bool:
    # A failed statement's error quotes its parameters: customers' texts, which must not
    # reach the log (or a quarantine row's error) unless [daemon] log_texts is on.
    return not logging.getLogger(TEXTS_LOGGER).isEnabledFor(logging.DEBUG)


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    engine = create_async_engine(settings.url, pool_pre_ping=not is_sqlite(settings.url),
                                 hide_parameters=_hide_parameters())
    if is_sqlite(settings.url):
        private_sqlite_file(settings.url)
        _prepare_sqlite(engine.sync_engine, settings)
    return engine


def make_units_engine(settings: DatabaseSettings) -> sa.Engine:
    """The synchronous engine units of work run on (core.store.units), same database."""
    engine = sa.create_engine(sync_url(settings.url), pool_pre_ping=not is_sqlite(settings.url),
                              hide_parameters=_hide_parameters())
    if is_sqlite(settings.url):
        _prepare_sqlite(engine, settings)
    return engine


def private_sqlite_file(url: str) -> None:
    """Create the SQLite file readable by its owner only (0600), or make it so: it holds
    customers' messages. SQLite gives the -wal and -shm files it creates the same mode;
    ones left by an older install are made 0600 here. A missing folder is created 0700
    (an existing one is left as it is: docs/privacy.md asks for a folder of its own)."""
    path = sa.engine.make_url(sync_url(url)).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    folder = Path(path).absolute().parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(descriptor)
    os.chmod(path, 0o600)
    for suffix in ("-wal", "-shm", "-journal"):
        side = Path(path + suffix)
        if side.exists() and side.stat().st_mode & 0o077:
            os.chmod(side, 0o600)


# PostgreSQL error classes that mean "not now" rather than "never": a lost connection
# (08), a full disk or too many connections (53), a server shutting down or starting
# (57P), a read-only server such as a standby after a failover (25006), and a
# transaction that lost a race (40001 serialization, 40P01 deadlock).
TRANSIENT_SQLSTATES = ("08", "53", "57P", "25006", "40001", "40P01")


def is_transient(error: BaseException) -> bool:
    """A database that is unavailable for now (down, locked, disk full, read-only,
    connection lost): worth waiting for -- unlike a statement it refuses (a constraint,
    bad data)."""
    if isinstance(error, sa.exc.DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or ""
        return isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError) \
            or error.connection_invalidated or sqlstate.startswith(TRANSIENT_SQLSTATES)
    return isinstance(error, ConnectionError | TimeoutError)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class Store:
    """One engine and its session factory; the only way the core reaches the database."""

    def __init__(self, settings: DatabaseSettings):
        self.settings = settings
        self.engine = make_engine(settings)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # One database thread for SQLite (one writer anyway), a few for PostgreSQL.
        self.units = UnitRunner(make_units_engine(settings),
                                threads=1 if self.is_sqlite else UNIT_THREADS)
        self.writes = WriteHealth()  # what fails to commit now (core.store.writes)

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.settings.url)

    def session(self) -> AsyncSession:
        return self.sessions()

    async def unit(self, work: Work[T]) -> T:
        """Run ``work(session)`` as one transaction in one crossing into the database
        (core.store.units): for the busy paths -- ingest, the outbox, staff commands,
        the sweep."""
        return await self.units.run(work)

    @property
    def sync_engines(self) -> list[sa.Engine]:
        """Both engines' synchronous sides (for connect-time hooks)."""
        return [self.engine.sync_engine, self.units.engine]

    async def upgrade(self) -> None:
        """Apply pending migrations (blocking alembic work runs in a thread)."""
        await asyncio.to_thread(upgrade, self.settings)

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def beat(self, now: datetime) -> None:
        """Commit this process's heartbeat row: proves the database takes writes, and
        that this process still owns the outbox rows it claimed."""
        try:
            await self._beat(now)
        except sa.exc.IntegrityError:  # /healthz and the dispatcher raced to the first
            await self._beat(now)

    async def _beat(self, now: datetime) -> None:
        async with self.session() as session, session.begin():
            beat = sa.update(Heartbeat).where(Heartbeat.process == THIS_PROCESS)
            if not (await session.execute(beat.values(beat_at=now))).rowcount:
                # The first beat; rows of processes gone a day are pruned meanwhile.
                await session.execute(sa.delete(Heartbeat).where(
                    Heartbeat.beat_at < now - timedelta(days=1)))
                session.add(Heartbeat(process=THIS_PROCESS, beat_at=now))

    async def close(self) -> None:
        await asyncio.to_thread(self.units.close)
        await self.engine.dispose()


def alembic_config(settings: DatabaseSettings) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_settings"] = settings
    return config


def upgrade(settings: DatabaseSettings, revision: str = "head") -> None:
    """Bring the schema to `revision` (the daemon does this at start)."""
    if is_sqlite(settings.url):
        private_sqlite_file(settings.url)
    from alembic import command

    command.upgrade(alembic_config(settings), revision)


def current_revision(settings: DatabaseSettings) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = sa.create_engine(sync_url(settings.url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
