"""What a VK message or comment carries besides text, as core Attachments.

VK gives direct URLs for most media (a photo's largest size, a voice message's
``link_ogg``/``link_mp3``, a document's ``url``); the platform's id of an item is
``<type><owner_id>_<id>`` (what VK itself calls an attachment string, e.g.
``photo-1_457239017``). Forwarded messages (``fwd_messages``) and the message replied to
are kept as forwards with their text, so a message made only of forwards is not empty.
Docs: https://dev.vk.com/ru/reference/objects/attachments-message
"""

from __future__ import annotations

from typing import Any

from core.domain.records import Attachment

MAX_FORWARDS = 20  # forwarded messages read per message (VK allows 100, nested)


def attachments_of(item: dict[str, Any]) -> tuple[Attachment, ...]:
    """A message's (or a comment's) attachments, then what it forwards."""
    found = [read_attachment(a) for a in item.get("attachments") or () if isinstance(a, dict)]
    forwards = [*(item.get("fwd_messages") or ()),
                *([item["reply_message"]] if isinstance(item.get("reply_message"), dict)
                  else [])]
    for forwarded in forwards[:MAX_FORWARDS]:
        if isinstance(forwarded, dict):
            found.append(Attachment("forward", caption=str(forwarded.get("text") or "") or None,
                                    forwarded_from=_author(forwarded.get("from_id"))))
            found += [read_attachment(a) for a in forwarded.get("attachments") or ()
                      if isinstance(a, dict)]
    if isinstance(item.get("geo"), dict):
        found.append(_geo(item["geo"]))
    return tuple(found)


def read_attachment(attachment: dict[str, Any]) -> Attachment:
    kind = str(attachment.get("type") or "other")
    body = attachment.get(kind)
    if not isinstance(body, dict):
        return Attachment("other", title=kind)
    file_id = _vk_id(kind, body)
    if kind == "photo":
        return Attachment("photo", file_id=file_id, url=_largest(body.get("sizes"), "url"),
                          caption=body.get("text") or None)
    if kind == "audio_message":
        # VK transcribes voice messages itself: staff can read what was said.
        return Attachment("voice", file_id=file_id,
                          url=body.get("link_ogg") or body.get("link_mp3"),
                          duration=_int(body.get("duration")), mime_type="audio/ogg"
                          if body.get("link_ogg") else "audio/mpeg",
                          caption=body.get("transcript") or None)
    if kind == "doc":
        name = body.get("title")
        ext = body.get("ext")
        if name and ext and not str(name).lower().endswith(f".{str(ext).lower()}"):
            name = f"{name}.{ext}"
        return Attachment("document", file_id=file_id, url=body.get("url"), file_name=name,
                          size=_int(body.get("size")))
    if kind == "video":
        return Attachment("video", file_id=file_id, title=body.get("title") or None,
                          duration=_int(body.get("duration")),
                          url=body.get("player") or _video_page(body))
    if kind == "audio":
        title = " — ".join(filter(None, (body.get("artist"), body.get("title"))))
        return Attachment("audio", file_id=file_id, title=title or None, url=body.get("url"),
                          duration=_int(body.get("duration")))
    if kind == "sticker":
        return Attachment("sticker", file_id=str(body.get("sticker_id") or "") or None,
                          url=_largest(body.get("images"), "url"))
    if kind == "graffiti":
        return Attachment("photo", file_id=file_id, url=body.get("url"), title="graffiti")
    if kind == "wall":
        owner = body.get("owner_id", body.get("to_id", body.get("from_id")))
        return Attachment("post", file_id=file_id, caption=body.get("text") or None,
                          forwarded_from=_author(body.get("from_id")),
                          url=f"https://vk.com/wall{owner}_{body.get('id')}")
    if kind == "link":
        return Attachment("link", url=body.get("url"), title=body.get("title") or None)
    if kind == "poll":
        return Attachment("poll", title=body.get("question") or None)
    if kind == "market":
        return Attachment("other", title=f"product: {body.get('title')}", file_id=file_id)
    return Attachment("other", title=kind, file_id=file_id)


def _vk_id(kind: str, body: dict[str, Any]) -> str | None:
    owner, item = body.get("owner_id"), body.get("id")
    if owner is None or item is None:
        return None
    key = f"_{body['access_key']}" if body.get("access_key") else ""
    return f"{kind}{owner}_{item}{key}"


def _largest(sizes: Any, field: str) -> str | None:
    """The URL of the largest of VK's sizes (by width, else the last listed)."""
    candidates = [s for s in sizes or () if isinstance(s, dict) and s.get(field)]
    if not candidates:
        return None
    return max(candidates, key=lambda s: (_int(s.get("width")) or 0))[field]


def _video_page(body: dict[str, Any]) -> str | None:
    owner, item = body.get("owner_id"), body.get("id")
    return f"https://vk.com/video{owner}_{item}" if owner is not None and item else None


def _geo(geo: dict[str, Any]) -> Attachment:
    coordinates = geo.get("coordinates") or {}
    place = geo.get("place") or {}
    return Attachment("location", latitude=_float(coordinates.get("latitude")),
                      longitude=_float(coordinates.get("longitude")),
                      title=place.get("title") or None)


def _author(from_id: Any) -> str | None:
    """A VK author as a link staff can open: users id…, communities club…."""
    number = _int(from_id)
    if number is None:
        return None
    return f"vk.com/club{-number}" if number < 0 else f"vk.com/id{number}"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
