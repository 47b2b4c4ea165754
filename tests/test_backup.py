"""`sameday db backup` / `sameday db restore`: a backup taken while a daemon runs and
customers keep writing holds every commit made before it began, and restores into a
database that passes integrity_check at the migrations' head."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import time

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from core.app.cli import app
from core.clock import SystemClock
from core.config.settings import DatabaseSettings
from core.intake.inbox import Inbox
from core.store.backup import BackupError, backup, check_backup, restore, running_daemon
from core.store.engine import Store, current_revision, upgrade
from core.store.tables import Message
from tests.conftest import make_settings
from tests.helpers import inbound
from tests.test_daemon import Running, write_config


def head() -> str:
    from core.store.backup import known_revisions

    return known_revisions()[1]


def sqlite_settings(path) -> DatabaseSettings:
    return DatabaseSettings(url=f"sqlite+aiosqlite:///{path}")


def external_ids(path) -> set[str]:
    connection = sqlite3.connect(path)
    try:
        return {row[0] for row in connection.execute("SELECT external_id FROM message")}
    finally:
        connection.close()


def integrity(path) -> str:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        connection.close()


async def ingest_until(inbox: Inbox, stop: asyncio.Event, committed: list[str],
                       prefix: str, limit: int = 5000) -> None:
    """One message per transaction, as fast as the database takes them (bounded)."""
    for n in range(limit):
        if stop.is_set():
            return
        external_id = f"{prefix}{n}"
        await inbox.ingest([inbound(external_id, author=f"c{n % 40}",
                                    text=f"message {n} " + "x" * 300)])
        committed.append(external_id)  # the ingest returned: committed


@pytest.mark.parametrize(("pages", "gives_up"), [(1, False), (1, True), (1024, False)])
async def test_a_backup_under_traffic_of_a_running_daemon_restores_with_nothing_lost(
        tmp_path, pages, gives_up, monkeypatch):
    if gives_up:  # stepping stops after 8 steps and finishes in one read transaction
        monkeypatch.setattr("core.store.backup.MAX_STEPS_FACTOR", 0)
    live = tmp_path / "live"
    live.mkdir(mode=0o700)
    database = live / "sameday.db"
    config = tmp_path / "config.toml"
    write_config(config, database)
    settings = sqlite_settings(database)
    upgrade(settings)
    store = Store(settings)
    inbox = Inbox(store, make_settings(database={"url": settings.url}), SystemClock())
    daemon = Running(config)
    try:
        daemon.wait_for("sameday is running")
        committed: list[str] = []
        stop = asyncio.Event()
        # A database of some size first (many pages to copy), then traffic throughout.
        await ingest_until(inbox, asyncio.Event(), committed, "pre-", limit=300)
        traffic = asyncio.create_task(ingest_until(inbox, stop, committed, "live-"))
        await asyncio.sleep(0.3)
        before = set(committed)  # committed before the backup began
        target = tmp_path / "backups" / "sameday-backup.db"
        target.parent.mkdir()
        waited = []

        def after_first_step(_remaining: int, _total: int) -> None:
            # Hold the backup (in its thread) until customers' messages are committed
            # while it runs: bounded, whatever the machine's speed.
            if not waited:
                waited.append(True)
                deadline = time.monotonic() + 20
                while len(committed) < len(before) + 5 and time.monotonic() < deadline:
                    time.sleep(0.01)

        result = await asyncio.to_thread(backup, settings, target, pages=pages,
                                         on_step=after_first_step)
        during = len(committed)
        assert during >= len(before) + 5, "no commit while the backup ran"
        assert not traffic.done(), "the traffic stopped during the backup"
        stop.set()
        await traffic
        assert daemon.process.poll() is None
        # The daemon was beating meanwhile: a restore into its database is refused.
        with pytest.raises(BackupError, match="stop the daemon|locked"):
            restore(settings, target)
    finally:
        await store.close()
        daemon.process.send_signal(signal.SIGTERM)
        daemon.process.wait(timeout=30)
    assert result.path == target and result.revision == head()
    assert result.gave_up_stepping == gives_up
    if pages == 1 and not gives_up:
        assert result.steps >= result.pages  # copied page by page, in a bounded loop
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert not (tmp_path / "backups" / ".sameday-backup.db.partial").exists()
    saved = external_ids(target)
    assert before <= saved, f"missing from the backup: {sorted(before - saved)[:5]}"
    assert len(before) >= 300

    # Restore into a fresh location, as on a new machine.
    fresh = tmp_path / "fresh" / "sameday.db"
    fresh.parent.mkdir(mode=0o700)
    restored = restore(sqlite_settings(fresh), target)
    assert restored.kept is None and restored.revision == head()
    assert integrity(fresh) == "ok"
    assert current_revision(sqlite_settings(fresh)) == head()
    assert before <= external_ids(fresh)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o600
    # The restored database is one the daemon's store reads and writes.
    again = Store(sqlite_settings(fresh))
    try:
        async with again.session() as session:
            assert await session.scalar(sa.select(sa.func.count()).select_from(Message)) \
                == len(saved)
    finally:
        await again.close()

    # The daemon stopped: the restore over its database goes ahead and keeps the old one.
    everything = external_ids(database)
    assert everything > before
    replaced = restore(settings, target)
    assert replaced.kept == live / "sameday.db.before-restore"
    assert external_ids(replaced.kept) == everything  # the old file whole, WAL folded in
    assert external_ids(database) == saved
    assert integrity(database) == "ok"
    assert not (live / "sameday.db-wal").exists() or \
        (live / "sameday.db-wal").stat().st_size == 0


def make_db(path, revision: bool = True) -> None:
    settings = sqlite_settings(path)
    upgrade(settings)
    if not revision:
        connection = sqlite3.connect(path)
        connection.execute("DROP TABLE alembic_version")
        connection.commit()
        connection.close()


def test_restore_refuses_what_is_not_a_sound_sameday_database(tmp_path):
    database = tmp_path / "sameday.db"
    make_db(database)
    settings = sqlite_settings(database)
    original = database.read_bytes()

    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    with pytest.raises(BackupError, match="not an SQLite database"):
        restore(settings, text)

    foreign = tmp_path / "foreign.db"
    connection = sqlite3.connect(foreign)
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    connection.close()
    with pytest.raises(BackupError, match="not a sameday database"):
        restore(settings, foreign)

    unknown = tmp_path / "future.db"
    make_db(unknown)
    connection = sqlite3.connect(unknown)
    connection.execute("UPDATE alembic_version SET version_num = 'ffff_future'")
    connection.commit()
    connection.close()
    with pytest.raises(BackupError, match="unknown to this version"):
        restore(settings, unknown)

    damaged = tmp_path / "damaged.db"
    make_db(damaged)
    data = bytearray(damaged.read_bytes())
    page = 4096
    for offset in range(2 * page, min(len(data), 6 * page)):  # scribble over b-tree pages
        data[offset] = 0x5A
    damaged.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="integrity_check|cannot be read"):
        check_backup(damaged)
    with pytest.raises(BackupError):
        restore(settings, damaged)

    assert database.read_bytes() == original
    assert not (tmp_path / "sameday.db.before-restore").exists()


async def test_a_recent_heartbeat_of_a_live_process_refuses_the_restore_unless_forced(
        tmp_path):
    from datetime import UTC, datetime

    from core.store.process import THIS_PROCESS

    database = tmp_path / "sameday.db"
    make_db(database)
    good = tmp_path / "good.db"
    make_db(good)
    store = Store(sqlite_settings(database))
    await store.beat(datetime.now(UTC))  # this process is alive and beat just now
    await store.close()
    reason = running_daemon(database)
    assert reason and THIS_PROCESS in reason
    with pytest.raises(BackupError, match="--force"):
        restore(sqlite_settings(database), good)
    result = restore(sqlite_settings(database), good, force=True)
    assert result.kept == tmp_path / "sameday.db.before-restore"
    # A second restore would overwrite the kept file: refused.
    with pytest.raises(BackupError, match="before-restore exists"):
        restore(sqlite_settings(database), good, force=True)

    # A heartbeat of a process of this host that is gone does not count.
    other = tmp_path / "other.db"
    make_db(other)
    connection = sqlite3.connect(other)
    connection.execute("INSERT INTO heartbeat (process, beat_at) VALUES (?, ?)",
                       (THIS_PROCESS.rsplit(":", 2)[0] + ":999999999:dead",
                        datetime.now(UTC).replace(tzinfo=None).isoformat(" ")))
    connection.commit()
    connection.close()
    assert running_daemon(other) is None


def test_cli_backup_and_restore(tmp_path):
    database = tmp_path / "sameday.db"
    make_db(database)
    config = tmp_path / "config.toml"
    write_config(config, database)
    runner = CliRunner()
    target = tmp_path / "copy.db"
    done = runner.invoke(app, ["db", "backup", str(target), "-c", str(config)])
    assert done.exit_code == 0, done.output
    assert "backup written" in done.output and stat.S_IMODE(os.stat(target).st_mode) == 0o600
    again = runner.invoke(app, ["db", "backup", str(target), "-c", str(config)])
    assert again.exit_code == 1 and "exists" in again.output
    done = runner.invoke(app, ["db", "restore", str(target), "-c", str(config)])
    assert done.exit_code == 0, done.output
    assert "before-restore" in done.output
    assert (tmp_path / "sameday.db.before-restore").exists()


def test_postgresql_backup_refuses_with_the_pg_dump_hint(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[database]\nurl = "postgresql+psycopg://root@127.0.0.1:5432/shop"\n'
                      '[staff]\nchat = "console"\n')
    runner = CliRunner()
    for command in (["db", "backup", str(tmp_path / "x.db")],
                    ["db", "restore", str(tmp_path / "x.db")]):
        done = runner.invoke(app, [*command, "-c", str(config)])
        assert done.exit_code == 1
        assert "pg_dump --format=custom" in done.output and "pg_restore" in done.output
        assert "shop" in done.output
    assert not (tmp_path / "x.db").exists()


def test_a_missing_database_or_target_folder_is_refused(tmp_path):
    settings = sqlite_settings(tmp_path / "none.db")
    with pytest.raises(BackupError, match="no database file"):
        backup(settings, tmp_path / "b.db")
    make_db(tmp_path / "none.db")
    with pytest.raises(BackupError, match="no such folder"):
        backup(settings, tmp_path / "nowhere" / "b.db")
