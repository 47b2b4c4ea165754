"""Telegram adapter (python-telegram-bot 22): customers' messages in, answers out.

Receiving runs python-telegram-bot's long polling inside the daemon's event loop
(``initialize`` / ``start`` / ``updater.start_polling``, never ``run_polling``, which
would own the loop and the signals).

Nothing lost, nothing doubled: Telegram forgets an update as soon as ``getUpdates`` is
called with a higher offset, and the Updater makes that call right after it hands the
previous updates over, before they are stored. ``GatedBot`` therefore holds every
``getUpdates`` until the updates of the previous answer are committed (the offset is
saved in the same transaction as the messages). A crash before that commit means Telegram
sends the updates again, and the inbox deduplicates them.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
from datetime import UTC, timedelta
from typing import Any

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import Application, ApplicationBuilder, ExtBot, TypeHandler
from telegram.request import HTTPXRequest

from bots.common.polling import Backoff, PollHealth, ingest_until_stored, run_until_stopped
from core.config.settings import Settings
from core.delivery.contract import (
    STAFF_CHANNEL,
    AdapterContext,
    ChannelAdapter,
    ChannelHealth,
    Cursor,
    DeliveryError,
)
from core.domain.records import Delivered, Inbound, Outbound
from core.domain.text import split_text
from core.staff.cards import plain as cards_plain
from core.staff.commands import Reply

# Opt in to python-telegram-bot's coming behaviour (durations as timedelta); the code
# below accepts both forms.
os.environ.setdefault("PTB_TIMEDELTA", "1")

log = logging.getLogger(__name__)

CHANNEL = "telegram"
MAX_TEXT = 4096
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)  # links in customer text stay inert


class UpdateGate:
    """Tracks updates handed to the application that are not yet committed."""

    def __init__(self) -> None:
        self.outstanding: set[int] = set()
        self.floor = 0  # never ask for updates below this (saved cursor, skipped ones)
        self.stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    def delivered(self, update_ids: list[int]) -> None:
        self.outstanding.update(update_ids)
        if self.outstanding:
            self._idle.clear()

    def handled(self, update_id: int) -> None:
        self.outstanding.discard(update_id)
        if not self.outstanding:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class GatedBot(ExtBot):
    """An ExtBot whose getUpdates waits for the previous updates to be committed and
    skips malformed updates (logged) instead of failing the whole batch forever.

    It also records each getUpdates in ``polls``: the Updater retries network errors by
    itself, so this is the only place that sees them."""

    def __init__(self, *args: Any, gate: UpdateGate, polls: PollHealth, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._gate = gate
        self._polls = polls

    async def get_updates(self, offset: int | None = None, *args: Any,
                          **kwargs: Any) -> tuple[Update, ...]:
        if self._gate.stopping and self._gate.outstanding:
            return ()  # shutting down: confirm nothing that is not stored
        await self._gate.wait_idle()
        offset = max(offset or 0, self._gate.floor)
        try:
            updates = await super().get_updates(offset, *args, **kwargs)
        except Exception as error:
            self._polls.failed(error)
            raise
        self._polls.succeeded()  # empty answers too: the long poll is alive
        self._gate.delivered([u.update_id for u in updates])
        return updates

    async def _post(self, endpoint: str, data: dict[str, Any] | None = None,
                    *args: Any, **kwargs: Any) -> Any:
        result = await super()._post(endpoint, data, *args, **kwargs)
        if endpoint == "getUpdates" and isinstance(result, list):
            result = self._parsable(result)
        return result

    def _parsable(self, raw_updates: list[Any]) -> list[dict[str, Any]]:
        good = []
        for raw in raw_updates:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            if isinstance(update_id, int):
                self._gate.floor = max(self._gate.floor, update_id + 1)
            try:
                if not isinstance(update_id, int):
                    raise ValueError("no update_id")
                Update.de_json(raw, self)
            except Exception as error:
                log.warning("telegram: skipping a malformed update (%s): %.300r", error, raw)
                continue
            good.append(raw)
        return good


class TelegramAdapter(ChannelAdapter):
    name = CHANNEL

    def __init__(self, settings: Settings):
        self.settings = settings
        config = settings.channels.telegram
        self.poll_timeout = config.poll_timeout.total_seconds()
        self.gate = UpdateGate()
        self.polls = PollHealth()
        self.bot = GatedBot(
            token=config.secret("token_env"), base_url=config.base_url,
            base_file_url=config.base_file_url, gate=self.gate, polls=self.polls,
            request=HTTPXRequest(connection_pool_size=16, read_timeout=15),
            get_updates_request=HTTPXRequest(read_timeout=self.poll_timeout + 10))
        self.application: Application = (
            ApplicationBuilder().bot(self.bot).concurrent_updates(False).build())
        self.application.add_handler(TypeHandler(Update, self._on_update))
        self.context: AdapterContext | None = None
        self.stopping = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self.connected = False
        self._forum: bool | None = None  # does the staff group have forum topics?
        self._topic_locks: dict[int, asyncio.Lock] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, context: AdapterContext) -> None:
        self.context = context
        saved = await context.load_cursor(CHANNEL, "offset")
        self.gate.floor = int(saved) if saved else 0
        # Connecting happens in the background: Telegram being down at start must not
        # stop the daemon; the supervisor retries until it is reachable.
        self._runner = asyncio.create_task(self._supervise(), name="telegram-polling")

    async def _supervise(self) -> None:
        await run_until_stopped("telegram", self._poll_until_broken, self.stopping,
                                Backoff(base=1, ceiling=30), on_error=self.polls.failed)

    async def _poll_until_broken(self) -> None:
        if not self.application.running:
            await self.application.initialize()
            await self.application.start()
        if not self.application.updater.running:
            await self.application.updater.start_polling(
                timeout=self.poll_timeout, bootstrap_retries=0,
                allowed_updates=["message", "callback_query"])
            self.connected = True
            log.info("telegram: polling as @%s", self.bot.username)
        # The Updater retries network errors by itself; it only stops on errors it
        # cannot retry (an invalid token). Watch it and start again if that happens.
        while self.application.updater.running and not self.stopping.is_set():
            await asyncio.sleep(1)
        if not self.stopping.is_set():
            self.connected = False
            raise RuntimeError("telegram polling stopped; restarting it")

    async def stop(self) -> None:
        self.stopping.set()
        self.gate.stopping = True
        try:
            if self.application.updater and self.application.updater.running:
                await self.application.updater.stop()
            if self.application.running:
                await self.application.stop()
            await self.application.shutdown()
        except Exception:
            log.exception("telegram: error while stopping")
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        self.connected = False

    def health(self) -> ChannelHealth:
        """For /healthz and /metrics: polling runs, and its latest getUpdates answered."""
        return self.polls.report(self.connected)

    # --- receiving -----------------------------------------------------------------------------

    async def _on_update(self, update: Update, _context: Any) -> None:
        try:
            if await self._staff_update(update):
                self.gate.handled(update.update_id)
                return
            inbound = self.to_inbound(update)
            cursor = Cursor(CHANNEL, "offset", str(update.update_id + 1))
            if inbound is not None:
                stored = await ingest_until_stored(
                    "telegram", lambda: self.context.ingest([inbound], cursor), self.stopping)
                if not stored:
                    return  # stopping: leave the update outstanding, Telegram resends it
            else:
                log.debug("telegram: update %s is not a customer message", update.update_id)
        except Exception:
            log.exception("telegram: could not handle update %s; skipped", update.update_id)
        self.gate.handled(update.update_id)

    # --- the staff group ---------------------------------------------------------------------

    @property
    def staff_chat(self) -> int | None:
        return self.settings.staff.telegram_chat_id if self.settings.staff.chat == CHANNEL \
            else None

    async def _staff_update(self, update: Update) -> bool:
        """Handle a staff-group message or a button press; False if it is neither."""
        desk = self.context.staff_desk if self.context else None
        if desk is None:
            return False
        if update.callback_query is not None:
            await self._on_button(desk, update)
            return True
        message = update.message
        if message is None or message.chat.id != self.staff_chat or message.from_user is None:
            return False
        text = (message.text or "").strip()
        origin = {"chat_id": message.chat.id, "message_id": message.message_id,
                  "thread_id": message.message_thread_id if message.is_topic_message else None}
        actor = desk.actor_for_telegram(message.from_user.id, origin)
        if text.startswith("/"):
            await self._answer_staff(desk, message, await desk.execute(
                actor, text, self.bot.username))
            return True
        if not actor.is_staff or not text:
            return True  # chatter in the staff group is not an answer
        ticket_id = await self._ticket_of(desk, message)
        if ticket_id is not None:
            await self._answer_staff(desk, message, await desk.execute(
                actor, f"/reply {ticket_id} {text}"))
        elif self._replies_to_bot(message):
            await self._answer_staff(desk, message, Reply(
                "I cannot tell which ticket this answers. Use /reply N text.", ok=False))
        return True

    def _replies_to_bot(self, message: Message) -> bool:
        replied = message.reply_to_message
        return bool(replied and replied.from_user and replied.from_user.id == self.bot.id)

    async def _ticket_of(self, desk: Any, message: Message) -> int | None:
        """The ticket a staff message answers: a reply to a card or notice, or a topic."""
        if self._replies_to_bot(message):
            ticket_id = await desk.ticket_for_staff_message(
                f"{message.chat.id}:{message.reply_to_message.message_id}")
            if ticket_id is not None:
                return ticket_id
        if message.is_topic_message and message.message_thread_id:
            return await desk.ticket_for_topic(message.message_thread_id)
        return None

    async def _answer_staff(self, desk: Any, message: Message, reply: Any) -> None:
        """Answer a staff member next to their message, through the outbox (the group's
        rate limit applies, and a redelivered message is answered once)."""
        text = reply.text
        if reply.reload:
            problems = self.context.reload_config() if self.context.reload_config else \
                "reloading is not available here"
            text = "Config reloaded." if problems is None else \
                f"Config NOT reloaded; the old one stays in force:\n{html.escape(problems)}"
        target = {"chat_id": message.chat.id, "reply_to_message_id": message.message_id,
                  "parse_mode": "HTML"}
        if message.is_topic_message and message.message_thread_id:
            target["message_thread_id"] = message.message_thread_id
        await desk.tell_staff(text, target, f"answer:{message.chat.id}:{message.message_id}",
                              reply.ticket_id)

    async def _on_button(self, desk: Any, update: Update) -> None:
        query = update.callback_query
        command = button_command(query.data or "")
        message = query.message
        origin = {"chat_id": message.chat.id, "message_id": message.message_id} if message \
            else {}
        if command is None:
            reply_text = "This button is no longer valid."
        else:
            actor = desk.actor_for_telegram(query.from_user.id, origin)
            reply_text = cards_plain((await desk.execute(actor, command)).text)
        try:
            await query.answer(reply_text[:200])
        except TelegramError as error:
            log.warning("telegram: could not answer a button press: %s", error)

    def to_inbound(self, update: Update) -> Inbound | None:
        """A customer's message as Inbound, or None (not for the inbox)."""
        message = update.message
        if message is None or message.from_user is None or message.from_user.is_bot:
            return None
        chat = message.chat
        if chat.id == self.settings.staff.telegram_chat_id:
            return None  # the staff group is the staff's command line, not a customer
        if chat.type != chat.PRIVATE and not self._addressed_to_bot(message):
            return None  # group chatter that does not mention or answer the bot
        user = message.from_user
        private = chat.type == chat.PRIVATE
        thread = f"chat:{chat.id}" if private else f"chat:{chat.id}:user:{user.id}"
        target: dict[str, Any] = {"chat_id": chat.id, "reply_to_message_id": message.message_id}
        if message.is_topic_message and message.message_thread_id:
            target["message_thread_id"] = message.message_thread_id
        return Inbound(
            channel=CHANNEL, external_id=f"{chat.id}:{message.message_id}", thread_key=thread,
            author_id=str(user.id), author_handle=f"@{user.username}" if user.username else None,
            author_name=user.full_name, text=_text_of(message),
            sent_at=message.date.astimezone(UTC), reply_target=target,
            raw=update.to_dict())

    def _addressed_to_bot(self, message: Message) -> bool:
        replied = message.reply_to_message
        if replied is not None and replied.from_user and replied.from_user.id == self.bot.id:
            return True
        mentions = message.parse_entities(["mention", "text_mention"])
        username = f"@{self.bot.username}".lower()
        return any(text.lower() == username or (e.user and e.user.id == self.bot.id)
                   for e, text in mentions.items())

    # --- sending -------------------------------------------------------------------------------

    def _chat_of(self, outbound: Outbound) -> int:
        chat_id = outbound.target.get("chat_id") or self.settings.staff.telegram_chat_id
        if chat_id is None:
            raise DeliveryError("no chat to send to (staff.telegram_chat_id is not set)",
                                permanent=True)
        return int(chat_id)

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        try:
            chat_id = self._chat_of(outbound)
        except DeliveryError:
            return [("per_bot", "bot")]  # send() reports the missing chat
        # Telegram's group limit applies to groups and supergroups (negative ids).
        per_chat = ("per_group", str(chat_id)) if chat_id < 0 else ("per_chat", str(chat_id))
        return [("per_bot", "bot"), per_chat]

    def send_cost(self, outbound: Outbound) -> int:
        return max(1, len(split_text(outbound.text, MAX_TEXT)))

    async def send(self, outbound: Outbound) -> Delivered:
        target = outbound.target
        chat_id = self._chat_of(outbound)
        try:
            if target.get("edit"):
                return await self._edit(outbound)
            thread_id = target.get("message_thread_id")
            if thread_id is None and outbound.channel == STAFF_CHANNEL and target.get("ticket"):
                thread_id = await self._topic_for(int(target["ticket"]))
            reply_to = target.get("reply_to_message_id")
            markup = _keyboard(target.get("buttons"))
            first_id = None
            parts = split_text(outbound.text, MAX_TEXT)
            for index, part in enumerate(parts):
                sent = await self.bot.send_message(
                    chat_id=chat_id, text=part, message_thread_id=thread_id,
                    parse_mode=target.get("parse_mode"), link_preview_options=NO_PREVIEW,
                    reply_markup=markup if index == len(parts) - 1 else None,
                    reply_parameters=ReplyParameters(message_id=reply_to,
                                                     allow_sending_without_reply=True)
                    if reply_to else None)
                first_id = first_id or sent.message_id
                reply_to = None  # only the first part quotes the customer's message
        except TelegramError as error:
            raise _delivery_error(error) from error
        return Delivered(external_id=f"{chat_id}:{first_id}")

    async def _edit(self, outbound: Outbound) -> Delivered:
        chat_id, _, message_id = str(outbound.target["edit"]).rpartition(":")
        try:
            await self.bot.edit_message_text(
                chat_id=int(chat_id), message_id=int(message_id), text=outbound.text[:MAX_TEXT],
                parse_mode=outbound.target.get("parse_mode"), link_preview_options=NO_PREVIEW,
                reply_markup=_keyboard(outbound.target.get("buttons")))
        except BadRequest as error:
            if "not modified" not in error.message:
                raise
        return Delivered(external_id=str(outbound.target["edit"]))

    async def _topic_for(self, ticket_id: int) -> int | None:
        """The ticket's own topic when the staff group has forum topics (made on first use)."""
        desk = self.context.staff_desk if self.context else None
        if desk is None or not await self._staff_is_forum():
            return None
        async with self._topic_locks.setdefault(ticket_id, asyncio.Lock()):
            topic = await desk.topic_of(ticket_id)
            if topic is None:
                created = await self.bot.create_forum_topic(
                    chat_id=self.staff_chat, name=await desk.ticket_title(ticket_id))
                topic = created.message_thread_id
                await desk.remember_topic(ticket_id, topic)
            return topic

    async def _staff_is_forum(self) -> bool:
        if self._forum is None and self.staff_chat is not None:
            self._forum = bool((await self.bot.get_chat(self.staff_chat)).is_forum)
        return bool(self._forum)


def _delivery_error(error: TelegramError) -> DeliveryError:
    if isinstance(error, RetryAfter):
        wait = error.retry_after
        seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
        return DeliveryError(f"rate limited by Telegram ({seconds:.0f}s)", retry_after=seconds)
    if isinstance(error, Forbidden):
        return DeliveryError(f"undeliverable: {error.message}", permanent=True)
    if isinstance(error, BadRequest):
        return DeliveryError(f"rejected by Telegram: {error.message}", permanent=True)
    if isinstance(error, NetworkError):  # includes timeouts and 5xx
        return DeliveryError(f"network error: {error.message}")
    return DeliveryError(f"telegram error: {error}")


def _keyboard(buttons: list[list[str]] | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)
                                  for label, data in buttons]])


def button_command(data: str) -> str | None:
    """A card button's callback data ("snooze:12:1h") as the command it stands for."""
    action, _, rest = data.partition(":")
    number, _, arg = rest.partition(":")
    if action not in ("take", "close", "snooze", "reopen") or not number.isdigit():
        return None
    return f"/{action} {number}{' ' + arg if arg else ''}"


def _text_of(message: Message) -> str:
    if message.text or message.caption:
        return message.text or message.caption
    kinds = ("photo", "sticker", "voice", "video", "document", "audio", "location", "contact")
    kind = next((k for k in kinds if getattr(message, k, None)), "message")
    return f"[{kind}]"
