"""The VK channel: community messages and wall comments."""

from __future__ import annotations

from typing import Any

from bots.vk.settings import VKSettings, VKTarget
from core.config.channels import ChannelDescription


def _adapter(settings: Any) -> Any:
    from bots.vk.adapter import VKAdapter

    return VKAdapter(settings)


def _emulator() -> type:
    from bots.vk.emulator import VKEmulator

    return VKEmulator


CHANNEL = ChannelDescription(
    name="vk", label="VK", settings=VKSettings, adapter=_adapter,
    limits={"per_token": "20/1s"},  # 20 API calls a second with a community token
    text_limit=4096, poll_setting="long_poll_wait", reply_target=VKTarget,
    emulator=_emulator)
