"""The one injectable clock: nothing in core reads the wall clock directly.

The daemon runs on ``SystemClock``; ``sameday demo`` and ``sameday replay`` run the same
core on a ``VirtualClock`` that starts at a chosen moment and runs faster than real time
(or only when advanced by hand, in tests).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of this clock's time."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """How many real seconds `seconds` of this clock's time take (for timers that
        run on real time, like the scheduler's)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def real_seconds(self, seconds: float) -> float:
        return seconds


class VirtualClock:
    """Time that starts at `start` and runs `speed` times faster than real time.

    ``speed=0`` stops it: it then moves only through ``advance`` (deterministic tests).
    """

    def __init__(self, start: datetime, speed: float = 0.0):
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs an aware start time")
        self._start = start.astimezone(UTC)
        self._offset = timedelta()
        self._real_start = time.monotonic()
        self.speed = speed

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._real_start) * self.speed
        return self._start + self._offset + timedelta(seconds=elapsed)

    def advance(self, delta: timedelta) -> None:
        self._offset += delta

    def set(self, moment: datetime) -> None:
        self._offset += moment - self.now()

    def real_seconds(self, seconds: float) -> float:
        # A stopped clock only moves by hand: its timers are due at once.
        return seconds / self.speed if self.speed > 0 else 0.0

    async def sleep(self, seconds: float) -> None:
        if self.speed > 0:
            await asyncio.sleep(seconds / self.speed)
        else:
            await asyncio.sleep(0)
            self.advance(timedelta(seconds=seconds))
