"""What a MAX message carries besides text, as core Attachments.

Shapes as the MAX Bot API documents them (``Attachment`` in the OpenAPI description,
github.com/max-messenger/max-bot-api-client-go ``schema.yaml``; dev.max.ru): media have
``payload.url`` (a direct, expiring link) and ``payload.token`` (MAX's handle, also what a
bot sends again); a location has its coordinates at the top; a contact a vCard. A
forwarded message (``link.type == "forward"``) is kept as a forward with its text and
attachments, so a message made only of a forward is not empty.
"""

from __future__ import annotations

from typing import Any

from core.domain.records import Attachment

KINDS = {"image": "photo", "video": "video", "audio": "voice", "file": "document",
         "sticker": "sticker"}
SKIPPED = {"inline_keyboard", "reply_keyboard"}  # the bot's own buttons, not content


def attachments_of(message: dict[str, Any]) -> tuple[Attachment, ...]:
    body = message.get("body") or {}
    found = [read_attachment(a) for a in body.get("attachments") or ()
             if isinstance(a, dict) and a.get("type") not in SKIPPED]
    link = message.get("link")
    if isinstance(link, dict) and link.get("type") == "forward":
        forwarded = link.get("message") or {}
        found.append(Attachment("forward", caption=str(forwarded.get("text") or "") or None,
                                forwarded_from=display_name(link.get("sender"))))
        found += [read_attachment(a) for a in forwarded.get("attachments") or ()
                  if isinstance(a, dict) and a.get("type") not in SKIPPED]
    return tuple(found)


def read_attachment(attachment: dict[str, Any]) -> Attachment:
    kind = str(attachment.get("type") or "other")
    payload = attachment.get("payload") if isinstance(attachment.get("payload"), dict) else {}
    if kind == "location":
        return Attachment("location", latitude=_float(attachment.get("latitude")),
                          longitude=_float(attachment.get("longitude")))
    if kind == "contact":
        return _contact(payload)
    if kind == "share":
        return Attachment("link", url=payload.get("url"), title=attachment.get("title"),
                          caption=attachment.get("description"))
    if kind not in KINDS:
        return Attachment("other", title=kind)
    handle = payload.get("token") or payload.get("code") or payload.get("photo_id")
    return Attachment(
        KINDS[kind], file_id=str(handle) if handle is not None else None,
        url=payload.get("url"), file_name=attachment.get("filename"),
        size=_int(attachment.get("size")), duration=_int(attachment.get("duration")),
        # MAX transcribes voice messages: staff can read what was said.
        caption=attachment.get("transcription") or None)


def display_name(user: Any) -> str | None:
    if not isinstance(user, dict):
        return None
    full = " ".join(filter(None, (user.get("first_name"), user.get("last_name"))))
    return full or user.get("name") or user.get("username") or None


def _contact(payload: dict[str, Any]) -> Attachment:
    """A shared contact: its vCard's name and phone, or the MAX user it is."""
    name = phone = None
    for line in str(payload.get("vcf_info") or "").splitlines():
        field, _, value = line.partition(":")
        if field.upper() == "FN":
            name = value.strip() or None
        elif field.upper().startswith("TEL"):
            phone = value.strip() or None
    return Attachment("contact", title=name or display_name(payload.get("max_info")),
                      phone=phone)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
