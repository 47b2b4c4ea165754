"""A customer corrects a message: the stored text changes, the original stays in the audit
trail, staff see before and after; the same edit twice changes nothing more."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from core.delivery.contract import STAFF_CHANNEL
from core.domain.records import Attachment
from core.store.tables import Event, Message, Outbox, Ticket
from tests.helpers import count, inbound, rows


def edit(external_id: str, text: str, **fields):
    return dataclasses.replace(inbound(external_id, text=text, **fields), edited=True)


async def test_an_edit_updates_the_message_and_tells_staff_before_and_after(inbox, store):
    await inbox.ingest([inbound("m1", text="order 1234 did not come")])
    result = await inbox.ingest([edit("m1", "order 1243 did not come")])
    assert result.edited == [1] and result.received == 0
    [message] = await rows(store, sa.select(Message))
    assert message.text == "order 1243 did not come"
    [event] = await rows(store, sa.select(Event).where(Event.kind == "edited"))
    assert event.data["old"] == "order 1234 did not come"  # the original is kept
    [notice] = await rows(store, sa.select(Outbox).where(Outbox.idempotency_key.like("edit:%")))
    assert notice.channel == STAFF_CHANNEL
    assert "was: order 1234" in notice.text and "now: order 1243" in notice.text
    assert await count(store, Ticket) == 1  # no second ticket


async def test_the_same_edit_twice_and_an_edit_in_the_originals_batch(inbox, store):
    await inbox.ingest([inbound("m1", text="hi"), edit("m1", "hi, my order is late")])
    [message] = await rows(store, sa.select(Message))
    assert message.text == "hi, my order is late"
    await inbox.ingest([edit("m1", "hi, my order is late")])  # delivered again
    assert len(await rows(store, sa.select(Event).where(Event.kind == "edited"))) == 1
    notices = await rows(store, sa.select(Outbox).where(Outbox.idempotency_key.like("edit:%")))
    assert len(notices) == 1


async def test_an_edit_of_a_message_never_stored_is_a_new_message(inbox, store):
    result = await inbox.ingest([edit("m9", "sent before sameday ran, edited now")])
    assert result.received == 1 and len(result.opened) == 1


async def test_an_edit_that_adds_a_photo_is_shown(inbox, store):
    await inbox.ingest([inbound("m1", text="look")])
    photo = Attachment("photo", url="https://example.invalid/p.jpg")
    with_photo = dataclasses.replace(edit("m1", "look"), attachments=(photo,))
    assert (await inbox.ingest([with_photo])).edited == [1]
    [message] = await rows(store, sa.select(Message))
    assert message.attachments == [photo.to_json()]


# --- from the platforms -------------------------------------------------------------------


async def test_telegram_and_vk_edits_reach_the_staff_group(store, monkeypatch):
    from bots.telegram.adapter import TelegramAdapter
    from bots.telegram.emulator import TelegramEmulator
    from bots.vk.adapter import VKAdapter
    from bots.vk.emulator import VKEmulator
    from tests.adapter_harness import eventually, running_all
    from tests.test_staff_telegram import STAFF, settings_for

    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "100:edits")
    monkeypatch.setenv("SAMEDAY_VK_TOKEN", "vk-edits")
    async with TelegramEmulator() as telegram, VKEmulator() as vk:
        settings = settings_for(telegram, vk=vk)
        async with running_all([TelegramAdapter(settings), VKAdapter(settings)], store,
                               settings) as h:
            sent = telegram.inject_message(chat_id=611, user_id=611, text="size M please")
            event = vk.inject_message(from_id=78, text="доставка в пятницу?")
            await eventually(lambda: _tickets(h, 2),
                             what="both tickets")
            telegram.inject_edit(chat_id=611, message_id=sent["message_id"],
                                 text="size L please")
            vk.inject_edit(event["object"]["message"], "доставка в субботу?")

            def notices() -> list[str]:
                return [m["text"] for m in telegram.sent_to(STAFF)
                        if "edited a message" in m.get("text", "")]
            await eventually(lambda: len(notices()) == 2, timeout=20, what="two notices")
            texts = {m.text for m in await h.rows(sa.select(Message))}
    assert texts == {"size L please", "доставка в субботу?"}
    assert any("was: size M please" in n and "now: size L please" in n for n in notices())
    assert any("was: доставка в пятницу?" in n for n in notices())


async def _tickets(h, n: int) -> bool:
    return await h.count(Ticket) == n


# --- a chat's opening ---------------------------------------------------------------------


async def test_start_is_greeted_once_and_opens_no_ticket(inbox, store):
    opening = dataclasses.replace(inbound("m1", text="/start YnZiZ2lmdA"), greeting=True)
    assert (await inbox.ingest([opening])).greeted == 1
    await inbox.ingest([opening])  # delivered again after a crash
    [greeting] = await rows(store, sa.select(Outbox))
    assert greeting.idempotency_key == "greet:telegram:m1" and greeting.ticket_id is None
    assert greeting.text.startswith("Здравствуйте") or greeting.text.startswith("Hello")
    assert await count(store, Ticket) == 0 and await count(store, Message) == 0
    await inbox.ingest([inbound("m2", text="where is my order?")])  # then they write
    assert await count(store, Ticket) == 1
