"""Albums: several photos or videos a customer sent together, kept as one message.

Telegram sends each item of an album as its own update, one right after another, all
with the same ``media_group_id`` (and the caption, if any, on one of them). The adapter
holds an album's items until an update that is not part of it arrives, or ``WAIT``
seconds pass without another item, then stores them as one message: one
acknowledgement, one line on the card, one album in the staff group. Held items are not
confirmed to Telegram until stored, so a crash meanwhile loses nothing: Telegram sends
them again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace

from telegram import Update

from core.domain.records import Inbound

WAIT = 1.0  # seconds: Telegram sends an album's items within a moment of each other


def album_of(update: Update) -> str | None:
    """The album a new customer message belongs to ("chat:group"), or None."""
    message = update.message or update.business_message
    if message is None or not message.media_group_id:
        return None
    return f"{message.chat.id}:{message.media_group_id}"


def merged(items: list[Inbound]) -> Inbound:
    """An album's items as one message: the first item's identity and address, every
    item's attachments, the captions, and all payloads (read back by ``read_payload``)."""
    first = items[0]
    texts = list(dict.fromkeys(item.text for item in items if item.text))
    ids = [item.reply_target["reply_to_message_id"] for item in items]
    return replace(first, text="\n".join(texts),
                   attachments=tuple(a for item in items for a in item.attachments),
                   reply_target={**first.reply_target, "album": ids},
                   raw={"media_group": [item.raw for item in items]})


class AlbumHolder:
    """The album being collected, and when to let it go."""

    def __init__(self, store: Callable[[list[Update]], Awaitable[None]],
                 wait: float = WAIT):
        self._store = store
        self._wait = wait
        self._items: list[Update] = []
        self._album: str | None = None
        self._timer: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def offer(self, update: Update, album: str | None) -> bool:
        """Hold an item of ``album`` (True); anything else (``album`` None: not an
        album item) first lets a held album go."""
        async with self._lock:
            if self._items and album != self._album:
                await self._release()
            if album is None:
                return False
            self._album = album
            self._items.append(update)
            self._restart_timer()
            return True

    async def release(self) -> None:
        async with self._lock:
            await self._release()

    def cancel(self) -> None:
        """Stopping: what is held stays unconfirmed, and Telegram sends it again."""
        if self._timer is not None:
            self._timer.cancel()
        self._items, self._album = [], None

    async def _release(self) -> None:
        items, self._items, self._album = self._items, [], None
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        self._timer = None
        if items:
            await self._store(items)

    def _restart_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.create_task(self._release_later(), name="telegram-album")

    async def _release_later(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(self._wait)
            await self.release()
