"""The Telegram staff group end to end: customer message -> card -> staff answer ->
delivered on the customer's own channel, through the real adapters and emulators."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import BOT_USER, TelegramEmulator
from bots.telegram.staff import button_command
from bots.twitter.adapter import TwitterAdapter
from bots.twitter.emulator import BOT_USER as X_BOT
from bots.twitter.emulator import XEmulator
from bots.vk.adapter import VKAdapter
from bots.vk.emulator import VKEmulator
from core.domain.records import TicketStatus
from core.store.tables import Ticket
from tests.adapter_harness import eventually, running_all
from tests.conftest import make_settings

STAFF = -1003000
ANNA, BORIS, STRANGER = 111, 222, 999


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    # The flows do not depend on the database (test_commands.py covers PostgreSQL).
    return f"sqlite+aiosqlite:///{tmp_path / 'staff.db'}"


@pytest.fixture(autouse=True)
def tokens(monkeypatch):
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123:staff")
    monkeypatch.setenv("SAMEDAY_VK_TOKEN", "vk-staff")
    for name in ("BEARER_TOKEN", "CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
                 "ACCESS_TOKEN_SECRET"):
        monkeypatch.setenv(f"SAMEDAY_X_{name}", "x-staff")


@pytest.fixture
async def telegram():
    async with TelegramEmulator() as emulator:
        yield emulator


def settings_for(telegram, vk=None, x=None):
    channels = {"telegram": {"enabled": True, "base_url": f"{telegram.url}/bot",
                             "poll_timeout": "1s"}}
    if vk is not None:
        channels["vk"] = {"enabled": True, "group_id": 1, "base_url": vk.url,
                          "long_poll_wait": "1s"}
    if x is not None:
        channels["twitter"] = {"enabled": True, "user_id": X_BOT["id"], "base_url": x.url}
    return make_settings(channels=channels, staff={
        "chat": "telegram", "telegram_chat_id": STAFF,
        "members": [{"name": "anna", "telegram_id": ANNA, "role": "admin"},
                    {"name": "boris", "telegram_id": BORIS}]})


def staff_says(telegram, user_id: int, text: str, **kwargs) -> dict:
    return telegram.inject_message(chat_id=STAFF, user_id=user_id, text=text,
                                   chat_type="supergroup", **kwargs)


async def card_of(telegram, ticket_id: int, h=None) -> dict:
    """The ticket's card, once delivered and recorded (staff can answer it then)."""
    def is_card(m: dict) -> bool:
        return m["text"].startswith(f"<b>#{ticket_id}</b> · ")
    await eventually(lambda: any(is_card(m) for m in telegram.sent_to(STAFF)),
                     what=f"card #{ticket_id}")
    card = next(m for m in telegram.sent_to(STAFF) if is_card(m))
    if h is not None:
        await eventually(lambda: h.desk.ticket_for_staff_message(f"{STAFF}:{card['message_id']}"),
                         what="the card recorded as sent")
    return card


async def ticket(h, ticket_id: int = 1) -> Ticket:
    [row] = await h.rows(sa.select(Ticket).where(Ticket.id == ticket_id))
    return row


async def test_telegram_customer_answered_by_replying_to_the_card(telegram, store):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        question = telegram.inject_message(chat_id=501, user_id=501, text="Где мой заказ?",
                                           username="kate")
        card = await card_of(telegram, 1, h)
        assert card["parse_mode"] == "HTML" and "Где мой заказ?" in card["text"]
        assert [b["text"] for b in card["reply_markup"]["inline_keyboard"][0]] == [
            "Take", "Close", "Snooze 1h"]
        command = staff_says(telegram, ANNA, "Заказ уже в пути, будет завтра.",
                             reply_to_message_id=card["message_id"])
        await eventually(lambda: any("в пути" in m["text"] for m in telegram.sent_to(501)),
                         what="the answer in the customer's chat")
        answer = next(m for m in telegram.sent_to(501) if "в пути" in m["text"])
        assert answer["reply_to_message"]["message_id"] == question["message_id"]
        # ONE change in the staff group for the answer: the card, edited once delivered
        # (no "queued" reply, no separate confirmation: the group allows 20 a minute).
        await eventually(lambda: any("delivered" in e["text"] for e in telegram.edits),
                         what="the card edited to say the answer was delivered")
        [edit] = telegram.edits
        assert edit["message_id"] == card["message_id"]
        assert "✅ answered · anna" in edit["text"] and "answered by anna" in edit["text"]
        assert [m for m in telegram.sent_to(STAFF) if m["message_id"] != card["message_id"]
                and command["message_id"] != m["message_id"]] == []
        answered = await ticket(h)
        assert answered.status == TicketStatus.ANSWERED and answered.first_response_at
        assert answered.assignee == "anna"


async def test_vk_customer_answered_from_the_staff_group(telegram, store):
    async with VKEmulator() as vk:
        settings = settings_for(telegram, vk=vk)
        adapters = [TelegramAdapter(settings), VKAdapter(settings)]
        async with running_all(adapters, store, settings) as h:
            vk.inject_message(from_id=77, text="Не пришёл товар")
            card = await card_of(telegram, 1, h)
            assert "VK" in card["text"]
            staff_says(telegram, BORIS, "Проверим и напишем сегодня.",
                       reply_to_message_id=card["message_id"])
            await eventually(lambda: any("Проверим" in m["message"] for m in vk.sent),
                             what="the answer on VK")
            answer = next(m for m in vk.sent if "Проверим" in m["message"])
            assert answer["peer_id"] == 77
            assert (await ticket(h)).first_response_at is not None


async def test_x_customer_answered_from_the_staff_group(telegram, store):
    async with XEmulator() as x:
        settings = settings_for(telegram, x=x)
        adapters = [TelegramAdapter(settings), TwitterAdapter(settings, poll_interval=0.3)]
        async with running_all(adapters, store, settings) as h:
            mention = x.inject_mention("55", "kate", f"@{X_BOT['username']} my order?")
            card = await card_of(telegram, 1, h)
            assert "X" in card["text"]
            staff_says(telegram, ANNA, "It ships today.", reply_to_message_id=card["message_id"])
            await eventually(lambda: any(m["text"] == "It ships today." for m in x.sent),
                             what="the reply on X")
            reply = next(m for m in x.sent if m["text"] == "It ships today.")
            assert reply["in_reply_to_tweet_id"] == mention["id"]
            assert (await ticket(h)).first_response_at is not None


async def test_buttons_take_and_close(telegram, store):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        telegram.inject_message(chat_id=502, user_id=502, text="help")
        card = await card_of(telegram, 1, h)
        telegram.inject_callback(user_id=ANNA, chat_id=STAFF, message_id=card["message_id"],
                                 data="take:1")
        await eventually(lambda: any("yours" in a.get("text", "")
                                     for a in telegram.callback_answers), what="the toast")
        assert (await ticket(h)).assignee == "anna"
        await eventually(lambda: any("👤 anna" in e["text"] for e in telegram.edits),
                         what="the card showing the assignee")
        telegram.inject_callback(user_id=ANNA, chat_id=STAFF, message_id=card["message_id"],
                                 data="close:1")
        await eventually(lambda: _status_is(h, TicketStatus.CLOSED), what="closed")
        await eventually(lambda: any(e["reply_markup"] and e["reply_markup"][
            "inline_keyboard"][0][0]["text"] == "Reopen" for e in telegram.edits),
            what="the closed card offering Reopen")


async def _status_is(h, status) -> bool:
    return (await ticket(h)).status == status


async def test_strangers_are_refused_and_customers_commands_are_messages(telegram, store):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        telegram.inject_message(chat_id=503, user_id=503, text="first")
        card = await card_of(telegram, 1, h)
        staff_says(telegram, STRANGER, "/close 1")
        await eventually(lambda: any("only for the support team" in m["text"]
                                     for m in telegram.sent_to(STAFF)), what="the refusal")
        staff_says(telegram, STRANGER, "I answer instead", reply_to_message_id=card["message_id"])
        telegram.inject_callback(user_id=STRANGER, chat_id=STAFF, message_id=card["message_id"],
                                 data="close:1")
        await eventually(lambda: len(telegram.callback_answers) == 1, what="the toast")
        assert "only for the support team" in telegram.callback_answers[0]["text"]
        # A staff member's press outside the staff group (issue 12) is refused too.
        telegram.inject_callback(user_id=ANNA, chat_id=503, message_id=card["message_id"],
                                 data="/close 1")
        await eventually(lambda: len(telegram.callback_answers) == 2, what="the second toast")
        assert "no longer valid" in telegram.callback_answers[1]["text"]
        # A customer typing a staff command in their own chat is just writing to us.
        telegram.inject_message(chat_id=503, user_id=503, text="/close 1")
        await eventually(lambda: h.count(Ticket), what="ticket")
        await eventually(lambda: any("/close 1" in m["text"] for m in telegram.sent_to(STAFF)),
                         what="the follow-up notice")
        current = await ticket(h)
        assert current.status == TicketStatus.OPEN and current.first_response_at is None
        assert not any("I answer instead" in m["text"] for m in telegram.sent_to(503))


async def test_customer_text_cannot_inject_markup(telegram, store):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        telegram.inject_message(chat_id=504, user_id=504,
                                text="<b>urgent</b> <a href='http://evil.example'>click</a>")
        card = await card_of(telegram, 1, h)
        assert "&lt;b&gt;urgent&lt;/b&gt;" in card["text"]
        assert "<a href" not in card["text"]


async def test_forum_topics_one_per_ticket(telegram, store):
    telegram.make_forum(STAFF)
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        telegram.inject_message(chat_id=505, user_id=505, text="first question")
        card = await card_of(telegram, 1, h)
        [topic] = telegram.topics[STAFF]
        assert card["message_thread_id"] == topic["message_thread_id"]
        assert topic["name"].startswith("#1 Telegram")
        telegram.inject_message(chat_id=505, user_id=505, text="and another thing")
        await eventually(lambda: any("another thing" in m["text"]
                                     for m in telegram.sent_to(STAFF)), what="follow-up")
        follow_up = next(m for m in telegram.sent_to(STAFF) if "another thing" in m["text"])
        assert follow_up["message_thread_id"] == topic["message_thread_id"]
        # Writing in the ticket's topic answers the customer.
        staff_says(telegram, ANNA, "Answer from the topic",
                   message_thread_id=topic["message_thread_id"])
        await eventually(lambda: any(m["text"] == "Answer from the topic"
                                     for m in telegram.sent_to(505)), what="the answer")
        assert (await ticket(h)).staff_topic == topic["message_thread_id"]


async def test_delivery_failure_is_reported_where_the_staff_member_answered(telegram, store):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        telegram.inject_message(chat_id=506, user_id=506, text="hi")
        card = await card_of(telegram, 1, h)
        telegram.block(506)
        command = staff_says(telegram, ANNA, "Hello!", reply_to_message_id=card["message_id"])
        await eventually(lambda: any("could not be delivered" in m["text"]
                                     for m in telegram.sent_to(STAFF)), what="the failure")
        notice = next(m for m in telegram.sent_to(STAFF) if "could not be delivered" in m["text"])
        assert notice["reply_to_message"]["message_id"] == command["message_id"]
        assert "blocked" in notice["text"]


async def test_reload_from_the_staff_group(telegram, store):
    settings = settings_for(telegram)
    calls = []

    def reload_config():
        calls.append(1)
        return None if len(calls) == 1 else "config.toml: daemon.log_level = 'loud': ..."

    async with running_all([TelegramAdapter(settings)], store, settings,
                           reload_config=reload_config):
        staff_says(telegram, BORIS, "/reload")
        await eventually(lambda: any("for admins only" in m["text"]
                                     for m in telegram.sent_to(STAFF)), what="refusal")
        staff_says(telegram, ANNA, f"/reload@{BOT_USER['username']}")
        await eventually(lambda: any(m["text"] == "Config reloaded."
                                     for m in telegram.sent_to(STAFF)), what="reloaded")
        staff_says(telegram, ANNA, "/reload")
        await eventually(lambda: any("NOT reloaded" in m["text"] and "log_level" in m["text"]
                                     for m in telegram.sent_to(STAFF)), what="the error")
    assert len(calls) == 2


async def test_a_reply_to_an_unknown_bot_message_gets_a_hint(telegram, store):
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings):
        staff_says(telegram, ANNA, "/whoami")
        await eventually(lambda: any("You are anna" in m["text"]
                                     for m in telegram.sent_to(STAFF)), what="whoami")
        bot_message = next(m for m in telegram.sent_to(STAFF) if "You are anna" in m["text"])
        staff_says(telegram, ANNA, "is this sent?", reply_to_message_id=bot_message["message_id"])
        await eventually(lambda: any("Use /reply N text" in m["text"]
                                     for m in telegram.sent_to(STAFF)), what="the hint")


def test_button_data_maps_to_commands():
    assert button_command("take:12") == "/take 12"
    assert button_command("snooze:12:1h") == "/snooze 12 1h"
    assert button_command("drop table:1") is None
    assert button_command("take:x") is None
    assert button_command("close:٤") is None  # an Arabic-Indic digit is not ticket #4


# --- rendering staff messages (pure) -----------------------------------------------------------


def test_staff_messages_render_as_escaped_html_with_links_and_buttons():
    from bots.telegram.staff import keyboard, render
    from core.config.load import settings_from_dict
    from core.staff.cards import Button, Card, StaffMessage

    members = settings_from_dict({"staff": {"members": [
        {"name": "anna", "telegram_id": 111}, {"name": "boris"}]}},
        check_secrets=False).staff.members
    card = Card(ticket_id=7, channel="VK", customer="@<i>kate</i>", promise="сегодня до 18:00",
                opened="24.11 10:00", state="🆕 new", note="taken by <anna>",
                quote="<b>where</b> & <a href='x'>")
    message = StaffMessage(ticket_id=7, lines=("⚠ late: see #7",), card=card,
                           mentions=("anna", "boris"),
                           buttons=(Button("Take", "/take 7"),))
    html = render(message, members)
    assert html.splitlines()[:2] == [
        "⚠ late: see <b>#7</b>",
        '<a href="tg://user?id=111">@anna</a> @boris']  # a member without an id: plain
    assert "<b>#7</b> · VK · @&lt;i&gt;kate&lt;/i&gt;" in html
    assert "<i>taken by &lt;anna&gt;</i>" in html
    assert "&lt;b&gt;where&lt;/b&gt; &amp; &lt;a href='x'&gt;" in html
    assert "<a href='x'>" not in html
    markup = keyboard(message.buttons).to_dict()
    assert markup["inline_keyboard"][0][0] == {"text": "Take", "callback_data": "/take 7"}


def test_staff_members_are_known_by_their_telegram_id():
    from types import SimpleNamespace

    from bots.telegram.staff import TelegramStaffChat
    from core.config.load import settings_from_dict
    from core.staff.commands import StaffDesk

    settings = settings_from_dict({"staff": {"members": [
        {"name": "anna", "telegram_id": 1, "role": "admin"}, {"name": "boris"}]}},
        check_secrets=False)
    desk = StaffDesk(None, settings, None)  # looking people up needs no database
    chat = TelegramStaffChat(SimpleNamespace(
        settings=settings, context=SimpleNamespace(staff_desk=desk)))
    anna = chat.actor(1, {"chat_id": -100})
    assert (anna.name, anna.role, anna.origin) == ("anna", "admin", {"chat_id": -100})
    for stranger in (2, 3, 0):  # boris has no Telegram id: he cannot act from Telegram
        assert not chat.actor(stranger, {}).is_staff


def test_rows_queued_by_the_previous_version_are_still_delivered():
    """An upgrade may find staff rows of sameday 0.1 pending: HTML text, [label, data]
    buttons, the staff chat's address in the target."""
    from bots.telegram.staff import render
    from core.staff.cards import Button, StaffMessage

    legacy = {"ticket": 3, "parse_mode": "HTML", "buttons": [["Snooze 1h", "snooze:3:1h"]],
              "chat_id": -100, "reply_to_message_id": 5}
    message = StaffMessage.from_row(legacy, "<b>#3</b> closed &amp; <i>done</i>")
    assert message.lines == ("#3 closed & done",) and message.ticket_id == 3
    assert message.buttons == (Button("Snooze 1h", "/snooze 3 1h"),)
    assert message.reply_to == {"chat_id": -100, "message_id": 5, "thread_id": None}
    assert render(message, []) == "<b>#3</b> closed &amp; done"


async def test_a_staff_answer_waits_out_a_database_outage(telegram, store, monkeypatch):
    """Issue 12: an answer typed while the database fails was skipped and lost. Now the
    update stays unconfirmed while the database is unavailable, runs once it is back, and
    the staff member hears that it ran late."""
    import sqlalchemy as sa_exc_module

    from bots.telegram import adapter as telegram_adapter

    monkeypatch.setattr(telegram_adapter, "DELAY_WORTH_SAYING", 0.0)
    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        telegram.inject_message(chat_id=507, user_id=507, text="where is it?")
        card = await card_of(telegram, 1, h)
        real_execute, failures = h.desk.execute, []

        async def unavailable_twice(*args, **kwargs):
            if len(failures) < 2:
                failures.append(1)
                raise sa_exc_module.exc.OperationalError("BEGIN", {}, OSError("disk full"))
            return await real_execute(*args, **kwargs)

        monkeypatch.setattr(h.desk, "execute", unavailable_twice)
        staff_says(telegram, ANNA, "It ships today.", reply_to_message_id=card["message_id"])
        await eventually(lambda: any(m["text"] == "It ships today."
                                     for m in telegram.sent_to(507)), timeout=20,
                         what="the answer, once the database is back")
        await eventually(lambda: any("late: the database was unavailable" in m["text"]
                                     for m in telegram.sent_to(STAFF)), what="the late notice")
        assert len(failures) == 2
        assert sum(m["text"] == "It ships today." for m in telegram.sent_to(507)) == 1


async def test_a_staff_update_that_fails_for_good_is_quarantined_not_skipped(
        telegram, store, monkeypatch):
    import json

    from core.store.tables import Quarantine

    settings = settings_for(telegram)
    async with running_all([TelegramAdapter(settings)], store, settings) as h:
        async def broken(*args, **kwargs):
            raise RuntimeError("a bug in a command")

        monkeypatch.setattr(h.desk, "execute", broken)
        said = staff_says(telegram, ANNA, "/stats")
        telegram.inject_message(chat_id=508, user_id=508, text="after it")
        await eventually(lambda: h.count(Quarantine), what="the staff update quarantined")
        await eventually(lambda: h.count(Ticket), what="the next update handled")
        [held] = await h.rows(sa.select(Quarantine))
        assert "a bug in a command" in held.error
        assert json.loads(held.payload)["message"]["text"] == said["text"] == "/stats"
        last = telegram.updates[-1]["update_id"]
        await eventually(lambda: telegram.confirmed > last, what="both confirmed")
