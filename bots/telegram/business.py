"""Telegram Business: customers writing to the company's own Telegram account.

A business owner connects the bot to their account (Settings > Telegram Business >
Chatbots). Telegram then sends the bot ``business_connection`` (connected, rights
changed, turned off), ``business_message`` and ``edited_business_message`` for the
account's private chats; the bot answers as the account by passing
``business_connection_id``. Docs: https://core.telegram.org/bots/api#businessconnection
and https://core.telegram.org/bots/features#bots-for-business.

In a business chat the chat is the customer's private chat (its id is the customer's
user id): a message from anyone else there is the owner's own (typed on their phone) or
one the bot sent as the account (``sender_business_bot``), never a customer's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from telegram import BusinessConnection, Message

log = logging.getLogger(__name__)

BUSINESS_UPDATES = ["business_connection", "business_message", "edited_business_message"]


def customer_wrote(message: Message) -> bool:
    """A business message written by the customer (not by the owner, not by a bot)."""
    sender = message.from_user
    return (message.sender_business_bot is None and sender is not None
            and sender.id == message.chat.id)


@dataclass(frozen=True)
class Connection:
    owner: str
    enabled: bool
    can_reply: bool


class BusinessConnections:
    """The connections Telegram told this process about, for health and the logs.

    A connection that is on but may not reply is a problem an admin must fix in the
    owner's Telegram settings; until then customers there get no acknowledgement and no
    answer (each send fails and is dead-lettered with Telegram's reason)."""

    def __init__(self) -> None:
        self.known: dict[str, Connection] = {}

    def changed(self, connection: BusinessConnection) -> None:
        rights = connection.rights  # Bot API 9.0; before it, can_reply on the connection
        can_reply = bool(rights.can_reply if rights is not None
                         else connection.api_kwargs.get("can_reply"))
        owner = connection.user.full_name
        if connection.user.username:
            owner += f" (@{connection.user.username})"
        self.known[connection.id] = Connection(owner, connection.is_enabled, can_reply)
        if not connection.is_enabled:
            log.warning("telegram: business account %s disconnected the bot", owner)
        elif not can_reply:
            log.warning("telegram: business account %s connected the bot without the right "
                        "to reply", owner)
        else:
            log.info("telegram: business account %s connected", owner)

    def problem(self) -> str | None:
        mute = sorted(c.owner for c in self.known.values() if c.enabled and not c.can_reply)
        if not mute:
            return None
        return (f"Telegram Business: the bot may not reply for {', '.join(mute)}: in that "
                f"account's Telegram Settings > Business > Chatbots, allow it to reply "
                f"to messages")
