"""The transactional outbox and its dispatcher.

Rows are written in the same transaction as the change that causes them (a new ticket,
a staff reply); the dispatcher delivers them afterwards through the channel's adapter
and records the platform's message id. A row is claimed by an atomic conditional
UPDATE (pending/retry -> sending) before it is sent, so two dispatchers never send the
same row.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

import sqlalchemy as sa

from core.channel import ChannelAdapter, DeliveryError
from core.clock import Clock
from core.config import OutboxSettings
from core.model import Outbound, Outbox, OutboxState
from core.store import Store

log = logging.getLogger(__name__)

DUE_STATES = (OutboxState.PENDING, OutboxState.RETRY)


class Dispatcher:
    """Drains due outbox rows, earliest deadline first, through the adapters."""

    def __init__(self, store: Store, clock: Clock, settings: OutboxSettings,
                 adapters: dict[str, ChannelAdapter], *, batch_size: int = 50,
                 idle_poll: float = 1.0):
        self.store = store
        self.clock = clock
        self.settings = settings
        self.adapters = adapters
        self.batch_size = batch_size
        self.idle_poll = idle_poll
        self._wake = asyncio.Event()
        self._warned_channels: set[str] = set()

    def wake(self) -> None:
        """Called after a commit that queued rows: deliver now, not at the next poll."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                sent = await self.dispatch_once()
            except Exception:  # the database may be briefly unavailable; keep going
                log.exception("outbox dispatch failed; retrying")
                sent = 0
            if sent:
                continue
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()),
                       asyncio.ensure_future(stopping.wait())]
            await asyncio.wait(waiters, timeout=self.idle_poll,
                               return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def dispatch_once(self) -> int:
        """Claim and send one batch of due rows; return how many were attempted."""
        rows = await self._due_rows()
        attempted = 0
        for row in rows:
            adapter = self.adapters.get(row.channel)
            if adapter is None:
                if row.channel not in self._warned_channels:
                    log.warning("no adapter runs for channel %r; its outbox rows wait",
                                row.channel)
                    self._warned_channels.add(row.channel)
                continue
            if not await self._claim(row.id):
                continue  # another dispatcher took it
            attempted += 1
            await self._deliver(adapter, row)
        return attempted

    async def _due_rows(self) -> list[Outbox]:
        async with self.store.session() as session:
            rows = await session.scalars(
                sa.select(Outbox)
                .where(Outbox.state.in_(DUE_STATES), Outbox.next_attempt_at <= self.clock.now(),
                       Outbox.channel.in_(list(self.adapters)))
                .order_by(Outbox.deadline_at.is_(None), Outbox.deadline_at, Outbox.id)
                .limit(self.batch_size))
            return list(rows)

    async def _claim(self, row_id: int) -> bool:
        async with self.store.session() as session, session.begin():
            claimed = await session.execute(
                sa.update(Outbox)
                .where(Outbox.id == row_id, Outbox.state.in_(DUE_STATES))
                .values(state=OutboxState.SENDING, attempts=Outbox.attempts + 1))
            return claimed.rowcount == 1

    async def _deliver(self, adapter: ChannelAdapter, row: Outbox) -> None:
        outbound = Outbound(outbox_id=row.id, channel=row.channel, kind=row.kind,
                            target=row.target, text=row.text,
                            idempotency_key=row.idempotency_key, ticket_id=row.ticket_id)
        try:
            delivered = await adapter.send(outbound)
        except DeliveryError as error:
            await self._failed(row, error)
        except Exception as error:  # an adapter bug must not stop delivery of other rows
            log.exception("adapter %s crashed sending outbox row %s", row.channel, row.id)
            await self._failed(row, DeliveryError(f"adapter error: {error!r}"))
        else:
            await self._finish(row.id, state=OutboxState.SENT, sent_at=self.clock.now(),
                               external_id=delivered.external_id, last_error=None)

    async def _failed(self, row: Outbox, error: DeliveryError) -> None:
        attempts = row.attempts + 1
        if error.permanent or attempts >= self.settings.max_attempts:
            log.warning("outbox row %s (%s) is dead after %d attempts: %s",
                        row.id, row.kind, attempts, error.reason)
            await self._finish(row.id, state=OutboxState.DEAD, last_error=error.reason)
            return
        delay = self.backoff(attempts, error.retry_after)
        log.info("outbox row %s failed (%s); retry in %.1fs", row.id, error.reason, delay)
        await self._finish(row.id, state=OutboxState.RETRY, last_error=error.reason,
                           next_attempt_at=self.clock.now() + timedelta(seconds=delay))

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, never sooner than the platform asked."""
        base = self.settings.retry_base.total_seconds()
        ceiling = min(self.settings.retry_max.total_seconds(), base * 2 ** (attempts - 1))
        delay = random.uniform(base / 2, ceiling)
        return max(delay, retry_after or 0.0)

    async def _finish(self, row_id: int, **values: object) -> None:
        # Shielded: shutting down must not leave a sent row looking unsent.
        await asyncio.shield(self._update(row_id, values))

    async def _update(self, row_id: int, values: dict[str, object]) -> None:
        async with self.store.session() as session, session.begin():
            await session.execute(sa.update(Outbox).where(Outbox.id == row_id).values(**values))
