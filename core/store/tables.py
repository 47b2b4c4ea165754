"""The tables of sameday.

Every time is stored timezone-aware in UTC (``UTCDateTime``); the calendar converts to
local time only when it computes deadlines or renders text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from core.domain.records import OutboxState, Priority, TicketStatus
from core.store.search import create_search, drop_search


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite has no time zone type, so values are stored there as naive UTC; PostgreSQL
    gets ``timestamptz``. Naive datetimes are refused: they are always a bug here.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: sameday stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # SQLite: one conversion per value instead of this decorator's and then SQLAlchemy's
    # own (a regular expression per value read): the text is SQLAlchemy's format exactly
    # ("2026-11-24 07:00:00.000000"), so stored values compare as before.
    def bind_processor(self, dialect: sa.Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def to_text(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError(
                    f"naive datetime {value!r}: sameday stores aware UTC times only")
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return to_text

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def from_text(value: str | None) -> datetime | None:
            if value is None:
                return None
            moment = datetime.fromisoformat(value)
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None \
                else moment.astimezone(UTC)
        return from_text


def _time(index: bool = False, nullable: bool = True) -> Any:
    return Field(default=None, sa_type=UTCDateTime, index=index, nullable=nullable)


class Customer(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("channel", "external_user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    external_user_id: str = Field(max_length=128)
    handle: str | None = Field(default=None, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _time(nullable=False)
    # The latest acknowledgement to this customer: a burst gets one (ack.quiet_window).
    last_acked_at: datetime | None = _time()
    # /link: customers who are one person (the same person on two channels) all carry
    # the id of the person's first customer (that one too); None: linked to no one. The
    # person of any customer is coalesce(person_id, id) (core.staff.merging.person_of).
    person_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    # /block: their messages are stored and counted, never acknowledged, carded or
    # escalated (core.staff.blocking); /unblock clears the three.
    blocked_at: datetime | None = _time()
    blocked_by: str | None = Field(default=None, max_length=128)
    blocked_reason: str | None = Field(default=None, max_length=500)
    # The flood guard (inbox.flood, core.intake.flood): the first message of the
    # customer's current window and how many messages they sent in it.
    flood_since: datetime | None = _time()
    flood_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


# Waiting tickets with an escalation still planned, as SQL: the condition of the partial
# index ix_ticket_next_due (migration 0016); the statuses of core.domain.lifecycle.WAITING.
TICKET_DUE = (f"status IN ('{TicketStatus.OPEN}', '{TicketStatus.SNOOZED}') "
              "AND next_escalation_at IS NOT NULL")


class Ticket(SQLModel, table=True):
    __table_args__ = (
        # The escalation sweep selects due tickets through this index.
        sa.Index("ix_ticket_sweep", "status", "next_escalation_at"),
        # Threading looks up the open ticket of a thread.
        sa.Index("ix_ticket_thread", "channel", "thread_key", "customer_id", "status"),
        # /metrics' "today" figures read only the day's tickets (core.app.health).
        sa.Index("ix_ticket_opened", "opened_at"),
        # The sweep's next due escalation and due tickets: only tickets that have one
        # (most waiting tickets have none left), so the first entry is the answer
        # however many tickets wait. Queries repeat TICKET_DUE word for word (SQLite).
        sa.Index("ix_ticket_next_due", "next_escalation_at",
                 sqlite_where=sa.text(TICKET_DUE), postgresql_where=sa.text(TICKET_DUE)),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    thread_key: str = Field(max_length=255)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    status: str = Field(default=TicketStatus.OPEN, max_length=16)
    priority: str = Field(default=Priority.NORMAL, max_length=16)
    assignee: str | None = Field(default=None, max_length=128)
    language: str | None = Field(default=None, max_length=8)
    # The waiting cycle: +1 each time the customer writes again after a staff answer.
    cycle: int = Field(default=1)
    opened_at: datetime = _time(nullable=False)
    # Start of the current waiting cycle: escalation triggers count from here.
    waiting_since: datetime | None = _time()
    last_customer_at: datetime = _time(nullable=False)
    acked_at: datetime | None = _time()
    first_response_at: datetime | None = _time()
    due_at: datetime | None = _time()
    next_escalation_at: datetime | None = _time()
    escalation_level: int = Field(default=0)
    snoozed_until: datetime | None = _time()
    closed_at: datetime | None = _time()
    # The ticket's own topic in a staff group with forum topics.
    staff_topic: int | None = Field(default=None, index=True)
    # Where answers go: the platform address of the customer's latest message.
    reply_target: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # /merge: the ticket this one was merged into (and closed for); the customer's next
    # message on this one's thread lands there (core.intake.inbox threading).
    merged_into: int | None = Field(default=None, foreign_key="ticket.id")


class Message(SQLModel, table=True):
    # Inbound dedupe: the same platform message is stored once per channel.
    __table_args__ = (sa.UniqueConstraint("channel", "external_id", name="uq_message_external"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    channel: str = Field(max_length=32)
    direction: str = Field(max_length=8)
    author: str | None = Field(default=None, max_length=255)
    external_id: str | None = Field(default=None, max_length=128)
    text: str  # what the customer wrote (a caption counts); media are in `attachments`
    created_at: datetime = _time(nullable=False)
    # What came besides text (core.domain.records.Attachment as JSON), and the platform's
    # payload as received (core.domain.payload.pack: compressed, size-capped).
    attachments: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    raw: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary))


# /find's full-text index over customers' messages (core.store.search) comes with the
# table, also where a schema is made by SQLModel.metadata.create_all, not the migrations.
sa.event.listen(Message.__table__, "after_create",
                lambda _table, connection, **_: create_search(connection))
sa.event.listen(Message.__table__, "before_drop",
                lambda _table, connection, **_: drop_search(connection))


class Mention(SQLModel, table=True):
    """A customer's post kept as a non-ticket (``Inbound.note``: a retweet, a quote that
    asks nothing): stored and counted, never acknowledged, no staff card."""

    __table_args__ = (
        # A payload delivered again (a crash before the cursor moved) is kept once.
        sa.UniqueConstraint("channel", "external_id", name="uq_mention_external"),
        # /metrics counts them by channel and kind.
        sa.Index("ix_mention_kind", "channel", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    external_id: str = Field(max_length=128)
    kind: str = Field(max_length=32)
    author_id: str = Field(max_length=128)
    author_handle: str | None = Field(default=None, max_length=255)
    author_name: str | None = Field(default=None, max_length=255)
    text: str
    # As on Message: attachments as JSON, the payload packed (core.domain.payload.pack).
    attachments: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    raw: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary))
    created_at: datetime = _time(nullable=False)


# The outbox rows waiting to be sent, as SQL: the condition of the partial index
# ix_outbox_waiting (migration 0015), the same states as the dispatcher's DUE_STATES.
OUTBOX_WAITING = f"state IN ('{OutboxState.PENDING}', '{OutboxState.RETRY}')"


class Outbox(SQLModel, table=True):
    __table_args__ = (
        # The dispatcher claims due rows per channel in deadline order.
        sa.Index("ix_outbox_due", "channel", "state", "next_attempt_at"),
        # A staff reply to a card finds its ticket by the card's platform message id.
        sa.Index("ix_outbox_external", "channel", "external_id"),
        # /metrics' outbox depth and oldest due row: only the rows still waiting are in
        # it (with state: SQLite then reads the index alone). A query must repeat
        # OUTBOX_WAITING word for word for SQLite to use it.
        sa.Index("ix_outbox_waiting", "channel", "state", "next_attempt_at",
                 sqlite_where=sa.text(OUTBOX_WAITING),
                 postgresql_where=sa.text(OUTBOX_WAITING)),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    kind: str = Field(max_length=16)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    # Platform-specific address (chat, peer, tweet to reply to); only the adapter reads it.
    target: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    text: str
    idempotency_key: str = Field(max_length=255, unique=True)
    state: str = Field(default=OutboxState.PENDING, max_length=16)
    attempts: int = Field(default=0)
    # Under a binding limit rows go out by lane (customers, then new cards and alerts, then
    # staff chatter: core.delivery.enqueue.Lane), then earliest deadline first.
    lane: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    deadline_at: datetime | None = _time()
    next_attempt_at: datetime = _time(nullable=False)
    created_at: datetime = _time(nullable=False)
    # When a dispatcher claimed the row (state "sending"): a claim older than the lease
    # was abandoned by a crashed process and is recovered.
    claimed_at: datetime | None = _time()
    claimed_by: str | None = Field(default=None, max_length=128)  # core.store.process
    # Sends whose outcome was unknown (a crash in "sending", a lost answer): a platform
    # without idempotent sends gets one more attempt, then the row is dead-lettered.
    recovered: int = Field(default=0)
    sent_at: datetime | None = _time()
    external_id: str | None = Field(default=None, max_length=128)
    last_error: str | None = None


class StaffFile(SQLModel, table=True):
    """A file staff send to a customer, kept until its answer's outbox row is delivered
    or dead (core/delivery/outfiles.py); the row names it in ``target["file"]``."""

    __tablename__ = "staff_file"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    kind: str = Field(max_length=16)  # photo | video | voice | document
    name: str | None = Field(default=None, max_length=255)
    content_type: str = Field(max_length=128)
    size: int
    # None: the staff chat's platform has it by reference ({"channel", "file_id"}).
    content: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary))
    source: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = _time(nullable=False)


class Escalation(SQLModel, table=True):
    # A rule fires once per ticket and waiting cycle, however many sweeps or replicas run.
    __table_args__ = (sa.UniqueConstraint("ticket_id", "rule", "cycle"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    rule: str = Field(max_length=128)
    cycle: int
    fired_at: datetime = _time(nullable=False)


class Survey(SQLModel, table=True):
    """A satisfaction survey of one ticket cycle (core.staff.survey). The question is the
    outbox row keyed ``survey:<id>`` (sent not before ``due_at``): it was asked when that
    row was sent."""

    __table_args__ = (
        # One survey per ticket and waiting cycle, however often a trigger repeats.
        sa.UniqueConstraint("ticket_id", "cycle", name="uq_survey_cycle"),
        # A customer's typed "5" finds the survey it answers.
        sa.Index("ix_survey_customer", "customer_id", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    cycle: int
    channel: str = Field(max_length=32)
    customer_id: int = Field(foreign_key="customer.id")
    # Who answered the customer in that cycle: the CSAT of each staff member.
    agent: str | None = Field(default=None, max_length=128)
    language: str = Field(default="ru", max_length=8)
    # queued (the question is in the outbox, or sent) -> answered; or cancelled (the
    # customer wrote again before it went out)
    state: str = Field(default="queued", max_length=16)
    created_at: datetime = _time(nullable=False)
    due_at: datetime = _time(nullable=False)
    score: int | None = None
    comment: str | None = None
    answered_at: datetime | None = _time(index=True)
    commented_at: datetime | None = _time()


class Cursor(SQLModel, table=True):
    channel: str = Field(primary_key=True, max_length=32)
    key: str = Field(primary_key=True, max_length=64)
    value: str


class Event(SQLModel, table=True):
    """Audit trail: every state change, and the source of the reports."""

    __table_args__ = (sa.Index("ix_event_kind_at", "kind", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    channel: str | None = Field(default=None, max_length=32)
    kind: str = Field(max_length=32)
    actor: str | None = Field(default=None, max_length=128)
    at: datetime = _time(nullable=False)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Quarantine(SQLModel, table=True):
    """A platform payload that could not be read or stored: kept whole, never retried on
    its own, so it cannot stop its channel (``sameday quarantine`` shows and retries it).
    """

    # A payload the platform delivers again (after a crash) is kept once.
    __table_args__ = (sa.UniqueConstraint("channel", "external_id", name="uq_quarantine_external"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32, index=True)
    # The platform's id of the payload when it has a readable one ("update:42", "m17").
    external_id: str | None = Field(default=None, max_length=128)
    # The payload as JSON text with every non-ASCII character escaped: a lone surrogate
    # or a NUL that broke the message is kept exactly, and any database can store it.
    payload: str
    error: str
    quarantined_at: datetime = _time(nullable=False)
    # held -> released (re-ingested by ``sameday quarantine retry``)
    state: str = Field(default="held", max_length=16, index=True)
    released_at: datetime | None = _time()


class Heartbeat(SQLModel, table=True):
    """One row per process, written by every health check: /healthz proves the database
    takes writes (a full disk answers SELECT 1 but refuses every commit)."""

    process: str = Field(primary_key=True, max_length=128)
    beat_at: datetime = _time(nullable=False)
