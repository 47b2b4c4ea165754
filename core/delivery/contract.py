"""The one contract between the core and a channel adapter.

An adapter (in ``bots/<platform>/``) subclasses ``ChannelAdapter``: four methods are
required (start, stop, send, rate_keys); every optional capability has a documented
default here, so the dispatcher and the health endpoint never probe with ``getattr``.
The daemon makes adapters with the factory of the channel's description
(``core.config.channels``), found through the ``sameday.channels`` entry points.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from pydantic import ValidationError

from core.clock import Clock
from core.config.channels import channel_label, installed_channels
from core.config.settings import Settings
from core.delivery.files import fetch_url
from core.delivery.outfiles import FileRules, OutgoingFile
from core.domain.records import Attachment, Delivered, Inbound, Outbound, Unreadable

STAFF_CHANNEL = "staff"  # outbox rows for the staff chat (a channel's staff group, or console)


class DeliveryError(Exception):
    """A send failed. ``permanent`` errors are never retried (blocked bot, deleted
    tweet, bad request); others are retried, not before ``retry_after`` seconds.
    ``unknown``: the platform may have performed it (a timeout or a dropped connection
    after the request went out): checked with ``find_sent``, else retried only once."""

    def __init__(self, reason: str, *, permanent: bool = False,
                 retry_after: float | None = None, unknown: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after
        self.unknown = unknown


@dataclass(frozen=True)
class Cursor:
    """A platform position (Telegram offset, VK ts, X since_id) saved with a batch."""

    channel: str
    key: str
    value: str


@dataclass(frozen=True)
class ChannelHealth:
    """An adapter's view of its receiving, for /healthz and /metrics."""

    connected: bool  # receiving runs and its latest poll worked
    last_poll_ok: datetime | None  # latest successful receive poll (empty answers count)
    poll_errors: int  # failed receive polls since start
    # A platform setting that makes messages go unread (named, with where to fix it):
    # unhealthy until fixed, though polling works.
    problem: str | None = None


class Ingest(Protocol):
    """Store a batch, its unreadable payloads (quarantined) and the cursor in one
    transaction; a message that cannot be stored is quarantined instead of failing the
    batch. Raises only while the database is unavailable (``is_transient``)."""

    async def __call__(self, batch: Sequence[Inbound], cursor: Cursor | None = None,
                       unreadable: Sequence[Unreadable] = ()) -> object: ...


class StaffDeskPort(Protocol):
    """What a staff-chat adapter may ask of the staff command core (core.staff)."""

    settings: Settings

    async def execute(self, actor: Any, line: Any, bot_username: str | None = None, *,
                      file: OutgoingFile | None = None) -> Any:
        """Run one staff command line (or a parsed ``Command``) for an actor; returns a
        ``Reply``. ``file``: a /reply that carries it (core.delivery.outfiles)."""

    def actor_named(self, name: str, origin: dict[str, Any] | None = None) -> Any:
        """The staff member of that name (an ``Actor``; not staff if unknown); ``origin``
        is the staff chat's own address of the member's message."""

    async def tell_staff(self, message: Any, key: str) -> None:
        """Queue a ``StaffMessage`` to the staff chat (rate limits and retries apply)."""

    async def ticket_for_staff_message(self, external_id: str) -> int | None:
        """The ticket a staff-chat message (a card, a notice) belongs to."""

    async def ticket_for_staff_thread(self, thread_id: int) -> int | None:
        """The ticket whose own thread (a forum topic) in the staff chat this is."""

    async def staff_thread_of(self, ticket_id: int) -> int | None:
        """The ticket's own thread in the staff chat, if it has one."""

    async def remember_staff_thread(self, ticket_id: int, thread_id: int) -> None:
        """Remember the thread made for the ticket."""

    async def ticket_title(self, ticket_id: int) -> str:
        """A short title of the ticket (for a topic or a thread)."""

    async def answer_survey(self, channel: str, survey_id: int, score: int,
                            author_id: str) -> Any:
        """A customer pressed a satisfaction survey's button (any channel's adapter may
        ask this); returns what to show them (``.text``) and whether the survey has its
        score now (``.done``: its buttons may go): core.staff.survey.Pressed."""


class DeliveryListener(Protocol):
    """Who hears of outcomes, inside the transaction that records them (the staff chat:
    core.staff.board.StaffNotices)."""

    async def delivered(self, session: Any, outbound: Outbound, now: datetime) -> None:
        """A row was delivered."""

    async def dead(self, session: Any, outbound: Outbound, reason: str,
                   now: datetime) -> None:
        """A row was given up (dead-lettered)."""


@dataclass
class AdapterContext:
    settings: Settings
    clock: Clock
    ingest: Ingest
    load_cursor: Callable[[str, str], Awaitable[str | None]]
    # For the adapter that carries the staff chat: the command core, and a config reload
    # (returns None on success, else the problems as text).
    staff_desk: StaffDeskPort | None = None
    reload_config: Callable[[], str | None] | None = None
    # Count a payload that is not for the inbox, by kind ("group_chatter", "retweet"):
    # /metrics shows what is left out instead of a debug log.
    ignore: Callable[[str, str], None] = lambda channel, kind: None


class ChannelAdapter(ABC):
    """What the core needs from a platform."""

    name: ClassVar[str]
    # A repeated send cannot double a message (VK's random_id): a send interrupted by a
    # crash is simply sent again. False: it is checked with ``find_sent`` or bounded.
    idempotent: ClassVar[bool] = False
    # At most this many sends in flight (X: one, so each post's rate-limit headers are
    # read before the next goes out); None: ``outbox.concurrency``.
    max_in_flight: ClassVar[int | None] = None
    # What the platform lets staff do with an answer besides sending text; the staff
    # commands ask before queueing (core/staff/files.py, core/staff/file_answers.py), the
    # methods below do it. Files: what it takes (core.delivery.outfiles.FileRules); None:
    # no files.
    can_edit: ClassVar[bool] = False
    can_delete: ClassVar[bool] = False
    file_rules: ClassVar[FileRules | None] = None
    context: AdapterContext | None = None  # given by start()

    def ignored(self, kind: str) -> None:
        """A payload that is not for the inbox: counted by kind; returns None so that
        ``to_inbound`` can ``return self.ignored("retweet")``."""
        if self.context is not None:
            self.context.ignore(self.name, kind)

    @abstractmethod
    async def start(self, context: AdapterContext) -> None:
        """Connect and start receiving in background tasks; return when running."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop receiving; a batch being stored is allowed to finish."""

    @abstractmethod
    async def send(self, outbound: Outbound) -> Delivered:
        """Deliver one message; raise DeliveryError when the platform refuses."""

    @abstractmethod
    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        """The rate-limit buckets a send spends from: (bucket name in
        ``[outbox.limits.<channel>]``, key), e.g. [("per_bot", "bot"), ("per_chat", "42")]."""

    def reply_target(self, outbound: Outbound) -> Any:
        """The row's address as the channel's typed reply target (the model its
        description names); a row that is not one is refused for good."""
        model = installed_channels()[self.name].reply_target
        try:
            return model.model_validate(outbound.target)
        except ValidationError as error:
            problem = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'target'}: {e['msg']}"
                                for e in error.errors())
            raise DeliveryError(f"not a {channel_label(self.name)} address ({problem}): "
                                f"{outbound.target!r:.200}", permanent=True) from None

    @classmethod
    def survey_private(cls, target: dict[str, Any]) -> bool:
        """Whether a message to this reply target is seen by the customer alone (a private
        chat): the satisfaction survey goes there unless ``[survey.channels]`` turns the
        channel off, and goes to public places (an X post, a comment, a group chat) only
        where it turns the channel on. The default: private."""
        return True

    def read_payload(self, payload: Any) -> Inbound | None:
        """The Inbound in one payload as kept in ``Inbound.raw`` (None: not for the
        inbox); raises when the payload is malformed. ``sameday quarantine retry`` reads
        quarantined payloads again with it, after an upgrade that can read them."""
        raise NotImplementedError(f"{self.name} cannot read its payloads again")

    def send_cost(self, outbound: Outbound) -> int:
        """How many platform messages this row becomes (a long text split in parts)."""
        return 1

    async def find_sent(self, outbound: Outbound) -> Delivered | None:
        """After a crash mid-send: the message if the platform has it, None if it does
        not or cannot tell (the default: the row is retried once, then dead-lettered)."""
        return None

    def health(self) -> ChannelHealth | None:
        """Receiving health; None (the default) lists the channel on /healthz without
        ever making the daemon unhealthy."""
        return None

    async def fetch_attachment(self, attachment: Attachment) -> tuple[bytes, str] | None:
        """The file of a customer's attachment and its content type, for ``sameday media
        get``; works on an adapter that was made but not started. None: the channel has
        no way to this file (no URL); raises ``core.delivery.files.FetchError`` (too big,
        the download failed) with the reason. The default downloads ``attachment.url``
        (size limit, timeout); a platform that gives file ids only overrides it."""
        if not attachment.url:
            return None
        return await fetch_url(attachment.url)

    # --- what else becomes of an answer (optional; the dispatcher routes by row kind) ---

    async def send_file(self, outbound: Outbound, file: OutgoingFile) -> Delivered:
        """Deliver an answer carrying a file (``outbound.text`` is its caption; the row's
        ``target["file"]`` describes it, ``file`` has its bytes or, ``by_reference``, the
        staff chat's handle of it)."""
        raise DeliveryError(f"{channel_label(self.name)} cannot carry files from sameday",
                            permanent=True)

    async def edit(self, outbound: Outbound) -> Delivered:
        """Change a sent answer to ``outbound.text``: the row's target is the answer's
        own, with ``answer`` = {"external_id": what its send returned, "file": its kind or
        None}."""
        raise DeliveryError(f"{channel_label(self.name)} does not let a sent answer be "
                            f"changed", permanent=True)

    async def delete(self, outbound: Outbound) -> Delivered:
        """Withdraw a sent answer (the row's target as for ``edit``); one that is gone
        already counts as withdrawn."""
        raise DeliveryError(f"{channel_label(self.name)} does not let a sent answer be "
                            f"withdrawn", permanent=True)


AdapterFactory = Callable[[Settings], ChannelAdapter]


def adapter_class(name: str) -> type[ChannelAdapter] | None:
    """The adapter class of an installed channel, without starting or making one (its
    module, and so its SDK, is imported); None if the channel is not installed."""
    description = installed_channels().get(name)
    if description is None:
        return None
    factory = description.adapter
    # A description names the class itself, or a ``lazy`` factory that returns the class
    # when called without arguments.
    found = factory if isinstance(factory, type) else factory()
    return found if isinstance(found, type) and issubclass(found, ChannelAdapter) else None


def adapter_factories() -> dict[str, AdapterFactory]:
    """The installed channels' adapter factories by channel name."""
    return {name: channel.adapter for name, channel in installed_channels().items()}
