"""Recorded real VK payloads (tests/fixtures/real/vk, sources in SOURCES.md and in each
file) driven through the real adapter and the inbox: what staff end up seeing. Fragments
(one attachment, one message object, as the source recorded them) are read by the same
code the adapter uses for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from bots.vk.adapter import VKAdapter
from bots.vk.media import attachments_of, read_attachment
from core.domain.payload import unpack
from core.store.tables import Message, Outbox
from tests.conftest import make_settings
from tests.helpers import check_attachment, rows

FIXTURES = Path(__file__).parent / "fixtures" / "real" / "vk"

EVENTS = {  # fixture -> (text, [(kind, {field: value})])
    "message_new_v5103_private": ("f", []),
    "message_new_private_command": ("/echo 123", []),
    "message_new_private_with_photo": (".echo with attachment", [
        ("photo", {"file_id": "photo87641997_457269465_bee4be8c0e7cb9ab17", "url": str})]),
    "wall_reply_new": ("test", []),
    # Comments elsewhere are tickets too, answered where they were written.
    "photo_comment_new": ("test", []),
    "video_comment_new": ("test", []),
    "market_comment_new": ("test", []),
    "board_post_new": ("test", []),
    # A community on Long Poll API < 5.103: the message is the object itself.
    "message_new_old_format_pre5103": ("test", []),
}
ANSWERED_BY = {  # comment fixtures -> (reply target type, the object's owner and id)
    "wall_reply_new": ("wall", -1234, 6), "photo_comment_new": ("photo", -1234, 123456),
    "video_comment_new": ("video", -1234, 4444),
    "market_comment_new": ("market", -1234, 1686058),
    "board_post_new": ("board", -1234, 38446232),
}
ATTACHMENTS = {  # fragment -> (kind, {field: value})
    "attachment_audio_message": ("voice", {
        "url": "https://psv4.userapi.com/c852620//u87641997/audiomsg/d2/129597b43b.ogg",
        "duration": 1, "mime_type": "audio/ogg",
        "file_id": "audio_message87641997_520525176_28a0db92d49e8cfa7c"}),
    "attachment_doc_gif": ("document", {"file_name": "andreywtf.gif", "size": 1349883,
                                        "url": str}),
    "attachment_video": ("video", {"title": "doge froge", "duration": 23, "url": str}),
    "attachment_sticker": ("sticker", {"url": "https://vk.com/sticker/1-9080-512",
                                       "file_id": "9080"}),
    "attachment_graffiti": ("photo", {"title": "graffiti", "url": str}),
}
MESSAGES = {  # message object fragment -> [(kind, {field: value})]
    "message_object_group_chat_audio_message": [("voice", {"duration": 2,
                                                           "caption": str})],
    "message_object_group_chat_wall_repost": [("post", {
        "url": "https://vk.com/wall-45745333_24760037",
        "forwarded_from": "vk.com/club45745333"})],
}


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    return f"sqlite+aiosqlite:///{tmp_path / 'real.db'}"


@pytest.fixture
def adapter(monkeypatch):
    monkeypatch.setenv("SAMEDAY_VK_TOKEN", "vk-test")
    return VKAdapter(make_settings(channels={"vk": {"enabled": True, "group_id": 1}},
                                   staff={"chat": "console"}))


@pytest.mark.parametrize("name", sorted(EVENTS))
async def test_a_real_event_reaches_staff_with_what_it_carries(name, adapter, inbox, store):
    payload = load(name)["payload"]
    inbound = adapter.read_payload(payload)
    text, expected = EVENTS[name]
    assert inbound is not None and inbound.text == text
    assert len(inbound.attachments) == len(expected)
    for attachment, (kind, fields) in zip(inbound.attachments, expected, strict=True):
        check_attachment(attachment, kind, fields)
    await inbox.ingest([inbound])
    [message] = await rows(store, sa.select(Message))
    assert unpack(message.raw) == payload
    [card] = await rows(store, sa.select(Outbox).where(Outbox.kind == "staff_card"))
    for attachment in inbound.attachments:
        assert attachment.url in card.text  # a link staff can open
    assert "[photo]" not in card.text
    if name in ANSWERED_BY:  # the answer goes under the same object
        kind, owner, object_id = ANSWERED_BY[name]
        [ack] = await rows(store, sa.select(Outbox).where(Outbox.kind == "ack"))
        assert (ack.target["type"], ack.target["owner_id"], ack.target["post_id"]) == (
            kind, owner, object_id)


def in_a_message(message: dict) -> dict:
    """A recorded fragment inside the message_new event that carries it (API 5.103+
    shape, as tests/fixtures/real/vk/message_new_v5103_private.json): the fragment is
    the source's, the envelope ours. A group-chat message object keeps its peer."""
    return {"type": "message_new", "group_id": 1, "event_id": "e1", "v": "5.199",
            "object": {"message": {"id": 0, "conversation_message_id": 1, "out": 0,
                                   "date": 1700000000, "peer_id": 700001,
                                   "from_id": 700001, "text": "", **message},
                       "client_info": {}}}


async def ingest_and_card(adapter, inbox, store, event: dict) -> str:
    """The event through the adapter and the inbox; the staff card's text."""
    await inbox.ingest([adapter.read_payload(event)])
    [card] = await rows(store, sa.select(Outbox).where(Outbox.kind == "staff_card"))
    return card.text


@pytest.mark.parametrize("name", sorted(ATTACHMENTS))
async def test_a_real_attachment_keeps_its_link_name_and_length(name, adapter, inbox, store):
    kind, fields = ATTACHMENTS[name]
    fragment = load(name)["payload"]
    check_attachment(read_attachment(fragment), kind, fields)
    card = await ingest_and_card(adapter, inbox, store,
                                 in_a_message({"attachments": [fragment]}))
    assert read_attachment(fragment).url in card  # staff get the link


@pytest.mark.parametrize("name", sorted(MESSAGES))
async def test_a_real_message_object_keeps_its_attachments(name, adapter, inbox, store):
    message = load(name)["payload"]
    found = attachments_of(message)
    assert len(found) == len(MESSAGES[name])
    for attachment, (kind, fields) in zip(found, MESSAGES[name], strict=True):
        check_attachment(attachment, kind, fields)
    # In its group chat it mentions nobody: staff see it only when it addresses the
    # community, so the object is read here as a private message of its author.
    card = await ingest_and_card(adapter, inbox, store, in_a_message(
        {**message, "peer_id": message["from_id"], "id": 0}))
    assert all(a.url in card for a in found if a.url)


def test_group_chat_messages_count_only_when_they_mention_or_answer_the_community(
        monkeypatch):
    """Recorded: a group-chat message mentioning the community ("[club654327632|...]")
    and one that does not; both with id 0, as VK sends them to community bots."""
    monkeypatch.setenv("SAMEDAY_VK_TOKEN", "vk-test")

    def community(group_id: int) -> VKAdapter:
        return VKAdapter(make_settings(channels={"vk": {"enabled": True,
                                                        "group_id": group_id}},
                                       staff={"chat": "console"}))
    mention = load("message_new_group_chat_id0_mention")["payload"]
    inbound = community(654327632).read_payload(mention)
    assert inbound is not None and inbound.external_id == "c2000000001_2165"
    assert community(654327632).read_payload(load("message_new_group_chat_text")["payload"]) \
        is None  # chat talk, not for the community
    assert community(190405359).read_payload(mention) is None  # mentions another community


async def test_vk_customers_are_named_on_the_card_and_in_the_acknowledgement(store,
                                                                            monkeypatch):
    from bots.telegram.adapter import TelegramAdapter
    from bots.telegram.emulator import TelegramEmulator
    from bots.vk.emulator import VKEmulator
    from tests.adapter_harness import eventually, running_all
    from tests.test_staff_telegram import STAFF, settings_for

    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "100:names")
    monkeypatch.setenv("SAMEDAY_VK_TOKEN", "vk-names")
    async with TelegramEmulator() as telegram, VKEmulator() as vk:
        settings = settings_for(telegram, vk=vk)
        async with running_all([TelegramAdapter(settings), VKAdapter(settings)], store,
                               settings):
            vk.inject_message(from_id=700001, text="Где заказ?", name=("Ольга", "Петрова"))
            vk.inject_message(from_id=700002, text="И мой?", name=("Иван", "Сидоров"))
            await eventually(lambda: len(telegram.sent_to(STAFF)) >= 2, timeout=20,
                             what="two cards")
            await eventually(lambda: len(vk.sent) >= 2, what="two acknowledgements")
        cards = [m["text"] for m in telegram.sent_to(STAFF)]
    assert any("Ольга Петрова" in card for card in cards)
    assert any("Иван Сидоров" in card for card in cards)
    acks = [m["message"] for m in vk.sent]
    assert any(ack.startswith("Ольга Петрова") for ack in acks), acks
    assert not any(ack.startswith("id7000") for ack in acks)  # never a raw id as a name
    assert vk.name_requests <= 2  # one lookup per batch, not per message


async def test_what_is_left_out_is_counted_on_metrics(adapter, store, inbox):
    """Event kinds that are not customers' messages (a button press, our own outgoing
    message) and chat talk are counted by kind, not only logged."""
    from prometheus_client import CollectorRegistry, generate_latest

    from core.app.health import DatabaseCollector
    from core.clock import SystemClock
    from core.delivery.contract import AdapterContext

    adapter.context = AdapterContext(settings=adapter.settings, clock=SystemClock(),
                                     ingest=inbox.ingest, load_cursor=inbox.load_cursor,
                                     ignore=inbox.ignore)
    for name in ("message_event_callback_button", "message_reply_outgoing",
                 "message_new_group_chat_text"):
        assert adapter.read_payload(load(name)["payload"]) is None
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(store, SystemClock(), lambda: adapter.settings, dict,
                                        inbox.ignored))
    text = generate_latest(registry).decode()
    assert 'sameday_ignored_total{channel="vk",kind="event:message_event"} 1.0' in text
    assert 'sameday_ignored_total{channel="vk",kind="event:message_reply"} 1.0' in text
    assert 'sameday_ignored_total{channel="vk",kind="group_chatter"} 1.0' in text
