"""`sameday media get TICKET`: a ticket's attachments written to disk.

Every customer message of the ticket, in order, each attachment in turn: a file (photo,
voice, document, ...) is fetched by its channel's adapter (``ChannelAdapter
.fetch_attachment``: the URL the platform gave, or Telegram's ``getFile``), made from the
config and the environment's secrets but never started; a location, venue, link, shared
post or forward is written as a small .txt, a contact as a .vcf. Names are made here,
never taken from the payload as paths: ``<message id>-<index>-<kind>`` and the file's own
name (only letters, digits, ``.``, ``-``, ``_``) or an extension. Running it again
writes the same names over. One line per item: the path written, or why not.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
import typer

from core.app.options import ConfigOption, database_unreadable, err, out, settings_or_exit
from core.config.channels import channel_label, installed_channels
from core.config.settings import Settings
from core.delivery.contract import ChannelAdapter, adapter_factories
from core.delivery.files import FetchError, extension
from core.domain.records import Attachment, Direction
from core.store.engine import Store
from core.store.tables import Message, Ticket

media_app = typer.Typer(help="Customers' attachments.", no_args_is_help=True)

# Kept as a few lines of text: what they are is in the attachment itself.
TEXT_KINDS = ("location", "venue", "link", "post", "forward", "poll", "other")
MAX_NAME = 120  # characters kept of a file's own name


@dataclass(frozen=True)
class Item:
    message_id: int
    index: int  # 1-based, in the message's attachments
    channel: str
    attachment: Attachment


@dataclass(frozen=True)
class Outcome:
    path: Path
    size: int | None = None  # bytes written; None: not written
    reason: str = ""

    def line(self) -> str:
        if self.size is not None:
            return f"{self.path}: {self.size} bytes"
        return f"{self.path}: not written: {self.reason}"


class NoTicket(Exception):
    pass


@media_app.command("get")
def get(ticket: str = typer.Argument(..., metavar="TICKET",
                                     help="The ticket number (12 or #12)."),
        to: Path = typer.Option(None, "--to", metavar="DIR",
                                help="Where to write (default: ./ticket-N/)."),
        config: Path = ConfigOption) -> None:
    """Write a ticket's attachments to disk, one line per item; exit 1 if any could not
    be written, 2 if there is no such ticket."""
    number = ticket.strip().removeprefix("#")
    if not number.isdecimal():
        err.print(f"TICKET {ticket}: a ticket number like 12 or #12",
                  markup=False, highlight=False)
        raise typer.Exit(2)
    ticket_id = int(number)
    settings = settings_or_exit(config, check_secrets=False)
    directory = to if to is not None else Path(f"ticket-{ticket_id}")
    try:
        outcomes = asyncio.run(_get(settings, config, ticket_id, directory))
    except NoTicket:
        err.print(f"no ticket #{ticket_id} in the database; `/queue` in the staff chat or "
                  f"`sameday console` shows the tickets", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except OSError as error:
        err.print(f"cannot write to {directory}: {error.strerror or error}",
                  markup=False, highlight=False)
        raise typer.Exit(1) from None
    if not outcomes:
        out.print(f"ticket #{ticket_id} has no attachments", markup=False, highlight=False)
        return
    for outcome in outcomes:
        out.print(outcome.line(), markup=False, highlight=False)
    written = sum(outcome.size is not None for outcome in outcomes)
    out.print(f"{written} of {len(outcomes)} attachments of ticket #{ticket_id} written to "
              f"{directory}", markup=False, highlight=False)
    if written < len(outcomes):
        raise typer.Exit(1)


async def _get(settings: Settings, config: Path, ticket_id: int,
               directory: Path) -> list[Outcome]:
    store = Store(settings.database)
    try:
        items = await _items(store, ticket_id)
    except sa.exc.DBAPIError as error:
        raise database_unreadable(settings, error) from None
    finally:
        await store.close()
    if items and not directory.exists():
        directory.mkdir(mode=0o700, parents=True)  # a new folder: its owner's only
        os.chmod(directory, 0o700)
    adapters = Adapters(settings, config)
    return [await _save(item, directory, adapters) for item in items]


async def _items(store: Store, ticket_id: int) -> list[Item]:
    async with store.session() as session:
        if await session.get(Ticket, ticket_id) is None:
            raise NoTicket
        messages = await session.execute(
            sa.select(Message.id, Message.channel, Message.attachments)
            .where(Message.ticket_id == ticket_id, Message.direction == Direction.IN)
            .order_by(Message.id))
        return [Item(message_id, index, channel, Attachment.from_json(data))
                for message_id, channel, attachments in messages
                for index, data in enumerate(attachments or (), start=1)]


class Adapters:
    """Each channel's adapter, made once when first needed, or why there is none."""

    def __init__(self, settings: Settings, config: Path):
        self.settings = settings
        self.config = config
        self._made: dict[str, ChannelAdapter | str] = {}

    def get(self, channel: str) -> ChannelAdapter | str:
        if channel not in self._made:
            self._made[channel] = self._make(channel)
        return self._made[channel]

    def _make(self, channel: str) -> ChannelAdapter | str:
        if channel not in installed_channels():
            return f"the {channel} channel is not installed"
        label = channel_label(channel)
        if channel not in self.settings.channels.enabled():
            return (f"the {label} channel is not configured in {self.config} "
                    f"([channels.{channel}] enabled = true)")
        try:
            return adapter_factories()[channel](self.settings)
        except KeyError as error:  # a secret's variable is not set
            return f"the {label} channel cannot be used: {error.args[0]}"
        except Exception as error:
            return f"the {label} channel cannot be used: {type(error).__name__}: {error}"


async def _save(item: Item, directory: Path, adapters: Adapters) -> Outcome:
    attachment = item.attachment
    stem = f"{item.message_id}-{item.index}-{safe_name(attachment.kind)}"
    if attachment.kind == "contact":
        return _write(directory / f"{stem}.vcf", vcard(attachment).encode())
    if attachment.kind in TEXT_KINDS:
        return _write(directory / f"{stem}.txt", described(attachment).encode())
    adapter = adapters.get(item.channel)
    if isinstance(adapter, str):
        return Outcome(directory / file_name(stem, attachment),
                       reason=f"not fetchable: {adapter}")
    try:
        fetched = await adapter.fetch_attachment(attachment)
    except FetchError as error:
        return Outcome(directory / file_name(stem, attachment),
                       reason=_with_link(error.reason, attachment))
    except Exception as error:  # an adapter's bug must not lose the other items
        return Outcome(directory / file_name(stem, attachment), reason=_with_link(
            f"download failed: {type(error).__name__}: {error}", attachment))
    if fetched is None:
        return Outcome(directory / file_name(stem, attachment), reason="not fetchable: "
                       f"no URL or file id for a {attachment.kind} from this channel")
    content, content_type = fetched
    path = directory / file_name(stem, attachment, content_type)
    if content_type == "text/html" and attachment.kind != "document":
        return Outcome(path, reason=_with_link(
            "not fetchable: the link is a web page, not the file", attachment))
    return _write(path, content)


def _write(path: Path, content: bytes) -> Outcome:
    """Written whole or not at all (a file of the same name is replaced)."""
    part = path.with_name(f".{path.name}.part")
    part.unlink(missing_ok=True)
    # A customer's photo or voice is personal data: readable by its owner only (0600).
    descriptor = os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    os.replace(part, path)
    return Outcome(path, len(content))


def _with_link(reason: str, attachment: Attachment) -> str:
    return f"{reason} ({attachment.url})" if attachment.url else reason


def file_name(stem: str, attachment: Attachment, content_type: str | None = None) -> str:
    """The stem, then the file's own name (made safe) or an extension: from the content
    type served, else the declared one, else the URL's."""
    if attachment.file_name:
        return f"{stem}-{safe_name(attachment.file_name)}"
    return stem + (_extension(content_type) or _extension(attachment.mime_type)
                   or _url_extension(attachment.url))


def safe_name(name: str) -> str:
    """A file name that is only a name: no directory, no "..", no control or special
    characters (letters of any script, digits, ".", "-", "_" stay)."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    name = re.sub(r"[^\w.-]+", "_", name)
    name = re.sub(r"\.{2,}", ".", name).strip("._-") or "file"
    if len(name) > MAX_NAME:
        stem, dot, suffix = name.rpartition(".")
        suffix = f".{suffix}" if dot and stem and len(suffix) <= 10 else ""
        name = name[:MAX_NAME - len(suffix)] + suffix
    return name


def _extension(content_type: str | None) -> str:
    if not content_type or content_type == "application/octet-stream":
        return ""
    return extension(content_type) or mimetypes.guess_extension(content_type) or ""


def _url_extension(url: str | None) -> str:
    if not url:
        return ""
    suffix = Path(urlsplit(url).path).suffix
    return suffix.lower() if re.fullmatch(r"\.[A-Za-z0-9]{1,5}", suffix) else ""


def described(attachment: Attachment) -> str:
    """A location, venue, link, post or forward as a few lines of text."""
    a = attachment
    lines = [a.kind + (f": {a.title}" if a.title else "")]
    if a.latitude is not None and a.longitude is not None:
        lines += [f"{a.latitude}, {a.longitude}",
                  f"https://www.openstreetmap.org/?mlat={a.latitude}&mlon={a.longitude}"]
    if a.caption:
        lines.append(a.caption)
    if a.forwarded_from:
        lines.append(f"from: {a.forwarded_from}")
    if a.phone:
        lines.append(f"phone: {a.phone}")
    if a.url:
        lines.append(a.url)
    return "\n".join(lines) + "\n"


def vcard(attachment: Attachment) -> str:
    """A contact as a vCard 3.0 (RFC 2426): its name and phone number."""
    name = _vcard_text(attachment.title or attachment.phone or "contact")
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"FN:{name}", f"N:;{name};;;"]
    if attachment.phone:
        lines.append(f"TEL:{_vcard_text(attachment.phone)}")
    lines.append("END:VCARD")
    return "\r\n".join(lines) + "\r\n"


def _vcard_text(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))
