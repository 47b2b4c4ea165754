"""Quarantine: a message that cannot be stored is kept whole and its channel goes on; a
database that is unavailable is waited for, not quarantined; an admin lists, shows and
retries what is held."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from core.app.cli import app
from core.delivery.contract import STAFF_CHANNEL, Cursor
from core.domain.payload import decode, encode
from core.domain.records import Unreadable
from core.intake import quarantine
from core.store.tables import Cursor as CursorRow
from core.store.tables import Message, Outbox, Quarantine, Ticket
from core.store.writes import RECEIVE
from tests.helpers import count, inbound, rows

RAW_VK_EVENT = {"type": "message_new", "event_id": "e1", "v": "5.199", "group_id": 1,
                "object": {"message": {"id": 7, "from_id": 5, "peer_id": 5, "date": 1764000000,
                                       "text": "my order is late \ud800", "out": 0}}}


def poison(external_id: str):
    """A message an adapter bug made unstorable: a naive time, which cannot be compared
    with aware ones (an error that would fail its batch however often it was retried)."""
    good = inbound(external_id, author="u9")
    return dataclasses.replace(good, sent_at=datetime(2026, 11, 24, 9, 0),
                               raw={"update_id": 99, "message": {"text": "\ud800\x00"}})


async def test_one_unstorable_message_is_quarantined_and_the_rest_of_its_batch_stored(
        inbox, store):
    batch = [inbound("m1", author="u1"), poison("m2"), inbound("m3", author="u3")]
    result = await inbox.ingest(batch, Cursor("telegram", "offset", "104"))
    assert result.received == 2 and len(result.quarantined) == 1
    assert {m.external_id for m in await rows(store, sa.select(Message))} == {"m1", "m3"}
    [held] = await rows(store, sa.select(Quarantine))
    assert (held.channel, held.external_id, held.state) == ("telegram", "m2", "held")
    assert "offset-naive" in held.error
    # The platform's payload is kept exactly, lone surrogate and NUL included.
    assert json.loads(held.payload) == {"update_id": 99, "message": {"text": "\ud800\x00"}}
    [cursor] = await rows(store, sa.select(CursorRow))
    assert cursor.value == "104"  # the channel moved on
    [notice] = await rows(store, sa.select(Outbox).where(
        Outbox.idempotency_key == f"quarantine:{held.id}"))
    assert notice.channel == STAFF_CHANNEL and f"Q{held.id}" in notice.text
    assert f"sameday quarantine show {held.id}" in notice.text


async def test_a_redelivered_poison_message_is_quarantined_once(inbox, store):
    for _ in range(3):  # the platform sends it again after a crash, and again
        await inbox.ingest([poison("m2")], Cursor("telegram", "offset", "5"))
    assert await count(store, Quarantine) == 1
    assert await count(store, Outbox) == 1  # one staff notice


async def test_payloads_an_adapter_could_not_read_are_held_with_the_cursor(inbox, store):
    item = Unreadable("vk", {"type": "message_new", "object": None}, "KeyError: 'message'",
                      "event:abc")
    result = await inbox.ingest([inbound("ok", channel="vk")], Cursor("vk", "ts", "9"), [item])
    assert result.received == 1 and len(result.quarantined) == 1
    [held] = await rows(store, sa.select(Quarantine))
    assert json.loads(held.payload) == item.payload and held.error == item.error


async def test_a_transient_database_error_is_raised_for_the_adapter_to_wait_not_quarantined(
        inbox, store, monkeypatch):
    async def unavailable(*_args, **_kwargs):
        raise OperationalError("INSERT", {}, Exception("database or disk is full"))

    monkeypatch.setattr(inbox, "_ingest", unavailable)
    with pytest.raises(OperationalError):
        await inbox.ingest([inbound("m1")], Cursor("telegram", "offset", "2"))
    assert await count(store, Quarantine) == 0 and await count(store, CursorRow) == 0
    assert ("telegram", RECEIVE) in store.writes.failing()  # /healthz says so at once
    monkeypatch.undo()
    await inbox.ingest([inbound("m1")], Cursor("telegram", "offset", "2"))
    assert store.writes.failing() == {}  # and recovers at the first good commit
    assert await count(store, Message) == 1


# --- sameday quarantine list | show | retry -------------------------------------------------


async def sameday(*args: str):
    """Run the CLI as an admin would (in a thread: it runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


@pytest.fixture
def config_file(tmp_path, store):
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{store.settings.url}"\n'
                    '[channels.vk]\nenabled = true\ngroup_id = 1\ntoken_env = "VK_TEST_TOKEN"\n'
                    '[staff]\nchat = "console"\n')
    return path


async def test_an_admin_lists_shows_and_retries_after_an_upgrade(inbox, store, config_file,
                                                                 monkeypatch):
    monkeypatch.setenv("VK_TEST_TOKEN", "vk1.a.test-token")
    # Held by an older version that could not read it; this version can.
    await inbox.ingest([], None, [
        Unreadable("vk", RAW_VK_EVENT, "KeyError: 'text'", "event:e1"),
        Unreadable("vk", {"type": "message_new", "object": {}}, "KeyError: 'message'",
                   "event:e2")])
    listed = await sameday("quarantine", "list", "-c", str(config_file))
    assert listed.exit_code == 0, listed.output
    assert "Q1" in listed.output and "event:e1" in listed.output and "Q2" in listed.output
    shown = await sameday("quarantine", "show", "1", "-c", str(config_file))
    assert shown.exit_code == 0 and r"my order is late \ud800" in shown.output
    assert "KeyError: 'text'" in shown.output

    retried = await sameday("quarantine", "retry", "-c", str(config_file))
    assert retried.exit_code == 1  # one is still unreadable
    assert "Q1: stored: opened ticket #1" in retried.output
    assert "Q2: still unreadable: KeyError: 'from_id'" in retried.output
    [ticket] = await rows(store, sa.select(Ticket))
    [message] = await rows(store, sa.select(Message))
    assert ticket.channel == "vk" and message.text == "my order is late \ufffd"
    states = {row.id: row.state for row in await rows(store, sa.select(Quarantine))}
    assert states == {1: quarantine.RELEASED, 2: quarantine.HELD}
    again = await sameday("quarantine", "list", "-c", str(config_file))
    assert "Q1" not in again.output and "Q2" in again.output


async def test_show_of_an_unknown_id_says_how_to_find_one(store, config_file):
    result = await sameday("quarantine", "show", "7", "-c", str(config_file))
    assert result.exit_code == 2 and "no quarantined payload Q7" in result.output
    assert "Traceback" not in result.output


async def test_retry_of_an_id_that_is_not_held_says_so(store, config_file, monkeypatch):
    monkeypatch.setenv("VK_TEST_TOKEN", "vk1.a.test-token")
    result = await sameday("quarantine", "retry", "41", "-c", str(config_file))
    assert result.exit_code == 1 and "Q41: not held" in result.output


def test_a_payload_json_cannot_hold_is_still_kept():
    cyclic: dict = {}
    cyclic["self"] = cyclic
    for payload in (cyclic, {1: "int key", (2, 3): "tuple key"}, {"when": datetime.now()}):
        kept = decode(encode(payload))
        assert kept  # something readable, never an exception
    broken = dataclasses.replace(poison("m9"), raw=None)
    item = quarantine.unstorable(broken, TypeError("naive"))
    assert item.payload[quarantine.INBOUND_MARK]["sent_at"] == "2026-11-24T09:00:00"
