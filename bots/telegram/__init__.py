"""The Telegram channel: customers' private and group messages, and the staff group."""

from __future__ import annotations

from bots.telegram.settings import (
    TelegramSettings,
    TelegramStaff,
    TelegramStaffMember,
    TelegramTarget,
    check,
)
from core.config.channels import ChannelDescription, lazy

CHANNEL = ChannelDescription(
    name="telegram", label="Telegram", settings=TelegramSettings,
    adapter=lazy("bots.telegram.adapter:TelegramAdapter"),
    # Telegram's published limits: 30 messages a second per bot, about one a second per
    # chat, 20 a minute per group.
    limits={"per_bot": "30/1s", "per_chat": "1/1s", "per_group": "20/1m"},
    text_limit=4096, poll_setting="poll_timeout", reply_target=TelegramTarget,
    emulator=lazy("bots.telegram.emulator:TelegramEmulator"),
    # It carries the staff chat: the staff group (bots/telegram/staff.py).
    staff_chat=True, staff_settings=TelegramStaff, staff_member_settings=TelegramStaffMember,
    check=check,
    # Bot API URLs contain the token.
    loggers=("httpx", "httpcore", "telegram"))
