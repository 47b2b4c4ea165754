"""What staff see, as data: ticket cards, notices and their buttons.

Core writes no markup. A staff-chat message is a ``StaffMessage`` stored in the outbox
row's target (``to_target`` / ``from_row``) with a plain-text rendering as the row's
text; the staff chat renders it its own way (the Telegram staff group as escaped HTML with
links and buttons, ``sameday console`` as terminal panels). Customer text is data here, so
a customer can never inject markup into the staff chat: the renderer escapes it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.config.channels import channel_label
from core.domain.records import Attachment, Priority, TicketStatus

MAX_QUOTE = 1500  # characters of customer text on a card (the card stays readable)
PRIORITY_MARKS = {Priority.LOW: "▫ low", Priority.HIGH: "🔸 high", Priority.URGENT: "🔴 urgent"}


@dataclass(frozen=True)
class Button:
    label: str
    command: str  # the staff command it runs, e.g. "/take 12"


@dataclass(frozen=True)
class Card:
    """A ticket as its card shows it."""

    ticket_id: int
    channel: str  # the channel's label ("Telegram", "X")
    customer: str
    promise: str
    opened: str  # local time the ticket was opened, "24.11 10:00"
    state: str
    priority: str = ""  # a mark like "🔸 high"; "" for normal
    note: str = ""  # what just changed ("taken by anna")
    quote: str = ""  # the customer's first message
    media: tuple[str, ...] = ()  # what came with it, one line each (``attachment_line``)

    def head(self) -> str:
        return f"#{self.ticket_id} · {self.channel} · {self.customer}"

    def lines(self) -> list[str]:
        """The lines after the head: promise, state, note."""
        state = f"{self.state}{' · ' + self.priority if self.priority else ''}"
        return [f"⏰ {self.promise} · {self.opened}", state] + ([self.note] if self.note else [])


@dataclass(frozen=True)
class StaffMessage:
    """One message to the staff chat: text lines, and/or a card, with buttons."""

    ticket_id: int | None = None
    lines: tuple[str, ...] = ()  # plain text before the card (a reason, a notice)
    card: Card | None = None
    mentions: tuple[str, ...] = ()  # staff names to call (the renderer links them)
    buttons: tuple[Button, ...] = ()
    tone: str = "info"  # info | warning | ok: how a renderer may colour it
    edit: str | None = None  # edit this staff-chat message (a card) instead of posting
    reply_to: dict[str, Any] | None = None  # next to a staff member's message (the UI's)
    # A customer's attachments to show as media (Attachment JSON), and where the message
    # came from ({"channel", "target": its reply target}): a staff chat on the same
    # platform can copy the original, others fetch the URLs.
    media: tuple[dict[str, Any], ...] = ()
    media_source: dict[str, Any] | None = None

    def text(self) -> str:
        """Plain text: the outbox row's text, logs, and any renderer without markup."""
        parts = [*self.lines, *(attachment_line(Attachment.from_json(m)) for m in self.media)]
        if self.mentions:
            parts.append(" ".join(f"@{name}" for name in self.mentions))
        if self.card is not None:
            parts += ([""] if parts else []) + [self.card.head(), *self.card.lines(), "",
                                               self.card.quote, *self.card.media]
        return "\n".join(parts)

    def to_target(self) -> dict[str, Any]:
        """As JSON for the outbox row (flat copies: ingest makes one per new ticket)."""
        target: dict[str, Any] = {"ticket_id": self.ticket_id, "lines": list(self.lines),
                                  "card": dict(vars(self.card)) if self.card else None,
                                  "mentions": list(self.mentions),
                                  "buttons": [{"label": b.label, "command": b.command}
                                              for b in self.buttons],
                                  "tone": self.tone, "edit": self.edit,
                                  "reply_to": self.reply_to}
        if self.media:
            target |= {"media": list(self.media), "media_source": self.media_source}
        return {key: value for key, value in target.items() if value not in (None, [])}

    @classmethod
    def from_row(cls, target: dict[str, Any], text: str = "") -> StaffMessage:
        """The message of an outbox row (``to_target`` and the row's text)."""
        if "parse_mode" in target:
            return cls._from_legacy_row(target, text)
        card = target.get("card")
        return cls(ticket_id=target.get("ticket_id"), lines=tuple(target.get("lines", ())),
                   card=Card(**{**card, "media": tuple(card.get("media", ()))})
                   if card else None,
                   mentions=tuple(target.get("mentions", ())),
                   buttons=tuple(Button(**b) for b in target.get("buttons", ())),
                   tone=target.get("tone", "info"), edit=target.get("edit"),
                   reply_to=target.get("reply_to"), media=tuple(target.get("media", ())),
                   media_source=target.get("media_source"))

    @classmethod
    def _from_legacy_row(cls, target: dict[str, Any], text: str) -> StaffMessage:
        """A row queued by sameday 0.1 (HTML text, buttons as [label, "take:12"] pairs,
        the staff chat's address in the target) still pending after an upgrade."""
        reply_to = {"chat_id": target["chat_id"], "message_id": target.get(
            "reply_to_message_id"), "thread_id": target.get("message_thread_id")} \
            if target.get("chat_id") else None
        buttons = tuple(Button(label, "/" + " ".join(str(data).split(":")))
                        for label, data in target.get("buttons") or ())
        plain = html.unescape(re.sub(r"</?(b|i|code|pre|u|s|a)( [^>]*)?>", "", text))
        return cls(ticket_id=target.get("ticket"), lines=(plain,), buttons=buttons,
                   edit=target.get("edit"), reply_to=reply_to)


def quote(text: str) -> str:
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "…"


def who(handle: str | None, name: str | None, user_id: str) -> str:
    if handle and name and name != handle.lstrip("@"):
        return f"{handle} ({name})"
    return handle or name or user_id


def state_line(status: str, assignee: str | None, snoozed_until: datetime | None,
               zone: ZoneInfo) -> str:
    if status == TicketStatus.CLOSED:
        return "🔒 closed"
    if status == TicketStatus.ANSWERED:
        return f"✅ answered{f' · {assignee}' if assignee else ''}"
    if status == TicketStatus.SNOOZED and snoozed_until is not None:
        return f"⏸ snoozed until {snoozed_until.astimezone(zone):%d.%m %H:%M}"
    return f"👤 {assignee}" if assignee else "🆕 new"


def make_card(*, ticket_id: int, channel: str, customer: str, promise: str,
              opened_at: datetime, zone: ZoneInfo, status: str, assignee: str | None,
              snoozed_until: datetime | None, priority: str, first_text: str,
              attachments: Sequence[Attachment] = (), note: str = "") -> Card:
    return Card(ticket_id=ticket_id, channel=channel_label(channel), customer=customer,
                promise=promise, opened=f"{opened_at.astimezone(zone):%d.%m %H:%M}",
                state=state_line(status, assignee, snoozed_until, zone),
                priority=PRIORITY_MARKS.get(priority, ""), note=note, quote=quote(first_text),
                media=tuple(attachment_line(a) for a in attachments))


ICONS = {"photo": "🖼", "video": "🎬", "voice": "🎤", "audio": "🎵", "video_note": "📹",
         "document": "📄", "sticker": "🏷", "animation": "🎞", "location": "📍",
         "venue": "📍", "contact": "👤", "link": "🔗", "post": "📰", "forward": "↪",
         "poll": "📊"}


def attachment_line(attachment: Attachment) -> str:
    """One attachment as staff read it: "🎤 voice 0:07 · 4 kB", "📄 invoice.pdf · 34 kB ·
    https://...", "📍 location 55.7558, 37.6173", "↪ forwarded from @shop"."""
    a = attachment
    parts = [f"{ICONS.get(a.kind, '📎')} {a.kind}"]
    if a.file_name or a.title:
        parts[0] += f" {a.file_name or a.title}"
    if a.duration is not None:
        parts.append(f"{a.duration // 60}:{a.duration % 60:02d}")
    if a.size:
        parts.append(_size(a.size))
    if a.latitude is not None and a.longitude is not None:
        parts.append(f"{a.latitude:.5f}, {a.longitude:.5f}")
    if a.phone:
        parts.append(a.phone)
    if a.caption:
        parts.append(f"“{quote(a.caption)}”")
    if a.forwarded_from:
        parts.append(f"forwarded from {a.forwarded_from}")
    if a.url:
        parts.append(a.url)
    return " · ".join(parts)


def _size(size: int) -> str:
    for unit, scale in (("MB", 1 << 20), ("kB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{size} B"


def card_buttons(ticket_id: int, status: str) -> tuple[Button, ...]:
    """What can be done from the card: the commands its buttons run."""
    if status == TicketStatus.CLOSED:
        return (Button("Reopen", f"/reopen {ticket_id}"),)
    return (Button("Take", f"/take {ticket_id}"), Button("Close", f"/close {ticket_id}"),
            Button("Snooze 1h", f"/snooze {ticket_id} 1h"))


def card_message(card: Card, status: str, **more: Any) -> StaffMessage:
    return StaffMessage(ticket_id=card.ticket_id, card=card,
                        buttons=card_buttons(card.ticket_id, status), **more)


def follow_up(ticket_id: int, customer: str, text: str,
              attachments: Sequence[Attachment] = ()) -> StaffMessage:
    said = (quote(text),) if text else ()
    return StaffMessage(ticket_id=ticket_id,
                        lines=(f"#{ticket_id} {customer} writes again:", *said,
                               *(attachment_line(a) for a in attachments)))


def edited_notice(ticket_id: int, customer: str, old: str, new: str) -> StaffMessage:
    """A customer corrected a message: staff see before and after."""
    return StaffMessage(ticket_id=ticket_id, lines=(
        f"✏️ #{ticket_id} {customer} edited a message:", f"was: {quote(old) or '—'}",
        f"now: {quote(new) or '—'}"))


def media_message(ticket_id: int, customer: str, channel: str, reply_target: dict[str, Any],
                  attachments: Sequence[Attachment]) -> StaffMessage:
    """A customer's attachments for the staff chat to show as media, not as links."""
    return StaffMessage(ticket_id=ticket_id, lines=(f"#{ticket_id} {customer} sent:",),
                        media=tuple(a.to_json() for a in attachments),
                        media_source={"channel": channel, "target": dict(reply_target)})


def notice(ticket_id: int | None, *lines: str, tone: str = "info",
           reply_to: dict[str, Any] | None = None) -> StaffMessage:
    return StaffMessage(ticket_id=ticket_id, lines=lines, tone=tone, reply_to=reply_to)

