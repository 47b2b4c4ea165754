"""What an X post carries besides text, and the text itself as the customer wrote it.

A mentions page lists media, authors and referenced posts once, in ``includes``; each
post is kept with its own share of them (``Payload``), so a post can be read again alone
(``read_payload``, the quarantine). X escapes &, < and > in post text: it is unescaped
once, here. A long post's full text is in ``note_tweet``.
Docs: https://docs.x.com/x-api/fundamentals/data-dictionary
"""

from __future__ import annotations

import html
from typing import Any

from core.domain.records import Attachment

EXPANSIONS = ["author_id", "attachments.media_keys", "referenced_tweets.id"]
MEDIA_FIELDS = ["type", "url", "preview_image_url", "duration_ms", "variants", "alt_text"]
TWEET_FIELDS = ["created_at", "conversation_id", "author_id", "in_reply_to_user_id",
                "attachments", "referenced_tweets", "note_tweet", "edit_history_tweet_ids"]


def payloads_of(tweets: list[Any], includes: dict[str, dict[str, dict[str, Any]]]
                ) -> list[dict[str, Any]]:
    """Each post with its author, media and quoted post from the pages' includes
    (``includes``: "users" by id, "media" by media_key, "tweets" by id)."""
    out = []
    for tweet in tweets:
        if not isinstance(tweet, dict):
            out.append({"tweet": tweet})
            continue
        keys = (tweet.get("attachments") or {}).get("media_keys") or []
        quoted = next((ref.get("id") for ref in tweet.get("referenced_tweets") or []
                       if isinstance(ref, dict) and ref.get("type") == "quoted"), None)
        out.append({"tweet": tweet,
                    "author": includes["users"].get(str(tweet.get("author_id"))),
                    # A key X left out of includes stays, so staff know there was one.
                    "media": [includes["media"].get(k) or {"media_key": k, "missing": True}
                              for k in keys],
                    "quoted": includes["tweets"].get(str(quoted)) if quoted else None})
    return out


def text_of(tweet: dict[str, Any]) -> str:
    """The whole text (a long post's from ``note_tweet``), unescaped."""
    note = tweet.get("note_tweet")
    text = note.get("text") if isinstance(note, dict) and note.get("text") else tweet["text"]
    return html.unescape(str(text))


def attachments_of(payload: dict[str, Any]) -> tuple[Attachment, ...]:
    found = [_media(m) for m in payload.get("media") or () if isinstance(m, dict)]
    quoted = payload.get("quoted")
    if isinstance(quoted, dict) and quoted.get("id"):
        found.append(Attachment("post", caption=text_of(quoted) if quoted.get("text") else None,
                                url=f"https://x.com/i/web/status/{quoted['id']}"))
    return tuple(found)


def _media(media: dict[str, Any]) -> Attachment:
    if media.get("missing"):
        return Attachment("other", file_id=media.get("media_key"),
                          title="media X did not include in the answer")
    kind = {"photo": "photo", "video": "video", "animated_gif": "animation"}.get(
        str(media.get("type")), "other")
    duration = media.get("duration_ms")
    mp4 = _best_video(media)
    return Attachment(kind, file_id=media.get("media_key"),
                      url=media.get("url") or mp4 or media.get("preview_image_url"),
                      # Without mp4 variants only the preview image is linked: no type.
                      mime_type="video/mp4" if mp4 and not media.get("url") else None,
                      duration=int(duration) // 1000 if isinstance(duration, int) else None,
                      caption=media.get("alt_text") or None)


def _best_video(media: dict[str, Any]) -> str | None:
    """The mp4 with the highest bit rate (X also lists an HLS playlist)."""
    mp4 = [v for v in media.get("variants") or () if isinstance(v, dict)
           and v.get("content_type") == "video/mp4" and v.get("url")]
    return max(mp4, key=lambda v: v.get("bit_rate") or 0)["url"] if mp4 else None
