"""Alembic environment: migrations run synchronously on the configured database."""

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

from core.store import tables  # noqa: F401 - registers the tables on SQLModel.metadata
from core.store.engine import is_sqlite, sqlite_pragmas, sync_url
from core.store.search import tell_autogenerate

tell_autogenerate()  # autogenerate leaves /find's index alone (not models)

settings = context.config.attributes["database_settings"]
engine = sa.create_engine(sync_url(settings.url), poolclass=sa.pool.NullPool)
if is_sqlite(settings.url):
    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        for pragma in sqlite_pragmas(settings):
            dbapi_connection.execute(pragma)

with engine.connect() as connection:
    if is_sqlite(settings.url):
        # A batch migration rebuilds a table (copy, drop, rename); with foreign keys on,
        # dropping a table that other rows point at fails. SQLite's own recipe: turn
        # them off for the change (only possible outside a transaction), then check
        # every reference (https://www.sqlite.org/lang_altertable.html#otheralter).
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables when needed.
        render_as_batch=is_sqlite(settings.url),
    )
    with context.begin_transaction():
        context.run_migrations()
        if is_sqlite(settings.url):
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration left rows pointing nowhere: {broken[:5]}")
engine.dispose()
