"""The X (Twitter) channel: mentions of the company's account, answered as replies."""

from __future__ import annotations

from bots.twitter.settings import TwitterSettings, XTarget
from bots.twitter.text import MAX_WEIGHTED_LENGTH, weighted_length
from core.config.channels import ChannelDescription, lazy

CHANNEL = ChannelDescription(
    name="twitter", label="X", settings=TwitterSettings,
    adapter=lazy("bots.twitter.adapter:TwitterAdapter"),
    limits={"per_user": "100/15m"},  # POST /2/tweets per user
    # X counts weighted characters: most CJK and emoji weigh 2, every URL 23.
    text_limit=MAX_WEIGHTED_LENGTH, measure=weighted_length, poll_setting="poll_interval",
    reply_target=XTarget, emulator=lazy("bots.twitter.emulator:XEmulator"),
    # A reply on X starts with the customer's @handle, and 280 characters are precious.
    ack_texts={"ru": "{handle} спасибо! Обращение {ticket}, ответим {promise}. {back}",
               "en": "{handle} thanks! Ticket {ticket}; we will answer {promise}. {back}"},
    loggers=("tweepy", "oauthlib", "requests_oauthlib"))
