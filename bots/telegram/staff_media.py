"""Customers' attachments shown in the Telegram staff group as media, not as links.

A line names the ticket ("#12 Kate sent:"), then the media answer it:

- a Telegram customer's message is copied as it is (``copyMessage``: photo, voice,
  album item, sticker, location, with its caption), nothing downloaded;
- media of other platforms are downloaded from their URLs (at most ``MAX_DOWNLOAD``
  bytes, ``DOWNLOAD_TIMEOUT`` seconds, the content type checked: a photo must be an
  image, else it is sent as a document) and sent as the same kind: photo as photo, voice
  as voice, document as document;
- a location or a contact is sent as one; what cannot be shown (no URL, too big, the
  download fails) stays a clear line in the text: kind, name, size, link.

A row whose send fails part-way is sent again whole (like a long text in parts).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from telegram import Bot, InputFile, ReplyParameters

from bots.telegram.staff import Where
from core.domain.records import Attachment, Delivered
from core.staff.cards import StaffMessage, attachment_line

log = logging.getLogger(__name__)

MAX_DOWNLOAD = 20 * 1024 * 1024  # Telegram takes 50 MB from a bot, 10 MB for a photo
DOWNLOAD_TIMEOUT = 30.0


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
}
DOCUMENT = SENDERS["document"]


class StaffMedia:
    def __init__(self, bot: Bot, channel: str):
        self.bot = bot
        self.channel = channel  # the platform whose messages can be copied

    def cost(self, message: StaffMessage) -> int:
        """Telegram messages the row becomes: the line, then one per item (a copy: one)."""
        return 1 + (1 if self._copyable(message) else len(message.media))

    async def send(self, where: Where, message: StaffMessage) -> Delivered:
        unshown: list[str] = []
        attachments = [Attachment.from_json(m) for m in message.media]
        header = await self._text(where, "\n".join(message.lines), where.reply_to)
        reply = ReplyParameters(message_id=header, allow_sending_without_reply=True)
        copy = self._copyable(message)
        if copy is not None:
            await self.bot.copy_message(chat_id=where.chat_id, from_chat_id=copy[0],
                                        message_id=copy[1], message_thread_id=where.thread_id,
                                        reply_parameters=reply)
        else:
            async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT,
                                         follow_redirects=True) as http:
                for attachment in attachments:
                    if not await self._show(http, where, reply, attachment):
                        unshown.append(attachment_line(attachment))
        if unshown:  # what could not be shown as media: the line, with its link
            await self._text(where, "\n".join(unshown), header)
        return Delivered(external_id=f"{where.chat_id}:{header}")

    def _copyable(self, message: StaffMessage) -> tuple[int, int] | None:
        source = message.media_source or {}
        target = source.get("target") or {}
        if source.get("channel") != self.channel:
            return None
        chat_id, message_id = target.get("chat_id"), target.get("reply_to_message_id")
        return (int(chat_id), int(message_id)) if chat_id and message_id else None

    async def _text(self, where: Where, text: str, reply_to: int | None) -> int:
        sent = await self.bot.send_message(
            chat_id=where.chat_id, text=text[:4096], message_thread_id=where.thread_id,
            reply_parameters=ReplyParameters(message_id=reply_to,
                                             allow_sending_without_reply=True)
            if reply_to else None)
        return sent.message_id

    async def _show(self, http: httpx.AsyncClient, where: Where, reply: ReplyParameters,
                    attachment: Attachment) -> bool:
        """Send one attachment as media; False when it can only be a line."""
        common: dict[str, Any] = {"chat_id": where.chat_id,
                                  "message_thread_id": where.thread_id,
                                  "reply_parameters": reply}
        if attachment.latitude is not None and attachment.longitude is not None:
            await self.bot.send_location(latitude=attachment.latitude,
                                         longitude=attachment.longitude, **common)
            return True
        if attachment.kind == "contact" and attachment.phone:
            await self.bot.send_contact(phone_number=attachment.phone,
                                        first_name=attachment.title or "contact", **common)
            return True
        sender = SENDERS.get(attachment.kind)
        if sender is None or not attachment.url:
            return False
        downloaded = await download(http, attachment.url)
        if downloaded is None:
            return False
        content, content_type = downloaded
        if sender.types and not content_type.startswith(sender.types):
            sender = DOCUMENT  # not what it claims to be: shown, but as a file
        name = attachment.file_name or f"{attachment.kind}{_extension(content_type)}"
        caption = (attachment.caption or "")[:1024] or None
        if attachment.duration and sender.field in ("voice", "audio", "video", "animation"):
            common["duration"] = attachment.duration
        await getattr(self.bot, sender.method)(
            **{sender.field: InputFile(content, filename=name)}, caption=caption, **common)
        return True


async def download(http: httpx.AsyncClient, url: str) -> tuple[bytes, str] | None:
    """The file at `url` and its content type, or None (logged) when it is not there,
    too big, or too slow."""
    try:
        async with http.stream("GET", url) as response:
            if response.status_code != 200:
                log.warning("media %s: HTTP %s", url, response.status_code)
                return None
            declared = int(response.headers.get("content-length") or 0)
            if declared > MAX_DOWNLOAD:
                log.warning("media %s: %d bytes, over the %d limit", url, declared,
                            MAX_DOWNLOAD)
                return None
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_DOWNLOAD:
                    log.warning("media %s: over the %d bytes limit", url, MAX_DOWNLOAD)
                    return None
                chunks.append(chunk)
            content_type = response.headers.get("content-type", "").split(";")[0].strip()
            return b"".join(chunks), content_type.lower()
    except httpx.HTTPError as error:
        log.warning("media %s: %s: %s", url, type(error).__name__, error)
        return None


def _extension(content_type: str) -> str:
    return {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif",
            "audio/ogg": ".ogg", "audio/mpeg": ".mp3", "video/mp4": ".mp4",
            "application/pdf": ".pdf"}.get(content_type, "")
