"""What a Telegram message carries besides text, as core Attachments.

Telegram gives file ids, not URLs: a file is fetched with getFile, or shown in the staff
group by copying the message. Each media kind keeps its own fields (a voice's duration,
a document's name, a sticker's emoji, a location's coordinates); an album's items share
``media_group_id``; a forward says where it came from.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from telegram import Message, MessageOrigin

from core.domain.records import Attachment

# Message fields that are media with a file, in the order Telegram documents them.
FILE_KINDS = ("animation", "audio", "document", "photo", "sticker", "video", "video_note",
              "voice")


def text_of(message: Message) -> str:
    """What the customer wrote: the text, or a media item's caption (never a placeholder:
    the media are attachments)."""
    return message.text or message.caption or ""


def attachments_of(message: Message) -> tuple[Attachment, ...]:
    origin = _origin(message.forward_origin)
    group = message.media_group_id
    found = [_file(kind, getattr(message, kind), group) for kind in FILE_KINDS
             if getattr(message, kind, None)]
    if message.venue is not None:
        venue = message.venue
        found.append(Attachment("venue", title=venue.title, caption=venue.address,
                                latitude=venue.location.latitude,
                                longitude=venue.location.longitude))
    elif message.location is not None:
        found.append(Attachment("location", latitude=message.location.latitude,
                                longitude=message.location.longitude))
    if message.contact is not None:
        contact = message.contact
        name = " ".join(filter(None, (contact.first_name, contact.last_name)))
        found.append(Attachment("contact", title=name or None,
                                phone=contact.phone_number))
    if message.poll is not None:
        found.append(Attachment("poll", title=message.poll.question))
    if message.dice is not None:
        found.append(Attachment("other", title=f"dice {message.dice.emoji}"))
    if origin and not found:  # a forwarded text: say so, the text is the message's
        found.append(Attachment("forward", forwarded_from=origin))
    elif origin:
        found = [_with_origin(a, origin) for a in found]
    return tuple(found)


def _file(kind: str, media: Any, group: str | None) -> Attachment:
    if kind == "photo":  # sizes, smallest first: the largest is the photo
        media = media[-1]
    return Attachment(
        kind, file_id=media.file_id, file_name=getattr(media, "file_name", None),
        mime_type=getattr(media, "mime_type", None), size=media.file_size,
        duration=_seconds(getattr(media, "duration", None)), group=group,
        title=getattr(media, "emoji", None) if kind == "sticker" else None)


def _seconds(duration: Any) -> int | None:
    """python-telegram-bot gives durations as int or timedelta (PTB_TIMEDELTA)."""
    if duration is None:
        return None
    return int(duration.total_seconds()) if hasattr(duration, "total_seconds") else int(duration)


def _origin(origin: MessageOrigin | None) -> str | None:
    """Who a forwarded message came from, as staff should read it."""
    if origin is None:
        return None
    user = getattr(origin, "sender_user", None)
    if user is not None:
        return f"@{user.username}" if user.username else user.full_name
    name = getattr(origin, "sender_user_name", None)
    if name:
        return name
    chat = getattr(origin, "chat", None) or getattr(origin, "sender_chat", None)
    if chat is not None:
        return f"@{chat.username}" if chat.username else (chat.title or str(chat.id))
    return "someone"


def _with_origin(attachment: Attachment, origin: str) -> Attachment:
    return replace(attachment, forwarded_from=origin)


def backfilled(payload: Any) -> Any:
    """An update recorded under an older Bot API, readable by python-telegram-bot 22:
    files before Bot API 4.5 had no ``file_unique_id`` and users before 3.0 no
    ``is_bot`` (a payload kept in quarantine or replayed from an archive may be that
    old). Nothing else is changed; a current update comes back as it is."""
    if isinstance(payload, list):
        return [backfilled(item) for item in payload]
    if not isinstance(payload, dict):
        return payload
    fixed = {key: backfilled(value) for key, value in payload.items()}
    if "file_id" in fixed and "file_unique_id" not in fixed:
        fixed["file_unique_id"] = fixed["file_id"]
    if "first_name" in fixed and "id" in fixed and "is_bot" not in fixed \
            and "type" not in fixed:  # a user (a private chat has a "type")
        fixed["is_bot"] = False
    if "forward_date" in fixed and "forward_origin" not in fixed:
        fixed["forward_origin"] = _origin_before_7(fixed)
    return fixed


def _origin_before_7(message: dict[str, Any]) -> dict[str, Any]:
    """Bot API 7.0 replaced forward_from/forward_from_chat/forward_sender_name with
    forward_origin; the same facts in the new shape."""
    date = message["forward_date"]
    if "forward_from" in message:
        return {"type": "user", "date": date, "sender_user": message["forward_from"]}
    if "forward_from_chat" in message:
        chat = message["forward_from_chat"]
        if chat.get("type") == "channel":
            return {"type": "channel", "date": date, "chat": chat,
                    "message_id": message.get("forward_from_message_id", 0)}
        return {"type": "chat", "date": date, "sender_chat": chat}
    return {"type": "hidden_user", "date": date,
            "sender_user_name": message.get("forward_sender_name") or "hidden"}
