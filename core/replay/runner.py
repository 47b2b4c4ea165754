"""`sameday replay`: run a history of customer messages and staff answers through the core.

Admins tune promise rules, calendars and escalation rules on their own history before they
deploy them. Replay feeds that history to the REAL core -- ``Inbox`` for customer
messages, ``StaffDesk``'s ``/reply N ...`` for staff answers, ``Escalator``'s sweep for
escalations -- on a ``VirtualClock``, in a throw-away database, and reports what would
have happened. Nothing is sent: outbox rows are only counted.

A file is indexed on disk and streamed (core.replay.stream), and replayed many events per
transaction (core.replay.bulk); ``step_by_step`` replays one transaction per event, the
daemon's rhythm (core.replay.stepwise), with the same results. The figures are
``core.replay.figures``. Every inbound row is accounted for: either ingested or counted as
skipped with a reason.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.clock import VirtualClock
from core.config.settings import DatabaseSettings, Settings
from core.domain.kpi import local_day
from core.replay.bulk import CHUNK_EVENTS, BulkReplayer
from core.replay.figures import figures
from core.replay.history import Event, History, ReplayError
from core.replay.stepwise import Replayer
from core.replay.stream import StreamedHistory, open_history
from core.staff.commands import Actor
from core.store.engine import Store, upgrade

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the clock of an empty history (never read)


# --- the replay ----------------------------------------------------------------------------


def staff_actor(settings: Settings, name: str | None) -> Actor:
    """Who answers in the replay: the named member, the first admin, or "replay" (admin).

    StaffDesk authorizes by Actor only, so a config without staff still replays.
    """
    members = settings.staff.members
    if name is not None:
        for member in members:
            if member.name == name:
                return Actor(member.name, member.role)
        raise ReplayError(f"--staff-name {name}: not a staff member; staff: "
                         f"{', '.join(m.name for m in members) or 'none'}")
    admins = [m for m in members if m.role == "admin"]
    first = (admins or members or [None])[0]
    return Actor(first.name, first.role) if first else Actor("replay", "admin")


async def replay_history(history: History | Path, settings: Settings, *,
                         database_url: str | None = None, staff_name: str | None = None,
                         until: datetime | None = None, step_by_step: bool = False,
                         chunk_events: int = CHUNK_EVENTS) -> dict[str, Any]:
    """Replay `history` (a file, streamed; or a History read in memory) under
    `settings`; return the figures (see ``figures``).

    Without `database_url` the database is a temporary SQLite file, deleted afterwards.
    The config's own database is never touched.
    """
    actor = staff_actor(settings, staff_name)
    zone = ZoneInfo(settings.calendar.timezone)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sameday-replay-") as scratch:
        if isinstance(history, Path):
            history = open_history(history, Path(scratch) / "history.db")
        url = database_url or f"sqlite+aiosqlite:///{Path(scratch) / 'replay.db'}"
        # Thrown away, with one writer: no power-loss durability needed. "normal" in WAL
        # mode syncs only at checkpoints, and the fast replay commits once per chunk,
        # so syncs are no longer what a replay waits for (docs/BENCHMARKS.md).
        database = DatabaseSettings(url=url, sqlite_synchronous="normal")
        settings = settings.model_copy(update={"database": database})
        try:
            upgrade(database)
            store = Store(database)
            try:
                span = _span(history)
                end = until or (local_day(span[1], zone)[1] if span else None)
                if span and end < span[1]:
                    raise ReplayError(f"--until {end.isoformat()} is before the last event "
                                      f"({span[1].isoformat()})")
                clock = VirtualClock(span[0] if span else end or _EPOCH)
                replayer = (Replayer(store, settings, clock, actor) if step_by_step else
                            BulkReplayer(store, settings, clock, actor,
                                         chunk_events=chunk_events))
                if end is not None:
                    await replayer.replay(_events(history), end)
                result = await figures(store, history, replayer.run, zone)
                if isinstance(replayer, BulkReplayer):
                    result["run"].update(transactions=replayer.transactions,
                                         refused_chunks=replayer.refused_chunks)
            finally:
                await store.close()
        finally:
            if isinstance(history, StreamedHistory):
                history.close()
    result["run"]["seconds"] = round(time.monotonic() - started, 2)
    result["run"]["database"] = database_url or "temporary (deleted)"
    result["run"]["staff"] = actor.name
    result["run"]["mode"] = "event by event" if step_by_step else \
        f"{chunk_events} events per transaction"
    return result


def _span(history: History | StreamedHistory) -> tuple[datetime, datetime] | None:
    """The first and last event's times (a History's events are sorted)."""
    if isinstance(history, StreamedHistory):
        return history.span()
    events = history.events
    return (events[0].at, events[-1].at) if events else None


def _events(history: History | StreamedHistory) -> Iterable[Event]:
    return history.events() if isinstance(history, StreamedHistory) else history.events
