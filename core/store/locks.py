"""Channel locks: which replica runs a channel, decided by PostgreSQL itself.

Each replica keeps one connection of its own (not from a pool) and holds, on it,

- a shared advisory lock that says "a replica is here" (so every replica can count the
  live ones: ``replicas``), and
- one session-level advisory lock per channel it owns (``take``).

A session-level lock lives exactly as long as its connection: a replica that is killed
(its socket closed by the kernel) loses its locks at once, and one cut off from the
network loses them when the server gives up on the connection. The server's side of that
is set per connection (``tcp_keepalives_*``, ``tcp_user_timeout``: about
``SERVER_GIVES_UP`` seconds), and the replica itself gives a channel up sooner:
``alive`` is a ``SELECT 1`` that must answer within ``CHECK_TIMEOUT``, asked every
second. So a cut-off owner has stopped before the server lets another replica take over.

Advisory locks are per database: two installations on one server do not collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib

import psycopg
import sqlalchemy as sa

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3  # seconds
CHECK_TIMEOUT = 2.0  # a live connection answers SELECT 1 well within this
# The server drops a silent connection after about 5 s: 2 s idle, then 3 probes 1 s apart
# (or 5 s of unacknowledged data).
SERVER_SETTINGS = {"tcp_keepalives_idle": 2, "tcp_keepalives_interval": 1,
                   "tcp_keepalives_count": 3, "tcp_user_timeout": 5000}
SERVER_GIVES_UP = 5.0
# The first key of every sameday lock (pg_advisory_lock(int, int)); the second is the
# channel's; 0 is the "a replica is here" lock.
SPACE = zlib.crc32(b"sameday") & 0x7FFFFFFF
PRESENCE = 0
APPLICATION = "sameday channel locks"  # as pg_stat_activity shows the lock connections


def channel_key(name: str) -> int:
    """A channel's lock key: stable across versions and replicas, never PRESENCE."""
    return (zlib.crc32(name.encode()) & 0x7FFFFFFF) or 1


def conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL."""
    parsed = sa.engine.make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


class LockConnectionLost(Exception):
    """The lock connection is gone, or too slow to trust: every lock may be lost."""


class ChannelLocks:
    """This replica's lock connection. Not thread-safe: used by one task."""

    def __init__(self, url: str):
        self.url = url
        self._connection: psycopg.AsyncConnection | None = None
        self.held: set[str] = set()

    @property
    def connected(self) -> bool:
        return self._connection is not None

    async def connect(self) -> None:
        """Open the lock connection; LockConnectionLost if the server cannot be reached
        now (down, restarting, out of connections): the next check tries again."""
        options = " ".join(f"-c {name}={value}" for name, value in SERVER_SETTINGS.items())
        try:
            self._connection = await asyncio.wait_for(psycopg.AsyncConnection.connect(
                conninfo(self.url), autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                options=options, application_name=APPLICATION,
                keepalives=1, keepalives_idle=2, keepalives_interval=1, keepalives_count=3,
                tcp_user_timeout=int(SERVER_GIVES_UP * 1000)), CONNECT_TIMEOUT + 1)
        except (psycopg.Error, OSError, TimeoutError) as error:
            raise LockConnectionLost(f"cannot connect: {_first_line(error)}") from error
        await self._ask("SELECT pg_advisory_lock_shared(%s, %s)", (SPACE, PRESENCE))

    async def alive(self) -> None:
        """Raise LockConnectionLost unless the connection answers within CHECK_TIMEOUT."""
        await self._ask("SELECT 1")

    async def replicas(self) -> int:
        """How many replicas hold their lock connection now (this one included)."""
        row = await self._ask(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s AND mode = 'ShareLock'", (SPACE, PRESENCE))
        return max(1, int(row[0]))

    async def take(self, name: str) -> bool:
        """Lock the channel for this replica if no other holds it."""
        row = await self._ask("SELECT pg_try_advisory_lock(%s, %s)", (SPACE, channel_key(name)))
        if row[0]:
            self.held.add(name)
        return bool(row[0])

    async def give_up(self, name: str) -> None:
        """Unlock a channel this replica stopped running (a clean handover)."""
        self.held.discard(name)
        await self._ask("SELECT pg_advisory_unlock(%s, %s)", (SPACE, channel_key(name)))

    async def close(self) -> None:
        """Close the connection: the server releases every lock held on it."""
        connection, self._connection = self._connection, None
        self.held.clear()
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CHECK_TIMEOUT)

    async def _ask(self, query: str, params: tuple = ()) -> tuple:
        """One statement within CHECK_TIMEOUT. A statement that does not answer in time
        is abandoned, not awaited: cancelling it may itself wait on the dead network."""
        if self._connection is None:
            raise LockConnectionLost("not connected")
        task = asyncio.ensure_future(self._fetch(self._connection, query, params))
        done, _ = await asyncio.wait({task}, timeout=CHECK_TIMEOUT)
        if not done:
            task.cancel()
            task.add_done_callback(_swallow)
            self._abandon()
            raise LockConnectionLost(f"no answer within {CHECK_TIMEOUT:.0f}s")
        try:
            return task.result()
        except (psycopg.Error, OSError) as error:
            self._abandon()
            raise LockConnectionLost(_first_line(error)) from error

    @staticmethod
    async def _fetch(connection: psycopg.AsyncConnection, query: str, params: tuple) -> tuple:
        cursor = await connection.execute(query, params)
        return await cursor.fetchone()

    def _abandon(self) -> None:
        """Forget a connection that failed; its locks are (or will be) the server's to
        release. Closed in the background: closing may wait on the network too."""
        connection, self._connection = self._connection, None
        self.held.clear()
        if connection is not None:
            closing = asyncio.ensure_future(connection.close())
            closing.add_done_callback(_swallow)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _swallow(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: not logged as "never retrieved"
