"""Telegram Business, albums and the emulator's faithfulness, through python-telegram-bot
against the Telegram emulator: customers writing to the company's own account are
answered through the business connection; an album is one message; the emulator sends
only the update types asked for and counts entity offsets in UTF-16 as Telegram does."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from bots.telegram.adapter import ALLOWED_UPDATES, TelegramAdapter
from bots.telegram.emulator import BOT_USER, TelegramEmulator
from bots.vk.adapter import VKAdapter
from bots.vk.emulator import VKEmulator
from core.store.tables import Message, Ticket
from tests.adapter_harness import eventually, running_all
from tests.test_staff_telegram import STAFF, settings_for, tokens  # noqa: F401

OWNER, CUSTOMER = 5000, 6001
JPEG = b"\xff\xd8\xff\xe0" + bytes(300)


@pytest.fixture
async def telegram():
    async with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    return f"sqlite+aiosqlite:///{tmp_path / 'business.db'}"


def photo(name: str) -> list[dict]:
    return [{"file_id": f"{name}-small", "file_unique_id": f"{name}s", "width": 90,
             "height": 90},
            {"file_id": f"{name}-large", "file_unique_id": f"{name}l", "width": 1280,
             "height": 960, "file_size": 90000}]


async def test_a_business_customer_is_acknowledged_and_answered_as_the_account(
        telegram, store):
    settings = settings_for(telegram)
    adapter = TelegramAdapter(settings)
    async with running_all([adapter], store, settings) as h:
        connection = telegram.connect_business(owner_id=OWNER, first_name="Shop")
        asked = telegram.inject_message(chat_id=CUSTOMER, user_id=CUSTOMER,
                                        first_name="Kate", text="Is my order shipped?",
                                        business_connection_id=connection)
        await eventually(lambda: telegram.sent_to(CUSTOMER), what="the acknowledgement")
        [ack] = telegram.sent_to(CUSTOMER)
        # Sent as the company's account, by the bot, in the business chat, quoting her.
        assert ack["business_connection_id"] == connection
        assert ack["from"]["id"] == OWNER and ack["sender_business_bot"] == BOT_USER
        assert ack["reply_to_message"]["message_id"] == asked["message_id"]
        [ticket] = await h.rows(sa.select(Ticket))
        assert ticket.thread_key == f"business:{CUSTOMER}"
        await eventually(lambda: any("Is my order shipped?" in m.get("text", "")
                                     for m in telegram.sent_to(STAFF)), what="the card")

        # The owner answering from their phone, and our own message, are not customers.
        telegram.inject_message(chat_id=CUSTOMER, user_id=OWNER, first_name="Shop",
                                text="Yes, today", business_connection_id=connection)
        # A staff answer goes back through the connection too.
        telegram.inject_message(chat_id=STAFF, user_id=111, chat_type="supergroup",
                                text=f"/reply {ticket.id} It left the warehouse today")
        await eventually(lambda: len(telegram.sent_to(CUSTOMER)) == 2, what="the answer")
        answer = telegram.sent_to(CUSTOMER)[1]
        assert answer["business_connection_id"] == connection
        assert answer["text"].endswith("It left the warehouse today")
        assert [m.text for m in await h.rows(sa.select(Message).where(
            Message.direction == "in"))] == ["Is my order shipped?"]
        assert h.inbox.ignored[("telegram", "business_owner")] == 1

        # She corrects herself: the edit reaches the stored message and staff.
        telegram.inject_edit(chat_id=CUSTOMER, message_id=asked["message_id"],
                             text="Is my order #512 shipped?",
                             business_connection_id=connection)
        await eventually(lambda: any("#512" in m.get("text", "")
                                     for m in telegram.sent_to(STAFF)), what="edit notice")
        [stored] = await h.rows(sa.select(Message).where(Message.direction == "in"))
        assert stored.text == "Is my order #512 shipped?"
    assert adapter.health().problem is None


async def test_business_media_reach_staff_by_file_id_not_by_copy(telegram, store):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings):
        connection = telegram.connect_business(owner_id=OWNER)
        telegram.inject_message(chat_id=CUSTOMER, user_id=CUSTOMER, photo=photo("bp"),
                                caption="broken lid", business_connection_id=connection)
        await eventually(lambda: any("photo" in m for m in telegram.sent_to(STAFF)),
                         what="the photo in the staff group")
    [shown] = [m for m in telegram.sent_to(STAFF) if "photo" in m]
    assert shown["photo"][0]["file_id"] == "bp-large" and "copied_from" not in shown


async def test_a_connection_without_the_right_to_reply_is_a_health_problem(telegram, store):
    settings = settings_for(telegram)
    adapter = TelegramAdapter(settings)
    async with running_all([adapter], store, settings):
        connection = telegram.connect_business(owner_id=OWNER, first_name="Shop",
                                               can_reply=False)
        await eventually(lambda: adapter.health().problem, what="the problem")
        assert "Shop" in adapter.health().problem
        assert "allow it to reply" in adapter.health().problem
        telegram.inject_message(chat_id=CUSTOMER, user_id=CUSTOMER, text="hello?",
                                business_connection_id=connection)
        # The acknowledgement fails for good, with Telegram's reason, and is not retried.
        await eventually(lambda: any("acknowledgement" in m.get("text", "").lower()
                                     or "could not" in m.get("text", "").lower()
                                     for m in telegram.sent_to(STAFF)),
                         what="a dead-letter notice to staff")
        assert telegram.sent_to(CUSTOMER) == []
        telegram.connect_business(owner_id=OWNER, first_name="Shop", can_reply=True)
        await eventually(lambda: adapter.health().problem is None, what="fixed")


async def test_an_album_is_one_message_and_one_album_in_the_staff_group(telegram, store):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        items = telegram.inject_album(chat_id=CUSTOMER, user_id=CUSTOMER,
                                      items=[{"photo": photo("a")}, {"photo": photo("b")},
                                             {"video": {"file_id": "v1",
                                                        "file_unique_id": "v1u",
                                                        "width": 640, "height": 480,
                                                        "duration": 4}}],
                                      caption="three angles of the crack")
        await eventually(lambda: len([m for m in telegram.sent_to(STAFF)
                                      if m.get("copied_from")]) == 3, what="the album")
        [stored] = await h.rows(sa.select(Message))
        assert stored.text == "three angles of the crack"
        assert [a["kind"] for a in stored.attachments] == ["photo", "photo", "video"]
        assert len(telegram.sent_to(CUSTOMER)) == 1  # one acknowledgement
    copies = [m for m in telegram.sent_to(STAFF) if m.get("copied_from")]
    assert [c["copied_from"]["message_id"] for c in copies] == [
        i["message_id"] for i in items]
    assert len({c["media_group_id"] for c in copies}) == 1  # still one album


async def test_several_vk_photos_reach_staff_as_one_album(telegram, store):
    async with VKEmulator() as vk:
        urls = [vk.host_file(f"p{i}.jpg", JPEG + bytes([i]), "image/jpeg") for i in range(3)]
        settings = settings_for(telegram, vk=vk)
        async with running_all([TelegramAdapter(settings), VKAdapter(settings)], store,
                               settings):
            vk.inject_message(from_id=77, text="see the photos", attachments=[
                {"type": "photo", "photo": {"id": 10 + i, "owner_id": 77, "sizes": [
                    {"type": "x", "url": url, "width": 604, "height": 453}]}}
                for i, url in enumerate(urls)])
            await eventually(lambda: len([m for m in telegram.sent_to(STAFF)
                                          if "photo" in m]) == 3, timeout=20,
                             what="three photos in the staff group")
    photos = [m for m in telegram.sent_to(STAFF) if "photo" in m]
    assert len({m["media_group_id"] for m in photos}) == 1
    assert [u["content"] for u in telegram.uploads] == [JPEG + bytes([i]) for i in range(3)]


async def test_the_emulator_sends_only_the_update_types_asked_for(telegram, store):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        await eventually(lambda: telegram.offsets, what="the first poll")
        assert telegram.allowed_updates == ALLOWED_UPDATES
        # A reaction (never asked for) is not sent; the message after it is.
        telegram.inject_update({"message_reaction": {
            "chat": {"id": CUSTOMER, "type": "private"}, "message_id": 1,
            "user": {"id": CUSTOMER, "is_bot": False, "first_name": "K"}, "date": 1,
            "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "👍"}]}})
        telegram.inject_message(chat_id=CUSTOMER, user_id=CUSTOMER, text="hi")
        await eventually(lambda: h.count(Message), what="the message")
        await asyncio.sleep(0.3)
    assert h.inbox.ignored[("telegram", "not_a_message")] == 0


async def test_a_mention_after_an_emoji_is_found_by_utf16_offsets(telegram, store):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        message = telegram.inject_message(
            chat_id=-88, user_id=7, chat_type="supergroup",
            text=f"😡😡 @{BOT_USER['username']} the parcel is lost")
        await eventually(lambda: h.count(Message), what="the mention")
    [entity] = message["entities"]
    assert entity["offset"] == 5  # two emoji = four UTF-16 units, then a space


async def test_an_anonymous_admin_and_a_channel_are_customers_named_as_they_sign(
        telegram, store):
    settings = settings_for(telegram)
    group = {"id": -99, "type": "supergroup", "title": "Buyers club"}
    channel = {"id": -1009, "type": "channel", "title": "Deals", "username": "deals"}
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        telegram.inject_message(chat_id=-99, user_id=1, chat_type="supergroup",
                                title="Buyers club", as_chat=group, author_signature="Ann",
                                text=f"@{BOT_USER['username']} refund please")
        telegram.inject_message(chat_id=-99, user_id=1, chat_type="supergroup",
                                as_chat=channel,
                                text=f"@{BOT_USER['username']} wrong size")
        await eventually(lambda: _count_is(h, Message, 2), what="both messages")
        authors = sorted(m.author for m in await h.rows(sa.select(Message)))
    assert authors == ["@deals", "chat-99"]  # a handle where the chat has one


async def _count_is(h, table, n: int) -> bool:
    return await h.count(table) == n


async def test_a_vk_sticker_reaches_staff_as_its_image(telegram, store):
    """VK gives a sticker as images (tests/fixtures/real/vk/attachment_sticker.json);
    Telegram takes only its own sticker formats, so staff get the image as a photo."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    async with VKEmulator() as vk:
        url = vk.host_file("sticker.png", png, "image/png")
        settings = settings_for(telegram, vk=vk)
        async with running_all([TelegramAdapter(settings), VKAdapter(settings)], store,
                               settings):
            vk.inject_message(from_id=78, text="", attachments=[{"type": "sticker", "sticker": {
                "product_id": 1, "sticker_id": 9080,
                "images": [{"url": url, "width": 512, "height": 512}]}}])
            await eventually(lambda: any("photo" in m for m in telegram.sent_to(STAFF)),
                             timeout=20, what="the sticker's image")
    assert [u["content"] for u in telegram.uploads] == [png]
