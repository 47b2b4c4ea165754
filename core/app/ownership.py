"""Which channels this replica runs: one owner per channel, and failover in seconds.

A channel's receiving (the platform's long poll or polling) and its dispatch loop (its
sends, under the platform's limits for the bot) run on exactly one replica at a time:
the one holding the channel's lock (core.store.locks). Every ``CHECK_SECONDS`` each
replica checks that its lock connection still answers (if not, it stops every channel
it runs at once: another replica may take them as soon as the server drops the
connection) and tries to take the channels nobody holds:

- a channel free at this check is taken when this replica runs fewer than its fair
  share (the channels divided by the live replicas, rounded up; a replica is counted
  from its first check and takes nothing before its second), so replicas that start
  together spread the channels;
- a channel still free at the next check is taken whatever the share: one that nobody
  runs is the worse outcome.

There is no rebalancing: a replica keeps what it runs until it stops or loses its
connection. ``end(name, handover)``: ``handover`` when the replica gives the channel up
while it still holds the lock (its sends in flight may finish first); otherwise the lock
may be gone and the receiving must stop at once. On SQLite there is one process, which
runs every channel (``locks`` None).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from core.store.locks import ChannelLocks, LockConnectionLost

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0


class Ownership:
    def __init__(self, channels: list[str], locks: ChannelLocks | None,
                 begin: Callable[[str], Awaitable[None]],
                 end: Callable[[str, bool], Awaitable[None]]):
        self.channels = channels
        self.locks = locks
        self._begin = begin
        self._end = end
        self.owned: list[str] = []
        self._free_before: set[str] = set()  # channels found free at the previous check
        self._lost_at: float | None = None  # when the lock connection failed (for logs)

    async def run(self, stopping: asyncio.Event) -> None:
        """Check every CHECK_SECONDS until stopped; then give every channel up."""
        watching = asyncio.create_task(self._watch(stopping))
        try:
            while not stopping.is_set():
                try:
                    await self.check()
                except Exception:  # never the end of ownership: the next check retries
                    log.exception("channel ownership: the check failed")
                try:
                    await asyncio.wait_for(stopping.wait(), CHECK_SECONDS)
                except TimeoutError:
                    pass
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await self.give_up_all()

    async def _watch(self, stopping: asyncio.Event) -> None:
        """The lock connection's check, apart from taking channels: starting one reads the
        database and may hang while it is away, and the channels already run must stop
        before the server frees their locks all the same."""
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), CHECK_SECONDS)
            except TimeoutError:
                pass
            if self.locks is None or not self.locks.connected:
                continue
            try:
                await self.locks.alive()
            except LockConnectionLost as error:
                await self._lost(error)

    async def check(self) -> None:
        if self.locks is None:  # SQLite: this process is the only one
            for name in self.channels:
                if name not in self.owned:
                    await self._start(name)
            return
        try:
            await self._check_locks()
        except LockConnectionLost as error:
            await self._lost(error)

    async def _check_locks(self) -> None:
        locks = self.locks
        if not locks.connected:
            await locks.connect()
            if self._lost_at is not None:
                log.info("channel locks: connected again after %.1fs",
                         time.monotonic() - self._lost_at)
                self._lost_at = None
            # Counted from now on; taking waits one check, so replicas that start
            # together count each other before they share the channels out.
            return
        # The connection's health is the watch's to check: asked here again, a dead one
        # fails the questions below all the same.
        free = [name for name in self.channels if name not in self.owned]
        if not free:
            return
        share = math.ceil(len(self.channels) / await locks.replicas())
        for name in free:
            if len(self.owned) >= share and name not in self._free_before:
                continue  # another replica may want it; ours if still free next time
            if await locks.take(name):
                await self._start(name)
        self._free_before = {name for name in free if name not in self.owned}

    async def _start(self, name: str) -> None:
        try:
            await self._begin(name)
        except Exception:
            log.exception("channel %s: could not start it here; another replica may", name)
            if self.locks is not None and self.locks.connected:
                await self.locks.give_up(name)
            return
        self.owned.append(name)
        log.info("channel %s: this replica runs it now", name)
        if self.locks is not None and name not in self.locks.held:
            # The connection went while the channel was starting: its lock may be
            # another replica's by now.
            await self._stop(name)

    async def _lost(self, error: Exception) -> None:
        """The lock connection failed: our locks may be gone, so stop every channel."""
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            log.error("channel locks: the connection failed (%s); stopping %s", error,
                      ", ".join(self.owned) or "nothing")
        self._free_before = set()
        # All at once: a channel's receiving must not outlive our lock waiting for
        # another channel to stop.
        await asyncio.gather(*(self._stop(name) for name in list(self.owned)))

    async def give_up_all(self) -> None:
        """Stop every channel this replica runs, then let the others take them."""
        await asyncio.gather(*(self._stop(name, release=True) for name in list(self.owned)))
        if self.locks is not None:
            await self.locks.close()

    async def _stop(self, name: str, release: bool = False) -> None:
        if name not in self.owned:
            return  # being stopped already (the watch and a check both saw the loss)
        self.owned.remove(name)
        try:
            await self._end(name, release)
        except Exception:
            log.exception("channel %s did not stop cleanly", name)
        log.info("channel %s: this replica stopped running it", name)
        if release and self.locks is not None and self.locks.connected:
            try:  # the others need not wait for our connection to close
                await self.locks.give_up(name)
            except LockConnectionLost:
                pass  # closing the connection releases it as well
