"""Telegram adapter (python-telegram-bot 22): customers' messages in, answers out.

Receiving runs python-telegram-bot's long polling inside the daemon's event loop
(``initialize`` / ``start`` / ``updater.start_polling``, never ``run_polling``, which
would own the loop and the signals).

Nothing lost, nothing doubled: Telegram forgets an update as soon as ``getUpdates`` is
called with a higher offset, and the Updater makes that call right after it hands the
previous updates over, before they are stored. ``GatedBot`` therefore holds every
``getUpdates`` until the updates of the previous answer are committed (the offset is
saved in the same transaction as the messages). A crash before that commit means Telegram
sends the updates again, and the inbox deduplicates them. The customer messages of one
answer are stored in one transaction (``bots.telegram.batches``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC
from typing import Any

from telegram import (
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, TelegramError
from telegram.ext import Application, ApplicationBuilder, ExtBot, TypeHandler
from telegram.request import HTTPXRequest

from bots.common.polling import (
    Backoff,
    PollHealth,
    ingest_until_stored,
    retry_while_unavailable,
    run_until_stopped,
)
from bots.telegram import answers
from bots.telegram.albums import AlbumHolder, album_of, merged
from bots.telegram.batches import WaitingUpdates
from bots.telegram.business import BUSINESS_UPDATES, BusinessConnections, customer_wrote
from bots.telegram.errors import delivery_error
from bots.telegram.files import fetch_file
from bots.telegram.media import attachments_of, backfilled, text_of
from bots.telegram.settings import TelegramTarget
from bots.telegram.staff import TelegramStaffChat, Where, keyboard, render
from bots.telegram.staff_files import StaffFiles
from bots.telegram.staff_media import StaffMedia
from bots.telegram.survey import answer_press, is_press, survey_message
from core.config.settings import TEXTS_LOGGER, Settings
from core.delivery.contract import (
    STAFF_CHANNEL,
    AdapterContext,
    ChannelAdapter,
    ChannelHealth,
    Cursor,
    DeliveryError,
)
from core.delivery.outfiles import OutgoingFile
from core.domain.records import Attachment, Delivered, Inbound, Outbound, Unreadable
from core.domain.text import split_text
from core.intake.quarantine import describe
from core.staff.cards import StaffMessage

# Opt in to python-telegram-bot's coming behaviour (durations as timedelta); the code
# below accepts both forms.
os.environ.setdefault("PTB_TIMEDELTA", "1")

log = logging.getLogger(__name__)
texts = logging.getLogger(TEXTS_LOGGER)  # customers' texts: debug only, off by default

CHANNEL = "telegram"
MAX_TEXT = 4096
# "/start" (with a deep-link payload or not): a chat's opening, greeted, not a ticket.
OPENING = re.compile(r"/start(@\w+)?( \S+)?")
# What the bot asks Telegram for; anything else is never sent to it.
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", *BUSINESS_UPDATES]
DELAY_WORTH_SAYING = 5.0  # seconds a staff message waited for the database before it ran
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)  # links in customer text stay inert


class UpdateGate:
    """Tracks updates handed to the application that are not yet committed."""

    def __init__(self) -> None:
        self.outstanding: set[int] = set()
        self.floor = 0  # never ask for updates below this (saved cursor, skipped ones)
        self.answer_last = -1  # the last update of the latest getUpdates answer
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
    quarantines malformed updates instead of failing the whole batch forever.

    It also records each getUpdates in ``polls``: the Updater retries network errors by
    itself, so this is the only place that sees them."""

    def __init__(self, *args: Any, gate: UpdateGate, polls: PollHealth,
                 quarantine: Callable[[list[Unreadable]], Awaitable[bool]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._gate = gate
        self._polls = polls
        self._quarantine = quarantine
        self._unreadable: list[Unreadable] = []

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
        if self._unreadable:
            # Outstanding until quarantined: a shutdown meanwhile confirms nothing, and
            # Telegram sends them again after the restart.
            unreadable, self._unreadable = self._unreadable, []
            ids = [int(item.external_id.split(":")[1]) for item in unreadable]
            self._gate.delivered(ids)
            if await self._quarantine(unreadable):
                for update_id in ids:
                    self._gate.handled(update_id)
        self._gate.delivered([u.update_id for u in updates])
        if updates:
            self._gate.answer_last = updates[-1].update_id
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
            if not isinstance(update_id, int):
                log.warning("telegram: skipping an update without update_id")
                texts.debug("telegram: the update without update_id: %.300r", raw)
                continue  # nothing to confirm it by; Telegram will not send it again
            try:
                Update.de_json(raw, self)
            except Exception as error:
                log.warning("telegram: quarantining malformed update %s (%s)", update_id,
                            type(error).__name__)
                texts.debug("telegram: malformed update %s (%s): %.300r", update_id, error,
                            raw)
                self._unreadable.append(unreadable_update(raw, error))
                continue
            good.append(raw)
        return good


class TelegramAdapter(ChannelAdapter):
    name = CHANNEL
    # Staff answers can be changed and withdrawn, and carry files (bots/telegram/answers.py).
    can_edit = True
    can_delete = True
    file_rules = answers.TELEGRAM_FILES

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
            get_updates_request=HTTPXRequest(read_timeout=self.poll_timeout + 10),
            quarantine=self._quarantine)
        self.application: Application = (
            ApplicationBuilder().bot(self.bot).concurrent_updates(False).build())
        self.application.add_handler(TypeHandler(Update, self._on_update))
        self.context: AdapterContext | None = None
        self.stopping = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self.connected = False
        self.staff = TelegramStaffChat(self)
        self.staff_media = StaffMedia(self.bot, CHANNEL)
        self.staff_files = StaffFiles(self.staff)
        self.business = BusinessConnections()
        self.albums = AlbumHolder(self._store_album)
        self.waiting = WaitingUpdates()
        self._storing = asyncio.Lock()

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
                allowed_updates=ALLOWED_UPDATES)
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
        self.albums.cancel()
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
        health = self.polls.report(self.connected)
        problem = self.business.problem()
        return replace(health, problem=problem) if problem and not health.problem else health

    # --- receiving -----------------------------------------------------------------------------

    async def _on_update(self, update: Update, _context: Any) -> None:
        """Handle one update; confirm it to Telegram only once what it caused is stored.
        An update nothing can handle (a staff command that fails for a reason other than
        the database) is quarantined, never skipped. An album's items are held until
        the album is whole (``bots.telegram.albums``)."""
        message = update.message or update.business_message
        in_staff_group = message is not None \
            and message.chat.id == self.settings.staff.telegram_chat_id
        if not self._from_customer(update) and not await self._store_waiting():
            return  # stopping: this update and the ones before it come again after restart
        if not await self.albums.offer(update, None if in_staff_group else album_of(update)):
            try:
                handled = await self._handle(update)
            except Exception as error:
                log.exception("telegram: could not handle update %s; quarantined",
                              update.update_id)
                handled = await self._store(update, [], [unreadable_update(update.to_dict(),
                                                                           error)])
            if handled:
                self.gate.handled(update.update_id)
            # None: waiting for the rest of the answer; False: stopping, the update
            # stays unconfirmed and Telegram sends it again
        if update.update_id >= self.gate.answer_last:
            await self._store_waiting()  # the answer's customer messages, in one go

    def _from_customer(self, update: Update) -> bool:
        """A message in a customer's chat: stored with the rest of its getUpdates answer."""
        message = (update.message or update.edited_message or update.business_message
                   or update.edited_business_message)
        return message is not None and update.business_connection is None \
            and message.chat.id != self.settings.staff.telegram_chat_id

    async def _handle(self, update: Update) -> bool | None:
        if update.business_connection is not None:
            self.business.changed(update.business_connection)
            return True
        if is_press(update, self.settings.staff.telegram_chat_id):
            # A customer's satisfaction score (bots/telegram/survey.py), not a staff button.
            return await retry_while_unavailable(
                "telegram: a survey answer", lambda: answer_press(self, CHANNEL, update),
                self.stopping) is not None
        # A staff message has the customer's guarantee: while the database is
        # unavailable it waits (the update stays unconfirmed), then applies once.
        outcome = await retry_while_unavailable(
            "telegram: a staff update", lambda: self.staff.handle(update), self.stopping)
        if outcome is None:
            return False
        staff, held_up = outcome
        if staff:
            if held_up >= DELAY_WORTH_SAYING:
                await self.staff.say_delayed(update, held_up)
            return True
        try:
            inbound = self.to_inbound(update)
        except Exception as error:  # kept whole; the updates after it go on
            log.warning("telegram: quarantining update %s (%s)", update.update_id,
                        type(error).__name__)
            texts.debug("telegram: update %s not read: %s", update.update_id, error)
            self.waiting.add(update, unreadable=unreadable_update(update.to_dict(), error))
            return None
        if inbound is None:
            log.debug("telegram: update %s is not a customer message", update.update_id)
        self.waiting.add(update, inbound)
        return None

    async def _store(self, update: Update, batch: list[Inbound],
                     unreadable: list[Unreadable]) -> bool:
        """Store what an update brought, after the customer messages waiting before it,
        in one transaction with the offset past them all; False if stopping. One store
        at a time (an album's timer stores too): commits follow the updates' order, so
        the saved offset never passes an update that is not stored."""
        async with self._storing:
            return await self._store_in_order(update, batch, unreadable)

    async def _store_in_order(self, update: Update, batch: list[Inbound],
                              unreadable: list[Unreadable]) -> bool:
        waiting = self.waiting.take()
        batch, unreadable = waiting.batch + batch, waiting.unreadable + unreadable
        if batch or unreadable:
            last = max(u.update_id for u in [*waiting.updates, update])
            cursor = Cursor(CHANNEL, "offset", str(last + 1))
            if not await ingest_until_stored(
                    "telegram", lambda: self.context.ingest(batch, cursor, unreadable),
                    self.stopping):
                return False
        for stored in waiting.updates:
            self.gate.handled(stored.update_id)
        return True

    async def _store_waiting(self) -> bool:
        """Store the customer messages waiting; False if stopping first."""
        if not self.waiting.updates:
            return True
        return await self._store(self.waiting.updates[-1], [], [])

    async def _store_album(self, updates: list[Update]) -> None:
        """An album's items stored as one message, then confirmed."""
        batch, unreadable = [], []
        for update in updates:
            try:
                inbound = self.to_inbound(update)
            except Exception as error:
                unreadable.append(unreadable_update(update.to_dict(), error))
                continue
            if inbound is not None:
                batch.append(inbound)
        if await self._store(updates[-1], [merged(batch)] if batch else [], unreadable):
            for update in updates:
                self.gate.handled(update.update_id)

    async def _quarantine(self, unreadable: list[Unreadable]) -> bool:
        """Keep updates python-telegram-bot cannot read; False if the daemon stopped
        first."""
        return await ingest_until_stored(
            "telegram", lambda: self.context.ingest([], None, unreadable), self.stopping)

    # --- customers ------------------------------------------------------------------------

    @classmethod
    def survey_private(cls, target: dict[str, Any]) -> bool:
        """A private chat (positive chat ids; a business account's chats too), not a
        group: the satisfaction survey goes there by default."""
        chat_id = target.get("chat_id")
        return isinstance(chat_id, int) and chat_id > 0

    def read_payload(self, payload: Any) -> Inbound | None:
        """An update as Telegram sent it (``Inbound.raw``; an album: its updates)
        read again."""
        if isinstance(payload, dict) and "media_group" in payload:
            items = [self.read_payload(item) for item in payload["media_group"]]
            return merged([item for item in items if item is not None])
        return self.to_inbound(Update.de_json(backfilled(payload), self.bot))

    def to_inbound(self, update: Update) -> Inbound | None:
        """A customer's message (or a new version of one: ``edited``) as Inbound, or
        None (not for the inbox)."""
        message = (update.message or update.edited_message or update.business_message
                   or update.edited_business_message)
        if message is None:
            return self.ignored("not_a_message")  # a member joined, a poll closed, ...
        chat = message.chat
        if chat.id == self.settings.staff.telegram_chat_id:
            return None  # the staff group is the staff's command line, not a customer
        business = message.business_connection_id
        if business and not customer_wrote(message):
            return self.ignored("business_owner")  # the account's owner, or our own reply
        author = _author(message)
        if author is None:
            return self.ignored("from_a_bot")  # a bot, or a service message
        if chat.type != chat.PRIVATE and not self._addressed_to_bot(message):
            return self.ignored("group_chatter")  # talk that does not address the bot
        author_id, handle, name = author
        private = chat.type == chat.PRIVATE
        # A chat through the company's business account is not the chat with the bot:
        # its own thread, its own message ids, answered through the connection.
        place = f"business:{chat.id}" if business else f"chat:{chat.id}"
        thread = place if private else f"{place}:user:{author_id}"
        target = TelegramTarget(
            chat_id=chat.id, reply_to_message_id=message.message_id,
            message_thread_id=message.message_thread_id if message.is_topic_message else None,
            business_connection_id=business)
        return Inbound(
            channel=CHANNEL, external_id=f"{'b' if business else ''}{chat.id}:"
                                         f"{message.message_id}",
            thread_key=thread, author_id=author_id, author_handle=handle, author_name=name,
            text=text_of(message), attachments=attachments_of(message),
            sent_at=message.date.astimezone(UTC),
            reply_target=target.model_dump(exclude_none=True), raw=update.to_dict(),
            edited=(update.edited_message or update.edited_business_message) is not None,
            greeting=private and not business
            and OPENING.fullmatch(message.text or "") is not None)

    def _addressed_to_bot(self, message: Message) -> bool:
        replied = message.reply_to_message
        if replied is not None and replied.from_user and replied.from_user.id == self.bot.id:
            return True
        mentions = message.parse_entities(["mention", "text_mention", "bot_command"])
        username = f"@{self.bot.username}".lower()
        return any(text.lower() == username  # @sameday_bot
                   or (e.type == "bot_command" and text.lower().endswith(username))  # /x@bot
                   or (e.user is not None and e.user.id == self.bot.id)  # a text mention
                   for e, text in mentions.items())

    async def fetch_attachment(self, attachment: Attachment) -> tuple[bytes, str] | None:
        """A customer's file by its file id (getFile), for `sameday media get`; what has
        no file id but a URL is downloaded from it."""
        if attachment.file_id:
            return await fetch_file(self.settings.channels.telegram, attachment)
        return await super().fetch_attachment(attachment)

    # --- sending -------------------------------------------------------------------------------

    def _where(self, outbound: Outbound) -> Where:
        """The chat (and thread, and message to quote) a row goes to."""
        if outbound.channel == STAFF_CHANNEL:
            return self.staff.where(StaffMessage.from_row(outbound.target, outbound.text))
        target = self.reply_target(outbound)
        return Where(target.chat_id, target.message_thread_id, target.reply_to_message_id,
                     target.business_connection_id)

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        try:
            chat_id = self._where(outbound).chat_id
        except DeliveryError:
            return [("per_bot", "bot")]  # send() reports the bad address
        # Telegram's group limit applies to groups and supergroups (negative ids).
        per_chat = ("per_group", str(chat_id)) if chat_id < 0 else ("per_chat", str(chat_id))
        return [("per_bot", "bot"), per_chat]

    def send_cost(self, outbound: Outbound) -> int:
        if outbound.channel == STAFF_CHANNEL and outbound.target.get("media"):
            return self.staff_media.cost(StaffMessage.from_row(outbound.target))
        return max(1, len(split_text(outbound.text, MAX_TEXT)))

    async def send(self, outbound: Outbound) -> Delivered:
        where = self._where(outbound)
        try:
            if outbound.channel != STAFF_CHANNEL:
                text, markup = survey_message(outbound)  # a survey's question has buttons
                return await self._post(where, text, markup=markup)
            message = StaffMessage.from_row(outbound.target, outbound.text)
            text = render(message, self.staff.settings.staff.members)
            if message.edit:
                return await self._edit(message.edit, text, keyboard(message.buttons))
            if where.thread_id is None and message.reply_to is None:
                where = Where(where.chat_id, await self.staff.thread_for(message.ticket_id))
            if message.media:
                return await self.staff_media.send(where, message)
            return await self._post(where, text, parse_mode="HTML",
                                    markup=keyboard(message.buttons))
        except TelegramError as error:
            raise delivery_error(error) from error

    async def send_file(self, outbound: Outbound, file: OutgoingFile) -> Delivered:
        try:
            return await answers.send_file(self.bot, self._where(outbound), outbound.text,
                                           file)
        except TelegramError as error:
            raise delivery_error(error) from error

    async def edit(self, outbound: Outbound) -> Delivered:
        try:
            return await answers.edit(self.bot, self._where(outbound), outbound)
        except TelegramError as error:
            raise delivery_error(error) from error

    async def delete(self, outbound: Outbound) -> Delivered:
        try:
            return await answers.delete(self.bot, self._where(outbound), outbound)
        except TelegramError as error:
            raise delivery_error(error) from error

    async def _post(self, where: Where, text: str, *, parse_mode: str | None = None,
                    markup: InlineKeyboardMarkup | None = None) -> Delivered:
        """Send a text (in parts if it is long); the buttons go on the last part."""
        reply_to, first_id = where.reply_to, None
        parts = split_text(text, MAX_TEXT)
        for index, part in enumerate(parts):
            sent = await self.bot.send_message(
                chat_id=where.chat_id, text=part, message_thread_id=where.thread_id,
                business_connection_id=where.business, parse_mode=parse_mode,
                link_preview_options=NO_PREVIEW,
                reply_markup=markup if index == len(parts) - 1 else None,
                reply_parameters=ReplyParameters(message_id=reply_to,
                                                 allow_sending_without_reply=True)
                if reply_to else None)
            first_id = first_id or sent.message_id
            reply_to = None  # only the first part quotes the message it answers
        return Delivered(external_id=f"{where.chat_id}:{first_id}")

    async def _edit(self, posted: str, text: str,
                    markup: InlineKeyboardMarkup | None) -> Delivered:
        chat_id, _, message_id = posted.rpartition(":")
        try:
            await self.bot.edit_message_text(
                chat_id=int(chat_id), message_id=int(message_id), text=text[:MAX_TEXT],
                parse_mode="HTML", link_preview_options=NO_PREVIEW, reply_markup=markup)
        except BadRequest as error:
            if "not modified" not in error.message:
                raise
        return Delivered(external_id=posted)


def _author(message: Message) -> tuple[str, str | None, str | None] | None:
    """Who wrote, as (id, @handle, name): a person, or the chat a message was sent as (a
    channel, or the group itself for its anonymous admin, signed as they sign); None for
    bots and service messages."""
    sender = message.sender_chat  # written as a channel, or as the group's anonymous admin
    if sender is not None:
        return (f"chat{sender.id}", f"@{sender.username}" if sender.username else None,
                message.author_signature or sender.title)
    user = message.from_user
    if user is None or user.is_bot:
        return None
    return str(user.id), f"@{user.username}" if user.username else None, user.full_name


def _update_key(payload: Any) -> str | None:
    update_id = payload.get("update_id") if isinstance(payload, dict) else None
    return f"update:{update_id}" if isinstance(update_id, int) else None


def unreadable_update(payload: dict[str, Any], error: BaseException) -> Unreadable:
    return Unreadable(CHANNEL, payload, describe(error), _update_key(payload))
