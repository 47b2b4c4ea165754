"""What staff see: ticket cards and notices, rendered as Telegram HTML.

Customer text is always escaped: a customer can never inject markup or links into the
staff chat. The console strips the tags again (``plain``).
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from core.config.channels import channel_label
from core.domain.records import Priority, TicketStatus

MAX_QUOTE = 1500  # characters of customer text on a card (the card stays readable)
PRIORITY_MARKS = {Priority.LOW: "▫ low", Priority.HIGH: "🔸 high", Priority.URGENT: "🔴 urgent"}


def esc(text: str | None) -> str:
    return html.escape(text or "", quote=False)


def quote(text: str) -> str:
    text = text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "…"
    return esc(text)


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


def card_text(*, ticket_id: int, channel: str, customer: str, promise: str,
              opened_at: datetime, zone: ZoneInfo, state: str, priority: str,
              first_text: str, note: str | None = None) -> str:
    lines = [f"<b>#{ticket_id}</b> · {esc(channel_label(channel))} · "
             f"{esc(customer)}",
             f"⏰ {esc(promise)} · {opened_at.astimezone(zone):%d.%m %H:%M}",
             f"{state}{' · ' + PRIORITY_MARKS[priority] if priority in PRIORITY_MARKS else ''}"]
    if note:
        lines.append(f"<i>{esc(note)}</i>")
    lines += ["", quote(first_text)]
    return "\n".join(lines)


def card_buttons(ticket_id: int, status: str) -> list[list[str]]:
    """Inline buttons as [label, callback data] pairs (the adapter renders them)."""
    if status == TicketStatus.CLOSED:
        return [["Reopen", f"reopen:{ticket_id}"]]
    return [["Take", f"take:{ticket_id}"], ["Close", f"close:{ticket_id}"],
            ["Snooze 1h", f"snooze:{ticket_id}:1h"]]


def follow_up_text(ticket_id: int, customer: str, text: str) -> str:
    return f"<b>#{ticket_id}</b> {esc(customer)} writes again:\n{quote(text)}"


def plain(text: str) -> str:
    """A staff text without its HTML, for the console and logs."""
    return html.unescape(re.sub(r"</?(b|i|code|pre|u|s|a)( [^>]*)?>", "", text))
