"""Downloading a customer's file from the URL its platform gave: the one implementation.

The Telegram staff group re-sends VK and X media with it (``bots/telegram/staff_media.py``)
and ``sameday media get`` keeps them on disk (``ChannelAdapter.fetch_attachment``). At
most ``MAX_DOWNLOAD`` bytes (checked against the declared length, then while reading),
``DOWNLOAD_TIMEOUT`` seconds per read, redirects followed; the content type is returned
for the caller to check against the kind the platform claimed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

MAX_DOWNLOAD = 20 * 1024 * 1024  # Telegram takes 50 MB from a bot, 10 MB for a photo
DOWNLOAD_TIMEOUT = 30.0

EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif",
              "image/webp": ".webp", "audio/ogg": ".ogg", "audio/mpeg": ".mp3",
              "audio/mp4": ".m4a", "video/mp4": ".mp4", "application/pdf": ".pdf",
              "text/plain": ".txt"}


class FetchError(Exception):
    """A file that could not be had; ``reason`` says why in a few words, starting with
    "too big" or "download failed" (never a secret: no token-bearing URL)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def too_big(size: int) -> FetchError:
    return FetchError(f"too big: {megabytes(size)}, over the {megabytes(MAX_DOWNLOAD)} limit")


def megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB".replace(".0 MB", " MB")


async def fetch(http: httpx.AsyncClient, url: str) -> tuple[bytes, str]:
    """The file at `url` and its content type (lower case, no parameters); raises
    FetchError when it is not there, too big, or too slow."""
    import httpx  # here: the daemon loads this module, and most never download a file

    try:
        async with http.stream("GET", url) as response:
            if response.status_code != 200:
                raise FetchError(f"download failed: HTTP {response.status_code}")
            declared = int(response.headers.get("content-length") or 0)
            if declared > MAX_DOWNLOAD:
                raise too_big(declared)
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_DOWNLOAD:
                    raise too_big(size)
                chunks.append(chunk)
            content_type = response.headers.get("content-type", "").split(";")[0].strip()
            return b"".join(chunks), content_type.lower()
    except httpx.HTTPError as error:
        raise FetchError(f"download failed: {type(error).__name__}: {error}"
                         .rstrip(": ")) from None


async def download(http: httpx.AsyncClient, url: str) -> tuple[bytes, str] | None:
    """``fetch``, or None (logged) when it is not there, too big, or too slow."""
    try:
        return await fetch(http, url)
    except FetchError as error:
        log.warning("media %s: %s", url, error.reason)
        return None


async def fetch_url(url: str) -> tuple[bytes, str]:
    """``fetch`` with a client of its own (one file)."""
    import httpx  # here: the daemon loads this module, and most never download a file

    async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as http:
        return await fetch(http, url)


def extension(content_type: str) -> str:
    """A file name extension for a content type ("" when unknown)."""
    return EXTENSIONS.get(content_type, "")
