"""The MAX adapter with maxapi (the real client library) against the loopback MAX Bot API
emulator: receiving with the marker, acknowledging, group chats, edits, Start, media,
limits, faults, a crash between fetch and commit, and staff answering a MAX customer from
the Telegram staff group."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from bots.max.adapter import MAX_TEXT, MaxAdapter
from bots.max.emulator import MaxEmulator
from bots.max.settings import MaxTarget
from core.delivery.contract import DeliveryError
from core.domain.records import Outbound, OutboxState
from core.domain.text import split_text
from core.store.tables import Cursor, Message, Outbox, Quarantine, Ticket
from tests.adapter_harness import eventually, running
from tests.conftest import make_settings

TOKEN = "max-test-token"
REAL = Path(__file__).parent / "fixtures" / "real" / "max"


@pytest.fixture
async def emulator():
    async with MaxEmulator(token=TOKEN) as emulator:
        yield emulator


def max_settings(emulator: MaxEmulator, **outbox):
    return make_settings(
        channels={"max": {"enabled": True, "base_url": emulator.url, "poll_timeout": "1s"}},
        staff={"chat": "console"}, outbox={"retry_base": "1s", **outbox})


@pytest.fixture
def settings(emulator, monkeypatch):
    monkeypatch.setenv("SAMEDAY_MAX_TOKEN", TOKEN)
    return max_settings(emulator)


def outbound(text: str, **target) -> Outbound:
    return Outbound(outbox_id=1, channel="max", kind="ack", text=text,
                    idempotency_key="ack:1", target=target or {"user_id": 501})


async def polling(emulator: MaxEmulator) -> None:
    """Until the adapter asks with a marker: MAX gives a call without one only the latest
    update, so a test's messages come after the first poll, as a live bot's do."""
    await eventually(lambda: any(m is not None for m in emulator.markers),
                     what="a poll with a marker")


async def state_of(h, row_id: int) -> str:
    return await h.scalar(sa.select(Outbox.state).where(Outbox.id == row_id))


# --- receiving and acknowledging ---------------------------------------------------------------


async def test_a_dialog_message_becomes_a_ticket_and_the_ack_replies_to_it(
        emulator, store, settings):
    async with running(MaxAdapter(settings), store, settings) as h:
        await polling(emulator)
        message = emulator.inject_message(501, "Где мой заказ?", name=("Анна", "Петрова"))
        await eventually(lambda: len(emulator.sent_to(501)) == 1, what="the acknowledgement")
        [ticket] = await h.rows(sa.select(Ticket))
        assert (ticket.channel, ticket.thread_key) == ("max", "dialog:501")
        [ack] = emulator.sent_to(501)
        assert f"#{ticket.id}" in ack["text"]
        assert ack["link"] == {"type": "reply", "mid": message["body"]["mid"]}
        [stored] = await h.rows(sa.select(Message))
        assert stored.external_id == message["body"]["mid"]
        assert stored.text == "Где мой заказ?" and stored.author == "501"
        [row] = await h.rows(sa.select(Outbox).where(Outbox.channel == "max"))
        await eventually(lambda: _is(h, row.id, OutboxState.SENT), what="the sent row")
        assert await h.scalar(sa.select(Outbox.external_id).where(Outbox.id == row.id)) \
            == ack["mid"]
        # The marker is saved with the message: the next start asks from there.
        marker = await h.scalar(sa.select(Cursor.value).where(Cursor.channel == "max"))
        assert marker is not None and int(marker) == emulator.markers[-1]


async def _is(h, row_id: int, state: str) -> bool:
    return await state_of(h, row_id) == state


async def test_group_chat_messages_count_only_when_they_address_the_bot(
        emulator, store, settings):
    async with running(MaxAdapter(settings), store, settings) as h:
        await polling(emulator)
        emulator.inject_message(601, "всем привет", chat_id=-7080, chat_type="chat")
        emulator.inject_message(602, "где посылка?", chat_id=-7080, chat_type="chat",
                                mention_bot=True)
        await eventually(lambda: len(emulator.sent_to(-7080)) == 1, what="one ack in the chat")
        [ticket] = await h.rows(sa.select(Ticket))
        assert ticket.thread_key == "chat:-7080:602"
        [ack] = emulator.sent_to(-7080)
        assert ack["addressed_by"] == "chat_id"
        # Replying to the bot's message addresses it too.
        emulator.inject_message(603, "и у меня", chat_id=-7080, chat_type="chat",
                                reply_to_mid=ack["mid"])
        await eventually(lambda: len(emulator.sent_to(-7080)) == 2, what="the second ack")
        assert await h.count(Message) == 2


async def test_an_edit_updates_the_stored_message_and_start_only_greets(
        emulator, store, settings):
    async with running(MaxAdapter(settings), store, settings) as h:
        await polling(emulator)
        emulator.inject_bot_started(701, payload="promo")
        message = emulator.inject_message(701, "Заказ 123 не пришёл")
        await eventually(lambda: emulator.sent_to(701), what="the acknowledgement")
        emulator.inject_edit(message["body"]["mid"], "Заказ 124 не пришёл")
        await eventually(lambda: _stored_text(h, "Заказ 124 не пришёл"),
                         what="the edited text")
        assert await h.count(Ticket) == 1  # Start opened none
        assert await h.count(Message) == 1


async def _stored_text(h, text: str) -> bool:
    return await h.scalar(sa.select(Message.text)) == text


async def test_attachments_are_kept_as_the_platform_described_them(emulator, store, settings):
    async with running(MaxAdapter(settings), store, settings) as h:
        await polling(emulator)
        emulator.inject_message(801, "вот фото и договор", attachments=[
            emulator.image_attachment(),
            emulator.file_attachment(b"%PDF-1.4 test", "договор.pdf"),
            emulator.location_attachment(55.75, 37.62),
            emulator.contact_attachment("Иван Петров", "+79990001122"),
            emulator.sticker_attachment()])
        emulator.inject_message(802, attachments=[
            emulator.video_attachment(b"\x00\x00\x00\x18ftypmp42", duration=7),
            emulator.audio_attachment(b"audio", transcription="Коробка пришла мятая"),
            emulator.share_attachment("https://shop.example/item/5", title="Чайник")])
        await eventually(lambda: _count_is(h, Message, 2), what="the stored messages")
        stored, media = await h.rows(sa.select(Message).order_by(Message.id))
        video, voice, link = media.attachments
        assert (video["kind"], video["duration"]) == ("video", 7) and video["url"]
        assert (voice["kind"], voice["caption"]) == ("voice", "Коробка пришла мятая")
        assert (link["kind"], link["url"], link["title"]) == (
            "link", "https://shop.example/item/5", "Чайник")
        kinds = [a["kind"] for a in stored.attachments]
        assert kinds == ["photo", "document", "location", "contact", "sticker"]
        by_kind = {a["kind"]: a for a in stored.attachments}
        assert by_kind["photo"]["url"].startswith(emulator.url)
        assert by_kind["document"]["file_name"] == "договор.pdf"
        assert by_kind["document"]["size"] == len(b"%PDF-1.4 test")
        assert (by_kind["location"]["latitude"], by_kind["location"]["longitude"]) == \
            (55.75, 37.62)
        assert by_kind["contact"]["phone"] == "+79990001122"
        assert by_kind["contact"]["title"] == "Иван Петров"


async def test_a_voice_message_without_its_message_is_quarantined_not_lost(
        emulator, store, settings):
    """MAX sends voice messages to bots as a message_created without "message" today
    (recorded: tests/fixtures/real/max/updates_voice_without_message.json)."""
    async with running(MaxAdapter(settings), store, settings) as h:
        await polling(emulator)
        emulator.inject_voice_without_message(901)
        emulator.inject_message(902, "а это текст")
        await eventually(lambda: emulator.sent_to(902), what="the next message's ack")
        [held] = await h.rows(sa.select(Quarantine))
        assert held.channel == "max" and "message" in held.error
        assert await h.count(Message) == 1  # the channel went on


# --- recorded real payloads ----------------------------------------------------------------------


def recorded(name: str) -> dict:
    return json.loads((REAL / name).read_text())["payload"]


def test_recorded_real_updates_read_as_maxs_documentation_says(settings):
    """Payloads recorded from MAX (sources in tests/fixtures/real/SOURCES.md): the
    adapter reads what real MAX sends, not only what our emulator makes."""
    adapter = MaxAdapter(settings)
    adapter.me = {"user_id": 7_000_000_200, "username": "sameday_bot"}
    dialog = adapter.read_payload(recorded("dialog_text_message_created.json"))
    assert dialog.text == "вапва" and dialog.thread_key == "dialog:10001"
    assert dialog.external_id == "mid.0000000008a53b9b019c44bd612d33e0"
    assert dialog.reply_target == {"user_id": 10001, "chat_id": -100000000,
                                   "reply_to": dialog.external_id}
    [edited] = recorded("updates_dialog_message_edited.json")["updates"]
    assert adapter.read_payload(edited).edited
    [started] = recorded("updates_bot_started.json")["updates"]
    greeting = adapter.read_payload(started)
    assert greeting.greeting and greeting.thread_key == "dialog:123456789"
    [forward] = recorded("updates_group_chat_forward.json")["updates"]
    assert adapter.read_payload(forward) is None  # a group message not addressing the bot
    [voice] = recorded("updates_voice_without_message.json")["updates"]
    with pytest.raises(KeyError):
        adapter.read_payload(voice)


# --- sending -----------------------------------------------------------------------------------


async def test_a_long_answer_is_split_and_only_the_first_part_replies(emulator, settings):
    adapter = MaxAdapter(settings)
    try:
        mid = emulator.inject_message(501, "вопрос")["body"]["mid"]
        text = "Ответ. " * 1200  # 8,400 characters
        delivered = await adapter.send(outbound(text, user_id=501, reply_to=mid))
        parts = emulator.sent_to(501)
        assert len(parts) == 3 and all(len(p["text"]) <= MAX_TEXT for p in parts)
        assert " ".join(p["text"] for p in parts).split() == text.split()
        assert parts[0]["link"] == {"type": "reply", "mid": mid}
        assert parts[1]["link"] is None and delivered.external_id == parts[0]["mid"]
        assert emulator.violations == []  # the third part waited for the chat's limit
    finally:
        await adapter.bot.close_session()


@pytest.mark.parametrize("fault, permanent", [("403", True), ("429", False), ("503", False)])
async def test_errors_are_permanent_or_retried_as_documented(emulator, settings, fault,
                                                              permanent):
    adapter = MaxAdapter(settings)
    emulator.faults.add("messages", fault)
    try:
        with pytest.raises(DeliveryError) as raised:
            await adapter.send(outbound("Здравствуйте"))
        assert raised.value.permanent is permanent
        assert not raised.value.unknown
    finally:
        await adapter.bot.close_session()


async def test_a_blocked_user_is_a_permanent_refusal(emulator, settings):
    adapter = MaxAdapter(settings)
    emulator.block(501)
    try:
        with pytest.raises(DeliveryError) as raised:
            await adapter.send(outbound("Здравствуйте"))
        assert raised.value.permanent and "HTTP 403" in raised.value.reason
    finally:
        await adapter.bot.close_session()


async def test_a_lost_answer_is_looked_for_before_it_is_sent_again(emulator, settings):
    adapter = MaxAdapter(settings)  # fresh, as after a restart: it asks who it is itself
    chat_id = emulator.dialog_chat(501)
    emulator.faults.add("messages", "lost_response")
    try:
        with pytest.raises(DeliveryError) as raised:
            await adapter.send(outbound("Ваш заказ в пути", user_id=501, chat_id=chat_id))
        assert raised.value.unknown
        found = await adapter.find_sent(outbound("Ваш заказ в пути", user_id=501,
                                                 chat_id=chat_id))
        assert found is not None and found.external_id == emulator.sent_to(501)[0]["mid"]
        assert await adapter.find_sent(outbound("другой текст", user_id=501,
                                                chat_id=chat_id)) is None
        # The same words answering another message are not this answer.
        question = emulator.inject_message(501, "а мой заказ?")["body"]["mid"]
        assert await adapter.find_sent(outbound("Ваш заказ в пути", user_id=501,
                                                chat_id=chat_id, reply_to=question)) is None
        # A long answer cut after its first part is not taken for sent.
        await asyncio.sleep(1.1)  # the chat's 2 a second
        address, long_text = MaxTarget(user_id=501, chat_id=chat_id), "Часть. " * 700
        first, second = split_text(long_text, MAX_TEXT)
        posted = await adapter._send_one(address, first, None)
        row = outbound(long_text, user_id=501, chat_id=chat_id)
        assert await adapter.find_sent(row) is None
        await adapter._send_one(address, second, None)
        assert (await adapter.find_sent(row)).external_id == posted.message.body.mid
    finally:
        await adapter.bot.close_session()


async def test_a_burst_of_answers_keeps_to_maxs_limits(emulator, store, monkeypatch):
    monkeypatch.setenv("SAMEDAY_MAX_TOKEN", TOKEN)
    settings = max_settings(emulator)
    async with running(MaxAdapter(settings), store, settings):
        await polling(emulator)
        for user in range(40):
            emulator.inject_message(1000 + user, f"вопрос {user}")
        for _ in range(3):  # three messages from one customer: a second ack is not due
            emulator.inject_message(2000, "срочно")
        await eventually(lambda: len(emulator.sent) >= 41, timeout=30, what="41 acks")
    assert emulator.violations == []


async def test_a_crash_between_fetch_and_commit_loses_and_doubles_nothing(
        emulator, store, settings):
    """The marker moves only with the stored batch: a restart asks with the saved one."""
    adapter = MaxAdapter(settings)
    async with running(adapter, store, settings) as h:
        await polling(emulator)
        emulator.inject_message(1101, "первое")
        await eventually(lambda: h.count(Message), what="the first message")
    saved = await _marker(store)
    emulator.inject_message(1102, "второе, пока демон лежит")
    async with running(MaxAdapter(settings), store, settings) as h:
        await polling(emulator)
        await eventually(lambda: _count_is(h, Message, 2), what="the second message")
        await asyncio.sleep(1.5)  # more polls: nothing fetched twice
        assert await h.count(Message) == 2
    assert emulator.markers[emulator.markers.index(int(saved))] == int(saved)


async def _marker(store):
    async with store.session() as session:
        return await session.scalar(sa.select(Cursor.value).where(Cursor.channel == "max"))


async def _count_is(h, table, n: int) -> bool:
    return await h.count(table) == n


# --- staff answering from the Telegram staff group ---------------------------------------------


async def test_a_max_customer_is_answered_from_the_telegram_staff_group(
        emulator, store, monkeypatch):
    """The card of a MAX customer in the staff group; a reply to it with text, then with a
    photo, reaches the customer on MAX (the photo uploaded, byte for byte)."""
    from bots.telegram.adapter import TelegramAdapter
    from bots.telegram.emulator import TelegramEmulator
    from tests.adapter_harness import running_all
    from tests.test_files_back import JPEG, card_of, photo_of, staff_sends
    from tests.test_staff_telegram import ANNA, STAFF, staff_says

    monkeypatch.setenv("SAMEDAY_MAX_TOKEN", TOKEN)
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123:staff")
    async with TelegramEmulator() as telegram:
        settings = make_settings(
            channels={"max": {"enabled": True, "base_url": emulator.url, "poll_timeout": "1s"},
                      "telegram": {"enabled": True, "base_url": f"{telegram.url}/bot",
                                   "base_file_url": f"{telegram.url}/file/bot",
                                   "poll_timeout": "1s"}},
            staff={"chat": "telegram", "telegram_chat_id": STAFF,
                   "members": [{"name": "anna", "telegram_id": ANNA, "role": "admin"}]})
        adapters = [TelegramAdapter(settings), MaxAdapter(settings)]
        async with running_all(adapters, store, settings) as h:
            await polling(emulator)
            question = emulator.inject_message(501, "Пришёл разбитый телефон",
                                               attachments=[emulator.image_attachment()])
            card = await card_of(telegram, h, 1)
            assert "MAX" in card["text"] and "Пришёл разбитый телефон" in card["text"]
            staff_says(telegram, ANNA, "Пришлите, пожалуйста, фото коробки.",
                       reply_to_message_id=card["message_id"])
            await eventually(lambda: any("фото коробки" in (m["text"] or "")
                                         for m in emulator.sent_to(501)),
                             what="the answer on MAX")
            answer = next(m for m in emulator.sent_to(501) if "фото коробки" in (m["text"] or ""))
            assert answer["link"] == {"type": "reply", "mid": question["body"]["mid"]}
            staff_sends(telegram, card, photo=photo_of(telegram, JPEG), caption="Этикетка")
            await eventually(lambda: any(m["files"] for m in emulator.sent_to(501)),
                             timeout=20, what="the photo on MAX")
            [with_photo] = [m for m in emulator.sent_to(501) if m["files"]]
            assert with_photo["text"] == "Этикетка"
            assert [(f["type"], f["content"]) for f in with_photo["files"]] == [("image", JPEG)]
    assert emulator.violations == [] and telegram.violations == []


async def test_a_failure_after_the_first_part_is_an_unknown_outcome(emulator, settings):
    """Part of the answer reached the customer: not a plain retry (it would repeat that
    part) but an unknown outcome, looked for first."""
    adapter = MaxAdapter(settings)
    send_one, calls = adapter._send_one, []

    async def second_part_refused(*args):
        calls.append(args)
        if len(calls) == 2:
            emulator.faults.add("messages", "503")
        return await send_one(*args)

    adapter._send_one = second_part_refused
    try:
        with pytest.raises(DeliveryError) as raised:
            await adapter.send(outbound("Часть. " * 700))
        assert raised.value.unknown and "after part 1 of 2" in raised.value.reason
        assert len(emulator.sent_to(501)) == 1
    finally:
        await adapter.stop()
