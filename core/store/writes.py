"""Which of this process's writes fail right now, for /healthz and /metrics.

A database can answer ``SELECT 1`` and still refuse every commit (a full disk, a
read-only replica): the parts that write -- a channel's intake, its dispatch loop --
report each outcome here, so health turns red at the first failed commit with the reason
and green again at the first good one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

RECEIVE, SEND = "receive", "send"


@dataclass(frozen=True)
class WriteFailure:
    reason: str
    since: datetime


class WriteHealth:
    def __init__(self) -> None:
        self._failing: dict[tuple[str, str], WriteFailure] = {}

    def succeeded(self, channel: str, activity: str) -> None:
        self._failing.pop((channel, activity), None)

    def failed(self, channel: str, activity: str, error: BaseException) -> None:
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        reason = f"{type(error).__name__}: {first_line}".rstrip(": ")
        since = self._failing.get((channel, activity))
        self._failing[(channel, activity)] = WriteFailure(
            reason, since.since if since else datetime.now(UTC))

    def failing(self) -> dict[tuple[str, str], WriteFailure]:
        """(channel, activity) -> the latest failure, for what fails now."""
        return dict(self._failing)
