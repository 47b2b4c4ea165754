"""The MAX channel: dialogs and group chats with the company's MAX bot."""

from __future__ import annotations

from bots.max.settings import MaxSettings, MaxTarget
from core.config.channels import ChannelDescription, lazy

CHANNEL = ChannelDescription(
    name="max", label="MAX", settings=MaxSettings, adapter=lazy("bots.max.adapter:MaxAdapter"),
    # As documented (dev.max.ru): 30 requests a second per bot, every call counted (the
    # long poll and uploads take the rest of 30), and 2 messages a second into one chat.
    limits={"per_bot": "25/1s", "per_chat": "2/1s"},
    text_limit=3999,  # MAX takes 4,000; maxapi refuses exactly 4,000
    poll_setting="poll_timeout", reply_target=MaxTarget,
    emulator=lazy("bots.max.emulator:MaxEmulator"),
    # maxapi's loggers ("bot", "connection") log request failures with their URLs.
    loggers=("bot", "connection"))
