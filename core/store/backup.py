"""`sameday db backup` and `sameday db restore` for the SQLite database.

A backup is taken with SQLite's online backup API while the daemon runs: every commit
made before the backup began is in the copy, and the copy is one consistent moment of the
database (WAL mode: the daemon's writes go on meanwhile). The copy is made in steps of a
bounded number of pages; a copy that keeps being restarted by the daemon's writes gives
up stepping after a bounded number of steps and finishes in one read transaction (which
in WAL mode blocks no writer). The file is written 0600 next to its final name and moved
into place only when it is complete and passes ``PRAGMA integrity_check``.

A restore replaces the database of a stopped daemon with a backup, after checking that
the backup is a sameday database (an alembic revision this version knows) that passes
``integrity_check``. The database it replaces is kept beside it as
``<database>.before-restore``.

PostgreSQL has its own tools (``pg_dump --format=custom`` and ``pg_restore``): both
commands refuse with that hint.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from core.config.settings import DatabaseSettings
from core.store.engine import is_sqlite, sync_url
from core.store.process import gone_from_this_host

PAGES_PER_STEP = 1024
MAX_STEPS_FACTOR = 4  # steps allowed: this many times the steps of an undisturbed copy
# A heartbeat this recent from a process that may still run means a running daemon
# (daemons beat every 5 s).
RECENT_BEAT = timedelta(seconds=30)
SQLITE_HEADER = b"SQLite format 3\x00"
BEFORE_RESTORE = ".before-restore"


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


def pg_hint(settings: DatabaseSettings) -> str:
    url = sa.engine.make_url(settings.url)
    name = url.database or "sameday"
    return ("the database is PostgreSQL: back it up with its own tools, e.g.\n"
            f"  pg_dump --format=custom --file=sameday.dump {name}\n"
            "and restore it, with the daemon (every replica) stopped, with\n"
            f"  pg_restore --clean --if-exists --no-owner --dbname={name} sameday.dump\n"
            "(see docs/privacy.md, Backups)")


def sqlite_path(settings: DatabaseSettings) -> Path:
    if not is_sqlite(settings.url):
        raise BackupError(pg_hint(settings))
    path = sa.engine.make_url(sync_url(settings.url)).database
    if not path or path == ":memory:" or path.startswith("file:"):
        raise BackupError(f"database.url {settings.url!r}: not a database file")
    return Path(path)


@dataclass(frozen=True)
class BackupResult:
    path: Path
    pages: int
    steps: int
    gave_up_stepping: bool  # the copy was finished in one read transaction
    revision: str | None


def _connect(path: Path, *, timeout: float = 5.0, read_only: bool = False
             ) -> sqlite3.Connection:
    if read_only:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               timeout=timeout, isolation_level=None)
    return sqlite3.connect(path, timeout=timeout, isolation_level=None)


def _private_new_file(path: Path) -> None:
    """Create `path` empty, readable by its owner only; fail if it exists."""
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(descriptor)
    os.chmod(path, 0o600)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _copy(source: sqlite3.Connection, target: sqlite3.Connection, pages: int,
          on_step: Callable[[int, int], None] | None = None) -> tuple[int, bool]:
    """Copy in steps of `pages`; a bounded number of steps, then one last full step.
    Returns (steps, whether stepping gave up)."""
    steps = 0
    limit: list[int] = []

    class _TooManySteps(Exception):
        pass

    def progress(_status: int, remaining: int, total: int) -> None:
        nonlocal steps
        steps += 1
        if not limit:
            limit.append(MAX_STEPS_FACTOR * (total // pages + 1) + 8)
        if on_step is not None:
            on_step(remaining, total)
        if remaining and steps >= limit[0]:
            raise _TooManySteps

    try:
        source.backup(target, pages=pages, progress=progress, sleep=0.05)
        return steps, False
    except _TooManySteps:
        # Writes keep restarting the copy: take it in one step, i.e. one read
        # transaction; in WAL mode the daemon keeps writing meanwhile.
        source.backup(target, pages=-1)
        return steps + 1, True


def integrity(connection: sqlite3.Connection) -> str:
    rows = connection.execute("PRAGMA integrity_check").fetchall()
    return "; ".join(str(row[0]) for row in rows[:5])


def revision_of(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return row[0] if row else None


def backup(settings: DatabaseSettings, target: Path, *, pages: int = PAGES_PER_STEP,
           on_step: Callable[[int, int], None] | None = None) -> BackupResult:
    """Copy the live SQLite database to `target` (which must not exist), 0600.
    ``on_step(remaining, total)`` is called after each step of pages."""
    source_path = sqlite_path(settings)
    if not source_path.exists():
        raise BackupError(f"no database file at {source_path}")
    if target.exists():
        raise BackupError(f"{target} exists; remove it or choose another name")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent}: no such folder")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    _private_new_file(partial)
    try:
        source = _connect(source_path, timeout=settings.sqlite_busy_timeout_ms / 1000)
        copy = _connect(partial)
        try:
            steps, gave_up = _copy(source, copy, pages, on_step)
            # One self-contained file: no -wal beside the backup.
            copy.execute("PRAGMA journal_mode=DELETE")
            problem = integrity(copy)
            revision = revision_of(copy)
            total = copy.execute("PRAGMA page_count").fetchone()[0]
        finally:
            copy.close()
            source.close()
        if problem != "ok":
            raise BackupError(f"the copy fails integrity_check ({problem}); the database "
                              f"itself may be damaged: run PRAGMA integrity_check on it")
        _fsync(partial)
        os.chmod(partial, 0o600)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupResult(target, total, steps, gave_up, revision)


# --- restore ---------------------------------------------------------------------------


def known_revisions() -> tuple[set[str], str | None]:
    """Every revision this version's migrations know, and the head."""
    from alembic.script import ScriptDirectory

    from core.store.engine import MIGRATIONS

    scripts = ScriptDirectory(str(MIGRATIONS))
    return {script.revision for script in scripts.walk_revisions()}, scripts.get_current_head()


def check_backup(path: Path) -> str:
    """The backup's alembic revision, once it is known to be a sameday SQLite database
    that passes integrity_check; BackupError otherwise."""
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    with path.open("rb") as file:
        if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise BackupError(f"{path}: not an SQLite database")
    try:
        connection = _connect(path, read_only=True)
        try:
            problem = integrity(connection)
            revision = revision_of(connection)
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{path}: cannot be read as an SQLite database ({error})") from None
    if problem != "ok":
        raise BackupError(f"{path}: fails integrity_check ({problem})")
    known, head = known_revisions()
    if revision is None:
        raise BackupError(f"{path}: not a sameday database (no alembic revision)")
    if revision not in known:
        raise BackupError(f"{path}: at revision {revision}, unknown to this version of "
                          f"sameday (head {head}); restore it with the version that made it")
    return revision


def running_daemon(path: Path, now: datetime | None = None) -> str | None:
    """Why the database at `path` seems in use by a daemon, or None."""
    if not path.exists():
        return None
    now = now or datetime.now(UTC)
    connection = _connect(path, timeout=0)
    try:
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            return f"the database is locked ({error}): a process is writing to it"
        try:
            beats = connection.execute("SELECT process, beat_at FROM heartbeat").fetchall()
        except sqlite3.DatabaseError:
            return None  # not migrated yet: nothing ever ran on it
    finally:
        connection.close()
    for process, beat_at in beats:
        at = datetime.fromisoformat(str(beat_at))
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        if now - at < RECENT_BEAT and not gone_from_this_host(process):
            return (f"process {process} wrote a heartbeat {(now - at).total_seconds():.0f}s "
                    f"ago: stop the daemon first")
    return None


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    kept: Path | None  # the database it replaced
    revision: str
    head: str | None


def _side_files(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def _settle(path: Path) -> None:
    """Fold the old database's WAL into it, so that the file kept is whole."""
    connection = _connect(path, timeout=5)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def restore(settings: DatabaseSettings, source: Path, *, force: bool = False
            ) -> RestoreResult:
    """Replace the configured SQLite database with the backup at `source`."""
    database = sqlite_path(settings)
    revision = check_backup(source)
    if source.resolve() == database.resolve():
        raise BackupError(f"{source} is the configured database itself")
    kept = database.with_name(database.name + BEFORE_RESTORE)
    if database.exists():
        if not force and (reason := running_daemon(database)):
            raise BackupError(f"{reason}; a restore needs the daemon (and every console) "
                              f"stopped. If you are sure none runs, add --force.")
        if kept.exists():
            raise BackupError(f"{kept} exists (an earlier restore's): move it away first")
    if not database.parent.is_dir():
        raise BackupError(f"{database.parent}: no such folder")
    partial = database.with_name(f".{database.name}.restoring")
    partial.unlink(missing_ok=True)
    _private_new_file(partial)
    try:
        backup_file = _connect(source, read_only=True)
        copy = _connect(partial)
        try:
            backup_file.backup(copy)  # the daemon turns WAL mode on when it opens it
        finally:
            copy.close()
            backup_file.close()
        _fsync(partial)
        if database.exists():
            _settle(database)
            os.replace(database, kept)
            for side in _side_files(database):
                if side.exists():  # a WAL that could not be folded in stays with its file
                    os.replace(side, kept.with_name(kept.name + side.name[len(database.name):]))
        os.replace(partial, database)
        os.chmod(database, 0o600)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _, head = known_revisions()
    return RestoreResult(database, kept if kept.exists() else None, revision, head)
