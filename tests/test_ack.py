"""Acknowledgement texts and policy: pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bots.twitter.text import weighted_length
from core.config.settings import AckSettings
from core.domain.ack import (
    AckFacts,
    AckText,
    ack_text,
    back_words,
    choose_language,
    promise_words,
    render,
    skip_reason,
)

MSK = ZoneInfo("Europe/Moscow")
# Tuesday 24 November 2026, 10:00 in Moscow.
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=MSK).astimezone(UTC)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=MSK).astimezone(UTC)


@pytest.mark.parametrize(("due", "ru", "en"), [
    (local(24, 18), "сегодня до 18:00", "today by 6 pm"),
    (local(25, 12), "завтра до 12:00", "tomorrow by 12 pm"),
    (local(25, 12, 30), "завтра до 12:30", "tomorrow by 12:30 pm"),
    (local(27, 12), "в пятницу до 12:00", "on Friday by 12 pm"),
    (local(30, 9), "в понедельник до 09:00", "on Monday by 9 am"),
    (datetime(2026, 12, 25, 12, tzinfo=MSK), "25 декабря до 12:00", "on December 25 by 12 pm"),
])
def test_promise_in_human_words(due, ru, en):
    assert promise_words(due, NOW, MSK, "ru") == ru
    assert promise_words(due, NOW, MSK, "en") == en


def test_wednesday_takes_the_accusative_in_russian():
    assert promise_words(local(25, 18), local(23, 10), MSK, "ru") == "в среду до 18:00"


def test_out_of_hours_sentence():
    friday_night = local(27, 21)
    monday = local(30, 9)
    assert back_words(monday, friday_night, MSK, "ru") == \
        "Сейчас мы не работаем и вернёмся в понедельник в 09:00."
    assert back_words(monday, friday_night, MSK, "en") == \
        "We are closed now and back on Monday at 9 am."


@pytest.mark.parametrize(("text", "expected"), [
    ("Где мой заказ?", "ru"), ("Where is my order?", "en"), ("Order №5 где?", "ru"),
    ("👍👍", "ru"),  # no letters: the default language
])
def test_language_by_script(text, expected):
    assert choose_language(AckSettings(), "telegram", text) == expected


def test_language_by_channel_or_fixed():
    settings = AckSettings(channel_languages={"twitter": "en"})
    assert choose_language(settings, "twitter", "Где мой заказ?") == "en"
    assert choose_language(AckSettings(language="en"), "vk", "Привет") == "en"


def facts(**overrides) -> AckFacts:
    values = {"channel": "twitter", "author_id": "42", "text": "my order is late",
              "now": NOW, "last_acked_at": None}
    return AckFacts(**{**values, **overrides})


@pytest.mark.parametrize(("settings", "message", "reason"), [
    (AckSettings(), facts(), None),
    (AckSettings(enabled=False), facts(), "off"),
    (AckSettings(company_accounts=["twitter:42"]), facts(), "company"),
    (AckSettings(ignore_keywords=["Спасибо"]), facts(text="спасибо большое!"), "ignore"),
    (AckSettings(only_keywords=["заказ"]), facts(text="hello"), "only_keywords"),
    (AckSettings(only_keywords=["заказ"]), facts(text="Где ЗАКАЗ?"), None),
    (AckSettings(quiet_window="10m"), facts(last_acked_at=NOW - timedelta(minutes=3)),
     "quiet_window"),
    (AckSettings(quiet_window="10m"), facts(last_acked_at=NOW - timedelta(minutes=11)), None),
])
def test_ack_policy(settings, message, reason):
    found = skip_reason(settings, message)
    assert (found is None) if reason is None else (reason in found)


def text(channel="telegram", language="ru", opening=None, name="Катя", handle="@katya",
         settings=None) -> str:
    return ack_text(settings or AckSettings(), MSK, AckText(
        channel=channel, language=language, name=name, handle=handle, ticket=12,
        due=local(24, 18), now=NOW, next_opening=opening))


def test_rendering_in_both_languages_during_business_hours():
    assert text() == "Катя, спасибо! Обращение #12 принято, ответим сегодня до 18:00."
    assert text(language="en") == \
        "Катя, thank you! Ticket #12 is open; we will answer today by 6 pm."
    assert text(channel="twitter") == \
        "@katya спасибо! Обращение #12, ответим сегодня до 18:00."


def test_rendering_out_of_hours_says_when_the_team_is_back():
    rendered = text(opening=local(25, 9))
    assert rendered.endswith("Сейчас мы не работаем и вернёмся завтра в 09:00.")


def test_no_name_leaves_no_dangling_comma():
    assert text(name="", handle="").startswith("спасибо!")


LONG = "{handle} {promise} " + "слово " * 120


@pytest.mark.parametrize("handle", ["@катя_магазин", "@shop👩‍👩‍👧‍👦", "@🐱🐱🐱"])
def test_x_limit_with_cyrillic_and_emoji(handle):
    settings = AckSettings(texts={"ru": {"default": "{name}", "twitter": LONG},
                                  "en": {"default": "{name}"}})
    rendered = text(channel="twitter", handle=handle, settings=settings)
    assert weighted_length(rendered) <= 280
    assert rendered.startswith(f"{handle} сегодня до 18:00 ")  # placeholders kept whole
    assert rendered.endswith("слово…")  # cut after a whole word


def test_a_placeholder_is_never_cut_in_the_middle():
    values = {"promise": "в понедельник до 12:00"}
    rendered = render("Ответим " + "очень " * 44 + "{promise}", values, "twitter")
    assert weighted_length(rendered) <= 280
    assert "понедельник" not in rendered or "в понедельник до 12:00" in rendered


def test_texts_within_the_limit_are_left_alone():
    short = "Спасибо! Ответим {promise}."
    assert render(short, {"promise": "завтра до 12:00"}, "twitter") == \
        "Спасибо! Ответим завтра до 12:00."


def test_telegram_and_vk_limit_is_4096_characters():
    rendered = render("{name} " + "a " * 3000, {"name": "Катя"}, "vk")
    assert len(rendered) <= 4096 and rendered.startswith("Катя a a")
