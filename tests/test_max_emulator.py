"""The MAX emulator against the real client library (maxapi): auth, the long poll's marker,
sends with a reply link, uploads, edits, deletes, callback answers, the documented rate
limits and faults. Its updates are checked against recorded real payloads
(tests/fixtures/real/max, sources in SOURCES.md): recorded ones come back unchanged, and
its own have the recorded shapes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from maxapi import Bot
from maxapi.client.default import DefaultConnectionProperties
from maxapi.enums.http_method import HTTPMethod
from maxapi.enums.message_link_type import MessageLinkType
from maxapi.enums.upload_type import UploadType
from maxapi.exceptions.max import InvalidToken, MaxApiError
from maxapi.types.attachments.upload import AttachmentPayload, AttachmentUpload
from maxapi.types.input_media import InputMediaBuffer
from maxapi.types.message import NewMessageLink

from bots.common.emulator import SlidingWindow
from bots.max.emulator import MAX_TEXT, PNG, MaxEmulator

FIXTURES = Path(__file__).parent / "fixtures" / "real" / "max"
TOKEN = "max-test-token"
CUSTOMER = 10001
GROUP = -70801090403050
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n"
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64)


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())["payload"]


def recorded_updates() -> list[tuple[str, dict[str, Any]]]:
    """Every recorded update: those of GET /updates answers and single ones."""
    found = []
    for path in sorted(FIXTURES.glob("*.json")):
        payload = json.loads(path.read_text())["payload"]
        if "updates" in payload:
            found += [(path.stem, update) for update in payload["updates"]]
        elif "update_type" in payload:
            found.append((path.stem, payload))
    return found


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def shape_problems(ours: Any, real: Any, path: str = "", exact: bool = False) -> list[str]:
    """Where ``ours`` has a key the recorded payload has not there (``exact``: or lacks
    one it has), or a value of another JSON type."""
    if isinstance(real, dict):
        if not isinstance(ours, dict):
            return [f"{path}: {type(ours).__name__}, MAX sends an object"]
        problems = [f"{path}.{key}: MAX does not send it here" for key in ours
                    if key not in real]
        if exact:
            problems += [f"{path}.{key}: missing" for key in real if key not in ours]
        for key in ours.keys() & real.keys():
            problems += shape_problems(ours[key], real[key], f"{path}.{key}", exact)
        return problems
    if isinstance(real, list):
        if not isinstance(ours, list):
            return [f"{path}: {type(ours).__name__}, MAX sends a list"]
        if not real or not all(isinstance(item, dict) for item in real):
            return []
        problems = []
        for item in ours:  # against the recorded items of its type (attachments, markup)
            alike = [r for r in real if r.get("type") == item.get("type")] or real
            merged = {k: v for r in alike for k, v in r.items()}
            problems += shape_problems(item, merged, f"{path}[]")
        return problems
    kinds = (bool, int, float, str, type(None))
    if next(k for k in kinds if isinstance(real, k)) is not next(
            k for k in kinds if isinstance(ours, k)):
        return [f"{path}: {ours!r} is not a {type(real).__name__} like {real!r}"]
    return []


@pytest.fixture
async def emulator():
    async with MaxEmulator(token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
async def bot(emulator):
    bot = make_bot(emulator, TOKEN)
    yield bot
    await bot.close_session()


def make_bot(emulator: MaxEmulator, token: str) -> Bot:
    bot = Bot(token=token, auto_requests=False,
              default_connection=DefaultConnectionProperties(timeout=20, max_retries=0))
    bot.set_api_url(emulator.url)
    return bot


async def raw(emulator: MaxEmulator, method: str, path: str, *, headers=None,
              **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(
            method, emulator.url + path, headers=headers or {}, **kwargs) as response:
        return response.status, await response.json()


# --- auth -------------------------------------------------------------------------------


async def test_get_me_with_the_token_in_the_authorization_header(emulator, bot):
    me = await bot.get_me()
    assert (me.user_id, me.is_bot, me.username) == (emulator.bot_id, True, "sameday_bot")
    assert not shape_problems((await raw(emulator, "GET", "/me",
                                         headers={"Authorization": TOKEN}))[1],
                              recorded("me_bot_info"))


async def test_auth_errors_as_max_answers_them(emulator):
    wrong = make_bot(emulator, "not-the-token")
    try:
        with pytest.raises(InvalidToken):
            await wrong.get_me()
    finally:
        await wrong.close_session()
    assert await raw(emulator, "GET", "/me", headers={"Authorization": f"Bearer {TOKEN}"}) \
        == (401, recorded("error_invalid_token") | {"message": "Invalid access_token"})
    assert (await raw(emulator, "GET", "/me"))[0] == 401
    # The query parameter is refused even with the right token (since 12 Feb 2026).
    assert await raw(emulator, "GET", f"/me?access_token={TOKEN}") \
        == (403, recorded("error_deprecated_token"))


# --- the long poll ------------------------------------------------------------------------


async def test_marker_confirms_every_earlier_update(emulator, bot):
    first = emulator.inject_message(CUSTOMER, "one")
    answer = await bot.get_updates(timeout=0)
    assert [u["message"]["body"]["mid"] for u in answer["updates"]] == [first["body"]["mid"]]
    marker = answer["marker"]
    two = emulator.inject_message(CUSTOMER, "two")
    three = emulator.inject_message(CUSTOMER, "three")

    page = await bot.get_updates(marker=marker, timeout=0, limit=1)
    assert [u["message"]["body"]["text"] for u in page["updates"]] == ["two"]
    again = await bot.get_updates(marker=marker, timeout=0)  # nothing confirmed past it
    assert [u["message"]["body"]["text"] for u in again["updates"]] == ["two", "three"]
    after_two = await bot.get_updates(marker=page["marker"], timeout=0)
    assert [u["message"]["body"]["mid"] for u in after_two["updates"]] \
        == [three["body"]["mid"]]
    # Passing page's marker confirmed "two" for good: the older marker no longer gets it.
    old = await bot.get_updates(marker=marker, timeout=0)
    assert [u["message"]["body"]["mid"] for u in old["updates"]] == [three["body"]["mid"]]
    assert two["body"]["mid"] not in as_json(emulator.pending_updates())
    assert emulator.markers[-1] == marker


async def test_without_a_marker_only_the_latest_update(emulator, bot):
    """The current dev.max.ru text: no marker (or null) gives only the latest update."""
    for text in ("a", "b", "c"):
        emulator.inject_message(CUSTOMER, text)
    answer = await bot.get_updates(timeout=0)
    assert [u["message"]["body"]["text"] for u in answer["updates"]] == ["c"]
    assert (await bot.get_updates(marker=answer["marker"], timeout=0))["updates"] == []


async def test_a_poll_is_held_until_an_update_comes(emulator, bot):
    start = await bot.get_updates(timeout=0)
    poll = asyncio.create_task(bot.get_updates(marker=start["marker"], timeout=20))
    await asyncio.sleep(0.3)
    assert not poll.done()
    emulator.inject_message(CUSTOMER, "hello")
    answer = await asyncio.wait_for(poll, 10)
    assert [u["message"]["body"]["text"] for u in answer["updates"]] == ["hello"]


async def test_types_filter_and_passed_over_updates_are_confirmed(emulator, bot):
    marker = (await bot.get_updates(timeout=0))["marker"]
    emulator.inject_message(CUSTOMER, "not asked for")
    started = emulator.inject_bot_started(CUSTOMER, "promo")
    answer = await bot.get_updates(marker=marker, timeout=0, types=["bot_started"])
    assert answer["updates"] == [started]
    rest = await bot.get_updates(marker=answer["marker"], timeout=0)
    assert rest["updates"] == []


# --- sending ------------------------------------------------------------------------------


async def test_send_in_a_dialog_replying_to_the_customer(emulator, bot):
    question = emulator.inject_message(CUSTOMER, "Где мой заказ?", name=("Анна", "Петрова"))
    sent = await bot.send_message(
        user_id=CUSTOMER, text="Уже в пути",
        link=NewMessageLink(type=MessageLinkType.REPLY, mid=question["body"]["mid"]),
        disable_link_preview=True)
    message = sent.message
    assert message.sender.user_id == emulator.bot_id
    assert message.recipient.user_id == CUSTOMER
    assert message.recipient.chat_id == question["recipient"]["chat_id"]
    assert message.link.message.mid == question["body"]["mid"]
    item = emulator.sent[-1]
    assert {k: item[k] for k in ("method", "user_id", "chat_id", "chat_type", "text", "link",
                                 "mid", "disable_link_preview", "files")} == {
        "method": "messages.send", "user_id": CUSTOMER,
        "chat_id": question["recipient"]["chat_id"], "chat_type": "dialog",
        "text": "Уже в пути", "link": {"type": "reply", "mid": question["body"]["mid"]},
        "mid": message.body.mid, "disable_link_preview": True, "files": []}
    assert emulator.sent_to(CUSTOMER) == [item]
    assert emulator.unknown_link_mids == []
    # The bot's message is shaped like the recorded bot message (P2), its mid and seq
    # made as in every recording: "mid." + chat id + seq in hex, seq = ms << 16 | n.
    wire = item["message"]
    real = recorded("callback_bot_message_keyboard_image")["message"]
    assert not shape_problems({k: v for k, v in wire.items() if k != "link"}, real)
    assert not shape_problems(wire["link"],
                              recorded("updates_group_chat_forward")["updates"][0][
                                  "message"]["link"])
    assert not shape_problems(wire["sender"], real["sender"], exact=True)
    body = wire["body"]
    chat = wire["recipient"]["chat_id"]
    assert body["mid"] == f"mid.{chat & (2**64 - 1):016x}{body['seq']:016x}"
    assert body["seq"] >> 16 == wire["timestamp"]


async def test_a_link_to_an_unknown_message_is_listed(emulator, bot):
    emulator.inject_message(CUSTOMER, "hi")
    sent = await bot.send_message(user_id=CUSTOMER, text="answer", link=NewMessageLink(
        type=MessageLinkType.REPLY, mid="mid.00000000000000000000000000000000"))
    assert sent.message.link is None
    assert emulator.unknown_link_mids == ["mid.00000000000000000000000000000000"]


async def test_send_in_a_group_chat_by_chat_id(emulator, bot):
    asked = emulator.inject_message(CUSTOMER, "помогите", chat_id=GROUP, chat_type="chat",
                                    mention_bot=True)
    await bot.send_message(chat_id=GROUP, text="Здравствуйте")
    item = emulator.sent_to(GROUP)[-1]
    assert (item["chat_type"], item["user_id"]) == ("chat", None)
    assert item["message"]["recipient"] == {"chat_id": GROUP, "chat_type": "chat"}
    assert asked["body"]["text"] == "@sameday_bot помогите"
    # An unknown chat is not invented.
    with pytest.raises(MaxApiError) as refused:
        await bot.send_message(chat_id=-1, text="x")
    assert refused.value.code == 404


async def test_text_limit_counted_in_characters(emulator, bot):
    emulator.inject_message(CUSTOMER, "hi")
    chat = emulator.dialogs[CUSTOMER]
    longest = "ё" * (MAX_TEXT - 1) + "😀"  # 4000 characters (4001 UTF-16 units)
    answer = await bot.request(HTTPMethod.POST, "/messages", is_return_raw=True,
                               params={"chat_id": chat}, json={"text": longest})
    assert answer["message"]["body"]["text"] == longest
    with pytest.raises(MaxApiError) as too_long:
        await bot.request(HTTPMethod.POST, "/messages", is_return_raw=True,
                          params={"chat_id": chat}, json={"text": longest + "!"})
    assert (too_long.value.code, too_long.value.raw["code"]) == (400, "proto.payload")


async def test_uploads_then_sends_with_them(emulator, bot):
    emulator.inject_message(CUSTOMER, "пришлите счёт")
    image = await bot.upload_media(InputMediaBuffer(buffer=PNG, filename="photo",
                                                    type=UploadType.IMAGE))
    document = await bot.upload_media(InputMediaBuffer(buffer=PDF, filename="invoice",
                                                       type=UploadType.FILE))
    video = await bot.upload_media(InputMediaBuffer(buffer=MP4, filename="clip",
                                                    type=UploadType.VIDEO))
    assert [u["type"] for u in emulator.uploads] == ["image", "file", "video"]
    # Three customers: three sends into one chat would pass its 2 a second.
    await bot.send_message(user_id=CUSTOMER, text="фото", attachments=[image],
                           sleep_after_input_media=False)
    await bot.send_message(user_id=CUSTOMER + 1, text="счёт", attachments=[document],
                           sleep_after_input_media=False)
    await bot.send_message(user_id=CUSTOMER + 2, attachments=[video],
                           sleep_after_input_media=False)
    photo_sent, file_sent, video_sent = emulator.sent
    assert [(f["type"], f["content"]) for f in photo_sent["files"]] == [("image", PNG)]
    assert [(f["type"], f["name"], f["content"]) for f in file_sent["files"]] \
        == [("file", "invoice.pdf", PDF)]
    assert [f["content"] for f in video_sent["files"]] == [MP4]
    # What the customer receives: the received shapes, the bytes at their URLs.
    received_image = photo_sent["message"]["body"]["attachments"][0]
    real_image = recorded("callback_bot_message_keyboard_image")["message"]["body"][
        "attachments"][1]
    assert not shape_problems(received_image, real_image, exact=True)
    received_file = file_sent["message"]["body"]["attachments"][0]
    assert (received_file["filename"], received_file["size"]) == ("invoice.pdf", len(PDF))
    async with aiohttp.ClientSession() as session, \
            session.get(received_file["payload"]["url"]) as download:
        assert await download.read() == PDF


async def test_an_unknown_or_missing_token_is_refused(emulator, bot):
    emulator.inject_message(CUSTOMER, "hi")
    forged = AttachmentUpload(type=UploadType.FILE, payload=AttachmentPayload(token="forged"))
    with pytest.raises(MaxApiError) as unknown:
        await bot.send_message(user_id=CUSTOMER, text="x", attachments=[forged])
    assert (unknown.value.code, unknown.value.raw["code"]) == (400, "proto.payload")
    # The nested payload maxapi once sent (PR #21): MAX's live answer.
    with pytest.raises(MaxApiError) as nested:
        await bot.request(HTTPMethod.POST, "/messages", params={"user_id": CUSTOMER},
                          json={"attachments": [{"type": "file", "payload": {
                              "type": "file", "payload": {"token": "t"}}}]})
    assert nested.value.raw == {"code": "proto.payload",
                                "message": "Missing `token` in video attachment"}
    assert emulator.sent == []


async def test_edit_keeps_or_drops_attachments_and_delete(emulator, bot):
    emulator.enforce_limits = False  # five calls into one chat: the limit is tested below
    emulator.inject_message(CUSTOMER, "hi")
    document = await bot.upload_media(InputMediaBuffer(buffer=PDF, filename="invoice",
                                                       type=UploadType.FILE))
    sent = await bot.send_message(user_id=CUSTOMER, text="счёт", attachments=[document],
                                  sleep_after_input_media=False)
    mid = sent.message.body.mid
    # attachments absent (null): kept.
    await bot.request(HTTPMethod.PUT, "/messages", is_return_raw=True,
                      params={"message_id": mid}, json={"text": "счёт №1"})
    assert emulator.edits[-1]["text"] == "счёт №1"
    assert [a["type"] for a in emulator.edits[-1]["attachments"]] == ["file"]
    assert emulator.sent[-1]["files"][0]["content"] == PDF
    # maxapi's edit_message always sends "attachments": [], which removes them all.
    edited = await bot.edit_message(message_id=mid, text="счёт №2")
    assert edited.success
    assert (emulator.edits[-1]["text"], emulator.edits[-1]["attachments"]) == ("счёт №2", [])
    assert emulator.sent[-1]["files"] == [] and emulator.sent[-1]["edited"]

    deleted = await bot.delete_message(message_id=mid)
    assert deleted.success
    assert [d["mid"] for d in emulator.deletions] == [mid] and emulator.sent[-1]["deleted"]
    with pytest.raises(MaxApiError) as gone:
        await bot.delete_message(message_id=mid)
    assert (gone.value.code, gone.value.raw["code"]) == (404, "not.found")
    assert {v["method"] for v in emulator.violations} <= {"messages.edit", "messages.delete"}


async def test_a_customers_message_cannot_be_edited_or_deleted_in_a_dialog(emulator, bot):
    theirs = emulator.inject_message(CUSTOMER, "mine")
    for call in (bot.edit_message(message_id=theirs["body"]["mid"], text="x"),
                 bot.delete_message(message_id=theirs["body"]["mid"])):
        with pytest.raises(MaxApiError) as refused:
            await call
        assert refused.value.code == 403
    assert emulator.edits == emulator.deletions == []


async def test_callback_answer(emulator, bot):
    emulator.inject_message(CUSTOMER, "hi")
    await bot.request(HTTPMethod.POST, "/messages", is_return_raw=True,
                      params={"user_id": CUSTOMER}, json={
                          "text": "Вопрос решён?", "attachments": [{
                              "type": "inline_keyboard", "payload": {"buttons": [[
                                  {"type": "callback", "text": "Да", "payload": "yes"}]]}}]})
    press = emulator.inject_callback(CUSTOMER, "yes")
    assert press["message"]["body"]["attachments"][0]["callback_id"]
    assert not shape_problems(press, recorded("callback_bot_message_keyboard_image"))
    answer = await bot.send_callback(callback_id=press["callback"]["callback_id"],
                                     notification="Спасибо!")
    assert answer.success
    assert emulator.callback_answers == [{
        "callback_id": press["callback"]["callback_id"], "chat_id": emulator.dialogs[CUSTOMER],
        "notification": "Спасибо!", "message": None}]


async def test_blocked_user_gets_403(emulator, bot):
    emulator.inject_message(CUSTOMER, "hi")
    emulator.block(CUSTOMER)
    with pytest.raises(MaxApiError) as blocked:
        await bot.send_message(user_id=CUSTOMER, text="answer")
    assert (blocked.value.code, blocked.value.raw["code"]) == (403, "chat.denied")
    assert emulator.sent == []


# --- limits and faults ----------------------------------------------------------------------


async def test_two_sends_a_second_per_chat(emulator, bot):
    assert (emulator.per_chat.limit, emulator.per_chat.seconds) == (2, 1.0)
    assert (emulator.per_bot.limit, emulator.per_bot.seconds) == (30, 1.0)
    # The same limit over a wide window, so that a slow machine cannot spread the sends.
    emulator.per_chat = SlidingWindow(2, 3600.0)
    emulator.inject_message(CUSTOMER, "hi")
    emulator.inject_message(CUSTOMER + 1, "hi")
    await bot.send_message(user_id=CUSTOMER, text="1")
    await bot.send_message(user_id=CUSTOMER, text="2")
    with pytest.raises(MaxApiError) as limited:
        await bot.send_message(user_id=CUSTOMER, text="3")
    assert (limited.value.code, limited.value.raw["code"]) == (429, "too.many.requests")
    assert [(v["limit"], v["chat_id"]) for v in emulator.violations] \
        == [("2 per second per chat", emulator.dialogs[CUSTOMER])]
    await bot.send_message(user_id=CUSTOMER + 1, text="another chat")
    assert [item["text"] for item in emulator.sent] == ["1", "2", "another chat"]


async def test_limits_counted_but_not_enforced():
    async with MaxEmulator(token=TOKEN, enforce_limits=False) as lenient:
        lenient.per_chat = SlidingWindow(2, 3600.0)
        lenient.inject_message(CUSTOMER, "hi")
        lenient_bot = make_bot(lenient, TOKEN)
        try:
            for n in range(3):
                await lenient_bot.send_message(user_id=CUSTOMER, text=str(n))
        finally:
            await lenient_bot.close_session()
        assert len(lenient.sent) == 3 and len(lenient.violations) == 1


async def test_faults(emulator, bot):
    emulator.faults.add("updates", "503")
    with pytest.raises(MaxApiError) as unavailable:
        await bot.get_updates(timeout=0)
    assert unavailable.value.code == 503
    emulator.faults.add("messages", "429")
    emulator.inject_message(CUSTOMER, "hi")
    with pytest.raises(MaxApiError) as limited:
        await bot.send_message(user_id=CUSTOMER, text="x")
    assert limited.value.code == 429
    marker = (await bot.get_updates(timeout=0))["marker"]
    emulator.faults.add("updates", "missing_fields")
    broken = (await bot.get_updates(marker=marker, timeout=0))["updates"]
    assert [("message" in u, "sender" in u.get("message", {})) for u in broken] \
        == [(True, False)]
    emulator.faults.add("updates", "missing_fields", lacking="message")
    broken = await bot.get_updates(marker=marker, timeout=0)
    assert "message" not in broken["updates"][-1]
    emulator.faults.add("messages", "attachment.not.ready", count=1)
    with pytest.raises(MaxApiError) as not_ready:
        await bot.request(HTTPMethod.POST, "/messages", params={"user_id": CUSTOMER},
                          json={"text": "x"})
    assert not_ready.value.raw["code"] == "attachment.not.ready"


# --- recorded real payloads ------------------------------------------------------------------


async def test_recorded_updates_come_back_unchanged(emulator, bot):
    updates = recorded_updates()
    assert len(updates) >= 12
    marker = (await bot.get_updates(timeout=0))["marker"]
    for _, update in updates:
        emulator.inject_update(update)
    answer = await bot.get_updates(marker=marker, timeout=0)
    assert len(answer["updates"]) == len(updates)
    for (name, update), returned in zip(updates, answer["updates"], strict=True):
        assert as_json(returned) == as_json(update), name
    # The same over the wire, as text: the emulator reshapes nothing.
    status, body = await raw(emulator, "GET", f"/updates?marker={marker}&timeout=0",
                             headers={"Authorization": TOKEN})
    assert status == 200
    assert [as_json(u) for u in body["updates"]] == [as_json(u) for _, u in updates]


async def test_a_recorded_customer_message_can_be_answered(emulator, bot):
    """The dialog of a recorded update (P1) becomes known: the bot replies in it."""
    update = recorded("dialog_text_message_created")
    emulator.inject_update(update)
    chat_id = update["message"]["recipient"]["chat_id"]
    await bot.send_message(chat_id=chat_id, text="ok", link=NewMessageLink(
        type=MessageLinkType.REPLY, mid=update["message"]["body"]["mid"]))
    item = emulator.sent_to(update["message"]["sender"]["user_id"])[-1]
    assert (item["chat_id"], item["chat_type"]) == (chat_id, "dialog")


async def test_own_updates_have_the_recorded_shapes(emulator):
    p1 = recorded("dialog_text_message_created")
    assert p1["message"]["body"]["mid"][-16:] == f"{p1['message']['body']['seq']:016x}"
    dialog = emulator.inject_message(CUSTOMER, "вапва")
    assert not shape_problems(emulator.updates[-1], p1, exact=True)
    assert list(emulator.updates[-1]) == list(p1)

    p5 = recorded("updates_group_chat_forward")["updates"][0]
    group = emulator.inject_message(CUSTOMER, "...", chat_id=GROUP, chat_type="chat",
                                    reply_to_mid=dialog["body"]["mid"])
    assert not shape_problems(emulator.updates[-1], p5)
    assert set(group) == set(p5["message"])  # recipient, timestamp, body, sender, link
    assert set(group["recipient"]) == set(p5["message"]["recipient"])  # no user_id
    assert set(group["link"]) == {"type", "message", "sender"}  # a reply names no chat

    mention = emulator.inject_message(CUSTOMER, "?", chat_id=GROUP, chat_type="chat",
                                      mention_bot=True)
    real_markup = recorded("callback_bot_message_markup")["message"]["body"]["markup"][0]
    assert {k: v for k, v in mention["body"]["markup"][0].items() if k != "user_link"} \
        .keys() == real_markup.keys()

    emulator.inject_edit(dialog["body"]["mid"], "исправлено")
    assert not shape_problems(emulator.updates[-1],
                              recorded("updates_dialog_message_edited")["updates"][0],
                              exact=True)
    emulator.inject_bot_started(CUSTOMER)
    assert not shape_problems(emulator.updates[-1],
                              recorded("updates_bot_started")["updates"][0])
    voice = emulator.inject_voice_without_message(CUSTOMER)
    assert list(voice) == list(recorded("updates_voice_without_message")["updates"][0])


def test_attachment_helpers_give_documented_shapes(emulator):
    image = emulator.image_attachment()
    real = recorded("callback_bot_message_keyboard_image")["message"]["body"][
        "attachments"][1]
    assert not shape_problems(image, real, exact=True)
    document = emulator.file_attachment(PDF, "invoice.pdf", "application/pdf")
    assert (set(document), set(document["payload"])) == ({"type", "payload", "filename",
                                                          "size"}, {"url", "token"})
    assert {a["type"] for a in (
        emulator.video_attachment(MP4), emulator.audio_attachment(b"ogg"),
        emulator.sticker_attachment(), emulator.location_attachment(55.75, 37.62),
        emulator.contact_attachment("Анна", "79990000000"),
        emulator.share_attachment("https://example.ru"))} \
        == {"video", "audio", "sticker", "location", "contact", "share"}


async def test_files_of_a_customers_message_are_served(emulator):
    photo = emulator.image_attachment(PNG, "p.png", "image/png")
    message = emulator.inject_message(CUSTOMER, None, attachments=[photo])
    assert message["body"]["attachments"] == [photo]
    async with aiohttp.ClientSession() as session, \
            session.get(photo["payload"]["url"]) as download:
        assert await download.read() == PNG


async def test_control_inject_over_http(emulator):
    status, message = await raw(emulator, "POST", "/_control/inject",
                                json={"user_id": CUSTOMER, "text": "по HTTP"})
    assert status == 200 and message["body"]["text"] == "по HTTP"
    status, update = await raw(emulator, "POST", "/_control/inject",
                               json={"update": recorded("dialog_text_message_created")})
    assert status == 200 and as_json(update) == as_json(
        recorded("dialog_text_message_created"))
    assert len(emulator.updates) == 2
