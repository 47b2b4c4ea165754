"""`/history`, `/customer` and `/find`: a customer's earlier tickets, who they are, and
full-text search over what customers wrote (SQLite FTS5 with prefixes, PostgreSQL with
Russian and English stemming), at the desk, in the console and in the Telegram group."""

from __future__ import annotations

import dataclasses
import io
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rich.console import Console
from sqlmodel import SQLModel

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import TelegramEmulator
from core.config.settings import DatabaseSettings
from core.intake.inbox import Inbox
from core.staff.commands import StaffDesk
from core.staff.console import run_console
from core.store.engine import Store, sync_url, upgrade
from core.store.search import (
    SEARCH_TABLE,
    SEARCH_TRIGGERS,
    fts5_query,
    has_words,
    search_messages,
)
from core.store.tables import Message, Ticket
from tests.adapter_harness import eventually, running_all
from tests.conftest import START, make_settings
from tests.helpers import inbound, update

STAFF = {"chat": "console", "members": [{"name": "anna", "telegram_id": 1, "role": "admin"}]}
SETTINGS = make_settings(staff=STAFF, customers={"tags": {"telegram:kate": ["vip", "opt"]}})


def desk_for(store, clock, settings=SETTINGS) -> StaffDesk:
    return StaffDesk(store, settings, clock)


async def say(desk: StaffDesk, line: str):
    return await desk.execute(desk.actor_named("anna"), line)


async def ingest(store, clock, *messages, settings=SETTINGS) -> None:
    await Inbox(store, settings, clock).ingest(list(messages))


def message(number: int, author: str, text: str, at: datetime, thread: str | None = None,
            handle: str | None = None, **more):
    """A customer's message opening a ticket of its own (a thread of its own)."""
    return dataclasses.replace(inbound(f"m{number}", author=author, text=text, at=at,
                                       thread=thread or f"chat:{author}:{number}",
                                       handle=handle), **more)


# --- the FTS5 query --------------------------------------------------------------------------


def test_every_word_is_a_quoted_prefix_and_the_websearch_syntax_is_kept():
    assert fts5_query("заказ 4411") == '(("заказ"* AND "4411"*))'
    assert fts5_query('order "is late" -refund or Café') == \
        '(("order"* AND "is late"*) NOT "refund"*) OR (("Café"*))'
    # Nothing the staff member types is FTS5 syntax: quotes, stars, NEAR, AND, columns.
    assert fts5_query('NEAR(a b) text:x* AND "x') == \
        '(("NEAR(a"* AND "b)"* AND "text:x*"* AND "AND"* AND "x"*))'
    assert fts5_query('ab"cd') == '(("ab""cd"*))'
    for nothing in ("", "   ", "!!!", "-refund", "or", '""', "- * ^"):
        assert fts5_query(nothing) is None and not has_words(nothing)


@hypothesis_settings(max_examples=300, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(st.characters(codec="utf-8"), max_size=80)
       | st.lists(st.sampled_from(['"', "-", "*", "or", "OR", "NOT", "(", ")", "^", ":",
                                   "NEAR", "a", "заказ", "+", "{", "}"]), max_size=12)
       .map(" ".join))
def test_any_search_is_a_valid_fts5_query(text):
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE VIRTUAL TABLE s USING fts5(text, "
                        "tokenize='unicode61 remove_diacritics 2', prefix='2 3')")
    connection.execute("INSERT INTO s(text) VALUES ('заказ order 4411')")
    query = fts5_query(text)
    if query is not None:
        connection.execute("SELECT rowid FROM s WHERE s MATCH ?", (query,)).fetchall()
    connection.close()


# --- /find on SQLite and PostgreSQL ------------------------------------------------------------


TEXTS = {
    1: ("kate", "Где мой заказ 4411? Уже неделя прошла"),
    2: ("ivan", "Заказы не пришли, оба"),
    3: ("olga", "Доставка опоздала на два дня"),
    4: ("bob", "My order is late again"),
    5: ("mary", "Orders never arrived at the café"),
    6: ("tom", "I want a refund please"),
}


async def search_fixture(store, clock) -> StaffDesk:
    for number, (author, text) in TEXTS.items():
        at = START - timedelta(minutes=9 - number)
        await ingest(store, clock, message(number, author, text, at, handle=f"@{author}"))
    return desk_for(store, clock)


def found(reply) -> list[int]:
    """The ticket numbers a /find answer lists, in its order."""
    return [int(line.split()[0][1:]) for line in reply.text.splitlines()
            if line.startswith("#")]


async def test_find_russian_and_english_with_each_databases_matching(store, clock):
    desk = await search_fixture(store, clock)
    assert sorted(found(await say(desk, "/find заказ"))) == [1, 2]  # both: prefix / stem
    assert sorted(found(await say(desk, "/find ORDER"))) == [4, 5]
    assert found(await say(desk, "/find 4411")) == [1]
    assert found(await say(desk, "/find доставка")) == [3]
    if store.is_sqlite:
        # FTS5 matches prefixes: the longer word does not find the shorter one...
        assert found(await say(desk, "/find заказы")) == [2]
        assert found(await say(desk, "/find orders")) == [5]
        assert sorted(found(await say(desk, "/find зак"))) == [1, 2]  # ...a beginning does
        assert found(await say(desk, "/find cafe")) == [5]  # accents do not count
    else:
        # PostgreSQL stems Russian and English: "заказы" finds "заказ", "orders" "order".
        assert sorted(found(await say(desk, "/find заказы"))) == [1, 2]
        assert sorted(found(await say(desk, "/find orders"))) == [4, 5]
        assert found(await say(desk, "/find доставки")) == [3]
        assert found(await say(desk, "/find arrive")) == [5]


async def test_find_understands_phrases_exclusions_and_alternatives(store, clock):
    desk = await search_fixture(store, clock)
    assert found(await say(desk, "/find order -late")) == [5]
    assert found(await say(desk, '/find "order is late"')) == [4]
    assert found(await say(desk, '/find "late order"')) == []
    assert sorted(found(await say(desk, "/find refund or доставка"))) == [3, 6]
    assert found(await say(desk, "/find заказ неделя")) == [1]  # every word must occur


async def test_find_answers_in_lines_with_the_matching_words(store, clock):
    desk = await search_fixture(store, clock)
    reply = await say(desk, "/find refund")
    assert reply.ok
    assert reply.text == "#6 Telegram · @tom · 24.11.2026 · 🆕 new · “I want a refund please”"
    nothing = await say(desk, "/find parcel")
    assert (nothing.ok, nothing.text) == (True, "No customer message matches “parcel”.")
    long = "слово " * 30 + "посылка потерялась где-то в пути, помогите"
    await ingest(store, clock, message(40, "lena", long, START))
    [line] = (await say(desk, "/find посылка")).text.splitlines()
    assert line.endswith("“…слово слово слово посылка потерялась где-то в пути, помогите”"), line


async def test_find_searches_only_what_customers_wrote(store, clock):
    desk = await search_fixture(store, clock)
    await say(desk, "/reply 3 Ваша посылка отправлена курьером")
    await say(desk, "/note 3 секретное примечание")
    assert found(await say(desk, "/find курьером")) == []
    assert found(await say(desk, "/find секретное")) == []
    assert found(await say(desk, "/find доставка")) == [3]


async def test_find_puts_the_best_match_first(store, clock):
    desk = await search_fixture(store, clock)
    await ingest(store, clock, message(7, "zed", "refund refund refund, I said refund", START))
    assert found(await say(desk, "/find refund")) == [7, 6]


async def test_find_follows_edits_and_deletions(store, clock):
    desk = await search_fixture(store, clock)
    await update(store, sa.update(Message).where(Message.external_id == "m6")
                 .values(text="Посылка так и не пришла"))
    assert found(await say(desk, "/find refund")) == []
    assert found(await say(desk, "/find посылка")) == [6]
    await update(store, sa.delete(Message).where(Message.external_id == "m6"))
    assert found(await say(desk, "/find посылка")) == []
    # A message that stops being the customer's leaves the index, and comes back.
    await update(store, sa.update(Message).where(Message.external_id == "m5")
                 .values(direction="note"))
    assert found(await say(desk, "/find café")) == []
    await update(store, sa.update(Message).where(Message.external_id == "m5")
                 .values(direction="in"))
    assert found(await say(desk, "/find café")) == [5]


async def test_find_shows_at_most_twenty_lines(store, clock):
    desk = desk_for(store, clock)
    await ingest(store, clock, *[message(i, f"user{i}", f"Заказ номер {i}", START)
                                 for i in range(1, 26)])
    lines = (await say(desk, "/find заказ")).text.splitlines()
    assert len(lines) == 20
    assert lines[-1] == "… and more; narrow the search: add a word, or -word to leave one out"
    assert len({line.split()[0] for line in lines[:-1]}) == 19


async def test_bad_searches_get_a_helpful_answer(store, clock):
    desk = await search_fixture(store, clock)
    empty = await say(desk, "/find")
    assert (empty.ok, empty.text) == (False, "Usage: /find <text>")
    for line in ("/find !!!", "/find -refund", '/find ""'):
        reply = await say(desk, line)
        assert not reply.ok and reply.text.startswith("Nothing to search for. /find <words>")
    odd = await say(desk, "/find \udcff NEAR( \"x")  # a lone surrogate, FTS5 syntax
    assert odd.ok and odd.text == "No customer message matches “� NEAR( \"x”."


async def test_the_index_is_made_by_the_migration_for_messages_already_stored(database_url):
    settings = DatabaseSettings(url=database_url)
    upgrade(settings, "0010")
    engine = sa.create_engine(sync_url(database_url))

    def add_message(text: str, direction: str = "in") -> None:
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO message (ticket_id, channel, direction, text, created_at) "
                "VALUES (1, 'telegram', :direction, :text, :at)"),
                {"direction": direction, "text": text, "at": START})

    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO customer (id, channel, external_user_id, tags, created_at) "
            "VALUES (1, 'telegram', 'old', '[]', :at)"), {"at": START})
        connection.execute(sa.text(
            "INSERT INTO ticket (id, channel, thread_key, customer_id, status, priority, "
            "cycle, opened_at, last_customer_at, escalation_level) VALUES "
            "(1, 'telegram', 'chat:old', 1, 'closed', 'normal', 1, :at, :at, 0)"),
            {"at": START})
    add_message("старый заказ")
    add_message("ответ про заказ", "out")
    upgrade(settings, "0011")
    add_message("новый заказ")  # kept by the triggers (SQLite) or the index (PostgreSQL)
    engine.dispose()
    store = Store(settings)
    try:
        async with store.session() as session:
            matches = await search_messages(session, "заказ", 10)
        assert [(m.ticket_id, m.text) for m in matches] == [(1, "новый заказ")]
        async with store.session() as session:
            matches = await search_messages(session, "старый", 10)
        assert [(m.ticket_id, m.text) for m in matches] == [(1, "старый заказ")]
    finally:
        await store.close()


async def test_search_works_on_a_schema_made_by_create_all(database_url, clock):
    engine = sa.create_engine(sync_url(database_url))
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    store = Store(DatabaseSettings(url=database_url))
    try:
        await ingest(store, clock, message(1, "kate", "Где мой заказ?", START))
        assert found(await say(desk_for(store, clock), "/find заказ")) == [1]
    finally:
        await store.close()


def test_the_search_objects_survive_every_migration(database_url):
    """A later migration that rebuilds `message` on SQLite must make them again."""
    upgrade(DatabaseSettings(url=database_url))
    engine = sa.create_engine(sync_url(database_url))
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            names = set(connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')").scalars())
            assert {SEARCH_TABLE, *SEARCH_TRIGGERS} <= names
        else:
            # The query /find runs is answered by the GIN index.
            connection.exec_driver_sql("SET enable_seqscan = off")
            from core.store import search
            plan = connection.execute(sa.text(
                f"EXPLAIN SELECT id FROM message WHERE direction = 'in' AND "
                f"{search._PG_VECTOR} @@ {search._PG_QUERY}"), {"query": "заказ"}).scalars()
            assert "ix_message_search" in "\n".join(plan)
    engine.dispose()


# --- /history ----------------------------------------------------------------------------------


def day(n: int, hour: int = 10) -> datetime:
    """A moment on the n-th day from Tuesday 24.11.2026, at `hour` in Moscow."""
    return datetime(2026, 11, 24 + n, hour - 3, tzinfo=UTC)


async def history_fixture(store, clock) -> StaffDesk:
    """kate: #1 answered the same day and closed, #2 answered the next day, #3 waiting,
    #4 closed unanswered; olga's #5 is someone else's."""
    desk = desk_for(store, clock)
    for number, text in enumerate(["Где мой заказ?", "Опять задержка\nс доставкой",
                                   "Третий вопрос " + "очень " * 30, "спам"], start=1):
        clock.set(day(number - 1))
        await ingest(store, clock, message(number, "kate", text, clock.now(), handle="@kate"))
    await ingest(store, clock, message(5, "olga", "чужой тикет", clock.now(), handle="@olga"))
    clock.set(day(0, 15))
    await say(desk, "/reply 1 Отправили")
    await say(desk, "/close 1")
    clock.set(day(2, 11))
    await say(desk, "/reply 2 Извините, уже едет")
    clock.set(day(3, 12))
    await say(desk, "/close 4")
    return desk


async def test_history_lists_the_customers_tickets_newest_first_with_their_outcome(store,
                                                                                 clock):
    desk = await history_fixture(store, clock)
    reply = await say(desk, "/history 2")
    assert reply.ok
    assert reply.text.splitlines() == [
        "@kate on Telegram: 4 tickets, newest first",
        "#4 Telegram · opened 27.11.2026 · closed without an answer · “спам”",
        "#3 Telegram · opened 26.11.2026 · not answered yet, waiting · “Третий вопрос "
        + ("очень " * 30)[:56] + "…”",
        "#2 Telegram · opened 25.11.2026 · answered 26.11, not the same day · "
        "“Опять задержка с доставкой”  ← this one",
        "#1 Telegram · opened 24.11.2026 · answered the same day · closed · "
        "“Где мой заказ?”",
    ]
    assert "чужой" not in (await say(desk, "/history 4")).text
    await update(store, sa.update(Ticket).where(Ticket.id == 4).values(merged_into=3))
    assert "#4 Telegram · opened 27.11.2026 · closed without an answer · merged into #3 · " \
           "“спам”" in (await say(desk, "/history 4")).text
    olga = await say(desk, "/history 5")
    assert olga.text.splitlines() == [
        "@olga on Telegram: 1 ticket, newest first",
        "#5 Telegram · opened 27.11.2026 · not answered yet, waiting · “чужой тикет”  "
        "← this one",
        "No earlier or later tickets: this is their only one.",
    ]


async def test_history_of_a_customer_who_wrote_again_and_of_a_long_history(store, clock):
    desk = await history_fixture(store, clock)
    clock.set(day(4, 14))
    await ingest(store, clock, message(6, "kate", "Так где же?", clock.now(),
                                       thread="chat:kate:2"))
    assert "#2 Telegram · opened 25.11.2026 · answered 26.11, not the same day · waiting " \
           "again" in (await say(desk, "/history 1")).text
    for number in range(7, 27):
        clock.advance(timedelta(minutes=10))
        await ingest(store, clock, message(number, "kate", f"вопрос {number}", clock.now()))
    lines = (await say(desk, "/history 1")).text.splitlines()
    assert lines[0] == "@kate on Telegram: 24 tickets, newest first"
    assert len(lines) == 22 and lines[-1] == "… and 4 older"
    assert lines[1].startswith("#25 ")  # the newest (message 6 joined #2)


async def test_history_of_no_such_ticket(store, clock):
    desk = desk_for(store, clock)
    reply = await say(desk, "/history 999")
    assert (reply.ok, reply.text) == (False, "There is no ticket #999.")
    assert (await say(desk, "/history")).text.startswith("Usage: /history N")
    assert (await say(desk, "/history kate")).text.startswith("Usage: /history N")


# --- /customer ---------------------------------------------------------------------------------


async def test_customer_shows_names_handles_tags_tickets_and_notes(store, clock):
    desk = await history_fixture(store, clock)
    clock.set(day(4))
    await ingest(store, clock, message(30, "kate", "ещё", clock.now(), author_name="Kate Petrova",
                                       handle="@kate_p"))
    await say(desk, "/note 1 звонила по телефону")
    await say(desk, "/note 2 просит возврат")
    await say(desk, "/note 5 чужая заметка")
    reply = await say(desk, "/customer 2")
    assert reply.ok
    assert reply.text.splitlines() == [
        "Kate Petrova",
        "Telegram: @kate_p · id kate",
        "Tags: vip, opt",
        "Tickets: 5 (2 waiting) — /history 2",
        "First seen: 24.11.2026 10:00",
        "Internal notes: 2 — /show N shows a ticket's notes",
    ]
    olga = (await say(desk, "/customer 5")).text.splitlines()
    assert olga[0] == "@olga" and olga[2] == "Tags: none" and olga[3] == \
        "Tickets: 1 (1 waiting) — /history 5"
    assert (await say(desk, "/customer 99")).text == "There is no ticket #99."
    assert (await say(desk, "/customer")).text.startswith("Usage: /customer N")


# --- the console and the Telegram staff group ---------------------------------------------------


async def scripted(lines) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_lookups_through_the_console(store, clock):
    desk = await history_fixture(store, clock)
    console = Console(file=io.StringIO(), width=200, soft_wrap=True)
    await run_console(desk, desk.actor_named("anna"),
                      scripted(["history 1", "customer 1", "find доставкой", "/find",
                                "/find ???", "/history 999"]), console, staff_sink=False)
    text = console.file.getvalue()
    assert "@kate on Telegram: 4 tickets, newest first" in text
    assert "#1 Telegram · opened 24.11.2026 · answered the same day · closed" in text
    assert "Tags: vip, opt" in text and "Internal notes: 0" in text
    assert "#2 Telegram · @kate · 25.11.2026 · ✅ answered · anna · “Опять задержка с доставкой”" \
        in text
    assert "Usage: /find <text>" in text
    assert "Nothing to search for." in text
    assert "There is no ticket #999." in text


GROUP = -1003000
ANNA = 111


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # as the other flows
async def test_lookups_in_the_telegram_staff_group(store, monkeypatch):
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123:staff")
    async with TelegramEmulator() as telegram:
        settings = make_settings(
            channels={"telegram": {"enabled": True, "base_url": f"{telegram.url}/bot",
                                   "poll_timeout": "1s"}},
            staff={"chat": "telegram", "telegram_chat_id": GROUP,
                   "members": [{"name": "anna", "telegram_id": ANNA}]})

        def group_says(text: str) -> None:
            telegram.inject_message(chat_id=GROUP, user_id=ANNA, text=text,
                                    chat_type="supergroup")

        async def answer_with(start: str) -> str:
            def answer() -> str | None:
                return next((m["text"] for m in telegram.sent_to(GROUP)
                             if m["text"].startswith(start)), None)
            await eventually(lambda: answer() is not None, what=start)
            return answer()

        async with running_all([TelegramAdapter(settings)], store, settings):
            telegram.inject_message(chat_id=701, user_id=701, text="Где мой заказ <b>4411</b>?",
                                    username="kate")
            await answer_with("<b>#1</b> · ")  # the card
            group_says("/find заказ")
            line = await answer_with("<b>#1</b> Telegram")
            assert "“Где мой заказ &lt;b&gt;4411&lt;/b&gt;?”" in line  # escaped
            group_says("/history 1")
            assert "← this one" in await answer_with("@kate (Customer) on Telegram: 1 ticket")
            group_says("/customer 1")
            assert "Tickets: 1 (1 waiting)" in await answer_with("Customer\nTelegram: @kate")
            group_says("/history 999")
            await answer_with("There is no ticket <b>#999</b>.")
            group_says("/find")
            await answer_with("Usage: /find &lt;text&gt;")
            group_says("/find посылка")
            await answer_with("No customer message matches “посылка”.")
