"""Recorded real Telegram updates (tests/fixtures/real/telegram, sources in SOURCES.md and
in each file) driven through the real adapter and the inbox: what staff end up seeing.

Each case names what must survive: the text the customer wrote (a caption counts, never
a "[photo]" placeholder) and each attachment with the fields staff need."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import TelegramEmulator
from core.domain.payload import unpack
from core.store.tables import Message, Outbox, Quarantine, Ticket
from tests.adapter_harness import eventually, running
from tests.conftest import make_settings
from tests.helpers import check_attachment, rows

FIXTURES = Path(__file__).parent / "fixtures" / "real" / "telegram"

# fixture -> (stored text, [(kind, {field: value}), ...]) for customer messages.
EXPECTED = {
    "photo_without_caption": ("", [("photo", {"file_id": str})]),
    "photo_without_caption_2019": ("", [("photo", {"file_id": str})]),
    "photo_with_caption_url_entity": (str, [("photo", {"file_id": str})]),
    "photo_with_caption_above_media": (str, [("photo", {"file_id": str})]),
    "album_item_photo_media_group": ("", [("photo", {"group": str})]),
    "album_item_video_media_group": ("", [("video", {"group": str, "duration": int})]),
    "voice": ("", [("voice", {"duration": 1, "size": 4321, "mime_type": "audio/ogg"})]),
    "audio_with_caption": (str, [("audio", {"file_id": str})]),
    "video": ("", [("video", {"file_id": str, "duration": int})]),
    "video_note": ("", [("video_note", {"file_id": str, "duration": int})]),
    "document_with_caption": (str, [("document", {"file_name": str})]),
    "sticker_animated": ("", [("sticker", {"title": str})]),
    "contact": ("", [("contact", {"phone": str})]),
    "text_private_short": (str, []),
    "text_emoji_no_entities": (str, []),
    "text_private_link_preview": (str, []),
    "forwarded_from_channel_with_entities": (str, [("forward", {"forwarded_from": str})]),
}
# Sent by a bot in the recording (the library's authors masked the sender as one): not a
# customer's message, but what it carries is read all the same.
FROM_A_BOT = {
    "audio": [("audio", {"file_id": str, "duration": 1, "size": 20096})],
    "location": [("location", {"latitude": 26.090577, "longitude": 127.479471})],
}


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    return f"sqlite+aiosqlite:///{tmp_path / 'real.db'}"  # the payloads, not the database


@pytest.fixture
async def adapter(monkeypatch):
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "1:test")
    async with TelegramEmulator() as emulator:
        settings = make_settings(channels={"telegram": {
            "enabled": True, "base_url": f"{emulator.url}/bot", "poll_timeout": "1s"}},
            staff={"chat": "console"})
        adapter = TelegramAdapter(settings)
        await adapter.bot.initialize()  # the bot's own name, for group messages
        yield adapter
        await adapter.bot.shutdown()


def assert_attachments(attachments, expected) -> None:
    assert [a.kind for a in attachments] == [kind for kind, _ in expected]
    for attachment, (kind, fields) in zip(attachments, expected, strict=True):
        check_attachment(attachment, kind, fields)


@pytest.mark.parametrize("name", sorted(FROM_A_BOT))
async def test_a_bots_message_is_not_a_customers_but_its_media_are_read(name, adapter):
    from telegram import Update

    from bots.telegram.media import attachments_of, backfilled

    payload = load(name)["payload"]
    assert adapter.read_payload(payload) is None
    update = Update.de_json(backfilled(payload), adapter.bot)
    assert_attachments(attachments_of(update.message), FROM_A_BOT[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_a_real_update_reaches_staff_with_what_it_carries(name, adapter, inbox, store):
    fixture = load(name)
    inbound = adapter.read_payload(fixture["payload"])
    assert inbound is not None, "a customer's message"
    want_text, want_attachments = EXPECTED[name]
    if want_text is str:
        assert inbound.text and not inbound.text.startswith("[")
    else:
        assert inbound.text == want_text
    assert_attachments(inbound.attachments, want_attachments)

    await inbox.ingest([inbound])
    [message] = await rows(store, sa.select(Message))
    assert message.text == inbound.text
    assert [a["kind"] for a in message.attachments or []] == [k for k, _ in want_attachments]
    assert unpack(message.raw) == inbound.raw  # the payload as received, kept
    [card] = await rows(store, sa.select(Outbox).where(Outbox.kind == "staff_card"))
    for attachment in inbound.attachments:  # staff see each one, not a placeholder
        assert attachment.kind in card.text
    assert "[photo]" not in card.text and "[message]" not in card.text


async def test_a_message_sent_as_a_chat_is_a_customers_and_a_command_at_the_bot_counts(
        adapter, monkeypatch):
    """Recorded: an anonymous admin's message (sender_chat, from GroupAnonymousBot) and
    `/echo@bot` in a group (kutana's recording; the bot is named after ours here)."""
    anonymous = load("anonymous_admin_sender_chat_forward_origin")["payload"]
    monkeypatch.setattr(type(adapter), "_addressed_to_bot", lambda self, message: True)
    inbound = adapter.read_payload(anonymous)
    assert inbound is not None and inbound.author_id == "chat-1001160242915"
    assert inbound.author_name == "TITLE2"  # as the admin signs
    monkeypatch.undo()
    command = load("command_at_bot_in_group")["payload"]
    ours = f"/echo@{adapter.bot.username}"
    command["message"]["text"] = command["message"]["text"].replace("/echo@bot", ours)
    command["message"]["entities"][0]["length"] = len(ours)
    assert adapter.read_payload(command).text.startswith(ours)
    command["message"]["text"] = "/echo@another_bot chat"
    command["message"]["entities"][0]["length"] = len("/echo@another_bot")
    assert adapter.read_payload(command) is None  # for another bot


@pytest.mark.parametrize("name", ["docs_forwarded_from_user", "docs_reply"])
def test_a_recorded_start_is_a_chats_opening(name, adapter):
    """Telegram's documentation examples send "/start": greeted, not a ticket (the
    forward is still read: the old forward_from becomes forward_origin)."""
    inbound = adapter.read_payload(load(name)["payload"])
    assert inbound.greeting and inbound.text == "/start"
    if name == "docs_forwarded_from_user":
        assert_attachments(inbound.attachments, [("forward", {
            "forwarded_from": "Forward Firstname Forward Lastname"})])


async def test_recorded_updates_python_telegram_bot_cannot_read_are_quarantined(
        store, monkeypatch):
    """Two recordings python-telegram-bot 22 refuses (a document whose thumbnail is an
    empty object; Telegram's own webhook example whose sender carries a "type" and no
    is_bot), and one inline button press with no message to act on: delivered by
    getUpdates, the first two are quarantined whole, the press opens nothing, and the
    customer's message after them arrives."""
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "1:test")
    async with TelegramEmulator() as emulator:
        settings = make_settings(channels={"telegram": {
            "enabled": True, "base_url": f"{emulator.url}/bot", "poll_timeout": "1s"}},
            staff={"chat": "console"})
        for name in ("document", "docs_callback_query_inline",
                     "callback_query_inline_ptb_issue"):
            update = dict(load(name)["payload"])
            update.pop("update_id")  # the emulator numbers them
            emulator.inject_update(update)
        emulator.inject_message(chat_id=8, user_id=8, text="after them")
        async with running(TelegramAdapter(settings), store, settings) as h:
            await eventually(lambda: h.count(Ticket), what="the message after them")
            await eventually(lambda: _count_is(h, Quarantine, 2), what="two quarantined")
            held = [json.loads(row.payload) for row in await h.rows(sa.select(Quarantine))]
    assert sorted(next(k for k in u if k != "update_id") for u in held) == [
        "callback_query", "message"]
    [message] = await rows(store, sa.select(Message))
    assert message.text == "after them"


async def _count_is(h, table, n: int) -> bool:
    return await h.count(table) == n
