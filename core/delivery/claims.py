"""Whose claims on outbox rows are abandoned: a process that is gone, or a lease that ran out.

Every dispatching process writes a heartbeat row every ``BEAT``. A row in "sending" is
abandoned when

- the process that claimed it ran on this host and no longer runs (a crash: recovered on
  the first pass after the restart), or
- that process's heartbeat has not changed for ``STALE`` as *this* process saw it (clocks
  of other hosts are never compared with ours, so clock skew cannot make a live replica
  look dead), or
- the claim is older than ``outbox.lease``, whoever made it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from core.store.process import THIS_PROCESS, gone_from_this_host

BEAT = timedelta(seconds=5)
STALE = BEAT * 3


class HeartbeatWatch:
    """When each process's heartbeat last changed, on this process's monotonic clock."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[datetime, float]] = {}
        self._since = clock()

    def observe(self, beats: Iterable[tuple[str, datetime]]) -> None:
        now = self._clock()
        for process, beat_at in beats:
            seen = self._seen.get(process)
            if seen is None or seen[0] != beat_at:
                self._seen[process] = (beat_at, now)

    def silent(self, process: str) -> bool:
        """True when the process's beat has not changed for STALE while we watched (a
        process never seen beating is silent once we have watched that long)."""
        changed = self._seen.get(process, (None, self._since))[1]
        return self._clock() - changed > STALE.total_seconds()


def abandoned(claimed_by: str | None, claimed_at: datetime, now: datetime, lease: timedelta,
              watch: HeartbeatWatch) -> bool:
    if claimed_at < now - lease:
        return True
    if claimed_by is None or claimed_by == THIS_PROCESS:
        return False
    return gone_from_this_host(claimed_by) or watch.silent(claimed_by)
