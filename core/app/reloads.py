"""A config reload on one replica reaches the others.

Replicas on one PostgreSQL database each read the same config from their own server. An
admin who changes it sends SIGHUP to one of them (or a staff member says /reload, which
the replica carrying the staff chat hears); every reload that takes effect bumps a
version in the shared database, and each replica reads the version every few seconds
and, when another replica moved it, reloads its own file. On SQLite (one process) the
version only ever moves by the process's own reloads.

The version lives in the ``cursor`` table under a name no channel uses: a row, not
LISTEN/NOTIFY, so a replica that was down or cut off when the reload happened catches up
when it is back, and SQLite needs nothing else.
"""

from __future__ import annotations

import sqlalchemy as sa

from core.store.engine import Store
from core.store.tables import Cursor

CHECK_SECONDS = 5.0  # how soon the other replicas follow a reload
_ROW = ("sameday", "config_version")  # (channel, key) of the cursor table


async def current(store: Store) -> int:
    """The version of the config as the replicas last reloaded it (0: never)."""
    async with store.session() as session:
        value = await session.scalar(sa.select(Cursor.value).where(
            Cursor.channel == _ROW[0], Cursor.key == _ROW[1]))
    return int(value or 0)


async def announce(store: Store) -> int:
    """A reload took effect here: the next version, for the other replicas to follow."""
    async def bump(session) -> int:  # noqa: ANN001 - a unit's session
        row = await session.get(Cursor, _ROW, with_for_update=True)
        if row is None:
            row = Cursor(channel=_ROW[0], key=_ROW[1], value="0")
            session.add(row)
        row.value = str(int(row.value) + 1)
        return int(row.value)
    try:
        return await store.unit(bump)
    except sa.exc.IntegrityError:  # another replica wrote the first version meanwhile
        return await store.unit(bump)
