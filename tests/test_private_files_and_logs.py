"""Customers' data stays private on disk and out of the log: the database, its WAL and
shared-memory files are 0600 in a 0700 folder; logs at info carry ids, never texts."""

from __future__ import annotations

import logging
import os
import stat

import pytest
import sqlalchemy as sa

from bots.common.polling import read_payloads
from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import TelegramEmulator
from core.app.logs import setup_logging
from core.config.settings import TEXTS_LOGGER, DatabaseSettings
from core.store.engine import Store, upgrade
from core.store.tables import Customer, Message, Quarantine
from tests.adapter_harness import eventually, running_all
from tests.conftest import START, make_settings

SECRET_TEXT = "Мой паспорт 4510 998877, забытый-кот-Барсик"  # distinctive, never logged
STAFF = -1003000
ANNA = 111


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """A umask that lets everyone read new files: the modes must not come from it."""
    old = os.umask(0)
    yield
    os.umask(old)


async def test_database_wal_and_shm_are_0600_in_a_0700_folder(tmp_path, open_umask):
    folder = tmp_path / "state" / "sameday"
    database = folder / "sameday.db"
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{database}")
    upgrade(settings)
    store = Store(settings)
    try:
        async with store.session() as session, session.begin():
            session.add(Customer(channel="telegram", external_user_id="1", name="Kate",
                                 created_at=START))
        # While a connection is open the WAL and shared-memory files exist.
        wal, shm = (folder / "sameday.db-wal"), (folder / "sameday.db-shm")
        assert wal.exists() and shm.exists()
        assert mode(database) == 0o600
        assert mode(wal) == 0o600
        assert mode(shm) == 0o600
        assert mode(folder) == 0o700
    finally:
        await store.close()


async def test_files_left_open_by_an_older_install_are_made_private(tmp_path, open_umask):
    database = tmp_path / "old.db"
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{database}")
    upgrade(settings)
    for path in (database, tmp_path / "old.db-wal"):
        path.touch()
        os.chmod(path, 0o644)
    store = Store(settings)  # what the daemon does at start
    await store.close()
    assert mode(database) == 0o600
    assert mode(tmp_path / "old.db-wal") == 0o600


def records_with(caplog, text: str) -> list[logging.LogRecord]:
    found = []
    for record in caplog.records:
        rendered = record.getMessage() + (record.exc_text or "")
        if record.exc_info and record.exc_info[1] is not None:
            rendered += repr(record.exc_info[1])
        if text in rendered:
            found.append(record)
    return found


@pytest.fixture
def tokens(monkeypatch):
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123:staff")


async def test_ingest_and_a_staff_answer_log_no_customer_text_at_info(store, tokens,
                                                                      caplog):
    caplog.set_level(logging.INFO)
    async with TelegramEmulator() as telegram:
        settings = make_settings(
            channels={"telegram": {"enabled": True, "base_url": f"{telegram.url}/bot",
                                   "poll_timeout": "1s"}},
            staff={"chat": "telegram", "telegram_chat_id": STAFF,
                   "members": [{"name": "anna", "telegram_id": ANNA, "role": "admin"}]})
        async with running_all([TelegramAdapter(settings)], store, settings) as h:
            telegram.inject_message(chat_id=501, user_id=501, text=SECRET_TEXT,
                                    username="kate")
            # An update the adapter cannot read, quoting the text: quarantined, logged.
            telegram.inject_update({"message": {"message_id": 9, "text": SECRET_TEXT}})
            await eventually(lambda: any(SECRET_TEXT in m["text"]
                                         for m in telegram.sent_to(STAFF)), what="the card")
            card = next(m for m in telegram.sent_to(STAFF) if SECRET_TEXT in m["text"])
            await eventually(lambda: h.desk.ticket_for_staff_message(
                f"{STAFF}:{card['message_id']}"), what="the card recorded")
            telegram.inject_message(chat_id=STAFF, user_id=ANNA, chat_type="supergroup",
                                    text="Ответ про паспорт и Барсика",
                                    reply_to_message_id=card["message_id"])
            await eventually(lambda: telegram.sent_to(501) and any(
                "Барсика" in m["text"] for m in telegram.sent_to(501)), what="the answer")
            await eventually(lambda: h.count(Quarantine), what="the quarantined update")
    # The flow really carried the text through the store ...
    async with store.session() as session:
        assert SECRET_TEXT in await session.scalar(sa.select(Message.text).limit(1))
    # ... and logged something, but no record at info or above quotes the customer.
    assert any(r.levelno >= logging.INFO for r in caplog.records)
    assert any("quarantin" in r.getMessage() for r in caplog.records)
    assert records_with(caplog, SECRET_TEXT) == []
    assert records_with(caplog, "Барсик") == []


class Unreadable:
    name = "fake"

    def read_payload(self, payload):
        raise ValueError(f"cannot read {payload['text']!r}")


def test_an_unreadable_payload_is_logged_by_id_only(caplog):
    caplog.set_level(logging.INFO)
    batch, unreadable = read_payloads(Unreadable(), [{"id": "77", "text": SECRET_TEXT}],
                                      key=lambda payload: payload["id"])
    assert batch == [] and len(unreadable) == 1
    assert SECRET_TEXT in repr(unreadable[0].payload)  # kept whole in quarantine
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "77" in warning.getMessage() and "ValueError" in warning.getMessage()
    assert records_with(caplog, SECRET_TEXT) == []


@pytest.fixture
def restore_logging():
    root, texts = logging.getLogger(), logging.getLogger(TEXTS_LOGGER)
    saved = root.handlers[:], root.level, texts.level
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    texts.setLevel(saved[2])


@pytest.mark.parametrize("log_texts", [False, True])
def test_the_log_texts_switch_writes_texts_at_debug_only(log_texts, capsys,
                                                         restore_logging):
    setup_logging("info", "text", texts=log_texts)
    read_payloads(Unreadable(), [{"id": "77", "text": SECRET_TEXT}], key=lambda p: p["id"])
    lines = capsys.readouterr().err.splitlines()
    assert any("77" in line and "WARNING" in line for line in lines)
    quoting = [line for line in lines if SECRET_TEXT in line]
    if log_texts:
        assert quoting and all(" DEBUG " in line for line in quoting)
    else:
        assert quoting == []


async def test_a_failed_statement_does_not_quote_its_parameters(store):
    async with store.session() as session, session.begin():
        session.add(Customer(channel="telegram", external_user_id="1", name=SECRET_TEXT,
                                 created_at=START))
    with pytest.raises(sa.exc.IntegrityError) as failed:
        async with store.session() as session, session.begin():
            session.add(Customer(channel="telegram", external_user_id="1", name=SECRET_TEXT,
                                 created_at=START))
    assert SECRET_TEXT not in str(failed.value)
    assert "hidden" in str(failed.value)


def test_log_texts_is_a_daemon_setting():
    assert make_settings().daemon.log_texts is False
    assert make_settings(daemon={"log_texts": True}).daemon.log_texts is True


def test_media_written_to_disk_are_0600(tmp_path, open_umask):
    from core.app.media import _write

    outcome = _write(tmp_path / "photo.jpg", b"\xff\xd8 a customer's photo")
    assert outcome.path.read_bytes().endswith(b"photo")
    assert mode(tmp_path / "photo.jpg") == 0o600
    _write(tmp_path / "photo.jpg", b"again")  # replaced whole, still private
    assert mode(tmp_path / "photo.jpg") == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["photo.jpg"]
