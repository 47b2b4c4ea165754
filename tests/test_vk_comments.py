"""VK comments under photos, videos, market items and board topics are tickets answered
in the same place, and a community on an old Long Poll API version loses nothing: vk_api
against the VK emulator, whose events are shaped as the recorded real ones in
tests/fixtures/real/vk/."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bots.vk.adapter import VKAdapter
from bots.vk.emulator import VKEmulator
from core.store.tables import Message, Ticket
from tests.adapter_harness import eventually, running, running_all
from tests.test_staff_telegram import STAFF, settings_for, tokens  # noqa: F401
from tests.test_vk import GROUP, TOKEN, vk_settings

COMMENTS = [  # event, the method that answers, the answer replies to the comment
    ("photo_comment_new", "photos.createComment", True),
    ("video_comment_new", "video.createComment", True),
    ("market_comment_new", "market.createComment", True),
    ("board_post_new", "board.createComment", False),
]


@pytest.fixture
async def emulator():
    async with VKEmulator(group_id=GROUP, token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
def settings(emulator, monkeypatch):
    monkeypatch.setenv("SAMEDAY_VK_TOKEN", TOKEN)
    return vk_settings(emulator)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("event_type", "method", "replies"), COMMENTS)
async def test_a_comment_is_a_ticket_answered_in_the_same_place(
        emulator, store, settings, event_type, method, replies):
    kind = event_type.split("_")[0]
    async with running(VKAdapter(settings), store, settings) as h:
        event = emulator.inject_comment(event_type, from_id=777, object_id=4444,
                                        text="Где купить такой же?")
        comment_id = event["object"]["id"]
        await eventually(lambda: emulator.comments_on(-GROUP, 4444, method),
                         what=f"the acknowledgement by {method}")
        [ticket] = await h.rows(sa.select(Ticket))
        assert ticket.thread_key == f"{kind}:-{GROUP}_4444:777"
        [ack] = emulator.comments_on(-GROUP, 4444, method)
        assert ack["reply_to_comment"] == (comment_id if replies else None)
        assert ack["from_group"] == "1" and ack["guid"] == f"ack:{ticket.id}"
        [stored] = await h.rows(sa.select(Message))
        assert stored.external_id == f"{kind}:-{GROUP}_4444_{comment_id}"
        assert stored.text == "Где купить такой же?"
        # Our own comment there (the acknowledgement coming back) is not a customer.
        emulator.inject_comment(event_type, from_id=-GROUP, object_id=4444, text="ok")
        await eventually(lambda: h.inbox.ignored[("vk", "own_comment")] == 1,
                         what="our own comment counted")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_staff_answer_a_market_comment_under_the_item(emulator, store, monkeypatch):
    from bots.telegram.adapter import TelegramAdapter
    from bots.telegram.emulator import TelegramEmulator

    monkeypatch.setenv("SAMEDAY_VK_TOKEN", TOKEN)
    async with TelegramEmulator() as telegram:
        settings = settings_for(telegram, vk=emulator)
        async with running_all([TelegramAdapter(settings), VKAdapter(settings)], store,
                               settings) as h:
            emulator.inject_comment("market_comment_new", from_id=778, object_id=99,
                                    text="Есть размер M?")
            await eventually(lambda: emulator.comments_on(-GROUP, 99, "market.createComment"),
                             what="the acknowledgement")
            [ticket] = await h.rows(sa.select(Ticket))
            telegram.inject_message(chat_id=STAFF, user_id=111, chat_type="supergroup",
                                    text=f"/reply {ticket.id} Да, M есть")
            await eventually(lambda: len(emulator.comments_on(
                -GROUP, 99, "market.createComment")) == 2, what="the answer")
    answer = emulator.comments_on(-GROUP, 99, "market.createComment")[1]
    assert answer["message"].endswith("Да, M есть")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_customer_editing_a_comment_updates_it(emulator, store, settings):
    async with running(VKAdapter(settings), store, settings) as h:
        event = emulator.inject_comment("photo_comment_new", from_id=777, object_id=5,
                                        text="трещина на фото")
        await eventually(lambda: h.count(Message), what="the comment")
        emulator.inject_event("photo_comment_edit", dict(event["object"],
                                                         text="трещина на втором фото"))
        await eventually(lambda: _text_is(h, "трещина на втором фото"), what="the edit")
        assert await h.count(Message) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_old_long_poll_version_is_read_and_named(emulator, store, settings):
    """Before 5.103 a message_new's object is the message itself (no client_info, no
    event_id): tests/fixtures/real/vk/message_new_old_format_pre5103.json."""
    emulator.long_poll_version = "5.80"
    adapter = VKAdapter(settings)
    async with running(adapter, store, settings) as h:
        event = emulator.inject_message(from_id=555, text="Привет, где заказ?")
        assert "message" not in event["object"] and "event_id" not in event
        await eventually(lambda: h.count(Ticket), what="the ticket")
        await eventually(lambda: emulator.sent_to(555), what="the acknowledgement")
        assert "5.80" in adapter.health().problem
        assert "Manage community > API usage > Long Poll API" in adapter.health().problem


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_group_chat_messages_have_id_0_and_are_still_distinct(
        emulator, store, settings):
    """A community bot sees id 0 in group chats (tests/fixtures/real/vk/
    message_new_group_chat_id0_mention.json); conversation_message_id tells them apart."""
    async with running(VKAdapter(settings), store, settings) as h:
        for text in ("первый", "второй"):
            event = emulator.inject_message(from_id=900, peer_id=2000000007,
                                            text=f"[club{GROUP}|@shop] {text}")
            assert event["object"]["message"]["id"] == 0
        await eventually(lambda: _count_is(h, Message, 2), what="both messages")
    ids = sorted(m.external_id for m in await h.rows(sa.select(Message)))
    assert ids == ["c2000000007_1", "c2000000007_2"]


async def _text_is(h, text: str) -> bool:
    return [m.text for m in await h.rows(sa.select(Message))] == [text]


async def _count_is(h, table, n: int) -> bool:
    return await h.count(table) == n
