"""`sameday replay`: run a history of customer messages and staff answers through the core.

Admins tune promise rules, calendars and escalation rules on their own history before they
deploy them. Replay feeds that history to the REAL core -- ``Inbox.ingest`` for customer
messages, ``StaffDesk.execute("/reply N ...")`` for staff answers, ``Escalator.sweep`` for
escalations -- on a ``VirtualClock``, in a throw-away database, and reports what would
have happened. Nothing is sent: outbox rows are only counted.

The history is read by ``core.replay.history``; the figures are ``core.replay.figures``.
Every inbound row is accounted for: either ingested or counted as skipped with a reason.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from core.clock import VirtualClock
from core.config.settings import DatabaseSettings, Settings
from core.domain.kpi import local_day
from core.escalation.sweep import Escalator
from core.intake.inbox import Inbox
from core.replay.figures import ReplayRun, figures
from core.replay.history import CustomerMessage, History, ReplayError, StaffAnswer
from core.staff.commands import Actor, StaffDesk
from core.store.engine import Store, upgrade
from core.store.tables import Message

# A sweep that fires nothing while the same moment stays due would loop for ever; a
# correct engine never does that, but a replay must end even against a broken one.
MAX_IDLE_SWEEPS = 3
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


class Replayer:
    """The real core on a virtual clock: Inbox, StaffDesk and Escalator over one store."""

    def __init__(self, store: Store, settings: Settings, clock: VirtualClock, actor: Actor):
        self.store, self.clock, self.actor = store, clock, actor
        self.inbox = Inbox(store, settings, clock)
        self.desk = StaffDesk(store, settings, clock)
        self.escalator = Escalator(store, settings, clock)
        self.run = ReplayRun()

    async def replay(self, events: list[CustomerMessage | StaffAnswer], until: datetime) -> None:
        for group in _batches(events):
            await self.escalate_until(group[0].at)
            self.clock.set(max(self.clock.now(), group[0].at))
            if isinstance(group[0], StaffAnswer):
                await self._answer(group[0])
            else:
                result = await self.inbox.ingest([e.inbound for e in group])
                self.run.ingested += result.received
                self.run.duplicates += result.duplicates
        await self.escalate_until(until)
        self.clock.set(max(self.clock.now(), until))
        self.run.until = until

    async def escalate_until(self, moment: datetime) -> None:
        """Fire, in time order, every escalation due at or before `moment`."""
        idle, last_due = 0, None
        while (due := await self.escalator.next_due()) is not None and due <= moment:
            self.clock.set(max(self.clock.now(), due))
            fired = await self.escalator.sweep()
            self.run.sweeps += 1
            idle = idle + 1 if not fired and due == last_due else 0
            last_due = due
            if idle >= MAX_IDLE_SWEEPS:
                self.run.stalled_sweeps += 1  # reported: the engine kept a due time it ignores
                break

    async def _answer(self, answer: StaffAnswer) -> None:
        async with self.store.session() as session:
            ticket_id = await session.scalar(
                sa.select(Message.ticket_id).where(Message.channel == answer.channel,
                                                   Message.external_id == answer.answers))
        if ticket_id is None:
            # Its question was skipped, or the answer is older than the question.
            self.run.answer_skips["answers a message not ingested (yet)"] += 1
            return
        text = " ".join(answer.text.split()) or "…"
        reply = await self.desk.execute(self.actor, f"/reply {ticket_id} {text}")
        if reply.ok:
            self.run.answered += 1
        else:
            self.run.answer_skips[f"refused by /reply: {reply.text[:80]}"] += 1


def _batches(events: list[CustomerMessage | StaffAnswer]
             ) -> Iterator[list[CustomerMessage | StaffAnswer]]:
    """Consecutive customer messages of the same moment form one ingest batch (as an
    adapter's poll would); each answer is its own step."""
    group: list[CustomerMessage | StaffAnswer] = []
    for event in events:
        if group and (isinstance(event, StaffAnswer) or isinstance(group[0], StaffAnswer)
                      or event.at != group[0].at):
            yield group
            group = []
        group.append(event)
    if group:
        yield group


async def replay_history(history: History, settings: Settings, *,
                         database_url: str | None = None, staff_name: str | None = None,
                         until: datetime | None = None) -> dict[str, Any]:
    """Replay `history` under `settings`; return the figures (see ``figures``).

    Without `database_url` the database is a temporary SQLite file, deleted afterwards.
    The config's own database is never touched.
    """
    actor = staff_actor(settings, staff_name)
    zone = ZoneInfo(settings.calendar.timezone)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sameday-replay-") as scratch:
        url = database_url or f"sqlite+aiosqlite:///{Path(scratch) / 'replay.db'}"
        # A throw-away database needs no power-loss durability: "normal" is much faster.
        database = DatabaseSettings(url=url, sqlite_synchronous="normal")
        settings = settings.model_copy(update={"database": database})
        upgrade(database)
        store = Store(database)
        try:
            events = history.events
            end = until or (local_day(events[-1].at, zone)[1] if events else None)
            if events and end < events[-1].at:
                raise ReplayError(f"--until {end.isoformat()} is before the last event "
                                  f"({events[-1].at.isoformat()})")
            replayer = Replayer(store, settings, VirtualClock(events[0].at if events else
                                                              end or _EPOCH), actor)
            if end is not None:
                await replayer.replay(events, end)
            result = await figures(store, history, replayer.run, zone)
        finally:
            await store.close()
    result["run"]["seconds"] = round(time.monotonic() - started, 2)
    result["run"]["database"] = database_url or "temporary (deleted)"
    result["run"]["staff"] = actor.name
    return result
