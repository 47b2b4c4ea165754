"""Customers' attachments shown in the Telegram staff group as media, not as links.

A line names the ticket ("#12 Kate sent:"), then the media answer it:

- a Telegram customer's message is copied as it is (``copyMessage``: photo, voice,
  sticker, location, with its caption; an album with ``copyMessages``, still one album),
  nothing downloaded; a Telegram Business message, which the bot cannot copy, is sent
  again by its file ids;
- media of other platforms are downloaded from their URLs (at most ``MAX_DOWNLOAD``
  bytes, ``DOWNLOAD_TIMEOUT`` seconds, the content type checked: a photo must be an
  image, else it is sent as a document) and sent as the same kind: photo as photo, voice
  as voice, document as document; several photos and videos as one album;
- a location or a contact is sent as one; what cannot be shown (no URL, too big, the
  download fails) stays a clear line in the text: kind, name, size, link.

A row whose send fails part-way is sent again whole (like a long text in parts).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from telegram import Bot, InputFile, InputMediaPhoto, InputMediaVideo, ReplyParameters

from bots.telegram.staff import Where
from core.delivery.files import DOWNLOAD_TIMEOUT, download, extension
from core.domain.records import Attachment, Delivered
from core.staff.cards import StaffMessage, attachment_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sender:
    method: str  # the Bot method
    field: str  # its file parameter
    types: tuple[str, ...]  # content types it takes (empty: any)


SENDERS = {
    "photo": Sender("send_photo", "photo", ("image/",)),
    "voice": Sender("send_voice", "voice", ("audio/ogg", "audio/mpeg", "audio/mp4",
                                            "application/ogg")),
    "audio": Sender("send_audio", "audio", ("audio/",)),
    "video": Sender("send_video", "video", ("video/",)),
    "animation": Sender("send_animation", "animation", ("video/", "image/gif")),
    "document": Sender("send_document", "document", ()),
    # Only by a file id of this bot: Telegram's own formats, not fetched from elsewhere.
    "sticker": Sender("send_sticker", "sticker", ()),
    "video_note": Sender("send_video_note", "video_note", ()),
}
DOCUMENT = SENDERS["document"]
FILE_ID_ONLY = ("sticker", "video_note")  # no caption either
TIMED = ("voice", "audio", "video", "animation", "video_note")
ALBUM_KINDS = ("photo", "video")  # sent together as one album
ALBUM_SIZE = 10  # items Telegram takes in one album
PLACES = ("location", "venue", "contact")


class StaffMedia:
    def __init__(self, bot: Bot, channel: str):
        self.bot = bot
        self.channel = channel  # the platform whose messages can be copied

    def cost(self, message: StaffMessage) -> int:
        """Telegram messages the row becomes: the line, then one per item."""
        copy = self._copyable(message)
        return 1 + (len(copy[1]) if copy else len(message.media))

    async def send(self, where: Where, message: StaffMessage) -> Delivered:
        attachments = [Attachment.from_json(m) for m in message.media]
        header = await self._text(where, "\n".join(message.lines), where.reply_to)
        reply = ReplyParameters(message_id=header, allow_sending_without_reply=True)
        copy = self._copyable(message)
        unshown: list[str] = []
        if copy is not None:
            await self._copy(where, reply, *copy)
        else:
            # A Telegram Business message cannot be copied (the bot is not in that chat),
            # but its file ids are the bot's to send again.
            own = (message.media_source or {}).get("channel") == self.channel
            async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT,
                                         follow_redirects=True) as http:
                unshown = await self._show_all(http, where, reply, attachments, own)
        if unshown:  # what could not be shown as media: the line, with its link
            await self._text(where, "\n".join(unshown), header)
        return Delivered(external_id=f"{where.chat_id}:{header}")

    def _copyable(self, message: StaffMessage) -> tuple[int, list[int]] | None:
        """The chat and message ids (an album's items) to copy, or None."""
        source = message.media_source or {}
        target = source.get("target") or {}
        if source.get("channel") != self.channel or target.get("business_connection_id"):
            return None
        chat_id, message_id = target.get("chat_id"), target.get("reply_to_message_id")
        if not (chat_id and message_id):
            return None
        return int(chat_id), [int(i) for i in target.get("album") or [message_id]]

    async def _copy(self, where: Where, reply: ReplyParameters, chat_id: int,
                    message_ids: list[int]) -> None:
        if len(message_ids) == 1:
            await self.bot.copy_message(chat_id=where.chat_id, from_chat_id=chat_id,
                                        message_id=message_ids[0],
                                        message_thread_id=where.thread_id,
                                        reply_parameters=reply)
        else:  # an album is copied as one: Telegram keeps its items together
            await self.bot.copy_messages(chat_id=where.chat_id, from_chat_id=chat_id,
                                         message_ids=message_ids,
                                         message_thread_id=where.thread_id)

    async def _text(self, where: Where, text: str, reply_to: int | None) -> int:
        sent = await self.bot.send_message(
            chat_id=where.chat_id, text=text[:4096], message_thread_id=where.thread_id,
            reply_parameters=ReplyParameters(message_id=reply_to,
                                             allow_sending_without_reply=True)
            if reply_to else None)
        return sent.message_id

    async def _show_all(self, http: httpx.AsyncClient, where: Where, reply: ReplyParameters,
                        attachments: list[Attachment], own: bool) -> list[str]:
        """Send each attachment as media, in order; several photos and videos go
        together as one album where the first of them was. Returns the lines of those
        that can only be lines."""
        common: dict[str, Any] = {"chat_id": where.chat_id,
                                  "message_thread_id": where.thread_id,
                                  "reply_parameters": reply}
        unshown: list[str] = []
        prepared: list[Attachment | Media] = []
        for attachment in attachments:
            if attachment.kind in PLACES:
                prepared.append(attachment)
            elif (media := await self._media(http, attachment, own)) is not None:
                prepared.append(media)
            else:
                unshown.append(attachment_line(attachment))
        album = [m for m in prepared if isinstance(m, Media) and m.sender.field in ALBUM_KINDS]
        for item in prepared:
            if isinstance(item, Attachment):
                if not await self._place(item, common):
                    unshown.append(attachment_line(item))
            elif len(album) < 2 or item not in album:
                await item.send(self.bot, common)
            elif item is album[0]:
                for start in range(0, len(album), ALBUM_SIZE):
                    await self._album(album[start:start + ALBUM_SIZE], common)
        return unshown

    async def _album(self, items: list[Media], common: dict[str, Any]) -> None:
        if len(items) == 1:  # what is left over after full albums of ten
            await items[0].send(self.bot, common)
        else:
            await self.bot.send_media_group(media=[m.input_media() for m in items], **common)

    async def _place(self, attachment: Attachment, common: dict[str, Any]) -> bool:
        """A location or a contact, sent as one; False if it lacks what that needs."""
        if attachment.latitude is not None and attachment.longitude is not None:
            await self.bot.send_location(latitude=attachment.latitude,
                                         longitude=attachment.longitude, **common)
            return True
        if attachment.kind == "contact" and attachment.phone:
            await self.bot.send_contact(phone_number=attachment.phone,
                                        first_name=attachment.title or "contact", **common)
            return True
        return False

    async def _media(self, http: httpx.AsyncClient, attachment: Attachment,
                     own: bool) -> Media | None:
        """What to send for one attachment: this bot's own file id, or the file
        downloaded from its URL; None when it can only be a line."""
        sender = SENDERS.get(attachment.kind)
        if sender is None:
            return None
        caption = (attachment.caption or "")[:1024] or None
        if own and attachment.file_id:
            return Media(sender, attachment.file_id, None, caption, attachment.duration)
        if sender.field in FILE_ID_ONLY:  # another platform's sticker is an image
            sender = SENDERS["photo"] if attachment.kind == "sticker" else None
        if sender is None or not attachment.url:
            return None
        downloaded = await download(http, attachment.url)
        if downloaded is None:
            return None
        content, content_type = downloaded
        if sender.types and not content_type.startswith(sender.types):
            sender = DOCUMENT  # not what it claims to be: shown, but as a file
        name = attachment.file_name or f"{attachment.kind}{extension(content_type)}"
        return Media(sender, content, name, caption, attachment.duration)


@dataclass(frozen=True)
class Media:
    """One attachment ready to send: the Bot method, the file (an id, or the bytes and
    their name)."""

    sender: Sender
    file: bytes | str
    name: str | None
    caption: str | None
    duration: int | None

    async def send(self, bot: Bot, common: dict[str, Any]) -> None:
        extra: dict[str, Any] = {}
        if self.sender.field not in FILE_ID_ONLY:
            extra["caption"] = self.caption
        if self.duration and self.sender.field in TIMED:
            extra["duration"] = self.duration
        file = InputFile(self.file, filename=self.name) if self.name else self.file
        await getattr(bot, self.sender.method)(**{self.sender.field: file}, **extra,
                                               **common)

    def input_media(self) -> InputMediaPhoto | InputMediaVideo:
        # Bytes given to InputMedia are uploaded as "attach://" parts of the request.
        if self.sender.field == "photo":
            return InputMediaPhoto(self.file, caption=self.caption, filename=self.name)
        return InputMediaVideo(self.file, caption=self.caption, duration=self.duration,
                               filename=self.name)
