"""The fast replay: many events per transaction, through the same transaction bodies.

The event-by-event ``Replayer`` (core.replay.stepwise) keeps the daemon's rhythm: one
transaction per customer batch, per answer and per sweep batch, and a query for the next
due escalation between events, each a trip from the event loop to the database thread
and a commit. A replay's database is thrown away and has one writer, so none of that is
needed: ``BulkReplayer`` runs ``CHUNK_EVENTS`` events in ONE unit of work
(core.store.units) and calls there the very bodies those transactions run --
``Inbox._ingest``, ``StaffDesk.run_line`` (``/reply``) and ``Escalator.sweep_due`` -- in
the same order, at the same virtual moments. Before each event, the escalations due up
to its moment fire there as ``Replayer.escalate_until`` fires them: one sweep per due
moment, in time order, the next due moment read in the same transaction.

The same results, row for row: after each step the session is flushed and emptied, so
the next step reads every row from the database as a transaction of its own would. A
chunk the database refuses (a statement that fails) is rolled back, the clock and the
counts are put back, and that chunk is replayed event by event through the daemon's
entry points, which quarantine or refuse the way they always do.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from core.escalation.sweep import Escalator, Fired
from core.replay.history import Event, StaffAnswer
from core.replay.stepwise import (
    Replayer,
    answered_ticket,
    batches,
    reply_line,
)
from core.store.engine import is_transient

log = logging.getLogger(__name__)

# Events per transaction. Past a few hundred the commit's cost is lost in the noise
# (docs/BENCHMARKS.md); the chunk's events are held in memory, and a refused chunk is
# replayed event by event, so it stays moderate.
CHUNK_EVENTS = 1_000


class BulkReplayer(Replayer):
    """``Replayer``'s steps, ``chunk_events`` of them per transaction."""

    def __init__(self, *args, chunk_events: int = CHUNK_EVENTS, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunk_events = chunk_events
        self.transactions = 0  # units committed (for the report's run figures)
        self.refused_chunks = 0  # replayed event by event after the database refused them

    async def replay(self, events: Iterable[Event], until: datetime) -> None:
        for chunk in _chunks(batches(events), self.chunk_events):
            await self._run(chunk, None)
        await self._run([], until)  # the escalations after the last event
        self.clock.set(max(self.clock.now(), until))
        self.run.until = until

    async def _run(self, groups: list[list[Event]], until: datetime | None) -> None:
        """One chunk in one transaction; refused, the same chunk event by event."""
        clock, run = self.clock.now(), copy.deepcopy(self.run)
        try:
            await self.store.unit(partial(self._chunk, groups, until))
            self.transactions += 1
        except Exception as error:
            if is_transient(error):
                raise
            log.warning("replay: a chunk of %d events was refused (%s); replaying it event "
                        "by event", sum(map(len, groups)), type(error).__name__)
            self.refused_chunks += 1
            self.clock.set(clock)
            self.run = run
            for group in groups:
                await self.step(group)
            if until is not None:
                await self.escalate_until(until)

    async def _chunk(self, groups: list[list[Event]], until: datetime | None,
                     session: AsyncSession) -> None:
        for group in groups:
            await self._escalate_in(session, group[0].at)
            self.clock.set(max(self.clock.now(), group[0].at))
            if isinstance(group[0], StaffAnswer):
                await self._answer_in(session, group[0])
            else:
                result = await self.inbox._ingest(session, [e.inbound for e in group])
                self.run.ingested += result.received
                self.run.duplicates += result.duplicates
            _step_done(session)
        if until is not None:
            await self._escalate_in(session, until)

    async def _escalate_in(self, session: AsyncSession, moment: datetime) -> None:
        """``Replayer.escalate_until`` in the chunk's transaction."""
        await self.escalate(moment, partial(Escalator.next_due_in, session),
                            partial(self._sweep_in, session))

    async def _sweep_in(self, session: AsyncSession) -> list[Fired]:
        """``Escalator.sweep``: batches until none is left, each a step of its own."""
        fired: list[Fired] = []
        more = True
        while more:
            batch, more = await self.escalator.sweep_due(session)
            _step_done(session)
            fired += batch
        return fired

    async def _answer_in(self, session: AsyncSession, answer: StaffAnswer) -> None:
        ticket_id = await answered_ticket(session, answer)
        if ticket_id is None:
            self.skip_answer()
            return
        self.count_reply(await self.desk.run_line(session, self.actor,
                                                  reply_line(ticket_id, answer)))


def _step_done(session: AsyncSession) -> None:
    """Write the step's changes and forget its objects: the next step loads what it
    needs from the database, as a transaction of its own would (and the session does
    not grow with the chunk)."""
    session.sync_session.flush()
    session.sync_session.expunge_all()


def _chunks(groups: Iterator[list[Event]], size: int) -> Iterator[list[list[Event]]]:
    """Whole groups, about `size` events a chunk."""
    chunk: list[list[Event]] = []
    events = 0
    for group in groups:
        chunk.append(group)
        events += len(group)
        if events >= size:
            yield chunk
            chunk, events = [], 0
    if chunk:
        yield chunk
