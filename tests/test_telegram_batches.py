"""The Telegram adapter stores the customer messages of one getUpdates answer in one
transaction, in order with what staff do in the same answer, and confirms them to
Telegram only after that commit (python-telegram-bot against the Bot API emulator)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import TelegramEmulator
from core.domain.records import TicketStatus
from core.intake.inbox import Inbox
from core.store.tables import Cursor, Message, Ticket
from tests.adapter_harness import eventually, running, running_all
from tests.conftest import make_settings

STAFF = -1004000
ANNA = 111


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    return f"sqlite+aiosqlite:///{tmp_path / 'batches.db'}"


@pytest.fixture
async def emulator():
    async with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture
def settings(emulator, monkeypatch):
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123456:TEST-token")
    return make_settings(
        channels={"telegram": {"enabled": True, "base_url": f"{emulator.url}/bot",
                               "poll_timeout": "1s"}},
        staff={"chat": "telegram", "telegram_chat_id": STAFF,
               "members": [{"name": "anna", "telegram_id": ANNA, "role": "admin"}]})


@pytest.fixture
def ingests(monkeypatch) -> list[tuple[int, str | None]]:
    """Each ingest call of the inbox: (messages in it, cursor saved with them)."""
    calls: list[tuple[int, str | None]] = []
    ingest = Inbox.ingest

    async def ingest_and_record(self, batch, cursor=None, unreadable=()):
        result = await ingest(self, batch, cursor, unreadable)
        calls.append((len(batch), cursor.value if cursor else None))
        return result
    monkeypatch.setattr(Inbox, "ingest", ingest_and_record)
    return calls


async def test_one_answer_of_customer_messages_is_one_transaction(emulator, store, settings,
                                                                  ingests):
    # Written while the daemon is down: the first getUpdates answers all seven at once.
    for user in range(1, 8):
        emulator.inject_message(chat_id=user, user_id=user, text=f"order {user} is late")
    last_update = emulator.updates[-1]["update_id"]
    async with running(TelegramAdapter(settings), store, settings) as h:
        await eventually(lambda: h.count(Message), what="the answer stored")
        assert await h.count(Message) == 7
        assert await h.count(Ticket) == 7
        cursor = await h.scalar(sa.select(Cursor.value).where(Cursor.channel == "telegram"))
        assert cursor == str(last_update + 1)
        await eventually(lambda: emulator.confirmed > last_update,
                         what="the answer confirmed to Telegram after its commit")
    assert ingests == [(7, str(last_update + 1))]


async def test_a_staff_command_in_the_answer_sees_the_messages_before_it(
        emulator, store, settings, ingests):
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        emulator.inject_message(chat_id=5, user_id=5, text="where is my parcel?")
        await eventually(lambda: h.count(Ticket), what="the ticket")
        [ticket] = await h.rows(sa.select(Ticket))
    # One answer after a restart: the customer adds something, staff close the ticket,
    # two more customers write. Stored in that order, the close comes last for the
    # ticket; the other way round, the customer's message would open it again.
    emulator.inject_message(chat_id=5, user_id=5, text="it was order 77")
    emulator.inject_message(chat_id=STAFF, user_id=ANNA, chat_type="supergroup",
                            text=f"/close {ticket.id}")
    emulator.inject_message(chat_id=6, user_id=6, text="hello")
    emulator.inject_message(chat_id=7, user_id=7, text="hi there")
    ingests.clear()
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        await eventually(lambda: _count_is(h, Message, 4), what="all four customer messages")
        await eventually(lambda: _status_is(h, ticket.id, TicketStatus.CLOSED),
                         what="the ticket closed after the message before the command")
        texts = [m.text for m in await h.rows(
            sa.select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id))]
        assert texts == ["where is my parcel?", "it was order 77"]
    # The message before the command was stored alone, the two after it together.
    assert [size for size, _ in ingests] == [1, 2]


async def _count_is(h, table, n: int) -> bool:
    return await h.count(table) == n


async def _status_is(h, ticket_id: int, status: str) -> bool:
    return await h.scalar(sa.select(Ticket.status).where(Ticket.id == ticket_id)) == status


def update(update_id: int, chat: int, message_id: int, *, text: str | None = None,
           album: str | None = None) -> dict:
    """A private message update as the Bot API sends it (the shape of the Update and
    Message objects in core.telegram.org/bots/api; photo items of an album share a
    media_group_id)."""
    message = {"message_id": message_id, "date": 1764000000,
               "chat": {"id": chat, "type": "private", "first_name": f"u{chat}"},
               "from": {"id": chat, "is_bot": False, "first_name": f"u{chat}"}}
    if text:
        message["text"] = text
    if album:
        message["media_group_id"] = album
        message["photo"] = [{"file_id": f"f{message_id}", "file_unique_id": f"u{message_id}",
                             "width": 1, "height": 1}]
    return {"update_id": update_id, "message": message}


async def test_an_album_released_by_its_timer_never_commits_before_the_messages_before_it(
        settings):
    """An answer [a text from chat 1, an album of two photos from chat 2]: the text is
    stored at the answer's end, slowly (a busy database); the album's timer fires
    meanwhile. Its commit must wait, or the saved offset would pass the text's update."""
    from telegram import Update

    from core.clock import SystemClock
    from core.delivery.contract import AdapterContext

    adapter = TelegramAdapter(settings)
    commits: list[tuple[list[str], str]] = []

    async def ingest(batch, cursor=None, unreadable=()):
        if not commits and not getattr(ingest, "slowed", False):
            ingest.slowed = True
            await asyncio.sleep(1.6)  # longer than the album's timer
        commits.append(([m.external_id for m in batch], cursor.value))

    async def no_cursor(channel, key):
        return None

    adapter.context = AdapterContext(settings=settings, clock=SystemClock(), ingest=ingest,
                                     load_cursor=no_cursor)
    answer = [Update.de_json(raw, adapter.bot) for raw in (
        update(10, 1, 1, text="hello"), update(11, 2, 2, album="g"),
        update(12, 2, 3, album="g"))]
    adapter.gate.delivered([u.update_id for u in answer])
    adapter.gate.answer_last = answer[-1].update_id
    for item in answer:
        await adapter._on_update(item, None)
    await asyncio.wait_for(adapter.gate.wait_idle(), 10)
    assert commits == [(["1:1"], "11"), (["2:2"], "13")]


async def test_recorded_real_updates_of_one_answer_are_one_transaction(emulator, store,
                                                                       settings, ingests):
    """Recorded updates from public sources (tests/fixtures/real/telegram, each file names
    its source: a private text and a photo from teloxide's tests, a contact and an edited
    message from aiogram's test dataset) in one getUpdates answer: stored in one
    ingest call with the offset past the last."""
    from tests.test_real_payloads_telegram import load

    names = ("text_private_short", "photo_without_caption", "contact",
             "edited_message_dataset")
    for name in names:
        update = dict(load(name)["payload"])
        update.pop("update_id")  # the emulator numbers them
        emulator.inject_update(update)
    last_update = emulator.updates[-1]["update_id"]
    async with running(TelegramAdapter(settings), store, settings) as h:
        await eventually(lambda: h.scalar(sa.select(Cursor.value)
                                          .where(Cursor.channel == "telegram")),
                         what="the answer stored")
        stored = await h.count(Message)
    assert ingests == [(len(names), str(last_update + 1))]
    assert stored >= 3  # the edit of a message never stored is stored as a message too
