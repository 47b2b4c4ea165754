"""What the VK channel adds to config.toml, and the shape of its addresses."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.config.channels import ChannelSettings
from core.config.settings import Duration


class VKSettings(ChannelSettings):
    """``[channels.vk]``"""

    token_env: str = "SAMEDAY_VK_TOKEN"
    group_id: int = Field(default=0, ge=0)
    api_version: str = "5.199"
    # vk_api has no base-URL option; the adapter rewrites api.vk.ru / api.vk.com to this.
    base_url: str = "https://api.vk.ru"
    long_poll_wait: Duration = timedelta(seconds=25)

    @model_validator(mode="after")
    def _group_when_enabled(self) -> VKSettings:
        if self.enabled and not self.group_id:
            raise ValueError("group_id is required when VK is enabled (your community's id)")
        return self


class VKTarget(BaseModel):
    """Where an answer goes in VK: a conversation, or the comments under a wall post, a
    photo, a video, a market item or a board topic (``post_id``: that object's id)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["message", "wall", "photo", "video", "market", "board"]
    peer_id: int | None = None
    owner_id: int | None = None
    post_id: int | None = None
    reply_to_comment: int | None = None

    @model_validator(mode="after")
    def _complete(self) -> VKTarget:
        if self.type == "message" and self.peer_id is None:
            raise ValueError("a message target needs peer_id")
        if self.type != "message" and (self.owner_id is None or self.post_id is None):
            raise ValueError(f"a {self.type} target needs owner_id and post_id")
        return self
