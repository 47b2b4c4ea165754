"""Saved answers: `[templates]` checked by check-config, `/t <name> N` (and `/t <name>`
replying to a card) sent like `/reply`, `/templates`, closest names for a typo."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from rich.console import Console
from typer.testing import CliRunner

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import TelegramEmulator
from core.app.cli import app
from core.config.load import ConfigError, settings_from_dict
from core.domain.records import Direction, OutboxKind, TicketStatus
from core.domain.templates import addressed_as, closest_names, fill, first_words, text_for
from core.intake.inbox import Inbox
from core.staff.commands import StaffDesk
from core.staff.console import run_console
from core.store.tables import Message, Outbox, Ticket
from tests.adapter_harness import eventually, running_all
from tests.conftest import make_settings
from tests.helpers import inbound, rows, update

TEMPLATES = {
    "late": {"ru": "{name}, извините за задержку! По {ticket} ответим {promise}. {agent}",
             "en": "Sorry for the wait, {name}! We answer {ticket} {promise}. {agent}"},
    "thanks": {"en": "Thanks, {name}! — {agent}"},
    "later": {"ru": "Вернёмся к вам позже."},
}
STAFF = {"chat": "console", "members": [{"name": "anna", "telegram_id": 1, "role": "admin"},
                                        {"name": "boris", "telegram_id": 2}]}


def template_settings(**more):
    return make_settings(staff=STAFF, templates=TEMPLATES, **more)


def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(raw, source="my.toml", check_secrets=False)
    return [str(p) for p in caught.value.problems]


# --- the config ------------------------------------------------------------------------------


def test_templates_are_read_per_language():
    settings = settings_from_dict({"templates": TEMPLATES}, check_secrets=False)
    assert settings.templates["late"]["en"].startswith("Sorry for the wait")
    assert settings_from_dict({}, check_secrets=False).templates == {}


@pytest.mark.parametrize(("templates", "line"), [
    ({"late": {"en": "Sorry, {nam}!"}},
     "my.toml: templates.late.en = 'Sorry, {nam}!': unknown placeholder {nam}; allowed: "
     "{name}, {handle}, {ticket}, {promise}, {back}, {agent}"),
    ({"late": {"ru": "Ответим {due}"}},
     "my.toml: templates.late.ru = 'Ответим {due}': unknown placeholder {due}; allowed: "
     "{name}, {handle}, {ticket}, {promise}, {back}, {agent}"),
    ({"late": {"de": "Entschuldigung"}},
     "my.toml: templates.late.de = 'de': allowed: 'ru' or 'en'"),
    ({"late": {}}, 'my.toml: templates.late: has no text; allowed: ru = "..." and/or en = "..."'),
    ({"late": "Sorry!"}, "my.toml: templates.late = 'Sorry!': must be a table of texts by "
                         "language; allowed: [templates.<name>] with ru = \"...\" and/or "
                         "en = \"...\""),
    ({"late": {"en": "   "}}, "my.toml: templates.late.en = '   ': is empty; allowed: the text "
                             "of the answer"),
    ({"12": {"en": "x"}}, "my.toml: templates.12 = '12': is not a saved answer's name; allowed: "
                          "a letter, then up to 31 letters, digits, _ or - (/t <name> N)"),
    ({"Late": {"en": "x"}, "late": {"en": "y"}},
     "my.toml: templates: 'late' and 'Late' are one name to /t (case does not count); "
     "allowed: different names"),
])
def test_a_bad_template_is_one_line_naming_the_key_value_and_what_is_allowed(templates, line):
    assert problems({"templates": templates}) == [line]


def test_check_config_names_the_file_key_and_bad_placeholder(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[templates.late]\nru = "Извините, {name}!"\nen = "Sorry, {agnet}!"\n',
                    encoding="utf-8")
    result = CliRunner().invoke(app, ["check-config", str(path), "--no-secrets"])
    assert result.exit_code == 2, result.output
    assert (f"{path}: templates.late.en = 'Sorry, {{agnet}}!': unknown placeholder {{agnet}}; "
            f"allowed: {{name}}, {{handle}}, {{ticket}}, {{promise}}, {{back}}, {{agent}}"
            ) in result.output
    assert "Traceback" not in result.output
    path.write_text('[templates.late]\nru = "Извините, {name}! {agent}"\n', encoding="utf-8")
    assert CliRunner().invoke(app, ["check-config", str(path), "--no-secrets"]).exit_code == 0


# --- the pure parts --------------------------------------------------------------------------


def test_the_text_in_the_tickets_language_else_the_default_else_any():
    texts = {"ru": "привет", "en": "hello"}
    assert text_for(texts, "en", "ru") == ("en", "hello")
    assert text_for(texts, None, "ru") == ("ru", "привет")
    assert text_for({"en": "hello"}, "ru", "ru") == ("en", "hello")
    assert text_for({"ru": "привет"}, "en", "ru") == ("ru", "привет")


def test_placeholders_are_filled_and_an_empty_one_leaves_no_gap():
    values = {"name": "Kate", "ticket": "#3", "agent": "anna"}
    assert fill("{name}, answer on {ticket}. {agent}", values) == "Kate, answer on #3. anna"
    assert fill("{name}, we are on it.  {agent}", {**values, "name": ""}) == \
        "we are on it. anna"
    assert fill("Braces {} and {unknown} stay", values) == "Braces {} and {unknown} stay"
    assert addressed_as(None, "@kate") == "kate" and addressed_as("Kate P", "@kate") == "Kate P"
    assert addressed_as(None, "id700001") == ""


def test_closest_names_and_first_words():
    assert closest_names(TEMPLATES, "lat") == ["late", "later"]
    assert closest_names(TEMPLATES, "THANKS!") == ["thanks"]
    assert closest_names(TEMPLATES, "zzzz") == []
    assert first_words("one two three", 2) == "one two…"
    assert first_words("one\ntwo", 8) == "one two"


# --- /t and /templates at the desk -----------------------------------------------------------


async def desk_with_tickets(store, clock, settings=None) -> StaffDesk:
    settings = settings or template_settings()
    inbox = Inbox(store, settings, clock)
    await inbox.ingest([inbound("m1", author="u1", handle="@kate", text="Где мой заказ?")])
    await inbox.ingest([inbound("m2", author="u2", handle="@bob", text="Where is my parcel?")])
    return StaffDesk(store, settings, clock)


async def test_a_saved_answer_goes_out_like_a_reply_in_the_tickets_language(store, clock):
    desk = await desk_with_tickets(store, clock)
    anna = desk.actor_named("anna")
    reply = await desk.execute(anna, "/t late 1")
    assert reply.ok and reply.quiet  # like /reply: the card shows the delivery
    assert reply.text.startswith("Queued to @kate on Telegram (#1)")
    ru = "kate, извините за задержку! По #1 ответим сегодня до 18:00. anna"
    assert reply.text.endswith(f"Saved answer late (ru): {ru}")
    reply = await desk.execute(desk.actor_named("boris"), "/T LATE #2")
    en = "Sorry for the wait, bob! We answer #2 today by 6 pm. boris"
    assert reply.ok and reply.text.endswith(f"Saved answer late (en): {en}")

    answers = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.REPLY)
                         .order_by(Outbox.id))
    assert [(a.ticket_id, a.text) for a in answers] == [(1, ru), (2, en)]
    assert answers[0].target["confirm"]["by"] == "anna"
    out = await rows(store, sa.select(Message).where(Message.direction == Direction.OUT)
                     .order_by(Message.id))
    assert [(m.ticket_id, m.author, m.text) for m in out] == [(1, "anna", ru), (2, "boris", en)]
    tickets = await rows(store, sa.select(Ticket).order_by(Ticket.id))
    assert [(t.status, t.assignee) for t in tickets] == [(TicketStatus.ANSWERED, "anna"),
                                                         (TicketStatus.ANSWERED, "boris")]
    assert all(t.first_response_at == clock.now() for t in tickets)


async def test_a_missing_language_falls_back_to_the_default_one(store, clock):
    desk = await desk_with_tickets(store, clock)
    anna = desk.actor_named("anna")
    # "later" has Russian only: the English ticket gets it (ack.default_language = ru).
    assert (await desk.execute(anna, "/t later 2")).text.endswith(
        "Saved answer later (ru): Вернёмся к вам позже.")
    # "thanks" has English only: the Russian ticket gets the only text there is.
    assert (await desk.execute(anna, "/t thanks 1")).text.endswith(
        "Saved answer thanks (en): Thanks, kate! — anna")


async def test_out_of_hours_the_back_placeholder_says_when_the_team_returns(store, clock):
    settings = make_settings(staff=STAFF, templates={"night": {"en": "Noted. {back}"}})
    desk = await desk_with_tickets(store, clock, settings)
    clock.advance(timedelta(hours=10))  # 20:00 on Tuesday in Moscow
    reply = await desk.execute(desk.actor_named("anna"), "/t night 2")
    assert reply.text.endswith("Noted. We are closed now and back tomorrow at 9 am.")


async def test_bad_uses_of_t_get_a_helpful_answer(store, clock):
    desk = await desk_with_tickets(store, clock)
    anna = desk.actor_named("anna")
    unknown = await desk.execute(anna, "/t lat 1")
    assert not unknown.ok
    assert unknown.text == "No saved answer lat. Did you mean late or later? /templates lists them."
    assert (await desk.execute(anna, "/t unknownname 1")).text == \
        "No saved answer unknownname. /templates lists them."
    assert (await desk.execute(anna, "/t late 99")).text == "There is no ticket #99."
    assert (await desk.execute(anna, "/t late")).text.startswith("Usage: /t <name> N")
    assert (await desk.execute(anna, "/t 1")).text.startswith("Usage: /t <name> N")
    await desk.execute(anna, "/close 1")
    closed = await desk.execute(anna, "/t late 1")
    assert (closed.ok, closed.text) == (False, "#1 is closed. /reopen 1 first.")
    assert await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.REPLY)) == []


async def test_a_saved_answer_longer_than_the_limit_is_refused_like_a_reply(store, clock):
    settings = make_settings(staff={**STAFF, "max_reply_chars": 20}, templates=TEMPLATES)
    desk = await desk_with_tickets(store, clock, settings)
    reply = await desk.execute(desk.actor_named("anna"), "/t late 2")
    assert not reply.ok and "the limit is 20 (staff.max_reply_chars)" in reply.text
    assert await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.REPLY)) == []


async def test_templates_lists_names_with_their_first_words(store, clock):
    desk = await desk_with_tickets(store, clock)
    reply = await desk.execute(desk.actor_named("boris"), "/templates")
    assert reply.text.splitlines() == [
        "Saved answers (/t <name> N, or /t <name> replying to a card):",
        "late — ru: {name}, извините за задержку! По {ticket} ответим {promise}.… · "
        "en: Sorry for the wait, {name}! We answer {ticket}…",
        "later — ru: Вернёмся к вам позже.",
        "thanks — en: Thanks, {name}! — {agent}",
    ]
    bare = StaffDesk(store, make_settings(staff=STAFF), clock)
    assert (await bare.execute(bare.actor_named("anna"), "/templates")).text.startswith(
        "No saved answers yet: an admin adds them to the config as [templates.<name>]")
    assert not (await bare.execute(bare.actor_named("anna"), "/t late 1")).ok


# --- the console -----------------------------------------------------------------------------


async def scripted(lines) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_templates_through_the_console(store, clock):
    desk = await desk_with_tickets(store, clock)
    console = Console(file=io.StringIO(), width=200, soft_wrap=True)
    await run_console(desk, desk.actor_named("anna"),
                      scripted(["templates", "t late 2", "/t latte 1", "/t late"]), console,
                      staff_sink=False)
    text = console.file.getvalue()
    assert "thanks — en: Thanks, {name}! — {agent}" in text
    assert "Saved answer late (en): Sorry for the wait, bob! We answer #2 today by 6 pm. anna" \
        in text
    assert "No saved answer latte. Did you mean late or later? /templates lists them." in text
    assert "Usage: /t <name> N" in text
    [answer] = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.REPLY))
    assert answer.ticket_id == 2 and answer.text.startswith("Sorry for the wait, bob!")


# --- the Telegram staff group ----------------------------------------------------------------


GROUP = -1003000
ANNA = 111


@pytest.fixture
def tokens(monkeypatch):
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123:staff")


def group_settings(telegram):
    return make_settings(
        channels={"telegram": {"enabled": True, "base_url": f"{telegram.url}/bot",
                               "poll_timeout": "1s"}},
        staff={"chat": "telegram", "telegram_chat_id": GROUP,
               "members": [{"name": "anna", "telegram_id": ANNA, "role": "admin"}]},
        # The daemon's clock is the wall clock here: no {promise} in what is checked.
        templates={**TEMPLATES, "hi": {"ru": "{name}, это {agent}, по {ticket} всё решим.",
                                       "en": "{name}, {agent} here about {ticket}."}})


def staff_says(telegram, text: str, **kwargs) -> dict:
    return telegram.inject_message(chat_id=GROUP, user_id=ANNA, text=text,
                                   chat_type="supergroup", **kwargs)


async def card_of(telegram, h, ticket_id: int) -> dict:
    def card() -> dict | None:
        return next((m for m in telegram.sent_to(GROUP)
                     if m["text"].startswith(f"<b>#{ticket_id}</b> · ")), None)
    await eventually(lambda: card() is not None, what=f"the card of #{ticket_id}")
    await eventually(lambda: h.desk.ticket_for_staff_message(f"{GROUP}:{card()['message_id']}"),
                     what="the card recorded as sent")
    return card()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # as the other flows
async def test_t_replying_to_a_card_answers_that_ticket(tokens, store):
    async with TelegramEmulator() as telegram:
        settings = group_settings(telegram)
        async with running_all([TelegramAdapter(settings)], store, settings) as h:
            telegram.inject_message(chat_id=601, user_id=601, text="Где мой заказ?",
                                    username="kate", first_name="Kate")
            telegram.inject_message(chat_id=602, user_id=602, text="Where is my parcel?",
                                    username="bob", first_name="Bob")
            await card_of(telegram, h, 1)
            card = await card_of(telegram, h, 2)
            staff_says(telegram, "/t hi", reply_to_message_id=card["message_id"])
            await eventually(lambda: answers(telegram, 602), what="the saved answer")
            assert answers(telegram, 602) == ["Bob, anna here about #2."]
            assert answers(telegram, 601) == []  # the other ticket is not answered
            # A typo gets the closest names in the group, next to the staff member's line.
            typo = staff_says(telegram, "/t latte", reply_to_message_id=card["message_id"])
            await eventually(lambda: any("No saved answer latte" in m["text"]
                                         for m in telegram.sent_to(GROUP)), what="the hint")
            hint = next(m for m in telegram.sent_to(GROUP) if "No saved answer" in m["text"])
            assert hint["text"] == ("No saved answer latte. Did you mean late or later? "
                                    "/templates lists them.")
            assert hint["reply_to_message"]["message_id"] == typo["message_id"]
            # Without a card to reply to, the number is needed.
            staff_says(telegram, "/t thanks")
            await eventually(lambda: any(m["text"].startswith("Usage: /t &lt;name&gt; N")
                                         for m in telegram.sent_to(GROUP)), what="usage")
            staff_says(telegram, "/t unknownname 1")
            await eventually(lambda: any("No saved answer unknownname. /templates" in m["text"]
                                         for m in telegram.sent_to(GROUP)), what="unknown")
            staff_says(telegram, "/templates")
            await eventually(lambda: any(m["text"].startswith("Saved answers")
                                         for m in telegram.sent_to(GROUP)), what="the list")
            assert answers(telegram, 601) == []
            assert answers(telegram, 602) == ["Bob, anna here about #2."]


def answers(telegram, chat_id: int) -> list[str]:
    """What staff sent a customer (their acknowledgement left out)."""
    return [m["text"] for m in telegram.sent_to(chat_id) if "#" in m["text"]
            and "спасибо" not in m["text"] and "thank you" not in m["text"]]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_t_in_the_tickets_topic_answers_that_ticket(tokens, store):
    async with TelegramEmulator() as telegram:
        telegram.make_forum(GROUP)
        settings = group_settings(telegram)
        async with running_all([TelegramAdapter(settings)], store, settings) as h:
            telegram.inject_message(chat_id=603, user_id=603, text="Где мой заказ?",
                                    username="kate", first_name="Катя")
            await card_of(telegram, h, 1)
            [topic] = telegram.topics[GROUP]
            await eventually(lambda: h.desk.ticket_for_staff_thread(topic["message_thread_id"]),
                             what="the topic recorded")
            staff_says(telegram, "/t hi", message_thread_id=topic["message_thread_id"])
            await eventually(lambda: answers(telegram, 603), what="the saved answer")
            assert answers(telegram, 603) == ["Катя, это anna, по #1 всё решим."]
            [ticket] = await rows(store, sa.select(Ticket))
            assert ticket.status == TicketStatus.ANSWERED


async def test_a_redelivered_t_answers_once(store, clock):
    desk = await desk_with_tickets(store, clock)
    anna = desk.actor_named("anna", {"key": "-100:77"})
    assert (await desk.execute(anna, "/t late 1")).ok
    again = await desk.execute(anna, "/t late 1")
    assert again.text == "Already done: this message was handled before."
    assert len(await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.REPLY))) == 1
    await update(store, sa.update(Ticket).values(language=None))  # no language stored
    assert (await desk.execute(desk.actor_named("anna"), "/t late 2")).text.endswith(
        "Saved answer late (ru): bob, извините за задержку! По #2 ответим сегодня до 18:00. anna")
