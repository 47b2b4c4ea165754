"""Files back to customers: a staff member's photo, document, voice message or video,
sent from the Telegram staff group (a reply to the card) or the console (--file), reaches
the customer on Telegram (by file id), VK (the messages upload server) and X (media
upload), through the outbox: its retries, its dead letters, and X's limits checked first.
"""

from __future__ import annotations

import io
import os
import re

import pytest
import sqlalchemy as sa
from rich.console import Console

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import TelegramEmulator
from bots.twitter.adapter import TwitterAdapter
from bots.twitter.emulator import BOT_USER as X_BOT
from bots.twitter.emulator import XEmulator
from bots.vk.adapter import VKAdapter
from bots.vk.emulator import VKEmulator
from core.delivery.outfiles import MAX_FILE
from core.domain.records import Direction, OutboxKind, OutboxState, TicketStatus
from core.staff.console import run_console
from core.store.tables import Event, Message, Outbox, StaffFile, Ticket
from tests.adapter_harness import eventually, running_all
from tests.conftest import make_settings

STAFF = -1003000
ANNA, BORIS = 111, 222
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
PDF = b"%PDF-1.4\n" + b"invoice 4411\n" * 100
OGG = b"OggS\x00\x02" + bytes(range(200)) * 3
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(900)


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    # The flows do not depend on the database (test_edit_delete.py also runs PostgreSQL).
    return f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"


@pytest.fixture(autouse=True)
def tokens(monkeypatch):
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123:files")
    monkeypatch.setenv("SAMEDAY_VK_TOKEN", "vk-files")
    for name in ("BEARER_TOKEN", "CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
                 "ACCESS_TOKEN_SECRET"):
        monkeypatch.setenv(f"SAMEDAY_X_{name}", "x-files")


@pytest.fixture
async def telegram():
    async with TelegramEmulator() as emulator:
        yield emulator


def settings_for(telegram, vk=None, x=None, chat: str = "telegram"):
    channels = {"telegram": {"enabled": True, "base_url": f"{telegram.url}/bot",
                             "base_file_url": f"{telegram.url}/file/bot",
                             "poll_timeout": "1s"}}
    if vk is not None:
        channels["vk"] = {"enabled": True, "group_id": 1, "base_url": vk.url,
                          "long_poll_wait": "1s"}
    if x is not None:
        channels["twitter"] = {"enabled": True, "user_id": X_BOT["id"], "base_url": x.url}
    return make_settings(channels=channels, outbox={"retry_base": "1s"}, staff={
        "chat": chat, "telegram_chat_id": STAFF,
        "members": [{"name": "anna", "telegram_id": ANNA, "role": "admin"},
                    {"name": "boris", "telegram_id": BORIS}]})


def adapters_for(settings, vk=None, x=None) -> list:
    found = [TelegramAdapter(settings)]
    if vk is not None:
        found.append(VKAdapter(settings))
    if x is not None:
        found.append(TwitterAdapter(settings, poll_interval=0.3))
    return found


async def card_of(telegram, h, ticket_id: int) -> dict:
    def is_card(m: dict) -> bool:
        return m.get("text", "").startswith(f"<b>#{ticket_id}</b> · ")
    await eventually(lambda: any(is_card(m) for m in telegram.sent_to(STAFF)),
                     what=f"card #{ticket_id}")
    card = next(m for m in telegram.sent_to(STAFF) if is_card(m))
    await eventually(lambda: h.desk.ticket_for_staff_message(f"{STAFF}:{card['message_id']}"),
                     what="the card recorded as sent")
    return card


def staff_sends(telegram, card: dict, user_id: int = ANNA, **content) -> dict:
    """A staff member replies to the card with a file (content: photo=, document=, ...)."""
    return telegram.inject_message(chat_id=STAFF, user_id=user_id, chat_type="supergroup",
                                   reply_to_message_id=card["message_id"], **content)


def photo_of(telegram, content: bytes) -> list[dict]:
    meta = telegram.add_file(content, f"photos/file_{len(telegram.files_by_id) + 1}.jpg")
    return [{**meta, "width": 800, "height": 600}]


def staff_replies(telegram) -> list[str]:
    """What the bot said in the staff group, cards left out."""
    return [m["text"] for m in telegram.sent_to(STAFF) if "text" in m
            and not re.match(r"<b>#\d+</b> · ", m["text"])]


async def kept_files(h) -> int:
    return await h.count(StaffFile)


def counted(h, table, expected: int, *where):
    """For ``eventually``: the rows of ``table`` (matching ``where``) number ``expected``."""
    async def check() -> bool:
        return await h.count(table, *where) == expected
    return check


# --- from the staff group --------------------------------------------------------------------


async def test_a_photo_reply_reaches_customers_on_telegram_vk_and_x(telegram, store):
    """The issue's "done when": the same photo, answered from the staff group, arrives as
    a photo on each platform, byte for byte."""
    async with VKEmulator() as vk, XEmulator() as x:
        settings = settings_for(telegram, vk=vk, x=x)
        async with running_all(adapters_for(settings, vk, x), store, settings) as h:
            telegram.inject_message(chat_id=501, user_id=501, text="Where is my parcel?",
                                    username="kate")
            tg_card = await card_of(telegram, h, 1)
            vk.inject_message(from_id=77, text="Где посылка?")
            vk_card = await card_of(telegram, h, 2)
            mention = x.inject_mention("55", "oleg", f"@{X_BOT['username']} my parcel?")
            x_card = await card_of(telegram, h, 3)

            photo = photo_of(telegram, JPEG)
            for card in (tg_card, vk_card, x_card):
                staff_sends(telegram, card, photo=photo, caption="Here is the label")

            await eventually(lambda: any("photo" in m for m in telegram.sent_to(501)),
                             what="the photo in the Telegram customer's chat")
            await eventually(lambda: any(m.get("files") for m in vk.sent),
                             what="the photo on VK")
            await eventually(lambda: any(m.get("media") for m in x.sent),
                             what="the photo on X")
            await eventually(counted(h, Outbox, 3, Outbox.kind == OutboxKind.REPLY,
                                     Outbox.state == OutboxState.SENT),
                             what="three answers delivered")
            assert await kept_files(h) == 0  # the bytes are not kept once delivered
            # One change in the staff group per answer: the card, edited when delivered.
            await eventually(lambda: sum("delivered" in e.get("text", "")
                                         for e in telegram.edits) == 3,
                             what="each card edited once")
            tickets = await h.rows(sa.select(Ticket).order_by(Ticket.id))
            answers = await h.rows(sa.select(Message).where(
                Message.direction == Direction.OUT).order_by(Message.id))

    [on_telegram] = [m for m in telegram.sent_to(501) if "photo" in m]
    file_id = on_telegram["photo"][-1]["file_id"]
    assert file_id == photo[0]["file_id"]  # by the staff message's file id: no upload
    assert telegram.files_by_id[file_id][2] == JPEG
    assert on_telegram["caption"] == "Here is the label"
    assert not telegram.uploads

    [on_vk] = [m for m in vk.sent if m.get("files")]
    assert on_vk["peer_id"] == 77 and on_vk["message"] == "Here is the label"
    assert [(f["kind"], f["content"]) for f in on_vk["files"]] == [("photo", JPEG)]
    assert on_vk["attachment"].startswith("photo-1_")

    [on_x] = [m for m in x.sent if m.get("media")]
    assert on_x["in_reply_to_tweet_id"] == mention["id"]
    assert on_x["text"] == "Here is the label"
    assert [(m["type"], m["content"]) for m in on_x["media"]] == [("photo", JPEG)]

    assert all(t.status == TicketStatus.ANSWERED for t in tickets)
    assert [(a.text, a.attachments[0]["kind"]) for a in answers] == [
        ("Here is the label", "photo")] * 3


async def test_a_document_and_a_voice_message_reach_a_vk_customer(telegram, store):
    async with VKEmulator() as vk:
        settings = settings_for(telegram, vk=vk)
        async with running_all(adapters_for(settings, vk), store, settings) as h:
            vk.inject_message(from_id=78, text="Пришлите счёт")
            card = await card_of(telegram, h, 1)
            document = telegram.add_file(PDF, "documents/file_9.pdf")
            staff_sends(telegram, card, document={**document, "file_name": "invoice.pdf",
                                                  "mime_type": "application/pdf"},
                        caption="Ваш счёт")
            voice = telegram.add_file(OGG, "voice/file_10.oga")
            staff_sends(telegram, card, user_id=BORIS,
                        voice={**voice, "duration": 3, "mime_type": "audio/ogg"})
            await eventually(lambda: len([m for m in vk.sent if m.get("files")]) == 2,
                             what="both files on VK")
            await eventually(counted(h, StaffFile, 0), what="the files released")
    [doc] = [m for m in vk.sent if m.get("files") and m["files"][0]["kind"] == "doc"]
    [audio] = [m for m in vk.sent if m.get("files") and m["files"][0]["kind"] != "doc"]
    assert doc["message"] == "Ваш счёт" and doc["attachment"].startswith("doc-1_")
    assert [(f["kind"], f["name"], f["content"]) for f in doc["files"]] == [
        ("doc", "invoice.pdf", PDF)]
    assert audio["message"] == ""  # a voice message without a caption
    assert [(f["kind"], f["content"]) for f in audio["files"]] == [("audio_message", OGG)]
    assert {u["kind"] for u in vk.uploaded.values()} == {"doc", "audio_message"}


async def test_x_refuses_a_document_with_a_clear_staff_reply(telegram, store):
    async with XEmulator() as x:
        settings = settings_for(telegram, x=x)
        async with running_all(adapters_for(settings, x=x), store, settings) as h:
            x.inject_mention("56", "nina", f"@{X_BOT['username']} send me the invoice")
            card = await card_of(telegram, h, 1)
            document = telegram.add_file(PDF, "documents/file_1.pdf")
            staff_sends(telegram, card, document={**document, "file_name": "invoice.pdf",
                                                  "mime_type": "application/pdf"},
                        caption="Here it is")
            await eventually(lambda: any("X takes" in t for t in staff_replies(telegram)),
                             what="the refusal in the staff group")
            [refusal] = [t for t in staff_replies(telegram) if "X takes" in t]
            assert "photos (JPG, PNG, GIF or WebP, up to 5 MB)" in refusal
            assert "videos (MP4, up to 512 MB)" in refusal
            assert "not documents or voice messages" in refusal
            assert await h.count(Outbox, Outbox.kind == OutboxKind.REPLY) == 0
            assert await kept_files(h) == 0
            assert (await h.rows(sa.select(Ticket)))[0].status == TicketStatus.OPEN
    assert not [m for m in x.sent if m.get("media")] and not x.uploads


async def test_a_video_goes_to_x_through_a_chunked_upload_and_its_processing(telegram, store):
    async with XEmulator() as x:
        settings = settings_for(telegram, x=x)
        async with running_all(adapters_for(settings, x=x), store, settings) as h:
            x.inject_mention("57", "ivan", f"@{X_BOT['username']} how to assemble?")
            card = await card_of(telegram, h, 1)
            video = telegram.add_file(MP4, "videos/file_1.mp4")
            staff_sends(telegram, card, video={**video, "width": 640, "height": 360,
                                               "duration": 7, "mime_type": "video/mp4"})
            await eventually(lambda: any(m.get("media") for m in x.sent), what="the video")
    [post] = [m for m in x.sent if m.get("media")]
    assert [(m["type"], m["content"]) for m in post["media"]] == [("video", MP4)]
    [upload] = x.uploads.values()
    assert upload["state"] == "succeeded" and upload["media_type"] == "video/mp4"


async def test_an_upload_fault_is_retried_through_the_outbox(telegram, store):
    async with VKEmulator() as vk, XEmulator() as x:
        vk.faults.add("upload", "500")  # VK's upload server fails once
        x.faults.add("media", "503")  # and so does X's media upload
        settings = settings_for(telegram, vk=vk, x=x)
        async with running_all(adapters_for(settings, vk, x), store, settings) as h:
            vk.inject_message(from_id=79, text="фото?")
            vk_card = await card_of(telegram, h, 1)
            x.inject_mention("58", "lena", f"@{X_BOT['username']} photo?")
            x_card = await card_of(telegram, h, 2)
            photo = photo_of(telegram, JPEG)
            staff_sends(telegram, vk_card, photo=photo, caption="вот")
            staff_sends(telegram, x_card, photo=photo, caption="here")
            await eventually(counted(h, Outbox, 2, Outbox.kind == OutboxKind.REPLY,
                                     Outbox.state == OutboxState.SENT),
                             timeout=20, what="both answers delivered after a retry")
            rows = await h.rows(sa.select(Outbox).where(Outbox.kind == OutboxKind.REPLY))
            assert [row.attempts for row in rows] == [2, 2]
            assert await kept_files(h) == 0
    assert [m["message"] for m in vk.sent if m.get("files")] == ["вот"]  # once
    assert [m["text"] for m in x.sent if m.get("media")] == ["here"]


async def test_a_file_the_platform_refuses_is_a_dead_letter_with_a_staff_notice(telegram,
                                                                                store):
    async with VKEmulator() as vk:
        settings = settings_for(telegram, vk=vk)
        async with running_all(adapters_for(settings, vk), store, settings) as h:
            vk.inject_message(from_id=80, text="фото?")
            card = await card_of(telegram, h, 1)
            # Telegram calls it a photo; its bytes are no image, so VK's server refuses.
            staff_sends(telegram, card, photo=photo_of(telegram, b"not an image" * 50),
                        caption="вот фото")
            await eventually(lambda: any("could not be delivered" in t
                                         for t in staff_replies(telegram)),
                             what="the dead letter's notice")
            [row] = await h.rows(sa.select(Outbox).where(Outbox.kind == OutboxKind.REPLY))
            assert row.state == OutboxState.DEAD and row.attempts == 1  # not retried
            assert await kept_files(h) == 0
            [dead] = await h.rows(sa.select(Event).where(Event.kind == "dead_letter"))
    [notice] = [t for t in staff_replies(telegram) if "could not be delivered" in t]
    assert "the answer on VK" in notice and "did not take the photo" in notice
    assert "вот фото" in notice
    assert dead.data["outbox_id"] == row.id
    assert not [m for m in vk.sent if m.get("files")]


async def test_files_that_cannot_answer_get_a_clear_reply_in_the_staff_group(telegram,
                                                                             store):
    settings = settings_for(telegram)
    async with running_all(adapters_for(settings), store, settings) as h:
        telegram.inject_message(chat_id=502, user_id=502, text="hi")
        card = await card_of(telegram, h, 1)
        # A sticker is no answer.
        staff_sends(telegram, card, sticker={"file_id": "CAAD", "file_unique_id": "st",
                                             "width": 512, "height": 512,
                                             "is_animated": False, "is_video": False,
                                             "type": "regular"})
        # A file in reply to the bot's own non-card message.
        telegram.inject_message(chat_id=STAFF, user_id=ANNA, chat_type="supergroup",
                                text="/whoami")
        await eventually(lambda: any("You are anna" in t for t in staff_replies(telegram)),
                         what="the /whoami answer")
        answer = next(m for m in telegram.sent_to(STAFF) if "You are anna" in m["text"])
        staff_sends(telegram, answer, photo=photo_of(telegram, JPEG))
        # --file typed in the group is never read from the server's disk.
        telegram.inject_message(chat_id=STAFF, user_id=ANNA, chat_type="supergroup",
                                text="/reply 1 --file /etc/passwd look")
        await eventually(lambda: len(staff_replies(telegram)) >= 4, what="three replies")
        assert await h.count(Outbox, Outbox.kind == OutboxKind.REPLY) == 0
    replies = staff_replies(telegram)
    assert any("a photo, a document, a voice message or a video" in t for t in replies)
    assert any("which ticket this file answers" in t for t in replies)
    assert any("--file PATH works in sameday console only" in t for t in replies)
    assert not [m for m in telegram.sent_to(502) if "text" in m and "look" in m["text"]]


# --- from the console ------------------------------------------------------------------------


async def lines(items):
    for item in items:
        yield item


def captured() -> Console:
    return Console(file=io.StringIO(), width=120, soft_wrap=True)


async def test_the_console_sends_a_file_with_reply_file(telegram, store, tmp_path):
    picture = tmp_path / "label.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    settings = settings_for(telegram)
    async with running_all(adapters_for(settings), store, settings) as h:
        telegram.inject_message(chat_id=503, user_id=503, text="label?", username="max")
        await card_of(telegram, h, 1)
        console = captured()
        await run_console(h.desk, h.desk.actor_named("boris"), lines([
            f"/reply 1 --file {picture} Your label, printed"]), console, staff_sink=False)
        await eventually(lambda: any("photo" in m for m in telegram.sent_to(503)),
                         what="the photo in the customer's chat")
        await eventually(counted(h, StaffFile, 0), what="the file released")
    assert "Queued to @max (Customer) on Telegram (#1)" in console.file.getvalue()
    [sent] = [m for m in telegram.sent_to(503) if "photo" in m]
    assert sent["caption"] == "Your label, printed"
    [upload] = telegram.uploads
    assert (upload["kind"], upload["name"], upload["content"]) == (
        "photo", "label.png", picture.read_bytes())


async def test_console_file_to_vk_with_a_quoted_path(telegram, store, tmp_path):
    folder = tmp_path / "my files"
    folder.mkdir()
    document = folder / "счёт 4411.pdf"
    document.write_bytes(PDF)
    async with VKEmulator() as vk:
        settings = settings_for(telegram, vk=vk)
        async with running_all(adapters_for(settings, vk), store, settings) as h:
            vk.inject_message(from_id=81, text="счёт?")
            await card_of(telegram, h, 1)
            await run_console(h.desk, h.desk.actor_named("anna"), lines([
                f'reply #1 --file "{document}"']), captured(), staff_sink=False)
            await eventually(lambda: any(m.get("files") for m in vk.sent), what="the file")
    [sent] = [m for m in vk.sent if m.get("files")]
    assert [(f["kind"], f["name"], f["content"]) for f in sent["files"]] == [
        ("doc", "счёт 4411.pdf", PDF)]


async def test_console_file_bad_arguments(telegram, store, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.touch()
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as handle:  # sparse: no disk used
        handle.truncate(MAX_FILE + 1)
    document = tmp_path / "notes.pdf"
    document.write_bytes(PDF)
    async with XEmulator() as x:
        settings = settings_for(telegram, x=x)
        async with running_all(adapters_for(settings, x=x), store, settings) as h:
            x.inject_mention("59", "rita", f"@{X_BOT['username']} hi")
            await card_of(telegram, h, 1)
            console = captured()
            await run_console(h.desk, h.desk.actor_named("anna"), lines([
                "/reply 1 --file",
                f"/reply 1 --file {tmp_path / 'missing.png'} hi",
                f"/reply 1 --file {tmp_path} hi",
                f"/reply 1 --file {empty}",
                f"/reply 1 --file {huge}",
                f"/reply 1 --file {document} the notes",  # X takes no documents
                f"/reply 9 --file {document}",
                f"/note 1 --file {document}",  # only /reply reads the option: a note
            ]), console, staff_sink=False)
            assert await h.count(Outbox, Outbox.kind == OutboxKind.REPLY) == 0
            assert await kept_files(h) == 0
            [note] = await h.rows(sa.select(Message).where(Message.direction == Direction.NOTE))
    text = console.file.getvalue()
    assert "Usage: /reply N --file PATH [text]" in text
    assert f"No file {tmp_path / 'missing.png'}." in text
    assert "is a directory; --file takes one file." in text
    assert "empty.txt is empty." in text
    assert "huge.bin is 20 MB; sameday sends files up to 20 MB." in text
    assert "X takes photos (JPG, PNG, GIF or WebP, up to 5 MB) and videos" in text
    assert "There is no ticket #9." in text
    assert note.text == f"--file {document}"
    assert not [m for m in x.sent if m.get("media")] and not x.uploads


def test_the_huge_file_check_reads_no_bytes(tmp_path):
    """A file over the limit is refused from its size alone."""
    from core.staff.file_answers import _read, _Unusable

    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_FILE * 50)
    with pytest.raises(_Unusable, match="sameday sends files up to"):
        _read(huge)
    assert os.path.getsize(huge) == MAX_FILE * 50
