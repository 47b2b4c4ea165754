"""Files staff send to customers: the file, what a channel takes, and where it waits.

A staff member's file (a photo, a document, a voice message or a video, with the answer
as its caption) reaches the customer's adapter through the outbox like any answer. Its
bytes wait in the ``staff_file`` table, written in the transaction that queues the
answer; the answer's outbox row names it in ``target["file"]`` (id, kind, name, type,
size). The dispatcher reads the bytes just before the send (``load``), so claiming rows
never carries them, and deletes them when the row is done: delivered or dead
(``release``). One table and not a spool directory: every replica of a PostgreSQL
deployment sees it, and the console (another process, maybe another user) writes it.

A file the staff chat has by reference (a Telegram file id) and that goes to a customer
on the same platform is kept without bytes: the adapter sends it by its id.

What a channel takes is declared by its adapter (``ChannelAdapter.file_rules``) and
checked when the answer is queued, so staff hear at once that, say, X takes no documents.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from core.delivery.files import MAX_DOWNLOAD, megabytes
from core.domain.records import Outbound, OutboxKind
from core.store.tables import StaffFile

# The largest file kept for a customer: what a Telegram bot may fetch (getFile), and
# what a database row comfortably holds.
MAX_FILE = MAX_DOWNLOAD
KINDS = ("photo", "video", "document", "voice")
KIND_WORDS = {"photo": "photos", "video": "videos", "voice": "voice messages",
              "document": "documents"}
PHOTO_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
VOICE_TYPES = ("audio/ogg", "audio/opus", "application/ogg")


@dataclass(frozen=True)
class OutgoingFile:
    """A file on its way to a customer.

    ``content`` is None for a file the staff chat has by reference only (``source``:
    {"channel": the staff chat's platform, "file_id": its handle}); ``fetch`` then gets
    its bytes when it goes to another platform (outside any transaction).
    """

    kind: str  # photo | video | voice | document
    content_type: str
    size: int
    name: str | None = None
    content: bytes | None = None
    source: dict[str, Any] | None = None
    duration: int | None = None  # seconds (a voice message, a video)
    id: int | None = None  # the staff_file row, once kept
    fetch: Callable[[], Awaitable[tuple[bytes, str]]] | None = field(
        default=None, compare=False, repr=False)

    @property
    def by_reference(self) -> bool:
        return self.content is None

    def ref(self) -> dict[str, Any]:
        """What the outbox row says of it (``target["file"]``): never the bytes."""
        return {key: value for key, value in {
            "id": self.id, "kind": self.kind, "name": self.name,
            "content_type": self.content_type, "size": self.size,
            "duration": self.duration, "source": self.source}.items() if value is not None}


def kind_for(content_type: str) -> str:
    """How a file from disk is sent: a picture as a photo, a video as a video, an Ogg
    voice recording as a voice message, anything else as a document."""
    content_type = content_type.lower()
    if content_type in PHOTO_TYPES:
        return "photo"
    if content_type.startswith("video/"):
        return "video"
    if content_type in VOICE_TYPES:
        return "voice"
    return "document"


def content_type_of(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    if guessed is None and name.lower().endswith((".oga", ".opus")):
        return "audio/ogg"
    return guessed or "application/octet-stream"


@dataclass(frozen=True)
class FileRule:
    """One kind a channel takes: its content types (prefixes like "video/" allowed;
    empty: any) and its largest size."""

    kind: str
    types: tuple[str, ...] = ()
    max_size: int = MAX_FILE
    shown: str = ""  # the types in words ("JPG, PNG, GIF or WebP")


@dataclass(frozen=True)
class FileRules:
    """What a channel takes from staff: one rule per kind it can carry."""

    rules: tuple[FileRule, ...]

    def takes(self) -> str:
        """In words, for staff: "photos (JPG, PNG, GIF or WebP, up to 5 MB) and videos
        (MP4, up to 512 MB)"."""
        parts = []
        for rule in self.rules:
            details = ", ".join(filter(None, (rule.shown, f"up to {megabytes(rule.max_size)}")))
            parts.append(f"{KIND_WORDS.get(rule.kind, rule.kind)} ({details})")
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    def refusal(self, label: str, file: OutgoingFile) -> str | None:
        """Why the channel cannot take this file, in one line for staff; None: it can."""
        rule = next((r for r in self.rules if r.kind == file.kind), None)
        if rule is None:
            missing = [KIND_WORDS[k] for k in KINDS if not any(r.kind == k for r in self.rules)]
            return (f"{label} takes {self.takes()}; not {' or '.join(missing)}. Send the "
                    f"text alone, or a link to the file.")
        if rule.types and not file.content_type.lower().startswith(rule.types):
            return (f"{label} takes {self.takes()}; this {file.kind} is "
                    f"{file.content_type}.")
        if file.size > rule.max_size:
            return (f"This {file.kind} is {megabytes(file.size)}; {label} takes "
                    f"{KIND_WORDS[file.kind]} up to {megabytes(rule.max_size)}.")
        return None


# --- kept for the outbox -------------------------------------------------------------------


async def keep(session: Any, ticket_id: int, file: OutgoingFile, now: datetime) -> OutgoingFile:
    """Write the file in the caller's transaction; returns it with its row id."""
    row = StaffFile(ticket_id=ticket_id, kind=file.kind, name=file.name,
                    content_type=file.content_type, size=file.size, content=file.content,
                    source=file.source, created_at=now)
    session.add(row)
    await session.flush()
    return OutgoingFile(kind=file.kind, content_type=file.content_type, size=file.size,
                        name=file.name, content=file.content, source=file.source,
                        duration=file.duration, id=row.id)


async def load(store: Any, ref: dict[str, Any]) -> OutgoingFile | None:
    """The file an outbox row names, with its bytes; None when it is no longer kept."""
    async with store.session() as session:
        row = await session.get(StaffFile, int(ref.get("id") or 0))
    if row is None:
        return None
    return OutgoingFile(kind=row.kind, content_type=row.content_type, size=row.size,
                        name=row.name, content=row.content, source=row.source,
                        duration=ref.get("duration"), id=row.id)


async def release(session: Any, outbound: Outbound) -> None:
    """The row is done (delivered or dead): its file is not kept any longer."""
    ref = outbound.target.get("file") if isinstance(outbound.target, dict) else None
    if isinstance(ref, dict) and ref.get("id") and outbound.kind == OutboxKind.REPLY:
        await session.execute(sa.delete(StaffFile).where(StaffFile.id == int(ref["id"])))
