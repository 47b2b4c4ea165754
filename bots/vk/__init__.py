"""The VK channel: community messages and wall comments."""

from __future__ import annotations

from bots.vk.settings import VKSettings, VKTarget
from core.config.channels import ChannelDescription, lazy

CHANNEL = ChannelDescription(
    name="vk", label="VK", settings=VKSettings, adapter=lazy("bots.vk.adapter:VKAdapter"),
    limits={"per_token": "20/1s"},  # 20 API calls a second with a community token
    text_limit=4096, poll_setting="long_poll_wait", reply_target=VKTarget,
    emulator=lazy("bots.vk.emulator:VKEmulator"), loggers=("urllib3",))
