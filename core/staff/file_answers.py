"""An answer that carries a file: a photo, document, voice message or video, with the
answer's text as its caption.

A staff member sends one by replying to a ticket's card with the file in the staff chat
(the chat hands it over as an ``OutgoingFile``), or from the console with
``/reply N --file PATH text``. Before anything is queued:

- a file the staff chat has by reference only is fetched when it goes to a customer on
  another platform (``prepared``, outside the transaction: a download must not hold the
  ticket's lock);
- the customer's channel says whether it takes that kind, type and size
  (``ChannelAdapter.file_rules``): X takes no documents, and staff hear so at once;
- the bytes are kept (``core.delivery.outfiles.keep``) in the transaction that queues the
  answer, which names the file in its outbox row.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.blocking import in_daemon_thread
from core.config.channels import channel_label
from core.delivery.contract import adapter_class
from core.delivery.files import FetchError, megabytes
from core.delivery.outfiles import MAX_FILE, OutgoingFile, content_type_of, keep, kind_for
from core.domain.records import Attachment
from core.staff.handlers import Reply
from core.staff.language import Command
from core.store.tables import Ticket

FILE_OPTION = "--file"
FILE_USAGE = "Usage: /reply N --file PATH [text] (the text goes with the file as its caption)"
# "/reply 12 --file PATH text", "/reply@bot #12 --file 'a b.pdf' text"; PATH may be quoted.
_FILE_LINE = re.compile(
    r"/reply(?:@\S+)?\s+(?P<ticket>#?[0-9]{1,9})\s+--file(?:\s+(?P<path>\"[^\"]*\"|'[^']*'|\S+))?"
    r"(?:\s+(?P<text>.*))?", re.DOTALL | re.IGNORECASE)
CHAT_OPTION = ("--file PATH works in sameday console only; in the staff group, send the "
               "file itself (a photo, document, voice message or video) as a reply to the "
               "ticket's card, with the answer as its caption.")


def wants_file(line: str) -> bool:
    """Whether a console line is ``/reply N --file ...``."""
    return _FILE_LINE.match(line.strip()) is not None


def file_line(line: str) -> tuple[Command, Path] | Reply:
    """``/reply N --file PATH [text]`` as the /reply command and the path; a Reply
    saying the right form when it is not one."""
    match = _FILE_LINE.match(line.strip())
    if match is None or not match.group("path"):
        return Reply(FILE_USAGE, ok=False)
    path = match.group("path")
    if path[:1] in "\"'":
        path = path[1:-1]
    if not path:
        return Reply(FILE_USAGE, ok=False)
    ticket = int(match.group("ticket").lstrip("#"))
    return Command("reply", ticket, (match.group("text") or "").strip()), Path(path).expanduser()


async def read_file(path: Path) -> OutgoingFile | Reply:
    """A file from disk for an answer; a Reply naming the problem when it cannot be
    sent (missing, a directory, unreadable, empty, too big)."""
    try:
        return await in_daemon_thread(_read, path, name="console-file")
    except _Unusable as problem:
        return Reply(str(problem), ok=False)


class _Unusable(Exception):
    pass


def _read(path: Path) -> OutgoingFile:
    shown = str(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise _Unusable(f"No file {shown}.") from None
    except OSError as error:
        raise _Unusable(f"Cannot read {shown}: {error.strerror or error}.") from None
    if path.is_dir():
        raise _Unusable(f"{shown} is a directory; --file takes one file.")
    if status.st_size > MAX_FILE:
        raise _Unusable(f"{shown} is {megabytes(status.st_size)}; sameday sends files up to "
                        f"{megabytes(MAX_FILE)}.")
    if not os.access(path, os.R_OK):
        raise _Unusable(f"Cannot read {shown}: permission denied.")
    try:
        content = path.read_bytes()
    except OSError as error:
        raise _Unusable(f"Cannot read {shown}: {error.strerror or error}.") from None
    if not content:
        raise _Unusable(f"{shown} is empty.")
    if len(content) > MAX_FILE:  # grew since stat
        raise _Unusable(f"{shown} is {megabytes(len(content))}; sameday sends files up to "
                        f"{megabytes(MAX_FILE)}.")
    content_type = content_type_of(path.name)
    return OutgoingFile(kind=kind_for(content_type), content_type=content_type,
                        size=len(content), name=path.name, content=content)


async def prepared(desk, command: Command, file: OutgoingFile) -> OutgoingFile | Reply:
    """The file ready to keep: fetched from the staff chat when the ticket's customer is
    on another platform than the one that has it by reference. Outside any transaction."""
    if command.name != "reply" or command.ticket is None:
        return Reply(f"Only an answer can carry a file: {FILE_USAGE}", ok=False)
    if not file.by_reference:
        return file
    async with desk.store.session() as session:
        channel = await session.scalar(sa.select(Ticket.channel)
                                       .where(Ticket.id == command.ticket))
    if channel is None or (file.source or {}).get("channel") == channel:
        return file  # sent by its handle (or: no such ticket, which the command says)
    if file.fetch is None:
        return Reply(f"That {file.kind} cannot be fetched for a {channel_label(channel)} "
                     f"customer.", ok=False)
    try:
        content, content_type = await file.fetch()
    except FetchError as error:
        return Reply(f"That {file.kind} cannot go to a {channel_label(channel)} customer: "
                     f"{error.reason}.", ok=False)
    return replace(file, content=content, size=len(content),
                   content_type=file.content_type or content_type)


async def attach(desk, session: AsyncSession, ticket: Ticket, file: OutgoingFile,
                 now: datetime) -> OutgoingFile | Reply:
    """Check the file against what the ticket's channel takes, and keep it for the
    outbox (in the caller's transaction); a Reply saying why not otherwise."""
    label = channel_label(ticket.channel)
    if file.by_reference and (file.source or {}).get("channel") != ticket.channel:
        return Reply(f"That {file.kind} cannot be fetched for a {label} customer.", ok=False)
    cls = _adapter_class(ticket.channel)
    if cls is not None:
        if cls.file_rules is None:
            return Reply(f"{label} cannot carry files from sameday: send the text alone, "
                         f"or a link to the file.", ok=False)
        refusal = None if file.by_reference else cls.file_rules.refusal(label, file)
        if refusal:
            return Reply(refusal, ok=False)
    return await keep(session, ticket.id, file, now)


def _adapter_class(channel: str):
    try:
        return adapter_class(channel)
    except Exception:  # a channel whose adapter cannot be loaded here: it decides on send
        return None


def as_attachment(file: OutgoingFile) -> Attachment:
    """The file as the answer's stored attachment (``/show`` lists it)."""
    return Attachment(file.kind, file_name=file.name, mime_type=file.content_type,
                      size=file.size, duration=file.duration)


def typed_option(text: str) -> bool:
    """An answer typed in a staff chat that starts with ``--file``: meant as the
    console's option, never sent to a customer as text."""
    return text.lstrip().lower().startswith(FILE_OPTION)
