"""Whether a database's schema is already at the newest migration -- asked without alembic.

The daemon migrates at every start, and most starts have nothing to apply. Loading
alembic to find that out costs about 10 MB (its dialects, its template engine and the
syntax highlighter that comes with it) that the process then keeps for its whole life.
So the daemon asks here first: the head is read from the migration files themselves
(their ``revision`` and ``down_revision`` assignments, as alembic reads them), the
database's revision from ``alembic_version``. Anything unexpected -- no database yet, no
version table, more than one head, a file this cannot read, a database that does not
answer -- says "not current", and alembic decides as before.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sqlalchemy as sa

from core.config.settings import DatabaseSettings
from core.store.engine import MIGRATIONS, is_sqlite, sync_url

VERSIONS = MIGRATIONS / "versions"


def head_revision(versions: Path = VERSIONS) -> str | None:
    """The one revision no other migration revises, or None (none, several, unreadable)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in versions.glob("*.py"):
        assigned = _assignments(path)
        if assigned is None or not isinstance(assigned.get("revision"), str):
            return None
        revisions.add(assigned["revision"])
        down = assigned.get("down_revision")
        revised.update((down,) if isinstance(down, str) else down or ())
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def _assignments(path: Path) -> dict[str, object] | None:
    """The module-level literal assignments of a migration file (None: unreadable)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def database_revision(settings: DatabaseSettings) -> str | None:
    """The revision stored in the database, or None (no file, no table, several rows,
    or any error: the caller then lets alembic look)."""
    url = sync_url(settings.url)
    if is_sqlite(url):
        path = sa.engine.make_url(url).database
        if not path or path == ":memory:" or path.startswith("file:") \
                or not Path(path).is_file():
            return None  # opening it would create it: alembic's upgrade does that
    try:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                rows = connection.exec_driver_sql(
                    "SELECT version_num FROM alembic_version").scalars().all()
        finally:
            engine.dispose()
    except Exception:  # down, no table, a driver this cannot use: alembic will tell
        return None
    return rows[0] if len(rows) == 1 else None


def schema_is_current(settings: DatabaseSettings) -> bool:
    """True only when the database is known to be at the head revision (blocking)."""
    head = head_revision()
    return head is not None and database_revision(settings) == head
