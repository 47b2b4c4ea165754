"""`sameday media get TICKET`: a ticket's attachments on disk -- VK files downloaded from
the URLs VK gave, Telegram files by getFile through python-telegram-bot, a location as
text, a contact as a vCard, safe names, one line per item and why one is missing."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from typer.testing import CliRunner

from bots.telegram.emulator import TelegramEmulator
from bots.telegram.files import fetch_file
from bots.telegram.settings import TelegramSettings
from bots.vk.emulator import VKEmulator
from core.app.cli import app
from core.app.media import safe_name
from core.delivery import files
from core.delivery.contract import ChannelAdapter
from core.delivery.files import FetchError
from core.domain.records import Attachment
from tests.helpers import inbound

JPEG = b"\xff\xd8\xff\xe0" + bytes(500)
PDF = b"%PDF-1.4\n" + bytes(300)
OGG = b"OggS\x00\x02" + bytes(200)
TOKENS = {"SAMEDAY_TELEGRAM_TOKEN": "123:media", "MEDIA_VK_TOKEN": "vk1.a.media"}


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    return f"sqlite+aiosqlite:///{tmp_path / 'media.db'}"


@pytest.fixture(autouse=True)
def tokens(monkeypatch):
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)


async def sameday(*args: str):
    """Run the CLI as an admin would (in a thread: it runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


def config(tmp_path, store, *, vk=None, telegram=None):
    text = f'[database]\nurl = "{store.settings.url}"\n[staff]\nchat = "console"\n'
    if vk is not None:
        text += (f'[channels.vk]\nenabled = true\ngroup_id = 1\nbase_url = "{vk.url}"\n'
                 f'token_env = "MEDIA_VK_TOKEN"\n')
    if telegram is not None:
        text += (f'[channels.telegram]\nenabled = true\nbase_url = "{telegram.url}/bot"\n'
                 f'base_file_url = "{telegram.url}/file/bot"\n')
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


async def ticket_with(inbox, external_id, *attachments, channel="vk", author="77"):
    message = dataclasses.replace(inbound(external_id, channel=channel, author=author),
                                  attachments=attachments)
    result = await inbox.ingest([message])
    return (result.opened or result.appended)[0]


def lines(result) -> list[str]:
    return result.stdout.strip().splitlines()


def size(path) -> int:
    return path.stat().st_size


async def test_vk_files_are_written_with_safe_names_and_a_missing_one_says_why(
        inbox, store, tmp_path):
    async with VKEmulator() as vk:
        photo_url = vk.host_file("photo.jpg", JPEG, "image/jpeg")
        doc_url = vk.host_file("doc77_7", PDF, "application/pdf")
        missing = f"{vk.url}/_files/missing.pdf"
        ticket = await ticket_with(
            inbox, "m1",
            Attachment("photo", file_id="photo77_6", url=photo_url),
            Attachment("document", file_id="doc77_7", url=doc_url,
                       file_name="../../Счёт №5/..\\invoice.pdf", size=len(PDF)))
        await ticket_with(
            inbox, "m2",
            Attachment("location", latitude=55.7558, longitude=37.6173),
            Attachment("document", file_id="doc77_8", url=missing, file_name="receipt.pdf"),
            Attachment("contact", title="Ольга Петрова", phone="+79001234567"))
        out = tmp_path / "out"
        args = ("media", "get", f"#{ticket}", "--to", str(out), "-c",
                config(tmp_path, store, vk=vk))
        first = await sameday(*args)
        second = await sameday(*args)  # idempotent: the same names, written over
    assert first.exit_code == 1, first.output  # one item could not be written
    assert lines(first) == [
        f"{out}/1-1-photo.jpg: {len(JPEG)} bytes",
        f"{out}/1-2-document-invoice.pdf: {len(PDF)} bytes",
        f"{out}/2-1-location.txt: {size(out / '2-1-location.txt')} bytes",
        f"{out}/2-2-document-receipt.pdf: not written: download failed: HTTP 404 "
        f"({missing})",
        f"{out}/2-3-contact.vcf: {size(out / '2-3-contact.vcf')} bytes",
        f"4 of 5 attachments of ticket #{ticket} written to {out}"]
    assert (out / "1-1-photo.jpg").read_bytes() == JPEG  # the bytes VK served
    assert (out / "1-2-document-invoice.pdf").read_bytes() == PDF
    assert (out / "2-1-location.txt").read_text() == (
        "location\n55.7558, 37.6173\n"
        "https://www.openstreetmap.org/?mlat=55.7558&mlon=37.6173\n")
    assert (out / "2-3-contact.vcf").read_text().splitlines() == [
        "BEGIN:VCARD", "VERSION:3.0", "FN:Ольга Петрова", "N:;Ольга Петрова;;;",
        "TEL:+79001234567", "END:VCARD"]
    assert sorted(p.name for p in out.iterdir()) == [
        "1-1-photo.jpg", "1-2-document-invoice.pdf", "2-1-location.txt", "2-3-contact.vcf"]
    assert (second.exit_code, lines(second)) == (first.exit_code, lines(first))
    assert not list(tmp_path.glob("**/invoice.pdf"))  # nothing outside the directory


async def test_the_default_directory_is_ticket_n_here(inbox, store, tmp_path, monkeypatch):
    await ticket_with(inbox, "m1", Attachment("location", latitude=1.5, longitude=2.5))
    monkeypatch.chdir(tmp_path)
    result = await sameday("media", "get", "1", "-c", config(tmp_path, store))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ticket-1" / "1-1-location.txt").read_text().startswith("location\n")
    assert lines(result)[-1] == "1 of 1 attachments of ticket #1 written to ticket-1"


async def test_a_channel_not_configured_is_named_as_the_reason(inbox, store, tmp_path):
    ticket = await ticket_with(inbox, "t1", Attachment("photo", file_id="AgAD"),
                               Attachment("location", latitude=1.0, longitude=2.0),
                               channel="telegram", author="601")
    result = await sameday("media", "get", str(ticket), "--to", str(tmp_path / "t"),
                           "-c", config(tmp_path, store))
    assert result.exit_code == 1
    assert lines(result)[:2] == [
        f"{tmp_path}/t/1-1-photo: not written: not fetchable: the Telegram channel is not "
        f"configured in {tmp_path}/config.toml ([channels.telegram] enabled = true)",
        f"{tmp_path}/t/1-2-location.txt: {size(tmp_path / 't/1-2-location.txt')} bytes"]


async def test_a_missing_ticket_is_an_error(store, tmp_path):
    result = await sameday("media", "get", "9", "--to", str(tmp_path / "t"), "-c",
                           config(tmp_path, store))
    assert result.exit_code == 2
    assert "no ticket #9 in the database" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t").exists()
    bad = await sameday("media", "get", "nine", "-c", config(tmp_path, store))
    assert bad.exit_code == 2 and "a ticket number like 12 or #12" in bad.output


async def test_a_telegram_file_is_fetched_with_getfile_by_python_telegram_bot():
    async with TelegramEmulator(token="123:media") as telegram:
        photo = telegram.add_file(JPEG, "photos/file_1.jpg")
        voice = telegram.add_file(OGG, "voice/file_2.oga")
        config = TelegramSettings(enabled=True, base_url=f"{telegram.url}/bot",
                                  base_file_url=f"{telegram.url}/file/bot")
        got_photo = await fetch_file(config, Attachment("photo", file_id=photo["file_id"]))
        got_voice = await fetch_file(config, Attachment("voice", file_id=voice["file_id"],
                                                        mime_type="audio/ogg"))
        with pytest.raises(FetchError) as unknown:
            await fetch_file(config, Attachment("photo", file_id="AgAD-gone"))
        with pytest.raises(FetchError) as big:
            await fetch_file(config, Attachment("video", file_id=photo["file_id"],
                                                size=25 * 1024 * 1024))
        location = Attachment("location", latitude=1, longitude=2)
        assert await fetch_file(config, location) is None
    assert got_photo == (JPEG, "image/jpeg") and got_voice == (OGG, "audio/ogg")
    assert telegram.requests["getFile"] == 3  # the big one was not asked for
    assert unknown.value.reason == "download failed: BadRequest: Invalid file_id"
    assert big.value.reason == "too big: 25 MB, over the 20 MB limit"


async def test_media_get_fetches_a_telegram_photo_through_the_adapter(inbox, store, tmp_path):
    async with TelegramEmulator(token=TOKENS["SAMEDAY_TELEGRAM_TOKEN"]) as telegram:
        photo = telegram.add_file(JPEG, "photos/file_1.jpg")
        ticket = await ticket_with(
            inbox, "601:5", Attachment("photo", file_id=photo["file_id"], size=len(JPEG)),
            Attachment("voice", file_id="AwAD-expired", mime_type="audio/ogg", duration=3),
            channel="telegram", author="601")
        result = await sameday("media", "get", str(ticket), "--to", str(tmp_path / "t"),
                               "-c", config(tmp_path, store, telegram=telegram))
    assert result.exit_code == 1, result.output
    photo_line, voice_line, summary = lines(result)
    assert photo_line == f"{tmp_path}/t/1-1-photo.jpg: {len(JPEG)} bytes"
    assert (tmp_path / "t" / "1-1-photo.jpg").read_bytes() == JPEG
    assert voice_line.startswith(f"{tmp_path}/t/1-2-voice.ogg: not written: download "
                                 f"failed: BadRequest: ")
    assert "123:media" not in result.output and "media" not in voice_line.split(":", 1)[1]
    assert summary == f"1 of 2 attachments of ticket #{ticket} written to {tmp_path}/t"


async def test_the_default_fetch_refuses_a_file_over_the_limit(monkeypatch):
    monkeypatch.setattr(files, "MAX_DOWNLOAD", 100)

    class Plain(ChannelAdapter):
        name = "plain"

        async def start(self, context): ...
        async def stop(self): ...
        async def send(self, outbound): ...
        def rate_keys(self, outbound): return []

    adapter = Plain()
    async with VKEmulator() as vk:
        small = vk.host_file("small.png", b"\x89PNG" + bytes(50), "image/png")
        large = vk.host_file("large.jpg", JPEG, "image/jpeg")
        assert await adapter.fetch_attachment(Attachment("photo", url=small)) == (
            b"\x89PNG" + bytes(50), "image/png")
        with pytest.raises(FetchError) as refused:
            await adapter.fetch_attachment(Attachment("photo", url=large))
        assert await adapter.fetch_attachment(Attachment("photo", file_id="x")) is None
    assert refused.value.reason.startswith("too big: ")


@pytest.mark.parametrize(("given", "kept"), [
    ("invoice.pdf", "invoice.pdf"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\boot.ini", "boot.ini"),
    ("..", "file"),
    ("a..b...pdf", "a.b.pdf"),
    ("Счёт №5 (копия).pdf", "Счёт_5_копия_.pdf"),
    ("line\nbreak\x00.txt", "line_break_.txt"),
    ("x" * 300 + ".jpeg", "x" * 115 + ".jpeg"),
])
def test_a_file_name_from_a_payload_is_only_a_name(given, kept):
    assert safe_name(given) == kept
    assert "/" not in safe_name(given) and ".." not in safe_name(given)
