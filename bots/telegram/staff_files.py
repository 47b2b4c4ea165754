"""What staff send to customers from the Telegram staff group besides text, and their
edits of answers.

- A photo, document, voice message or video sent as a reply to a ticket's card (or in
  the ticket's topic) is an answer carrying that file, its caption the answer's text. The
  file goes by its Telegram file id (``OutgoingFile.source``); for a customer on another
  platform the core fetches its bytes once (getFile, at most 20 MB for a bot:
  ``bots/telegram/files.py``) and keeps them for the outbox.
- A staff member who edits an answer they wrote in the group (Telegram's
  ``edited_message``; a caption too, or the text of their ``/reply N ...``) changes the
  customer's copy: it is ``/edit`` of that very answer (``origin["edits"]``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import Any

from telegram import Message

from bots.telegram.files import fetch_file
from bots.telegram.media import attachments_of
from bots.telegram.staff import TelegramStaffChat, origin_of
from core.delivery.outfiles import OutgoingFile
from core.domain.records import Attachment
from core.staff.cards import notice
from core.staff.language import Command, UsageError, parse

log = logging.getLogger(__name__)

# A staff member's file as the kind a customer gets: music is sent as a document, a GIF
# (Telegram's "animation", an MP4) as a video.
SENT_AS = {"photo": "photo", "document": "document", "voice": "voice", "video": "video",
           "audio": "document", "animation": "video"}
DEFAULT_TYPES = {"photo": "image/jpeg", "voice": "audio/ogg", "video": "video/mp4",
                 "document": "application/octet-stream"}
MEDIA = ("photo", "document", "voice", "video", "audio", "animation", "sticker",
         "video_note")
UNSENDABLE = ("A customer can be sent a photo, a document, a voice message or a video "
              "(with the answer as its caption); not this.")


class StaffFiles:
    def __init__(self, chat: TelegramStaffChat):
        self.chat = chat

    @staticmethod
    def carries_file(message: Message) -> bool:
        return any(getattr(message, kind, None) for kind in MEDIA)

    async def answer(self, message: Message, actor: Any) -> None:
        """A staff member's file in the group: the answer of the ticket it replies to."""
        chat = self.chat
        ticket_id = await chat._ticket_of(message)
        if ticket_id is None:
            if chat._replies_to_bot(message):
                await chat._say(message, "I cannot tell which ticket this file answers. "
                                         "Send it as a reply to the ticket's card.")
            return  # a file shared among the team
        attachment = next((a for a in attachments_of(message) if a.kind in SENT_AS), None)
        if attachment is None or not attachment.file_id:
            await chat._say(message, UNSENDABLE, ticket_id)
            return
        file = outgoing(attachment, partial(fetch_file, chat.adapter.settings.channels.telegram,
                                            attachment))
        reply = await chat.desk.execute(actor, Command("reply", ticket_id,
                                                       (message.caption or "").strip()),
                                        file=file)
        await chat._answer(message, reply)

    async def edited(self, message: Message) -> None:
        """A staff member edited their message in the group: if it was an answer, the
        customer's copy changes too."""
        chat = self.chat
        if message.from_user is None:
            return
        origin = origin_of(message)
        stamp = _stamp(message.edit_date)
        actor = chat.actor(message.from_user.id, {**origin, "edits": origin["key"],
                                                  "key": f"{origin['key']}:edit:{stamp}"})
        if not actor.is_staff:
            return
        text = (message.text or message.caption or "").strip()
        if text.startswith("/"):  # an edited "/reply N text": the text is the answer
            try:
                command = parse(text, chat.adapter.bot.username)
            except UsageError:
                return
            if command.name != "reply":
                return
            ticket_id, text = command.ticket, command.arg
        else:
            ticket_id = await chat._ticket_of(message)
        if ticket_id is None or not text:
            return
        reply = await chat.desk.execute(actor, Command("edit", ticket_id, text))
        if not reply.quiet:
            await chat.desk.tell_staff(notice(reply.ticket_id, reply.text,
                                              reply_to=origin_of(message)),
                                       f"answer:{origin['key']}:edit:{stamp}")


def outgoing(attachment: Attachment, fetch: Any = None) -> OutgoingFile:
    """A staff member's Telegram file as an answer's file, by its id."""
    kind = SENT_AS[attachment.kind]
    return OutgoingFile(kind=kind, content_type=attachment.mime_type or DEFAULT_TYPES[kind],
                        size=attachment.size or 0, name=attachment.file_name,
                        source={"channel": "telegram", "file_id": attachment.file_id},
                        duration=attachment.duration, fetch=fetch)


def _stamp(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment is not None else 0
