"""MAX adapter (maxapi 1.2): dialogs and group chats in, answers out.

Receiving long-polls ``GET /updates`` with the ``marker`` cursor. MAX keeps the updates
after a marker (24 hours) and a call with a marker confirms everything before it, so the
adapter saves the marker of an answer in the same transaction as its messages
(``context.ingest``) and asks with it only after that commit: nothing lost, nothing
doubled, after a crash the saved marker is asked with again. Without a marker MAX gives
only the latest update, so the first start takes what comes next and saves its marker.

Read: ``message_created`` and ``message_edited`` in dialogs, and in group chats those that
mention the bot or reply to its message; ``bot_started`` (the user pressed Start) greets,
opening no ticket. A ``message_created`` without its ``message`` (MAX sends voice messages
so today: love-apples/maxapi#193) cannot be read and is quarantined whole.

Sending: ``POST /messages`` to the user (a dialog) or the chat, replying to the customer's
message, a long text split in parts; files are uploaded first (``POST /uploads``). MAX has
no idempotency key: a send whose outcome is unknown is looked for among the chat's latest
messages (``find_sent``), then sent once more at most (docs/reliability.md).

Every call goes through maxapi's ``Bot`` (the token in the ``Authorization`` header; the
base URL from ``[channels.max] base_url``: the emulator in tests).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

import aiohttp
from maxapi import Bot
from maxapi.client.default import DefaultConnectionProperties
from maxapi.enums.http_method import HTTPMethod
from maxapi.enums.message_link_type import MessageLinkType
from maxapi.enums.upload_type import UploadType
from maxapi.exceptions.max import InvalidToken, MaxApiError, MaxConnection, MaxUploadFileFailed
from maxapi.types.input_media import InputMediaBuffer
from maxapi.types.message import NewMessageLink

from bots.common.polling import (
    Backoff,
    PollHealth,
    ingest_until_stored,
    read_payloads,
    run_until_stopped,
)
from bots.max.errors import api_delivery_error
from bots.max.media import attachments_of, display_name
from bots.max.settings import MaxTarget
from core.config.settings import Settings
from core.delivery.contract import (
    AdapterContext,
    ChannelAdapter,
    ChannelHealth,
    Cursor,
    DeliveryError,
)
from core.delivery.outfiles import FileRule, FileRules, OutgoingFile
from core.domain.records import Delivered, Inbound, Outbound
from core.domain.text import split_text

log = logging.getLogger(__name__)

CHANNEL = "max"
# MAX takes 4,000 characters; maxapi refuses a text of exactly 4,000 (``len < 4000``).
MAX_TEXT = 3999
UPDATE_TYPES = ("message_created", "message_edited", "bot_started")
SEND_TIMEOUT = 30.0  # seconds for any call but the long poll and uploads
UPLOAD_RATE = 256 * 1024  # bytes a second an upload is given at least (plus SEND_TIMEOUT)
PART_GAP = 1.0  # seconds between the parts of a long text past the second
LOOK_BACK = 50  # the chat's latest messages searched for a send whose outcome is unknown
MB = 1024 * 1024
UPLOAD_TYPES = {"photo": UploadType.IMAGE, "video": UploadType.VIDEO,
                "voice": UploadType.AUDIO, "document": UploadType.FILE}
# What MAX takes (dev.max.ru/docs-api/methods/POST/uploads): images up to 50 MB, videos
# 250 MB, audio 256 MB, files 4 GB (kept to 200 MB here: staff files live in the database).
MAX_FILES = FileRules((
    FileRule("photo", ("image/jpeg", "image/png", "image/gif", "image/bmp", "image/tiff",
                       "image/heic"), 50 * MB, "JPG, PNG, GIF, TIFF, BMP or HEIC"),
    FileRule("video", ("video/mp4", "video/quicktime", "video/x-matroska", "video/webm"),
             200 * MB, "MP4, MOV, MKV or WEBM"),
    FileRule("voice", ("audio/",), 200 * MB),
    FileRule("document", (), 200 * MB),
))


class PollError(Exception):
    """GET /updates gave no usable answer (retried with backoff)."""


class MaxAdapter(ChannelAdapter):
    name = CHANNEL
    can_edit = True
    can_delete = True
    file_rules = MAX_FILES

    def __init__(self, settings: Settings):
        self.settings = settings
        config = settings.channels.max
        self.poll_timeout = max(1, round(config.poll_timeout.total_seconds()))
        # No retries inside the library: the dispatcher and the receive loop retry with
        # their own backoff (and never repeat a send blindly).
        # Each call is bounded by ``_call``; the session's own limit only backs it up (an
        # upload of a large file takes minutes).
        self.bot = Bot(token=config.secret("token_env"), auto_requests=False,
                       default_connection=DefaultConnectionProperties(
                           timeout=3600, max_retries=0),
                       after_upload_retry_delay=1.0)
        self.bot.set_api_url(config.base_url)
        self.me: dict[str, Any] | None = None  # GET /me: the bot's own user
        self.marker: int | None = None
        self.context: AdapterContext | None = None
        self.stopping = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self.polls = PollHealth()
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, context: AdapterContext) -> None:
        self.context = context
        saved = await context.load_cursor(CHANNEL, "marker")
        self.marker = int(saved) if saved else None
        # Connecting happens in the loop: MAX being down at start must not stop the daemon.
        self._runner = asyncio.create_task(
            run_until_stopped("max", self._poll_once, self.stopping,
                              Backoff(base=1, ceiling=30), on_error=self.polls.failed),
            name="max-polling")

    async def stop(self) -> None:
        # A long poll in flight is cancelled: nothing it fetched is committed, so it is
        # fetched again with the saved marker after the next start.
        self.stopping.set()
        try:
            if self._runner is not None:
                self._runner.cancel()
                await asyncio.gather(self._runner, return_exceptions=True)
                self._runner = None
        finally:
            self._closed = True  # a later call would open a session nobody closes
            await self.bot.close_session()

    def health(self) -> ChannelHealth:
        return self.polls.report(self.me is not None and not self.stopping.is_set())

    # --- receiving -----------------------------------------------------------------------------

    async def _poll_once(self) -> None:
        if self.me is None:
            me = await self._ensure_me()
            log.info("max: receiving as @%s", me.get("username") or me.get("user_id"))
        answer = await self._call(self.bot.get_updates(
            limit=100, timeout=self.poll_timeout, marker=self.marker,
            types=list(UPDATE_TYPES)), timeout=self.poll_timeout + 15)
        self.polls.succeeded()  # empty answers too: the long poll is alive
        updates, marker = answer.get("updates"), answer.get("marker")
        if not isinstance(updates, list) or not isinstance(marker, int | None):
            raise PollError("GET /updates answered without updates or marker")
        batch, unreadable = read_payloads(self, updates, _update_key)
        if marker is None or (marker == self.marker and not batch and not unreadable):
            return  # the wait ran out with nothing new
        cursor = Cursor(CHANNEL, "marker", str(marker))
        if await ingest_until_stored(
                "max", lambda: self.context.ingest(batch, cursor, unreadable), self.stopping):
            self.marker = marker

    def read_payload(self, payload: Any) -> Inbound | None:
        """An update as MAX sent it (``Inbound.raw``) read again."""
        return self.to_inbound(payload)

    def to_inbound(self, update: dict[str, Any]) -> Inbound | None:
        kind = update["update_type"]
        if kind == "bot_started":
            return self._greeting(update)
        if kind not in ("message_created", "message_edited"):
            return self.ignored(f"update:{kind}")
        message = update["message"]  # absent: a KeyError, and the update is quarantined
        sender, recipient, body = message["sender"], message["recipient"], message["body"]
        if sender.get("is_bot"):
            return self.ignored("own_message" if self._is_me(sender) else "from_a_bot")
        group = recipient.get("chat_type") != "dialog"
        if group and not self._addressed(message):
            return self.ignored("group_chatter")  # not mentioning or answering the bot
        author, mid = int(sender["user_id"]), str(body["mid"])
        chat_id = recipient.get("chat_id")
        target = MaxTarget(chat_id=int(chat_id), reply_to=mid) if group \
            else MaxTarget(user_id=author, chat_id=chat_id, reply_to=mid)
        return Inbound(
            channel=CHANNEL, external_id=mid,
            thread_key=f"chat:{chat_id}:{author}" if group else f"dialog:{author}",
            author_id=str(author), author_handle=sender.get("username") or None,
            author_name=display_name(sender), text=_text(body),
            sent_at=_time(message.get("timestamp") or update["timestamp"]),
            attachments=attachments_of(message),
            reply_target=target.model_dump(exclude_none=True), raw=update,
            edited=kind == "message_edited")

    def _greeting(self, update: dict[str, Any]) -> Inbound:
        """The user pressed Start in the bot's dialog: greeted, no ticket."""
        user = update["user"]
        author = int(user["user_id"])
        return Inbound(
            channel=CHANNEL, external_id=f"start:{author}:{int(update['timestamp'])}",
            thread_key=f"dialog:{author}", author_id=str(author),
            author_handle=user.get("username") or None, author_name=display_name(user),
            text=f"/start {update.get('payload') or ''}".strip(),
            sent_at=_time(update["timestamp"]), raw=update, greeting=True,
            reply_target=MaxTarget(user_id=author, chat_id=update.get("chat_id"))
            .model_dump(exclude_none=True))

    async def _ensure_me(self) -> dict[str, Any]:
        """The bot's own user (GET /me), asked once."""
        if self.me is None:
            self.me = await self._call(self.bot.request(HTTPMethod.GET, "/me",
                                                        is_return_raw=True))
        return self.me

    def _is_me(self, user: Any) -> bool:
        return isinstance(user, dict) and self.me is not None \
            and user.get("user_id") == self.me.get("user_id")

    def _addressed(self, message: dict[str, Any]) -> bool:
        """In a group chat, as in a Telegram group: a mention of the bot (MAX's
        ``user_mention`` markup, or "@username" in the text) or a reply to its message."""
        link = message.get("link")
        if isinstance(link, dict) and link.get("type") == "reply" \
                and self._is_me(link.get("sender")):
            return True
        body = message.get("body") or {}
        me = self.me or {}
        if any(isinstance(mark, dict) and mark.get("type") == "user_mention"
               and mark.get("user_id") == me.get("user_id") and mark.get("user_id") is not None
               for mark in body.get("markup") or ()):
            return True
        username = me.get("username")
        return bool(username) and f"@{username}".lower() in str(body.get("text") or "").lower()

    @classmethod
    def survey_private(cls, target: dict[str, Any]) -> bool:
        """A dialog with the customer, not a group chat."""
        return target.get("user_id") is not None

    # --- sending -------------------------------------------------------------------------------

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        address = self.reply_target(outbound)
        chat = address.chat_id if address.chat_id is not None else f"u{address.user_id}"
        return [("per_bot", "bot"), ("per_chat", str(chat))]

    def send_cost(self, outbound: Outbound) -> int:
        return max(1, len(split_text(outbound.text, MAX_TEXT)))

    async def send(self, outbound: Outbound) -> Delivered:
        parts = split_text(outbound.text, MAX_TEXT)
        if not parts:
            raise DeliveryError("empty text: nothing to send", permanent=True)
        return await self._send_parts(self.reply_target(outbound), parts)

    async def send_file(self, outbound: Outbound, file: OutgoingFile) -> Delivered:
        """Upload the file (POST /uploads, then the upload URL), then send it with the
        text's first part."""
        if file.by_reference or file.content is None:
            raise DeliveryError(f"the bytes of this {file.kind} were not kept", permanent=True)
        # maxapi adds the extension it detects: the name goes without its own.
        stem = PurePath(file.name).stem if file.name else file.kind
        try:
            uploaded = await self._call(self.bot.upload_media(InputMediaBuffer(
                buffer=file.content, filename=stem, type=UPLOAD_TYPES[file.kind])),
                timeout=SEND_TIMEOUT + len(file.content) / UPLOAD_RATE)
        except DeliveryError as error:
            # Nothing reached the customer yet: a failed upload is simply retried.
            raise DeliveryError(error.reason, permanent=error.permanent,
                                retry_after=error.retry_after) from error
        return await self._send_parts(self.reply_target(outbound),
                                      split_text(outbound.text, MAX_TEXT) or [""], uploaded)

    async def _send_parts(self, address: MaxTarget, parts: list[str],
                          attachment: Any = None) -> Delivered:
        first: str | None = None
        for index, part in enumerate(parts):
            if index >= 2:
                # MAX takes 2 messages a second into one chat, and the row reserved at
                # most 2 of the chat's tokens: a third part waits its second.
                await asyncio.sleep(PART_GAP)
            first_part = index == 0
            try:
                sent = await self._send_one(address, part, attachment if first_part else None,
                                            address.reply_to if first_part else None)
            except DeliveryError as error:
                if first_part:
                    raise
                # Part of the answer is out: a plain retry would repeat it; the
                # dispatcher looks for the whole answer first (find_sent).
                raise DeliveryError(f"after part {index} of {len(parts)}: {error.reason}",
                                    unknown=True) from error
            first = first or _mid(sent)
        return Delivered(external_id=first)

    async def _send_one(self, address: MaxTarget, text: str, attachment: Any,
                        reply_to: str | None = None) -> Any:
        return await self._call(self.bot.send_message(
            chat_id=address.chat_id, user_id=address.user_id, text=text or None,
            attachments=[attachment] if attachment is not None else None,
            link=NewMessageLink(type=MessageLinkType.REPLY, mid=reply_to) if reply_to else None,
            disable_link_preview=False, sleep_after_input_media=False))

    async def find_sent(self, outbound: Outbound) -> Delivered | None:
        """A send whose outcome is unknown: found when the bot's message with its first
        part, replying to the customer's message, and one with its last part are among
        the chat's latest LOOK_BACK messages (GET /messages): the parts go in order, so
        then all of them went out. The row keeps the first part's id."""
        address = self.reply_target(outbound)
        parts = split_text(outbound.text, MAX_TEXT)
        if address.chat_id is None or not parts:
            return None  # a dialog known by its user only: nothing to search
        await self._ensure_me()
        answer = await self._call(self.bot.request(
            HTTPMethod.GET, "/messages", is_return_raw=True,
            params={"chat_id": address.chat_id, "count": LOOK_BACK}))
        ours = [message for message in answer.get("messages") or ()
                if self._is_me(message.get("sender"))]
        first = next((m for m in ours if _text_of(m) == parts[0]
                      and _replies_to(m) == address.reply_to), None)
        if first is None or not any(_text_of(m) == parts[-1] for m in ours):
            return None
        return Delivered(external_id=str(first["body"]["mid"]))

    async def edit(self, outbound: Outbound) -> Delivered:
        """Change a sent answer's text. Sent through the client's request: maxapi's
        ``edit_message`` always sends ``"attachments": []``, which MAX reads as "remove
        every attachment" (a file answer would lose its file)."""
        mid = self._sent_mid(outbound)
        text = (split_text(outbound.text, MAX_TEXT) or [""])[0]
        await self._call(self.bot.request(HTTPMethod.PUT, "/messages", is_return_raw=True,
                                          params={"message_id": mid}, json={"text": text}))
        return Delivered(external_id=mid)

    async def delete(self, outbound: Outbound) -> Delivered:
        mid = self._sent_mid(outbound)
        try:
            await self._call(self.bot.delete_message(message_id=mid))
        except DeliveryError as error:
            if "HTTP 404" not in error.reason:
                raise  # gone already: withdrawn
        return Delivered(external_id=mid)

    @staticmethod
    def _sent_mid(outbound: Outbound) -> str:
        mid = (outbound.target.get("answer") or {}).get("external_id")
        if not mid:
            raise DeliveryError("the answer's MAX message id is not known", permanent=True)
        return str(mid)

    async def _call(self, request: Any, timeout: float = SEND_TIMEOUT) -> Any:
        """One call to MAX; its failure as a DeliveryError (permanent, retried, unknown)."""
        if self._closed:
            request.close()
            raise DeliveryError("the MAX adapter is stopped")
        try:
            return await asyncio.wait_for(request, timeout)
        except MaxApiError as error:
            if 200 <= error.code < 300:  # a 2xx answer that is not JSON: done, maybe
                raise DeliveryError(f"MAX answered HTTP {error.code} without a readable "
                                    f"body", unknown=True) from error
            raise api_delivery_error(error.code, error.raw) from error
        except InvalidToken as error:
            raise api_delivery_error(401, {"code": "verify.token"}) from error
        except MaxConnection as error:
            # Not connected at all: MAX saw nothing. Cut off after sending: it may have.
            unknown = not isinstance(error.__cause__, aiohttp.ClientConnectorError)
            raise DeliveryError(f"network error talking to MAX: {error}"[:300],
                                unknown=unknown) from error
        except TimeoutError as error:
            raise DeliveryError("MAX did not answer in time", unknown=True) from error
        except MaxUploadFileFailed as error:
            raise DeliveryError(f"MAX's upload server refused the file: {error}"[:300]) \
                from error
        except aiohttp.ClientError as error:
            raise DeliveryError(f"network error talking to MAX: {error}"[:300],
                                unknown=True) from error
        except ValueError as error:
            # MAX answered, but not as documented: it may have done what was asked.
            raise DeliveryError(f"MAX gave an unreadable answer ({type(error).__name__}: "
                                f"{str(error)[:200]})", unknown=True) from error


# --- pure helpers ----------------------------------------------------------------------------


def _text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if text is None:
        return ""  # attachments only
    if not isinstance(text, str):
        raise TypeError("text is not a string")
    return text


def _time(milliseconds: Any) -> datetime:
    return datetime.fromtimestamp(int(milliseconds) / 1000, UTC)


def _mid(sent: Any) -> str:
    try:
        return str(sent.message.body.mid)
    except AttributeError:
        raise DeliveryError(f"MAX answered the send without a message id: {sent!r:.200}",
                            unknown=True) from None


def _text_of(message: dict[str, Any]) -> str | None:
    return (message.get("body") or {}).get("text")


def _replies_to(message: dict[str, Any]) -> str | None:
    """The mid of the message this one replies to (LinkedMessage: its message's mid)."""
    link = message.get("link")
    if not isinstance(link, dict) or link.get("type") != "reply":
        return None
    return (link.get("message") or {}).get("mid")


def _update_key(update: Any) -> str | None:
    if not isinstance(update, dict):
        return None
    message = update.get("message")
    mid = ((message or {}).get("body") or {}).get("mid") if isinstance(message, dict) else None
    if mid:
        return str(mid)
    timestamp = update.get("timestamp")
    return f"{update.get('update_type')}:{timestamp}" if timestamp is not None else None
