"""What the X channel adds to config.toml, and the shape of its addresses."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from core.config.channels import ChannelSettings
from core.config.settings import Duration


class TwitterSettings(ChannelSettings):
    """``[channels.twitter]``"""

    bearer_token_env: str = "SAMEDAY_X_BEARER_TOKEN"
    consumer_key_env: str = "SAMEDAY_X_CONSUMER_KEY"
    consumer_secret_env: str = "SAMEDAY_X_CONSUMER_SECRET"
    access_token_env: str = "SAMEDAY_X_ACCESS_TOKEN"
    access_token_secret_env: str = "SAMEDAY_X_ACCESS_TOKEN_SECRET"
    user_id: str = ""
    base_url: str = "https://api.twitter.com"
    # Every mentions read is billed on X's pay-per-use API: see docs/channels.md.
    poll_interval: Duration = timedelta(seconds=60)
    # A retweet ("RT @company ...") shares, it asks nothing: "note" keeps it as a
    # non-ticket (stored, counted, never acknowledged), "ignore" only counts it.
    retweets: Literal["note", "ignore"] = "note"
    # A quote of the company's own post: "question" opens a ticket only when the quote's
    # own text (without links and @mentions) asks something ("?" or "？"), else it is kept
    # as a non-ticket; "ticket": every one opens a ticket; "note": none does. A quote of
    # anybody else's post that mentions the company is a mention like any other.
    quotes_of_own_posts: Literal["question", "ticket", "note"] = "question"

    @field_validator("poll_interval")
    @classmethod
    def _not_too_fast(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=5):
            raise ValueError("poll_interval must be at least 5s (each read is billed by X)")
        return value


class XTarget(BaseModel):
    """An answer on X is a reply to the customer's tweet."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    in_reply_to_tweet_id: str
    username: str | None = None
