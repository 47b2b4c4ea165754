"""What the MAX channel adds to config.toml, and the shape of its addresses."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.config.channels import ChannelSettings
from core.config.settings import Duration


class MaxSettings(ChannelSettings):
    """``[channels.max]``"""

    token_env: str = "SAMEDAY_MAX_TOKEN"
    # The Bot API host since 19 July 2026 (platform-api.max.ru is refused since).
    base_url: str = "https://platform-api2.max.ru"
    # How long one GET /updates is held open (MAX allows up to 90 s, 30 s by default).
    poll_timeout: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _poll_timeout_allowed(self) -> MaxSettings:
        if not timedelta(seconds=1) <= self.poll_timeout <= timedelta(seconds=90):
            raise ValueError("poll_timeout must be between 1s and 90s (MAX holds GET "
                             "/updates for at most 90 seconds)")
        return self


class MaxTarget(BaseModel):
    """Where an answer goes in MAX: a dialog with a user, or a group chat; ``reply_to``
    is the customer's message (its ``mid``) the answer replies to."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: int | None = None
    chat_id: int | None = None
    reply_to: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _addressed(self) -> MaxTarget:
        if self.user_id is None and self.chat_id is None:
            raise ValueError("a MAX target needs user_id (a dialog) or chat_id (a group chat)")
        return self
