"""Fixing a sent answer: /edit and /delete (and a staff member editing their answer in
the Telegram staff group) change or withdraw the customer's copy where the platform
allows it, through the outbox, recorded in the ticket's history and on its card."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa
from rich.console import Console

from bots.telegram.emulator import TelegramEmulator
from bots.twitter.emulator import BOT_USER as X_BOT
from bots.twitter.emulator import XEmulator
from bots.vk.emulator import VKEmulator
from core.delivery.actions import DELETE, EDIT
from core.domain.records import Direction, OutboxKind, OutboxState
from core.intake.inbox import Inbox
from core.staff.commands import StaffDesk
from core.staff.console import run_console
from core.store.tables import Event, Message, Outbox
from tests.adapter_harness import eventually, running_all
from tests.conftest import make_settings
from tests.helpers import inbound, rows, update
from tests.test_files_back import (
    ANNA,
    JPEG,
    STAFF,
    adapters_for,
    card_of,
    counted,
    photo_of,
    settings_for,
    staff_replies,
    staff_sends,
    tokens,  # noqa: F401 - the fixture
)

CUSTOMER = 501


@pytest.fixture
async def telegram():
    async with TelegramEmulator() as emulator:
        yield emulator


def staff_says(telegram, text: str, user_id: int = ANNA, **kwargs) -> dict:
    return telegram.inject_message(chat_id=STAFF, user_id=user_id, text=text,
                                   chat_type="supergroup", **kwargs)


async def answered(telegram, h, text: str, channel_check) -> dict:
    """Ticket #1's card answered with ``text`` by anna, and the answer delivered."""
    card = await card_of(telegram, h, 1)
    message = staff_says(telegram, text, reply_to_message_id=card["message_id"])
    await eventually(channel_check, what=f"the answer {text!r} delivered")
    await eventually(counted(h, Outbox, 1, Outbox.kind == OutboxKind.REPLY,
                             Outbox.state == OutboxState.SENT), what="the answer recorded")
    return message


def customer_copy(telegram, text: str) -> dict | None:
    return next((m for m in telegram.sent_to(CUSTOMER) if m.get("text") == text), None)


async def change_rows(h, kind: str) -> list:
    return await h.rows(sa.select(Outbox).where(Outbox.kind == kind))


# --- Telegram ----------------------------------------------------------------------------------


async def test_edit_changes_the_telegram_customers_copy(telegram, store):
    settings = settings_for(telegram)
    async with running_all(adapters_for(settings), store, settings) as h:
        telegram.inject_message(chat_id=CUSTOMER, user_id=CUSTOMER, text="When?",
                                username="kate")
        await answered(telegram, h, "It ships tomorow.",
                       lambda: customer_copy(telegram, "It ships tomorow."))
        copy = customer_copy(telegram, "It ships tomorow.")
        staff_says(telegram, "/edit 1 It ships tomorrow.")
        await eventually(lambda: any(e.get("chat_id") == CUSTOMER for e in telegram.edits),
                         what="the customer's message edited")
        await eventually(lambda: any("answer edited by anna" in e.get("text", "")
                                     for e in telegram.edits), what="the card's note")
        await eventually(counted(h, Outbox, 1, Outbox.kind == EDIT,
                                 Outbox.state == OutboxState.SENT), what="the edit recorded")
        [event] = await h.rows(sa.select(Event).where(Event.kind == "answer_edited"))
        [stored] = await h.rows(sa.select(Message).where(Message.direction == Direction.OUT))
    [edit] = [e for e in telegram.edits if e.get("chat_id") == CUSTOMER]
    assert (edit["message_id"], edit["text"]) == (copy["message_id"], "It ships tomorrow.")
    assert telegram.messages[(CUSTOMER, copy["message_id"])]["text"] == "It ships tomorrow."
    assert (event.actor, event.data["old"], event.data["new"]) == (
        "anna", "It ships tomorow.", "It ships tomorrow.")
    assert stored.text == "It ships tomorrow."  # /show tells the answer as it now reads
    assert any("will be changed to the new text" in t for t in staff_replies(telegram))


async def test_editing_the_answer_in_the_staff_group_edits_the_customers_copy(telegram,
                                                                                 store):
    settings = settings_for(telegram)
    async with running_all(adapters_for(settings), store, settings) as h:
        telegram.inject_message(chat_id=CUSTOMER, user_id=CUSTOMER, text="When?")
        answer = await answered(telegram, h, "Tomorow!",
                                lambda: customer_copy(telegram, "Tomorow!"))
        copy = customer_copy(telegram, "Tomorow!")
        chatter = staff_says(telegram, "lunch?")
        telegram.inject_edit(chat_id=STAFF, message_id=chatter["message_id"],
                             text="lunch at 1?")  # chatter edited: nothing to change
        telegram.inject_edit(chat_id=STAFF, message_id=answer["message_id"],
                             text="Tomorrow!")
        await eventually(lambda: any(e.get("chat_id") == CUSTOMER for e in telegram.edits),
                         what="the customer's message edited")
        # Edited once more: the same answer again, the newest text.
        telegram.inject_edit(chat_id=STAFF, message_id=answer["message_id"],
                             text="Tomorrow, by noon!")
        await eventually(lambda: len([e for e in telegram.edits
                                      if e.get("chat_id") == CUSTOMER]) == 2,
                         what="the second edit")
        # The card's note (the same text twice: Telegram keeps the first edit).
        await eventually(lambda: any("answer edited by anna" in e.get("text", "")
                                     for e in telegram.edits), what="the card's note")
        edits = await change_rows(h, EDIT)
    assert [e["text"] for e in telegram.edits if e.get("chat_id") == CUSTOMER] == [
        "Tomorrow!", "Tomorrow, by noon!"]
    assert all(e["message_id"] == copy["message_id"] for e in telegram.edits
               if e.get("chat_id") == CUSTOMER)
    assert len(edits) == 2
    # The quiet path: the card says it; no reply next to the edited message.
    assert not any("will be changed" in t for t in staff_replies(telegram))


async def test_delete_withdraws_the_telegram_answer(telegram, store):
    settings = settings_for(telegram)
    async with running_all(adapters_for(settings), store, settings) as h:
        telegram.inject_message(chat_id=CUSTOMER, user_id=CUSTOMER, text="When?")
        await answered(telegram, h, "Wrong customer, sorry",
                       lambda: customer_copy(telegram, "Wrong customer, sorry"))
        copy = customer_copy(telegram, "Wrong customer, sorry")
        telegram.faults.add("deleteMessage", "500")  # fails once: retried
        staff_says(telegram, "/delete 1")
        await eventually(lambda: telegram.deletions, timeout=20, what="the message deleted")
        await eventually(counted(h, Outbox, 1, Outbox.kind == DELETE,
                                 Outbox.state == OutboxState.SENT), what="recorded")
        [row] = await change_rows(h, DELETE)
        staff_says(telegram, "/delete 1")
        staff_says(telegram, "/edit 1 something else")
        await eventually(lambda: len([t for t in staff_replies(telegram)
                                      if "withdrawn already" in t]) == 2,
                         what="a withdrawn answer is not changed again")
        [note] = await h.rows(sa.select(Message).where(Message.direction == Direction.NOTE))
        [event] = await h.rows(sa.select(Event).where(Event.kind == "answer_withdrawn"))
    assert telegram.deletions == [{"chat_id": CUSTOMER, "message_id": copy["message_id"],
                                   "message": copy}]
    assert row.attempts == 2
    assert note.text.startswith("withdrew the answer of ") and "Wrong customer" in note.text
    assert event.data["delivered"] is True


# --- VK ------------------------------------------------------------------------------------


async def test_edit_and_delete_on_vk(telegram, store):
    async with VKEmulator() as vk:
        settings = settings_for(telegram, vk=vk)
        async with running_all(adapters_for(settings, vk), store, settings) as h:
            vk.inject_message(from_id=77, text="Где заказ?")
            card = await card_of(telegram, h, 1)
            staff_sends(telegram, card, photo=photo_of(telegram, JPEG), caption="Вот трек")
            await eventually(lambda: any(m.get("files") for m in vk.sent), what="the photo")
            await eventually(counted(h, Outbox, 1, Outbox.state == OutboxState.SENT,
                                     Outbox.kind == OutboxKind.REPLY), what="recorded")
            staff_says(telegram, "/edit 1 Вот трек-номер")
            await eventually(lambda: vk.message_edits, what="messages.edit")
            staff_says(telegram, "/delete #1")
            await eventually(lambda: vk.message_deletions, what="messages.delete")
    [sent] = [m for m in vk.sent if m.get("files")]
    assert vk.message_edits == [{"peer_id": 77, "id": sent["id"], "message": "Вот трек-номер",
                                 "attachment": sent["attachment"]}]  # the photo stays
    assert vk.message_deletions == [{"peer_id": 77, "id": sent["id"], "for_all": True}]


# --- X -------------------------------------------------------------------------------------


async def test_x_refuses_edit_with_advice_and_delete_withdraws_the_post(telegram, store):
    async with XEmulator() as x:
        settings = settings_for(telegram, x=x)
        async with running_all(adapters_for(settings, x=x), store, settings) as h:
            x.inject_mention("55", "kate", f"@{X_BOT['username']} when?")
            await answered(telegram, h, "Tomorow.",
                           lambda: any(m["text"] == "Tomorow." for m in x.sent))
            staff_says(telegram, "/edit 1 Tomorrow.")
            await eventually(lambda: any("X does not let" in t
                                         for t in staff_replies(telegram)), what="refusal")
            assert await change_rows(h, EDIT) == []
            staff_says(telegram, "/delete 1")
            await eventually(lambda: x.deletions, what="the post deleted")
    [refusal] = [t for t in staff_replies(telegram) if "X does not let" in t]
    assert "X does not let a sent answer be changed. /delete 1 withdraws it; then " \
           "/reply 1 &lt;the corrected text&gt; sends a new one." in refusal
    [reply] = [m for m in x.sent if m["text"] == "Tomorow."]
    assert x.deletions == [reply["id"]]


# --- before delivery, and bad arguments (the console; SQLite and PostgreSQL) -------------------


STAFF_MEMBERS = {"members": [{"name": "anna", "telegram_id": 1, "role": "admin"},
                             {"name": "boris", "telegram_id": 2}]}


async def console_session(desk: StaffDesk, lines: list[str]) -> str:
    async def scripted():
        for line in lines:
            yield line
    console = Console(file=io.StringIO(), width=200, soft_wrap=True)
    await run_console(desk, desk.actor_named("anna"), scripted(), console, staff_sink=False)
    return console.file.getvalue()


@pytest.fixture
async def desk(store, clock):
    settings = make_settings(staff={**STAFF_MEMBERS, "chat": "console",
                                    "max_reply_chars": 50})
    inbox = Inbox(store, settings, clock)
    await inbox.ingest([inbound("m1", handle="@kate", text="where is my order?")])
    await inbox.ingest([inbound("m2", author="u2", handle="@oleg", text="hello?")])
    return StaffDesk(store, settings, clock)


async def test_edit_and_delete_before_delivery_change_the_queued_answer(desk, store):
    text = await console_session(desk, [
        "/reply 1 Helo", "/edit 1 Hello, it ships today", "/delete 1", "/edit 1 again"])
    assert "the answer was not delivered yet; it goes out with the new text" in text
    assert "withdrawn before it was delivered; the customer never saw it" in text
    assert "#1 has no answer to change. /reply 1 <text> answers." in text
    assert await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.REPLY)) == []
    events = await rows(store, sa.select(Event).where(Event.kind.in_(
        ["answer_edited", "answer_withdrawn"])).order_by(Event.id))
    assert [(e.kind, e.data["old"], e.data["delivered"]) for e in events] == [
        ("answer_edited", "Helo", False), ("answer_withdrawn", "Hello, it ships today", False)]
    [answer] = await rows(store, sa.select(Message).where(Message.direction == Direction.OUT))
    assert answer.text == "Hello, it ships today"


async def test_edit_and_delete_bad_arguments(desk, store):
    text = await console_session(desk, [
        "/edit 1", "/edit abc hello", "/delete", "/edit 99 hi", "/delete 99",
        "/delete 2", "/reply 1 first answer", "/edit 1 first answer",
        "/edit 1 " + "x" * 60])
    assert "Usage: /edit N <text>" in text
    assert "Usage: /edit N <text> (N is the ticket number, like 12 or #12)" in text
    assert "Usage: /delete N (N is the ticket number, like 12 or #12)" in text
    assert "There is no ticket #99." in text
    assert "#2 has no answer to withdraw. /reply 2 <text> answers." in text
    assert "#1: the last answer already says that." in text
    assert "The new text has 60 characters; an answer changed on Telegram must fit one " \
           "message of 50." in text
    [row] = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.REPLY))
    assert row.text == "first answer"
    # Being delivered right now, or never delivered: nothing is queued.
    await update(store, sa.update(Outbox).where(Outbox.id == row.id)
                 .values(state=OutboxState.SENDING))
    busy = await console_session(desk, ["/edit 1 better", "/delete 1"])
    assert busy.count("is being delivered right now; try to") == 2
    await update(store, sa.update(Outbox).where(Outbox.id == row.id)
                 .values(state=OutboxState.DEAD, last_error="the user blocked the bot"))
    dead = await console_session(desk, ["/edit 1 better", "/delete 1"])
    assert "was never delivered (the user blocked the bot): there is nothing to change. " \
           "/reply 1 <text> sends a new one." in dead
    assert "there is nothing to withdraw" in dead
    assert await rows(store, sa.select(Outbox).where(Outbox.kind.in_([EDIT, DELETE]))) == []
