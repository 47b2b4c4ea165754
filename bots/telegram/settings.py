"""What the Telegram channel adds to config.toml, and the shape of its addresses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.config.channels import ChannelSettings
from core.config.settings import Duration


class TelegramSettings(ChannelSettings):
    """``[channels.telegram]``"""

    token_env: str = "SAMEDAY_TELEGRAM_TOKEN"
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    poll_timeout: Duration = timedelta(seconds=30)


class TelegramStaff(BaseModel):
    """What Telegram adds to ``[staff]``: the staff group cards and notices go to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    telegram_chat_id: int | None = None


class TelegramStaffMember(BaseModel):
    """What Telegram adds to each ``[[staff.members]]``: the member's Telegram user id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    telegram_id: int | None = None


class TelegramTarget(BaseModel):
    """Where a message goes in Telegram: a chat, optionally as a reply in a topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    chat_id: int
    reply_to_message_id: int | None = None
    message_thread_id: int | None = None
    # A customer who wrote to the company's own account (Telegram Business) is answered
    # through that connection, as the account.
    business_connection_id: str | None = None
    album: tuple[int, ...] | None = None  # the message ids of an album's items


def check(settings: Any) -> list[tuple[str, Any, str]]:
    """The staff group must be named when it is where cards go, and a Telegram user can
    be only one staff member."""
    problems = []
    if settings.staff.chat == "telegram" and settings.channels.telegram.enabled \
            and settings.staff.telegram_chat_id is None:
        problems.append(("staff.telegram_chat_id", None, 'required when staff.chat = '
                         '"telegram": the id of the staff group (a negative number like '
                         "-1001234567890)"))
    seen: dict[int, str] = {}
    for i, member in enumerate(settings.staff.members):
        if member.telegram_id is None:
            continue
        if member.telegram_id in seen:
            problems.append((f"staff.members[{i}].telegram_id", member.telegram_id,
                             f"already the Telegram id of {seen[member.telegram_id]}; each "
                             f"staff member needs their own"))
        seen.setdefault(member.telegram_id, member.name)
    return problems
