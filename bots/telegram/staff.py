"""The Telegram staff group: sameday's staff chat on Telegram.

Core hands over staff messages as data (``core.staff.cards.StaffMessage``) and command
replies as plain text; this module renders them as Telegram HTML (customer text escaped,
ticket numbers bold, staff mentions as links to their accounts, buttons as inline
keyboards), gives every ticket its own forum topic when the group has topics, and turns
what staff write in the group (commands, replies to a card, messages in a ticket's topic,
button presses) into staff commands for the members the config names by Telegram id.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import TelegramError

from core.delivery.contract import AdapterContext, DeliveryError, StaffDeskPort
from core.staff.cards import Button, Card, StaffMessage, notice

log = logging.getLogger(__name__)

TICKET_NUMBER = re.compile(r"#\d+")
# "/t <name>" without a number: a saved answer for the ticket of the card it replies to.
SAVED_ANSWER = re.compile(r"/t(@\w+)?\s+\S+\s*", re.IGNORECASE)
LEGACY_BUTTONS = ("take", "close", "snooze", "reopen")  # "take:12" on cards sent before 0.2
MAX_TEXT = 4096  # Telegram's limit for one message
TOPIC_NAME = 128  # and for a forum topic's name


def esc(text: str | None) -> str:
    return html.escape(text or "", quote=False)


def marked(text: str) -> str:
    """Plain text as HTML, ticket numbers in bold so the eye finds them."""
    return TICKET_NUMBER.sub(lambda m: f"<b>{m.group(0)}</b>", esc(text))


def card_html(card: Card) -> list[str]:
    promise, state, *note = card.lines()
    return [f"<b>#{card.ticket_id}</b> · {esc(card.channel)} · {esc(card.customer)}",
            esc(promise), esc(state), *(f"<i>{esc(line)}</i>" for line in note), "",
            esc(card.quote), *(esc(line) for line in card.media)]


def mention_html(name: str, members: list[Any]) -> str:
    member = next((m for m in members if m.name == name), None)
    if member is not None and getattr(member, "telegram_id", None):
        return f'<a href="tg://user?id={member.telegram_id}">@{esc(name)}</a>'
    return f"@{esc(name)}"


def render(message: StaffMessage, members: list[Any]) -> str:
    """The message as Telegram HTML; a card's quote is shortened so that the escaped text
    fits one message (escaping makes "<" five characters long)."""
    text = _render(message, members)
    card = message.card
    for _ in range(5):  # each pass cuts the quote by the excess
        if len(text) <= MAX_TEXT or card is None or not card.quote:
            break
        card = replace(card, quote=card.quote[:max(0, len(card.quote) - (len(text) - MAX_TEXT)
                                                    - 10)] + "…")
        text = _render(replace(message, card=card), members)
    return text


def _render(message: StaffMessage, members: list[Any]) -> str:
    parts = [marked(line) for line in message.lines]
    if message.mentions:
        parts.append(" ".join(mention_html(name, members) for name in message.mentions))
    if message.card is not None:
        parts += ([""] if parts else []) + card_html(message.card)
    return "\n".join(parts)


def keyboard(buttons: tuple[Button, ...]) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.label, callback_data=b.command)
                                  for b in buttons]])


def button_command(data: str) -> str | None:
    """A button's callback data as the command it runs (cards carry the command itself;
    older cards carry "snooze:12:1h")."""
    if data.startswith("/"):
        return data
    action, _, rest = data.partition(":")
    number, _, arg = rest.partition(":")
    if action not in LEGACY_BUTTONS or not (number.isascii() and number.isdigit()):
        return None
    return f"/{action} {number}{' ' + arg if arg else ''}"


@dataclass(frozen=True)
class Where:
    """Where a staff message goes in Telegram."""

    chat_id: int
    thread_id: int | None = None
    reply_to: int | None = None
    business: str | None = None  # a Telegram Business connection to answer through


class TelegramStaffChat:
    """The staff group's side of the Telegram adapter."""

    def __init__(self, adapter: Any):
        self.adapter = adapter  # the TelegramAdapter: its bot and settings
        self._forum: bool | None = None  # does the staff group have forum topics?
        self._topic_locks: dict[int, asyncio.Lock] = {}

    @property
    def settings(self) -> Any:
        """The staff desk's settings: a reload changes who is staff at once."""
        desk = self.desk
        return desk.settings if desk is not None else self.adapter.settings

    @property
    def chat_id(self) -> int | None:
        staff = self.settings.staff
        return staff.telegram_chat_id if staff.chat == "telegram" else None

    @property
    def desk(self) -> StaffDeskPort | None:
        context: AdapterContext | None = self.adapter.context
        return context.staff_desk if context else None

    # --- who is who ---------------------------------------------------------------------------

    def actor(self, user_id: int, origin: dict[str, Any]) -> Any:
        """The staff member with this Telegram id (not staff if none)."""
        member = next((m for m in self.settings.staff.members
                       if getattr(m, "telegram_id", None) == user_id), None)
        return self.desk.actor_named(member.name if member else "", origin)

    # --- what staff write -----------------------------------------------------------------------

    async def handle(self, update: Update) -> bool:
        """Handle a staff-group message or a button press; False if it is neither."""
        desk = self.desk
        if desk is None:
            return False
        if update.callback_query is not None:
            await self._on_button(update)
            return True
        edited = update.edited_message
        if edited is not None and edited.chat.id == self.chat_id:
            # An answer edited in the group changes the customer's copy (staff_files.py).
            await self.adapter.staff_files.edited(edited)
            return True
        message = update.message
        if message is None or message.chat.id != self.chat_id or message.from_user is None:
            return False
        text = (message.text or "").strip()
        actor = self.actor(message.from_user.id, origin_of(message))
        if text.startswith("/"):
            text = await self._with_ticket(message, text)
            await self._answer(message, await desk.execute(actor, text,
                                                           self.adapter.bot.username))
            return True
        if actor.is_staff and self.adapter.staff_files.carries_file(message):
            # A photo, document, voice or video answering a card (staff_files.py).
            await self.adapter.staff_files.answer(message, actor)
            return True
        if not actor.is_staff or not text:
            return True  # chatter in the staff group is not an answer
        ticket_id = await self._ticket_of(message)
        if ticket_id is not None:
            await self._answer(message, await desk.execute(actor, f"/reply {ticket_id} {text}"))
        elif self._replies_to_bot(message):
            await self._say(message, "I cannot tell which ticket this answers. "
                                     "Use /reply N text.")
        return True

    def _replies_to_bot(self, message: Message) -> bool:
        replied = message.reply_to_message
        return bool(replied and replied.from_user
                    and replied.from_user.id == self.adapter.bot.id)

    async def _ticket_of(self, message: Message) -> int | None:
        """The ticket a staff message answers: a reply to a card or notice, or a topic."""
        if self._replies_to_bot(message):
            ticket_id = await self.desk.ticket_for_staff_message(
                f"{message.chat.id}:{message.reply_to_message.message_id}")
            if ticket_id is not None:
                return ticket_id
        if message.is_topic_message and message.message_thread_id:
            return await self.desk.ticket_for_staff_thread(message.message_thread_id)
        return None

    async def _with_ticket(self, message: Message, text: str) -> str:
        """``/t <name>`` replying to a card or notice, or in a ticket's topic, is
        ``/t <name> N`` for that ticket."""
        if not SAVED_ANSWER.fullmatch(text):
            return text
        ticket_id = await self._ticket_of(message)
        return text if ticket_id is None else f"{text.strip()} {ticket_id}"

    async def _answer(self, message: Message, reply: Any) -> None:
        """Answer a staff member next to their message, through the outbox (the group's
        rate limit applies, and a redelivered message is answered once). An answer to a
        customer says nothing here: its card changes when it is delivered."""
        text = reply.text
        if reply.reload:
            reload = self.adapter.context.reload_config
            problems = reload() if reload else "reloading is not available here"
            text = "Config reloaded." if problems is None else \
                f"Config NOT reloaded; the old one stays in force:\n{problems}"
        elif reply.quiet:
            return
        await self._say(message, text, reply.ticket_id)

    async def say_delayed(self, update: Update, seconds: float) -> None:
        """Tell the staff member their message ran late (the database was unavailable)."""
        message = update.message or (update.callback_query.message
                                     if update.callback_query else None)
        if message is not None and message.chat.id == self.chat_id:
            await self.desk.tell_staff(notice(None, f"Done {seconds:.0f}s late: the database "
                                                    "was unavailable when you sent it.",
                                              reply_to=origin_of(message)),
                                       f"late:{message.chat.id}:{message.message_id}")

    async def _say(self, message: Message, text: str, ticket_id: int | None = None) -> None:
        await self.desk.tell_staff(notice(ticket_id, text, reply_to=origin_of(message)),
                                   f"answer:{message.chat.id}:{message.message_id}")

    async def _on_button(self, update: Update) -> None:
        query = update.callback_query
        # Only the staff group's own cards: a button pressed elsewhere (the bot's message
        # forwarded to another chat) is not a staff action.
        in_staff_chat = query.message is not None and query.message.chat.id == self.chat_id
        command = button_command(query.data or "") if in_staff_chat else None
        origin = origin_of(query.message) if query.message else {}
        if command is None:
            reply_text = "This button is no longer valid."
        else:
            actor = self.actor(query.from_user.id, origin)
            reply_text = (await self.desk.execute(actor, command)).text
        try:
            await query.answer(reply_text[:200])
        except TelegramError as error:
            log.warning("telegram: could not answer a button press: %s", error)

    # --- what staff see --------------------------------------------------------------------------

    def where(self, message: StaffMessage) -> Where:
        """Next to the staff member's message it answers, else in the staff group."""
        origin = message.reply_to or {}
        if origin.get("chat_id"):
            return Where(int(origin["chat_id"]), origin.get("thread_id"),
                         origin.get("message_id"))
        if self.chat_id is None:
            raise DeliveryError("no staff group to send to (staff.telegram_chat_id is not set)",
                                permanent=True)
        return Where(self.chat_id)

    async def thread_for(self, ticket_id: int | None) -> int | None:
        """The ticket's own topic when the staff group has forum topics (made on first use)."""
        desk = self.desk
        if ticket_id is None or desk is None or not await self._is_forum():
            return None
        async with self._topic_locks.setdefault(ticket_id, asyncio.Lock()):
            topic = await desk.staff_thread_of(ticket_id)
            if topic is None:
                created = await self.adapter.bot.create_forum_topic(
                    chat_id=self.chat_id, name=(await desk.ticket_title(ticket_id))[:TOPIC_NAME])
                topic = created.message_thread_id
                await desk.remember_staff_thread(ticket_id, topic)
            return topic

    async def _is_forum(self) -> bool:
        if self._forum is None and self.chat_id is not None:
            self._forum = bool((await self.adapter.bot.get_chat(self.chat_id)).is_forum)
        return bool(self._forum)


def origin_of(message: Message) -> dict[str, Any]:
    """Where a staff member wrote: to answer there, and to key what their message causes
    (a redelivered message must not answer a customer twice)."""
    return {"chat_id": message.chat.id, "message_id": message.message_id,
            "thread_id": message.message_thread_id if message.is_topic_message else None,
            "key": f"{message.chat.id}:{message.message_id}"}
