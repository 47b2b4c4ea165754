"""Units of work: a whole transaction run on the database's side, in one crossing.

Through SQLAlchemy's async layer every statement is a hop from the event loop to the
driver and back (for SQLite: to aiosqlite's thread and back through the loop), about 57
times the cost of the statement itself; a batch of ingest makes about twenty. A unit of
work is the transaction's code -- the same ``async def work(session)`` the rest of the
core writes -- run in a database thread against a plain synchronous session, so the
event loop crosses into the database once per transaction and the statements run back
to back at the driver's speed.

The one rule a unit's code keeps: it awaits nothing but its session (no sleeps, no
network, no other task's future). ``run_inline`` drives the coroutine without an event
loop and refuses, loudly, one that tries to wait for something else. The session handed
to the unit (``InlineSession``) has the ``AsyncSession`` methods the core uses, each
finished when it returns.

SQLite gets one database thread (it has one writer anyway, and the thread keeps the
process's units in order instead of racing each other for the write lock); PostgreSQL a
few, one connection each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
BUFFERED = {"prebuffer_rows": True}
Work = Callable[[Any], Awaitable[T]]


def run_inline(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, here and now."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a unit of work awaited something besides its database session; "
                       "do that before or after the transaction")


class InlineSession:
    """A synchronous ORM session behind the awaitable methods of ``AsyncSession``."""

    def __init__(self, session: Session):
        self.sync_session = session

    # Statements: results buffered as AsyncSession's are, so they outlive the cursor.
    async def execute(self, statement: Any, params: Any = None, *,
                      execution_options: Any = None, **kwargs: Any) -> Any:
        options = {**(execution_options or {}), **BUFFERED}
        return self.sync_session.execute(statement, params, execution_options=options,
                                         **kwargs)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return self.sync_session.scalar(*args, **kwargs)

    async def scalars(self, *args: Any, **kwargs: Any) -> Any:
        return (await self.execute(*args, **kwargs)).scalars()

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.sync_session.get(*args, **kwargs)

    async def flush(self, *args: Any, **kwargs: Any) -> None:
        self.sync_session.flush(*args, **kwargs)

    async def delete(self, instance: Any) -> None:
        self.sync_session.delete(instance)

    async def refresh(self, *args: Any, **kwargs: Any) -> None:
        self.sync_session.refresh(*args, **kwargs)

    async def connection(self) -> InlineConnection:
        return InlineConnection(self.sync_session.connection())

    # What is synchronous on AsyncSession too.
    def add(self, instance: Any) -> None:
        self.sync_session.add(instance)

    def add_all(self, instances: Any) -> None:
        self.sync_session.add_all(instances)

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        return self.sync_session.get_bind(*args, **kwargs)

    @property
    def bind(self) -> Any:
        return self.sync_session.bind

    @contextlib.asynccontextmanager
    async def begin(self):  # noqa: ANN201 - an async context manager, like AsyncSession's
        """The unit already runs in a transaction: a nested ``begin`` joins it."""
        yield self


class InlineConnection:
    """The session's connection, as ``AsyncConnection`` offers it (core.store.bulk)."""

    def __init__(self, connection: sa.Connection):
        self.sync_connection = connection
        self.dialect = connection.dialect

    async def exec_driver_sql(self, *args: Any, **kwargs: Any) -> Any:
        return self.sync_connection.exec_driver_sql(*args, **kwargs)


class UnitRunner:
    """The database threads and their synchronous engine."""

    def __init__(self, engine: sa.Engine, threads: int):
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.threads = ThreadPoolExecutor(max_workers=threads,
                                          thread_name_prefix="sameday-db")

    async def run(self, work: Work[T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self.threads, self._run, work)

    def _run(self, work: Work[T]) -> T:
        with self.sessions() as session, session.begin():
            return run_inline(work(InlineSession(session)))

    def close(self) -> None:
        self.threads.shutdown(wait=True)
        self.engine.dispose()
