"""The records and states of the product as plain data (no database): what adapters
exchange with the core, and the states of tickets and outbox rows."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class TicketStatus(enum.StrEnum):
    OPEN = "open"  # waiting for staff
    ANSWERED = "answered"  # staff answered, waiting for the customer
    SNOOZED = "snoozed"  # staff put it aside until snoozed_until
    CLOSED = "closed"


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Direction(enum.StrEnum):
    IN = "in"  # from the customer
    OUT = "out"  # from staff (or the bot) to the customer
    NOTE = "note"  # internal staff note, never sent


class OutboxKind(enum.StrEnum):
    ACK = "ack"  # acknowledgement to the customer
    REPLY = "reply"  # staff answer to the customer
    STAFF_CARD = "staff_card"  # new-ticket card in the staff chat
    CARD_EDIT = "card_edit"  # the card edited to show the ticket's new state
    NOTICE = "notice"  # any other message to staff (escalation, dead letter, ...)


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    RETRY = "retry"
    DEAD = "dead"


# --- records exchanged with adapters (plain data, no database) -------------------------


@dataclass(frozen=True, slots=True)
class Attachment:
    """Something a customer sent besides text, as the platform described it.

    ``kind``: photo, video, voice, audio, video_note, document, sticker, animation,
    location, venue, contact, link, post (a shared post), forward, poll, other. Staff are
    shown it (the media itself where the staff chat can, else a line with a link);
    ``file_id`` is the platform's handle to fetch it again, ``url`` a direct link where
    the platform gives one.
    """

    kind: str
    file_id: str | None = None
    url: str | None = None
    file_name: str | None = None
    mime_type: str | None = None
    size: int | None = None  # bytes
    duration: int | None = None  # seconds
    caption: str | None = None  # an item's own text (an album item, a shared post)
    forwarded_from: str | None = None
    group: str | None = None  # album: items sent together share it
    latitude: float | None = None
    longitude: float | None = None
    title: str | None = None  # a venue, a link, a contact's name, a sticker's emoji
    phone: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, for the message row."""
        return {name: value for name in self.__slots__
                if (value := getattr(self, name)) is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attachment:
        return cls(**{name: data[name] for name in cls.__slots__ if name in data})


@dataclass(frozen=True, slots=True)
class Inbound:
    """One customer message, normalized by an adapter.

    ``thread_key`` groups messages into one conversation (a private chat, a comment
    thread, a tweet conversation); ``reply_target`` is the platform address an answer
    must go to, opaque to the core and handed back to the adapter in ``Outbound``.
    """

    channel: str
    external_id: str
    thread_key: str
    author_id: str
    text: str
    sent_at: datetime
    author_handle: str | None = None
    author_name: str | None = None
    reply_target: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] | None = None  # the platform payload, as read_payload reads it
    attachments: tuple[Attachment, ...] = ()
    edited: bool = False  # a new version of the stored message with this external_id
    greeting: bool = False  # a chat's opening ("/start"): greeted, opens no ticket
    # Kept as a non-ticket mention of this kind ("retweet", "quote"): stored (once),
    # counted, but no ticket, no acknowledgement and no staff card.
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A platform payload an adapter could not read as an Inbound (or the core could not
    store): it is quarantined whole with the error, and its channel moves on."""

    channel: str
    payload: Any  # the platform's JSON as received
    error: str
    external_id: str | None = None  # the platform's id of it, when one can be read


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message the adapter must deliver; built by the dispatcher from an Outbox row."""

    outbox_id: int
    channel: str
    kind: str
    target: dict[str, Any]
    text: str
    idempotency_key: str
    ticket_id: int | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    """What the platform said after a successful send.

    ``limit_remaining`` / ``limit_reset_in`` carry the platform's own rate-limit headers
    when it sends them (X: x-rate-limit-remaining / x-rate-limit-reset), so the
    dispatcher pauses before the platform has to refuse.
    """

    external_id: str
    limit_remaining: int | None = None
    limit_reset_in: float | None = None
