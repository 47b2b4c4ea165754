"""A Telegram customer's answer beyond text: a file, an edit, a withdrawal.

- A file goes with the send method of its kind (``sendPhoto``, ``sendVideo``,
  ``sendVoice``, ``sendDocument``) and the answer as its caption: a staff member's file
  from the staff group by its file id (the same bot: nothing is downloaded or uploaded
  again), a file from the console uploaded. A caption over Telegram's 1024 characters
  follows the file as a text message of its own.
- An edit is ``editMessageText`` on the customer's chat (``editMessageCaption`` for a
  file answer); "message is not modified" means it already reads so.
- A withdrawal is ``deleteMessage`` (``deleteBusinessMessages`` in a Telegram Business
  chat); a message that is gone already counts as withdrawn. Telegram lets a bot delete
  its messages in a private chat for 48 hours; later it answers an error, which staff
  are told.

An answer that was sent in several parts (over 4096 characters) is changed or withdrawn
in its first part only.
"""

from __future__ import annotations

from typing import Any

from telegram import Bot, InputFile, LinkPreviewOptions, ReplyParameters
from telegram.error import BadRequest

from bots.telegram.staff import Where
from core.delivery.contract import DeliveryError
from core.delivery.files import extension
from core.delivery.outfiles import FileRule, FileRules, OutgoingFile
from core.domain.records import Delivered, Outbound
from core.domain.text import split_text

MB = 1024 * 1024
MAX_CAPTION = 1024
MAX_TEXT = 4096
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
# What the Bot API takes from a bot (core.telegram.org/bots/api#sending-files: photos up
# to 10 MB, other files up to 50 MB); a file the staff group has by id goes as it is.
TELEGRAM_FILES = FileRules((
    FileRule("photo", ("image/jpeg", "image/png", "image/webp", "image/gif"), 10 * MB,
             "JPG, PNG, GIF or WebP"),
    FileRule("video", ("video/",), 50 * MB, "MP4"),
    FileRule("voice", ("audio/ogg", "audio/mpeg", "audio/mp4", "audio/opus",
                       "application/ogg"), 50 * MB, "OGG, MP3 or M4A"),
    FileRule("document", (), 50 * MB),
))
SENDERS = {"photo": ("send_photo", "photo"), "video": ("send_video", "video"),
           "voice": ("send_voice", "voice"), "document": ("send_document", "document")}


async def send_file(bot: Bot, where: Where, text: str, file: OutgoingFile) -> Delivered:
    method, field = SENDERS.get(file.kind, SENDERS["document"])
    caption = text if len(text) <= MAX_CAPTION else None
    common: dict[str, Any] = {
        "chat_id": where.chat_id, "message_thread_id": where.thread_id,
        "business_connection_id": where.business,
        "reply_parameters": ReplyParameters(message_id=where.reply_to,
                                            allow_sending_without_reply=True)
        if where.reply_to else None}
    extra: dict[str, Any] = {"caption": caption or None}
    if file.duration and file.kind in ("voice", "video"):
        extra["duration"] = file.duration
    sent = await getattr(bot, method)(**{field: _file(file)}, **extra, **common)
    if text and caption is None:  # too long for a caption: the text follows the file
        reply_to = sent.message_id
        for part in split_text(text, MAX_TEXT):
            await bot.send_message(
                chat_id=where.chat_id, text=part, message_thread_id=where.thread_id,
                business_connection_id=where.business, link_preview_options=NO_PREVIEW,
                reply_parameters=ReplyParameters(message_id=reply_to,
                                                 allow_sending_without_reply=True))
    return Delivered(external_id=f"{where.chat_id}:{sent.message_id}")


def _file(file: OutgoingFile) -> Any:
    """The file id the staff group gave (same bot), or the bytes with a name."""
    source = file.source or {}
    if file.by_reference:
        if source.get("channel") != "telegram" or not source.get("file_id"):
            raise DeliveryError(f"this {file.kind} is not a Telegram file and its bytes "
                                f"were not kept", permanent=True)
        return str(source["file_id"])
    name = file.name or f"{file.kind}{extension(file.content_type) or '.bin'}"
    return InputFile(file.content, filename=name)


def _sent(outbound: Outbound) -> tuple[int, int, dict[str, Any]]:
    """The customer's chat and the message the answer became."""
    answer = outbound.target.get("answer") or {}
    chat_id, _, message_id = str(answer.get("external_id") or "").rpartition(":")
    try:
        return int(chat_id), int(message_id), answer
    except ValueError:
        raise DeliveryError(f"the answer's Telegram message is unknown "
                            f"({answer.get('external_id')!r})", permanent=True) from None


async def edit(bot: Bot, where: Where, outbound: Outbound) -> Delivered:
    chat_id, message_id, answer = _sent(outbound)
    text = outbound.text
    try:
        if answer.get("file"):
            if len(text) > MAX_CAPTION:
                raise DeliveryError(f"a caption on Telegram is at most {MAX_CAPTION} "
                                    f"characters; this one has {len(text)}", permanent=True)
            await bot.edit_message_caption(chat_id=chat_id, message_id=message_id,
                                           caption=text, business_connection_id=where.business)
        else:
            await bot.edit_message_text(chat_id=chat_id, message_id=message_id,
                                        text=text[:MAX_TEXT], link_preview_options=NO_PREVIEW,
                                        business_connection_id=where.business)
    except BadRequest as error:
        if "not modified" not in error.message:
            raise
    return Delivered(external_id=f"{chat_id}:{message_id}")


async def delete(bot: Bot, where: Where, outbound: Outbound) -> Delivered:
    chat_id, message_id, _ = _sent(outbound)
    try:
        if where.business:
            await bot.delete_business_messages(business_connection_id=where.business,
                                               message_ids=[message_id])
        else:
            await bot.delete_message(chat_id=chat_id, message_id=message_id)
    except BadRequest as error:
        if "not found" not in error.message.lower():
            raise
    return Delivered(external_id=f"{chat_id}:{message_id}")
