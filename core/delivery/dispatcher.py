"""The transactional outbox and its dispatcher.

Rows are written in the same transaction as the change that causes them (a new ticket,
a staff reply); the dispatcher delivers them afterwards through the channel's adapter.

- One dispatch loop per adapter (the staff chat's adapter also carries the staff channel,
  so both share the bot's limits). A loop claims due rows by lane (customers, staff
  cards and alerts, staff chatter: core.delivery.enqueue), then earliest deadline, only
  as many as the adapter's rate limits allow right now, and sends them concurrently.
- Claiming is one transaction: ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (other
  dispatchers skip the rows), a conditional ``UPDATE ... WHERE state IN (due)`` on SQLite
  (whose ``BEGIN IMMEDIATE`` already serializes writers). pending/retry -> sending.
- Outcomes: sent (with the platform's message id); retry (temporary error: exponential
  backoff with jitter, never sooner than the platform's retry hint); dead (a permanent
  error, or ``max_attempts`` reached). The ``DeliveryListener`` hears of both in the
  same transaction (the staff chat: a card edit on delivery, a notice on a dead row).
- An unknown outcome -- a lost answer, or a row left in ``sending`` by a process that is
  gone (same host and not running, heartbeat stopped, or older than the lease) -- is not
  blindly repeated: idempotent platforms (VK) send again; others are first checked where
  the platform allows (X), else retried once and dead-lettered if that too is unknown
  (docs/reliability.md states the exact guarantee per platform).
- A commit that queues rows wakes the loop, so an unlimited row goes out at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa

from core.clock import Clock
from core.config.settings import OutboxSettings
from core.delivery import claims
from core.delivery.actions import perform
from core.delivery.claims import BEAT, HeartbeatWatch
from core.delivery.contract import ChannelAdapter, DeliveryError, DeliveryListener
from core.delivery.enqueue import Lane
from core.delivery.outfiles import release
from core.delivery.ratelimit import Limiter, RateKey, Reservation
from core.domain.records import Delivered, Outbound, OutboxState
from core.store.engine import Store, is_transient
from core.store.process import THIS_PROCESS
from core.store.tables import Event, Heartbeat, Outbox
from core.store.writes import SEND

log = logging.getLogger(__name__)

DUE_STATES = (OutboxState.PENDING, OutboxState.RETRY)
CHATTER_PATIENCE = timedelta(minutes=5)
CANDIDATES = 200  # rows looked at per pass: enough to find sendable ones past a busy chat
RECALLED = 10_000  # at most this many recent sends are counted when a loop takes over
ROW_COLUMNS = (Outbox.id, Outbox.channel, Outbox.kind, Outbox.ticket_id, Outbox.target,
               Outbox.text, Outbox.idempotency_key, Outbox.attempts, Outbox.recovered)


@dataclass(frozen=True)
class Claim:
    """Who holds a row in "sending": an outcome is recorded only under the same claim."""

    row_id: int
    by: str | None
    attempts: int


@dataclass
class Claimed:
    """A row this dispatcher owns until it records the outcome."""

    outbound: Outbound
    attempts: int  # including this one
    recovered: int
    reservation: Reservation

    @property
    def keys(self) -> list[RateKey]:
        return self.reservation.keys

    @property
    def claim(self) -> Claim:
        return Claim(self.outbound.outbox_id, THIS_PROCESS, self.attempts)


class Dispatcher:
    """Runs one dispatch loop per adapter."""

    def __init__(self, store: Store, clock: Clock, settings: OutboxSettings,
                 adapters: dict[str, ChannelAdapter], *, idle_poll: float = 1.0,
                 listener: DeliveryListener | None = None):
        self.store = store
        self.listener = listener
        self.clock = clock
        self.settings = settings
        self.idle_poll = idle_poll
        self.watch = HeartbeatWatch()  # other processes' heartbeats, as we saw them change
        self.loops: dict[str, ChannelLoop] = {}
        for channel, adapter in adapters.items():
            loop = next((lp for lp in self.loops.values() if lp.adapter is adapter), None)
            if loop is None:
                loop = ChannelLoop(self, adapter)
            loop.channels.append(channel)
            self.loops[channel] = loop

    def serve(self, channels: list[str], adapter: ChannelAdapter) -> ChannelLoop:
        """Start delivering the rows of `channels` through `adapter` (this replica took
        the channel: core.app.ownership), in a loop that runs until ``retire``."""
        loop = ChannelLoop(self, adapter)
        loop.channels.extend(channels)
        for channel in channels:
            self.loops[channel] = loop
        loop.task = asyncio.create_task(loop.run(loop.retiring, recall=True),
                                        name=f"dispatch-{adapter.name}")
        return loop

    async def retire(self, loop: ChannelLoop, grace: float) -> None:
        """Stop the loop claiming rows; wait up to `grace` for its sends in flight to
        record their outcome (a row still in "sending" is recovered like a crash's)."""
        loop.retiring.set()
        for channel in loop.channels:
            if self.loops.get(channel) is loop:
                del self.loops[channel]
        if loop.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(loop.task), grace)
            except TimeoutError:
                log.warning("outbox %s: sends still in flight after %.0fs", loop.adapter.name,
                            grace)

    async def beat_until(self, done: asyncio.Event) -> None:
        """Write the heartbeat every BEAT until `done` (the daemon: until its last send
        recorded its outcome)."""
        await self.beat()
        await self._beat_until(done)

    def wake(self, channel: str | None = None) -> None:
        """Called after a commit that queued rows: look at the outbox now."""
        loops = [self.loops[channel]] if channel in self.loops else self.loops.values()
        for loop in loops:
            loop.wake.set()

    @property
    def unique_loops(self) -> list[ChannelLoop]:
        """Each loop once (the staff channel shares the loop of its chat's adapter)."""
        return list({id(loop): loop for loop in self.loops.values()}.values())

    async def run(self, stopping: asyncio.Event) -> None:
        await self.beat()  # before the first claim: our claims are never taken for dead
        loops_done = asyncio.Event()
        beating = asyncio.create_task(self._beat_until(loops_done))
        try:
            await asyncio.gather(*(loop.run(stopping) for loop in self.unique_loops))
        finally:
            loops_done.set()  # sends in flight at shutdown are still ours: beat till here
            await beating

    async def _beat_until(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await _wait_any([done], BEAT.total_seconds())
            if not done.is_set():
                await self.beat()

    async def beat(self) -> None:
        """Write this process's heartbeat: other dispatchers then leave the rows it
        claimed alone. A committed beat also proves that sends can be recorded."""
        channels = list(self.loops)
        try:
            await self.store.beat(self.clock.now())
        except Exception as error:
            log.warning("outbox: heartbeat not written (%s)", error)
            for channel in channels:
                self.store.writes.failed(channel, SEND, error)
            return
        for channel in channels:
            self.store.writes.succeeded(channel, SEND)

    async def dispatch_once(self) -> int:
        """One pass of every loop, waiting for the sends it started (tests, tools)."""
        counts = await asyncio.gather(*(loop.dispatch_once(wait=True)
                                        for loop in self.unique_loops))
        return sum(sent for sent, _ in counts)

    async def dead_letter(self, session: Any, outbound: Outbound, reason: str,
                          now: datetime) -> None:
        """Record a dead row in the audit trail, and tell the listener (staff)."""
        session.add(Event(ticket_id=outbound.ticket_id, channel=outbound.channel,
                          kind="dead_letter", at=now,
                          data={"outbox_id": outbound.outbox_id, "kind": outbound.kind,
                                "reason": reason}))
        await release(session, outbound)  # a file it carried is not kept any longer
        if self.listener is not None:
            await self.listener.dead(session, outbound, reason, now)

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, never sooner than the platform asked."""
        base = self.settings.retry_base.total_seconds()
        ceiling = min(self.settings.retry_max.total_seconds(), base * 2 ** (attempts - 1))
        return max(random.uniform(base / 2, max(base / 2, ceiling)), retry_after or 0.0)


class ChannelLoop:
    """Delivers the rows of the channels one adapter serves."""

    def __init__(self, dispatcher: Dispatcher, adapter: ChannelAdapter):
        self.dispatcher = dispatcher
        self.adapter = adapter
        self.channels: list[str] = []
        settings = dispatcher.settings
        self.limiter = Limiter(settings.limits.of(adapter.name), settings.rate_margin)
        self.wake = asyncio.Event()
        self.retiring = asyncio.Event()  # set by Dispatcher.retire
        self.task: asyncio.Task | None = None
        self.in_flight: set[asyncio.Task] = set()
        # An adapter may allow fewer sends in flight (X: one, so each post's rate-limit
        # headers are read before the next post goes out).
        self.concurrency = min(settings.concurrency,
                               adapter.max_in_flight or settings.concurrency)

    @property
    def store(self) -> Store:
        return self.dispatcher.store

    @property
    def now(self) -> datetime:
        return self.dispatcher.clock.now()

    async def run(self, stopping: asyncio.Event, recall: bool = False) -> None:
        """Deliver until stopped. ``recall``: first count the channel's recent sends
        against its limits (a loop that takes over from another replica)."""
        next_recovery = 0.0
        while recall and not stopping.is_set():
            try:
                await self.recall_recent_sends()
                break
            except Exception as error:  # sending before knowing could break a limit
                self._writes_failed(error)
                log.error("outbox %s: recent sends not read (%s); retrying",
                          self.adapter.name, error)
                await _wait_any([stopping], self.dispatcher.idle_poll)
        while not stopping.is_set():
            delay = self.dispatcher.idle_poll
            try:
                if asyncio.get_running_loop().time() >= next_recovery:
                    await self.recover_abandoned()
                    next_recovery = asyncio.get_running_loop().time() + BEAT.total_seconds()
                sent, delay = await self.dispatch_once()
                if sent:
                    self._writes_ok()  # a claim was committed
                    continue
            except Exception as error:  # the database may be briefly unavailable; keep going
                self._writes_failed(error)
                if is_transient(error):
                    log.error("outbox %s: the database is unavailable (%s); retrying",
                              self.adapter.name, error)
                else:
                    log.exception("outbox %s: dispatch failed; retrying", self.adapter.name)
            self.wake.clear()
            await _wait_any([self.wake, stopping], max(0.0, delay))
        if self.in_flight:  # shutting down: let sends in flight record their outcome
            await asyncio.gather(*self.in_flight, return_exceptions=True)

    async def recall_recent_sends(self) -> int:
        """Spend the limiter's tokens for what the channel sent within its longest
        window, as other processes recorded it: the platform counts the bot's messages,
        whichever replica sent them. Rows still in "sending" count as sent now."""
        limits = self.limiter.limits
        if not limits:
            return 0
        window = max(limit.per for limit in limits.values()) * (1 + self.limiter.margin)
        now = self.now
        async with self.store.session() as session:
            rows = (await session.execute(
                sa.select(*ROW_COLUMNS, Outbox.sent_at, Outbox.state)
                .where(Outbox.channel.in_(self.channels),
                       sa.or_(Outbox.state == OutboxState.SENDING,
                              sa.and_(Outbox.state == OutboxState.SENT,
                                      Outbox.sent_at > now - window)))
                .order_by(Outbox.sent_at.desc().nulls_first())
                .limit(RECALLED))).all()
        clock = self.dispatcher.clock
        spends = []
        for row in rows:
            outbound = _outbound(row)
            try:
                keys = self.adapter.rate_keys(outbound)
                cost = self.adapter.send_cost(outbound)
            except Exception:  # a row it cannot read was not sent either
                continue
            ago = 0.0 if row.sent_at is None else max(
                0.0, clock.real_seconds((now - row.sent_at).total_seconds()))
            spends.append((ago, keys, cost))
        self.limiter.remember(spends)
        return len(spends)

    async def dispatch_once(self, wait: bool = False) -> tuple[int, float]:
        """Claim what the limits allow now and start sending it.

        Returns how many rows were started and how long to sleep before the next pass
        (until a token frees up or a retry falls due).
        """
        free = self.concurrency - len(self.in_flight)
        if free <= 0:
            return 0, self.dispatcher.idle_poll  # a finishing send wakes the loop
        claimed, delay = await self._claim(free)
        for row in claimed:
            task = asyncio.create_task(self._send(row))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        if wait and self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        return len(claimed), delay

    async def _claim(self, free: int) -> tuple[list[Claimed], float]:
        claiming = asyncio.ensure_future(self.store.unit(partial(self._claim_in, free=free)))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # A unit commits whatever becomes of its caller: rows claimed for a loop that
            # is being cancelled go back to the queue instead of waiting in "sending" to
            # be recovered like a crash's (which would spend an attempt).
            claimed, _ = await claiming
            if claimed:
                await self.store.unit(partial(_hand_back, claimed=claimed))
            raise

    async def _claim_in(self, session: Any, *, free: int) -> tuple[list[Claimed], float]:
        now = self.now
        idle = self.dispatcher.idle_poll
        query = (sa.select(*ROW_COLUMNS)
                 .where(Outbox.channel.in_(self.channels), Outbox.state.in_(DUE_STATES),
                        Outbox.next_attempt_at <= now)
                 .order_by(_lane(now), Outbox.deadline_at.is_(None), Outbox.deadline_at,
                           Outbox.id)
                 .limit(CANDIDATES)
                 .with_for_update(skip_locked=True))
        rows = (await session.execute(query)).all()
        claimed: list[Claimed] = []
        wait_until = self.limiter.now() + idle
        exhausted: set[RateKey] = set()  # buckets found empty in this pass
        for row in rows:
            if len(claimed) >= free:
                wait_until = self.limiter.now()  # more is sendable: come back at once
                break
            outbound = _outbound(row)
            try:
                keys = self.adapter.rate_keys(outbound)
                cost = self.adapter.send_cost(outbound)
            except Exception as error:  # a row the adapter cannot read: not this pass
                await self._refuse(session, outbound, error, now)
                continue
            if exhausted.intersection(keys):
                continue  # e.g. the bot-wide limit: no later row can go either
            reservation = self.limiter.try_acquire(keys, cost)
            if reservation is not None:
                claimed.append(Claimed(outbound, row.attempts + 1, row.recovered,
                                       reservation))
            else:
                ready = self.limiter.ready_at(keys, cost)
                wait_until = min(wait_until, ready)
                exhausted.update(k for k in keys
                                 if self.limiter.ready_at([k], cost) >= ready)
        if claimed:
            ids = [c.outbound.outbox_id for c in claimed]
            result = await session.execute(
                sa.update(Outbox)
                .where(Outbox.id.in_(ids), Outbox.state.in_(DUE_STATES))
                .values(state=OutboxState.SENDING, attempts=Outbox.attempts + 1,
                        claimed_at=now, claimed_by=THIS_PROCESS))
            if result.rowcount != len(ids):  # cannot happen under the row locks
                raise RuntimeError("outbox rows changed under a claim; retrying")
        if not rows or len(rows) < CANDIDATES:
            wait_until = min(wait_until, self.limiter.now() + await self._next_due(
                session, now))
        return claimed, max(0.0, wait_until - self.limiter.now())

    async def _refuse(self, session: Any, outbound: Outbound, error: Exception,
                      now: datetime) -> None:
        """A row the adapter cannot even address is dead at once: retrying cannot help,
        and it must not hold up the rows behind it."""
        log.error("outbox %s: row %s cannot be sent (%s: %s); dead", outbound.channel,
                  outbound.outbox_id, type(error).__name__, error)
        reason = f"not a valid {outbound.channel} row: {type(error).__name__}: {error}"
        await _set(session, outbound.outbox_id, state=OutboxState.DEAD, last_error=reason)
        await self.dispatcher.dead_letter(session, outbound, reason, now)

    async def _next_due(self, session: Any, now: datetime) -> float:
        """Seconds until the earliest row waiting for a retry falls due."""
        earliest = await session.scalar(
            sa.select(sa.func.min(Outbox.next_attempt_at))
            .where(Outbox.channel.in_(self.channels), Outbox.state.in_(DUE_STATES),
                   Outbox.next_attempt_at > now))
        if earliest is None:
            return self.dispatcher.idle_poll
        return min(self.dispatcher.idle_poll, (earliest - now).total_seconds())

    async def _send(self, row: Claimed) -> None:
        try:
            # A send, a file, or a change of a sent answer (core.delivery.actions).
            delivered = await perform(self.adapter, self.store, row.outbound)
        except DeliveryError as error:
            self.limiter.settle(row.reservation)
            if error.retry_after:
                self.limiter.block(row.keys, error.retry_after)
            if error.unknown and not self.adapter.idempotent:
                # The platform may have performed it: not blindly repeated.
                await self._record(await self._resolve_unknown(
                    row.outbound, row.claim, row.recovered, error.reason,
                    permanent=error.permanent))
            else:
                await self._record(self._failure(row, error))
        except Exception as error:  # an adapter bug must not stop delivery of other rows
            self.limiter.settle(row.reservation)
            log.exception("outbox %s: adapter crashed on row %s", self.adapter.name,
                          row.outbound.outbox_id)
            await self._record(self._failure(row, DeliveryError(f"adapter error: {error!r}")))
        else:
            self.limiter.settle(row.reservation)
            if delivered.limit_remaining is not None and delivered.limit_reset_in is not None:
                self.limiter.observe(row.keys, delivered.limit_remaining,
                                     delivered.limit_reset_in)
            await self._record(self._sent(row, delivered))

    def _sent(self, row: Claimed, delivered: Delivered):
        async def apply(session: Any) -> None:
            if not await _settle(session, row, state=OutboxState.SENT, sent_at=self.now,
                                 external_id=delivered.external_id, last_error=None):
                return
            await release(session, row.outbound)
            if self.dispatcher.listener is not None:
                await self.dispatcher.listener.delivered(session, row.outbound, self.now)
        return apply

    def _failure(self, row: Claimed, error: DeliveryError):
        settings = self.dispatcher.settings

        async def apply(session: Any) -> None:
            outbound = row.outbound
            if error.permanent or row.attempts >= settings.max_attempts:
                log.warning("outbox %s: row %s (%s) is dead after %d attempt(s): %s",
                            outbound.channel, outbound.outbox_id, outbound.kind, row.attempts,
                            error.reason)
                if await _settle(session, row, state=OutboxState.DEAD,
                                 last_error=error.reason):
                    await self.dispatcher.dead_letter(session, outbound, error.reason,
                                                      self.now)
                return
            delay = self.dispatcher.backoff(row.attempts, error.retry_after)
            log.info("outbox %s: row %s failed (%s); retry in %.1fs", outbound.channel,
                     outbound.outbox_id, error.reason, delay)
            await _settle(session, row, state=OutboxState.RETRY, last_error=error.reason,
                          next_attempt_at=self.now + timedelta(seconds=delay))
        return apply

    async def _record(self, apply) -> None:
        # Shielded: a shutdown must not leave a sent row looking unsent.
        await asyncio.shield(self._record_patiently(apply))
        self.wake.set()  # a slot is free: look for more

    async def _record_patiently(self, apply) -> None:
        """Record an outcome, waiting out a database that refuses writes for up to the
        lease (no other process can take the row meanwhile: taking it is a write too).
        If the database stays away longer the row stays in "sending" and is recovered
        like a crash's."""
        patience = self.dispatcher.settings.lease.total_seconds()
        started = asyncio.get_running_loop().time()
        delay = 0.2
        while True:
            try:
                await self._in_transaction(apply)
                self._writes_ok()
                return
            except Exception as error:
                self._writes_failed(error)
                waited = asyncio.get_running_loop().time() - started
                if not is_transient(error) or waited + delay > patience:
                    log.error("outbox %s: could not record a send's outcome (%s); the row "
                              "is recovered after the lease", self.adapter.name, error)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _writes_ok(self) -> None:
        for channel in self.channels:
            self.store.writes.succeeded(channel, SEND)

    def _writes_failed(self, error: BaseException) -> None:
        for channel in self.channels:
            self.store.writes.failed(channel, SEND, error)

    async def _in_transaction(self, apply) -> None:
        await self.store.unit(apply)

    async def recover_abandoned(self) -> int:
        """Rows left in "sending" by a process that is gone (core.delivery.claims)."""
        now = self.now
        async with self.store.session() as session:
            rows = (await session.execute(
                sa.select(*ROW_COLUMNS, Outbox.claimed_at, Outbox.claimed_by)
                .where(Outbox.channel.in_(self.channels),
                       Outbox.state == OutboxState.SENDING))).all()
            self.dispatcher.watch.observe(await session.execute(
                sa.select(Heartbeat.process, Heartbeat.beat_at)))
        lease = self.dispatcher.settings.lease
        abandoned = [row for row in rows if claims.abandoned(
            row.claimed_by, row.claimed_at, now, lease, self.dispatcher.watch)]
        for row in abandoned:
            log.warning("outbox %s: row %s was abandoned in 'sending' by %s", row.channel,
                        row.id, row.claimed_by or "a process")
            claim = Claim(row.id, row.claimed_by, row.attempts)
            try:
                await self._in_transaction(await self._resolve_unknown(
                    _outbound(row), claim, row.recovered, "interrupted by a crash",
                    recovering=True))
            except Exception:  # this row again on the next pass; the others now
                log.exception("outbox %s: could not recover row %s", row.channel, row.id)
        if abandoned:
            self.wake.set()
        return len(abandoned)

    async def _resolve_unknown(self, outbound: Outbound, claim: Claim, unknowns: int,
                               cause: str, *, recovering: bool = False,
                               permanent: bool = False):
        """What to do with a row whose send may or may not have happened (a crash in
        "sending", a timeout or a dropped connection after the request went out).

        Found on the platform (``find_sent``): sent. Idempotent platforms: sent again.
        Others get ONE more attempt; an unknown outcome after that is dead-lettered with
        "may or may not have been delivered", so a customer gets a message at most twice
        and staff hear of every doubt. A ``permanent`` refusal that may hide an earlier
        delivery (X: "duplicate content") is sent if found, else dead at once.
        Returns the change to apply in a transaction.
        """
        found: Delivered | None = None
        try:
            found = await self.adapter.find_sent(outbound)
        except Exception as error:  # cannot check now: still unknown
            log.warning("outbox %s: could not check row %s (%s)", outbound.channel,
                        outbound.outbox_id, error)
        now = self.now
        max_attempts = self.dispatcher.settings.max_attempts
        values: dict[str, Any]
        if found is not None:
            values = {"state": OutboxState.SENT, "sent_at": now,
                      "external_id": found.external_id, "last_error": None}
        elif permanent:
            values = {"state": OutboxState.DEAD, "last_error": cause}
        elif self.adapter.idempotent or (unknowns == 0 and claim.attempts < max_attempts):
            delay = 0.0 if recovering else self.dispatcher.backoff(claim.attempts, None)
            values = {"state": OutboxState.RETRY,
                      "next_attempt_at": now + timedelta(seconds=delay),
                      "last_error": f"{cause}; outcome unknown, retrying"}
        else:
            again = " (an unknown outcome again)" if unknowns else ""
            values = {"state": OutboxState.DEAD,
                      "last_error": f"{cause}{again}; it may or may not have been delivered"}
        log.warning("outbox %s: row %s, %s: %s", outbound.channel, outbound.outbox_id, cause,
                    "found delivered" if found else values["state"])

        async def apply(session: Any) -> None:
            if not await _settle(session, claim, recovered=Outbox.recovered + 1, **values):
                return  # another dispatcher settled it first
            if found is not None:
                await release(session, outbound)
            if found is not None and self.dispatcher.listener is not None:
                await self.dispatcher.listener.delivered(session, outbound, now)
            if values["state"] == OutboxState.DEAD:
                await self.dispatcher.dead_letter(session, outbound, values["last_error"], now)
        return apply


async def _set(session: Any, row_id: int, **values: Any) -> None:
    await session.execute(sa.update(Outbox).where(Outbox.id == row_id).values(**values))


async def _settle(session: Any, claim: Claim | Claimed, **values: Any) -> bool:
    """Record an outcome only if the row is still in the claim that sent it: a late
    answer must not undo what another dispatcher (or a recovery) did since."""
    claim = claim.claim if isinstance(claim, Claimed) else claim
    changed = await session.execute(
        sa.update(Outbox).where(Outbox.id == claim.row_id, Outbox.state == OutboxState.SENDING,
                                Outbox.claimed_by.is_(None) if claim.by is None
                                else Outbox.claimed_by == claim.by,
                                Outbox.attempts == claim.attempts)
        .values(**values))
    if not changed.rowcount:
        log.warning("outbox: row %s changed hands before its outcome was recorded",
                    claim.row_id)
    return bool(changed.rowcount)


async def _hand_back(session: Any, *, claimed: list[Claimed]) -> None:
    """Undo claims that were never sent: due again, the attempt not counted."""
    for row in claimed:
        await _settle(session, row, attempts=row.attempts - 1, claimed_at=None,
                      claimed_by=None,
                      state=OutboxState.RETRY if row.attempts > 1 else OutboxState.PENDING)


def _lane(now: datetime) -> Any:
    """The lane a row is sent in: chatter that has waited CHATTER_PATIENCE joins the staff
    lane, so steady new cards and alerts cannot hold it back for ever."""
    return sa.case((sa.and_(Outbox.lane == Lane.CHATTER,
                            Outbox.created_at <= now - CHATTER_PATIENCE), int(Lane.STAFF)),
                   else_=Outbox.lane)


def _outbound(row: Any) -> Outbound:
    return Outbound(outbox_id=row.id, channel=row.channel, kind=row.kind, target=row.target,
                    text=row.text, idempotency_key=row.idempotency_key, ticket_id=row.ticket_id)


async def _wait_any(events: list[asyncio.Event], timeout: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
