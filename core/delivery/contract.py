"""The narrow interface every channel adapter implements, and how the daemon finds them.

Adapters live in ``bots/`` and are registered as entry points in the group
``sameday.channels`` (see pyproject.toml), so the core can load them by name without
importing any platform SDK itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol

from core.clock import Clock
from core.config.settings import Settings
from core.domain.records import Delivered, Inbound, Outbound

if TYPE_CHECKING:
    from core.staff.commands import StaffDesk

ENTRY_POINT_GROUP = "sameday.channels"
STAFF_CHANNEL = "staff"  # outbox rows for the staff UI (Telegram group or console)


class DeliveryError(Exception):
    """A send failed. ``permanent`` errors are never retried (blocked bot, deleted
    tweet, bad request); others are retried, not before ``retry_after`` seconds."""

    def __init__(self, reason: str, *, permanent: bool = False,
                 retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class Cursor:
    """A platform position (Telegram offset, VK ts, X since_id) saved with a batch."""

    channel: str
    key: str
    value: str


# ingest(batch, cursor): stores the batch and the cursor in one transaction.
Ingest = Callable[[Sequence[Inbound], Cursor | None], Awaitable[object]]


@dataclass
class AdapterContext:
    settings: Settings
    clock: Clock
    ingest: Ingest
    load_cursor: Callable[[str, str], Awaitable[str | None]]
    # For the adapter that carries the staff chat: the command core, and a config reload
    # (returns None on success, else the problems as text).
    staff_desk: StaffDesk | None = None
    reload_config: Callable[[], str | None] | None = None


class ChannelAdapter(Protocol):
    """What the core needs from a platform. Optional extras the dispatcher uses when an
    adapter has them: ``idempotent = True`` (a repeated send cannot double a message),
    ``send_cost(outbound) -> int`` (messages one row becomes, e.g. a split long text) and
    ``async find_sent(outbound) -> Delivered | None`` (look up whether an interrupted
    send reached the platform).

    Optional for the health endpoint (core/health.py): ``health() -> dict`` with
    ``connected`` (bool: receiving runs and its latest poll worked), ``last_poll_ok``
    (aware datetime of the latest successful receive poll, empty answers included, or
    None) and ``poll_errors`` (int: failed receive polls since start). An adapter without
    it is listed on /healthz but never makes the daemon unhealthy."""

    name: str

    async def start(self, context: AdapterContext) -> None:
        """Connect and start receiving in background tasks; return when running."""

    async def stop(self) -> None:
        """Stop receiving; a batch being stored is allowed to finish."""

    async def send(self, outbound: Outbound) -> Delivered:
        """Deliver one message; raise DeliveryError when the platform refuses."""

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        """The rate-limit buckets a send spends from: (bucket name in
        ``[outbox.limits.<channel>]``, key), e.g. [("per_bot", "bot"), ("per_chat", "42")]."""


AdapterFactory = Callable[[Settings], ChannelAdapter]


def adapter_factories() -> dict[str, AdapterFactory]:
    """The installed adapters by channel name."""
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}
