"""A file on X: the v2 media upload, then a reply post carrying the media id.

tweepy 4.17 offers media upload only through its v1.1 ``API`` (blocking, on
upload.twitter.com), which X retired in favour of ``POST /2/media/upload``
(docs.x.com/x-api/media/quickstart/media-upload-chunked). This module speaks that
endpoint itself, with tweepy's own OAuth 1.0a signing (oauthlib) and the adapter's HTTP
session (so it follows ``channels.twitter.base_url`` like every other call):

1. ``command=INIT`` with ``media_type``, ``total_bytes``, ``media_category``
   (``tweet_image``, ``tweet_gif``, ``tweet_video``) -> {"data": {"id", "media_key"}};
2. ``command=APPEND`` with ``media_id``, ``segment_index`` and the bytes (chunks of at
   most 4 MB; X takes up to 5 MB);
3. ``command=FINALIZE`` -> {"data": {"id", "processing_info"?}}; while
   ``processing_info.state`` is pending or in progress, ``GET ?command=STATUS`` after
   ``check_after_secs`` (a video), within a bound.

Multipart bodies are not part of an OAuth 1.0a signature, so only the URL is signed.

What X takes, checked before anything is queued (docs.x.com media best practices):
photos up to 5 MB as JPG, PNG, GIF or WebP, videos as MP4 up to 512 MB; no documents and
no voice messages. A repeated upload is harmless (an unused media id expires), so a
failed upload is simply retried through the outbox; X refusing the file is final.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from oauthlib.oauth1 import Client as OAuthClient
from yarl import URL

from bots.twitter.errors import seconds_until
from core.delivery.contract import DeliveryError
from core.delivery.outfiles import FileRule, FileRules, OutgoingFile

MB = 1024 * 1024
X_FILES = FileRules((
    FileRule("photo", ("image/jpeg", "image/png", "image/gif", "image/webp"), 5 * MB,
             "JPG, PNG, GIF or WebP"),
    FileRule("video", ("video/mp4",), 512 * MB, "MP4"),
))
UPLOAD_ROUTE = "/2/media/upload"
CHUNK = 4 * MB
STATUS_CHECKS = 10  # then the send fails and the outbox tries again later
MAX_STATUS_WAIT = 5.0  # seconds between two checks, whatever X suggests


def category(file: OutgoingFile) -> str:
    if file.kind == "video":
        return "tweet_video"
    return "tweet_gif" if file.content_type == "image/gif" else "tweet_image"


async def upload(client: Any, base: str, file: OutgoingFile) -> str:
    """The file uploaded to X; returns its media id."""
    if file.by_reference or file.content is None:
        raise DeliveryError(f"the bytes of this {file.kind} were not kept", permanent=True)
    media_type = file.content_type
    started = await _call(client, base, "POST", {}, {
        "command": "INIT", "media_type": media_type, "total_bytes": str(len(file.content)),
        "media_category": category(file)})
    media_id = str((started.get("data") or {}).get("id") or "")
    if not media_id:
        raise DeliveryError(f"X started no upload: {started!r:.200}")
    for index, start in enumerate(range(0, len(file.content), CHUNK)):
        await _call(client, base, "POST", {}, {
            "command": "APPEND", "media_id": media_id, "segment_index": str(index)},
            chunk=file.content[start:start + CHUNK], name=file.name or "media")
    done = await _call(client, base, "POST", {}, {"command": "FINALIZE",
                                                  "media_id": media_id})
    info = (done.get("data") or {}).get("processing_info")
    for _ in range(STATUS_CHECKS):
        state = (info or {}).get("state")
        if state in (None, "succeeded"):
            return media_id
        if state == "failed":
            error = (info or {}).get("error") or {}
            raise DeliveryError(f"X could not process the {file.kind}: "
                                f"{error.get('message') or error.get('name') or 'failed'}",
                                permanent=True)
        await asyncio.sleep(min(float(info.get("check_after_secs") or 1), MAX_STATUS_WAIT))
        status = await _call(client, base, "GET", {"command": "STATUS",
                                                   "media_id": media_id}, None)
        info = (status.get("data") or {}).get("processing_info")
    raise DeliveryError(f"X is still processing the {file.kind}; trying again later")


async def _call(client: Any, base: str, method: str, query: dict[str, str],
                fields: dict[str, str] | None, *, chunk: bytes | None = None,
                name: str = "media") -> dict[str, Any]:
    """One signed request to the upload endpoint; X's answer as JSON ({} when empty)."""
    url = base + UPLOAD_ROUTE
    if query:
        url = str(URL(url).with_query(sorted(query.items())))
    oauth = OAuthClient(client.consumer_key, client.consumer_secret, client.access_token,
                        client.access_token_secret)
    signed, headers, _ = oauth.sign(url, method, headers={"User-Agent": client.user_agent})
    before, mark, rest = signed.partition("?")
    target = URL(f"{before}{mark}{rest.replace(':', '%3A')}", encoded=True)
    form = None
    if fields is not None:
        form = aiohttp.FormData()
        for key, value in fields.items():
            form.add_field(key, value)
        if chunk is not None:
            form.add_field("media", chunk, filename=name,
                           content_type="application/octet-stream")
    try:
        async with client.session.request(method, target, data=form,
                                          headers=headers) as response:
            body = await response.read()
            status = response.status
            reset = response.headers.get("x-rate-limit-reset")
    except (aiohttp.ClientError, TimeoutError) as error:
        raise DeliveryError(f"network error uploading to X: {type(error).__name__}") from None
    answer = _json(body)
    if 200 <= status < 300:
        return answer
    detail = answer.get("detail") or "; ".join(
        str(e.get("message") or e.get("detail")) for e in answer.get("errors") or []) or \
        body[:200].decode("utf-8", "replace")
    if status == 429:
        wait = seconds_until(float(reset) if reset and reset.isdigit() else None)
        raise DeliveryError(f"X's media upload rate limit reached; retry in {wait:.0f}s",
                            retry_after=wait)
    if status >= 500 or status in (401, 408):
        raise DeliveryError(f"X's media upload failed ({status}): {detail}")
    raise DeliveryError(f"X refused the file ({status}): {detail}", permanent=True)


def _json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        answer = json.loads(body)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
