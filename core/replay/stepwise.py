"""The event-by-event replay: the daemon's own rhythm, one transaction per event.

``Replayer`` feeds the history to the core through the daemon's entry points --
``Inbox.ingest`` for customer messages, ``StaffDesk.execute("/reply N ...")`` for staff
answers, ``Escalator.sweep`` for escalations -- each its own transaction, asking
``Escalator.next_due`` between events. It is the reference the fast replay
(core.replay.bulk) is measured and tested against, and what that replay falls back to
for a chunk the database refuses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import VirtualClock
from core.config.settings import Settings
from core.escalation.sweep import Escalator
from core.intake.inbox import Inbox
from core.replay.figures import ReplayRun
from core.replay.history import Event, StaffAnswer
from core.staff.commands import Actor, StaffDesk
from core.staff.handlers import Reply
from core.store.engine import Store
from core.store.tables import Message

# A sweep that fires nothing while the same moment stays due would loop for ever; a
# correct engine never does that, but a replay must end even against a broken one.
MAX_IDLE_SWEEPS = 3


class Replayer:
    """The real core on a virtual clock: Inbox, StaffDesk and Escalator over one store."""

    def __init__(self, store: Store, settings: Settings, clock: VirtualClock, actor: Actor):
        self.store, self.clock, self.actor = store, clock, actor
        self.inbox = Inbox(store, settings, clock)
        self.desk = StaffDesk(store, settings, clock)
        self.escalator = Escalator(store, settings, clock)
        self.run = ReplayRun()

    async def replay(self, events: Iterable[Event], until: datetime) -> None:
        for group in batches(events):
            await self.step(group)
        await self.escalate_until(until)
        self.clock.set(max(self.clock.now(), until))
        self.run.until = until

    async def step(self, group: list[Event]) -> None:
        """One event (a batch of customer messages of one moment, or an answer), after
        the escalations due before it."""
        await self.escalate_until(group[0].at)
        self.clock.set(max(self.clock.now(), group[0].at))
        if isinstance(group[0], StaffAnswer):
            await self._answer(group[0])
        else:
            result = await self.inbox.ingest([e.inbound for e in group])
            self.run.ingested += result.received
            self.run.duplicates += result.duplicates

    async def escalate_until(self, moment: datetime) -> None:
        """Fire, in time order, every escalation due at or before `moment`."""
        await self.escalate(moment, self.escalator.next_due, self.escalator.sweep)

    async def escalate(self, moment: datetime,
                       next_due: Callable[[], Awaitable[datetime | None]],
                       sweep: Callable[[], Awaitable[list]]) -> None:
        """``escalate_until`` with the daemon's ``next_due`` and ``sweep``, or with the
        same questions asked in a chunk's transaction (core.replay.bulk)."""
        idle, last_due = 0, None
        while (due := await next_due()) is not None and due <= moment:
            self.clock.set(max(self.clock.now(), due))
            fired = await sweep()
            self.run.sweeps += 1
            idle = idle + 1 if not fired and due == last_due else 0
            last_due = due
            if idle >= MAX_IDLE_SWEEPS:
                self.run.stalled_sweeps += 1  # reported: the engine kept a due time it ignores
                break

    async def _answer(self, answer: StaffAnswer) -> None:
        async with self.store.session() as session:
            ticket_id = await answered_ticket(session, answer)
        if ticket_id is None:
            self.skip_answer()
            return
        self.count_reply(await self.desk.execute(self.actor, reply_line(ticket_id, answer)))

    def skip_answer(self) -> None:
        # Its question was skipped, or the answer is older than the question.
        self.run.answer_skips["answers a message not ingested (yet)"] += 1

    def count_reply(self, reply: Reply) -> None:
        if reply.ok:
            self.run.answered += 1
        else:
            self.run.answer_skips[f"refused by /reply: {reply.text[:80]}"] += 1


# Built once: asked for every answer of the history.
_TICKET_OF = sa.select(Message.ticket_id).where(
    Message.channel == sa.bindparam("channel"), Message.external_id == sa.bindparam("answers"))


async def answered_ticket(session: AsyncSession, answer: StaffAnswer) -> int | None:
    """The ticket of the customer message an answer answers (None: not ingested)."""
    return await session.scalar(_TICKET_OF, {"channel": answer.channel,
                                             "answers": answer.answers})


def reply_line(ticket_id: int, answer: StaffAnswer) -> str:
    """The staff command an answer of the history is: ``/reply N text`` on one line."""
    return f"/reply {ticket_id} {' '.join(answer.text.split()) or '…'}"


def batches(events: Iterable[Event]) -> Iterator[list[Event]]:
    """Consecutive customer messages of the same moment form one ingest batch (as an
    adapter's poll would); each answer is its own step."""
    group: list[Event] = []
    for event in events:
        if group and (isinstance(event, StaffAnswer) or isinstance(group[0], StaffAnswer)
                      or event.at != group[0].at):
            yield group
            group = []
        group.append(event)
    if group:
        yield group
