"""Customers' media reach the Telegram staff group as media: a Telegram message copied,
VK media downloaded from VK's links and sent as the same kind, a location as a location,
and what cannot be shown as a line with its link."""

from __future__ import annotations

import pytest

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import TelegramEmulator
from bots.vk.adapter import VKAdapter
from bots.vk.emulator import VKEmulator
from tests.adapter_harness import eventually, running_all
from tests.test_staff_telegram import STAFF, settings_for, tokens  # noqa: F401

OGG = b"OggS\x00\x02" + bytes(200)  # the start of an Ogg stream: what VK's link_ogg serves
JPEG = b"\xff\xd8\xff\xe0" + bytes(500)


@pytest.fixture
async def telegram():
    async with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    return f"sqlite+aiosqlite:///{tmp_path / 'media.db'}"


def staff_media(emulator) -> list[dict]:
    return [m for m in emulator.sent_to(STAFF) if "text" not in m or m.get("copied_from")]


async def test_a_telegram_customers_photo_is_copied_into_the_staff_group(telegram, store):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings):
        photo = [{"file_id": "AgAD-small", "file_unique_id": "s", "width": 90, "height": 90,
                  "file_size": 1200},
                 {"file_id": "AgAD-large", "file_unique_id": "l", "width": 1280,
                  "height": 960, "file_size": 98000}]
        sent = telegram.inject_message(chat_id=601, user_id=601, photo=photo,
                                       caption="the box came crushed")
        await eventually(lambda: staff_media(telegram), what="the photo in the staff group")
        [copy] = staff_media(telegram)
    assert copy["copied_from"] == {"chat_id": 601, "message_id": sent["message_id"]}
    assert copy["photo"][-1]["file_id"] == "AgAD-large"
    assert copy["caption"] == "the box came crushed"
    header = copy["reply_to_message"]
    assert header["text"].startswith("#1 ") and "sent:" in header["text"]


async def test_vk_media_are_downloaded_and_sent_as_the_same_kind(telegram, store):
    async with VKEmulator() as vk:
        voice_url = vk.host_file("voice.ogg", OGG, "audio/ogg")
        photo_url = vk.host_file("photo.jpg", JPEG, "image/jpeg")
        settings = settings_for(telegram, vk=vk)
        async with running_all([TelegramAdapter(settings), VKAdapter(settings)], store,
                               settings):
            vk.inject_message(from_id=77, text="", attachments=[
                {"type": "audio_message", "audio_message": {
                    "id": 5, "owner_id": 77, "duration": 3, "link_ogg": voice_url,
                    "link_mp3": voice_url.replace(".ogg", ".mp3")}},
                {"type": "photo", "photo": {"id": 6, "owner_id": 77, "sizes": [
                    {"type": "x", "url": photo_url, "width": 604, "height": 453}]}},
                {"type": "doc", "doc": {"id": 7, "owner_id": 77, "title": "invoice.pdf",
                                        "size": 34000, "ext": "pdf",
                                        "url": f"{vk.url}/_files/missing.pdf"}},
            ], geo={"type": "point", "coordinates": {"latitude": 55.7558,
                                                     "longitude": 37.6173}})
            await eventually(lambda: len(staff_media(telegram)) >= 3, timeout=20,
                             what="voice, photo and location in the staff group")
            await eventually(lambda: any("invoice.pdf" in m.get("text", "")
                                         for m in telegram.sent_to(STAFF)),
                             what="the document that could not be fetched, as a line")
    media = staff_media(telegram)
    kinds = [next(k for k in ("voice", "photo", "location") if k in m) for m in media]
    assert kinds == ["voice", "photo", "location"]
    uploads = {u["kind"]: u["content"] for u in telegram.uploads}
    assert uploads == {"voice": OGG, "photo": JPEG}  # the customer's bytes, as sent
    assert media[2]["location"] == {"latitude": 55.7558, "longitude": 37.6173}
    line = next(m["text"] for m in telegram.sent_to(STAFF) if "invoice.pdf" in m.get("text", ""))
    assert "missing.pdf" in line and "33.2 kB" in line  # kind, name, size and the link


async def test_show_lists_a_tickets_attachments_with_their_links(inbox, store, clock):
    import dataclasses

    from core.domain.records import Attachment
    from core.staff.commands import StaffDesk
    from tests.conftest import make_settings
    from tests.helpers import inbound

    message = dataclasses.replace(inbound("m1", text="see the receipt"), attachments=(
        Attachment("document", file_name="receipt.pdf", size=51200,
                   url="https://vk.com/doc77_7"),
        Attachment("voice", duration=7, url="https://psv4.userapi.com/a.ogg")))
    await inbox.ingest([message])
    settings = make_settings(staff={"chat": "console", "members": [
        {"name": "anna", "telegram_id": 1, "role": "admin"}]})
    desk = StaffDesk(store, settings, clock)
    reply = await desk.execute(desk.actor_named("anna"), "/show 1")
    assert "📄 document receipt.pdf · 50 kB · https://vk.com/doc77_7" in reply.text
    assert "🎤 voice · 0:07 · https://psv4.userapi.com/a.ogg" in reply.text


TELEGRAM_MEDIA = {  # a customer's message content as Telegram sends it
    "voice": {"voice": {"file_id": "AwACAgIAAxkBAAIB", "file_unique_id": "v1",
                        "duration": 7, "mime_type": "audio/ogg", "file_size": 23000}},
    "document": {"document": {"file_id": "BQACAgIAAxkBAAIC", "file_unique_id": "d1",
                              "file_name": "receipt.pdf", "mime_type": "application/pdf",
                              "file_size": 51200}},
    "location": {"location": {"latitude": 55.7558, "longitude": 37.6173}},
}


@pytest.mark.parametrize("kind", sorted(TELEGRAM_MEDIA))
async def test_a_telegram_customers_voice_document_and_location_are_copied(
        telegram, store, kind):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings):
        telegram.inject_message(chat_id=602, user_id=602, **TELEGRAM_MEDIA[kind])
        await eventually(lambda: staff_media(telegram), what=f"the {kind} in the staff group")
        [copy] = staff_media(telegram)
    assert copy[kind] == TELEGRAM_MEDIA[kind][kind]  # the media itself, not a line


async def test_a_vk_document_is_downloaded_and_sent_as_a_document(telegram, store):
    pdf = b"%PDF-1.4\n" + bytes(300)
    async with VKEmulator() as vk:
        url = vk.host_file("invoice.pdf", pdf, "application/pdf")
        settings = settings_for(telegram, vk=vk)
        async with running_all([TelegramAdapter(settings), VKAdapter(settings)], store,
                               settings):
            vk.inject_message(from_id=79, text="счёт", attachments=[{"type": "doc", "doc": {
                "id": 8, "owner_id": 79, "title": "invoice.pdf", "size": len(pdf),
                "ext": "pdf", "url": url}}])
            await eventually(lambda: any("document" in m for m in telegram.sent_to(STAFF)),
                             timeout=20, what="the document in the staff group")
    [document] = [m["document"] for m in telegram.sent_to(STAFF) if "document" in m]
    assert document["file_name"] == "invoice.pdf"
    assert telegram.uploads == [{"kind": "document", "name": "invoice.pdf", "content": pdf}]
