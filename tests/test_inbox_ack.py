"""Ingest with the real calendar and acknowledgement policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from core.clock import VirtualClock
from core.delivery.contract import STAFF_CHANNEL
from core.domain.records import OutboxKind
from core.intake.inbox import Inbox
from core.store.tables import Outbox, Ticket
from tests.conftest import make_settings
from tests.helpers import inbound, rows

MSK = ZoneInfo("Europe/Moscow")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=MSK).astimezone(UTC)


def inbox_at(store, moment: datetime, **config) -> tuple[Inbox, VirtualClock]:
    clock = VirtualClock(moment)
    return Inbox(store, make_settings(**config), clock), clock


async def acks(store) -> list[Outbox]:
    return await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.ACK)
                      .order_by(Outbox.id))


async def test_promise_is_stored_and_stated_in_the_ack_and_on_the_card(store):
    inbox, _ = inbox_at(store, at(24, 10))  # Tuesday 10:00 in Moscow
    await inbox.ingest([inbound("m1", text="Где мой заказ?", at=at(24, 10),
                                handle="@katya")])
    [ticket] = await rows(store, sa.select(Ticket))
    assert ticket.due_at == at(24, 18) and ticket.language == "ru"
    [ack] = await acks(store)
    assert "сегодня до 18:00" in ack.text and f"#{ticket.id}" in ack.text
    [card] = await rows(store, sa.select(Outbox).where(Outbox.channel == STAFF_CHANNEL))
    assert "сегодня до 18:00" in card.text


async def test_friday_evening_ack_says_when_the_team_is_back(store):
    inbox, _ = inbox_at(store, at(27, 20))  # Friday 20:00
    await inbox.ingest([inbound("m1", text="Where is my parcel?", at=at(27, 20))])
    [ticket] = await rows(store, sa.select(Ticket))
    assert ticket.due_at == at(30, 12) and ticket.language == "en"
    [ack] = await acks(store)
    assert "on Monday by 12 pm" in ack.text
    assert "We are closed now and back on Monday at 9 am." in ack.text


async def test_a_burst_of_ten_tweets_gets_one_acknowledgement(store):
    inbox, clock = inbox_at(store, at(24, 10))
    burst = [inbound(f"t{i}", channel="twitter", author="42", thread=f"conv:{i}:42",
                     text=f"problem part {i}", at=at(24, 10)) for i in range(10)]
    await inbox.ingest(burst[:4])
    clock.advance(timedelta(minutes=2))
    await inbox.ingest(burst[4:])
    assert len(await rows(store, sa.select(Ticket))) == 10  # ten conversations ...
    assert len(await acks(store)) == 1  # ... one acknowledgement
    clock.advance(timedelta(minutes=15))  # after the quiet window, a new burst is new
    await inbox.ingest([inbound("t99", channel="twitter", author="42", thread="conv:99:42",
                                at=clock.now())])
    assert len(await acks(store)) == 2


async def test_company_accounts_and_ignored_words_get_no_ack(store):
    inbox, _ = inbox_at(store, at(24, 10), ack={
        "company_accounts": ["twitter:1"], "ignore_keywords": ["спасибо"]})
    await inbox.ingest([
        inbound("a", channel="twitter", author="1", text="our own tweet", at=at(24, 10)),
        inbound("b", author="2", text="Спасибо, всё получил!", at=at(24, 10)),
        inbound("c", author="3", text="Не пришёл заказ", at=at(24, 10)),
    ])
    assert len(await rows(store, sa.select(Ticket))) == 3  # every message is a ticket
    [ack] = await acks(store)
    assert ack.target == {"chat_id": "3"}


async def test_follow_up_messages_are_not_acknowledged_again(store):
    inbox, clock = inbox_at(store, at(24, 10))
    await inbox.ingest([inbound("m1", at=at(24, 10))])
    clock.advance(timedelta(hours=1))
    await inbox.ingest([inbound("m2", at=clock.now())])
    assert len(await acks(store)) == 1


async def test_promise_rule_by_keyword_uses_business_time(store):
    inbox, _ = inbox_at(store, at(24, 12, 30), promise=[
        {"name": "outage", "keywords": ["не работает"], "kind": "business_time",
         "within": "1h"}],
        calendar={"hours": {d: ["09:00-13:00", "14:00-18:00"]
                            for d in ("mon", "tue", "wed", "thu", "fri")}})
    await inbox.ingest([inbound("m1", text="Сайт не работает!", at=at(24, 12, 30)),
                        inbound("m2", author="u2", text="вопрос", at=at(24, 12, 30))])
    outage, other = await rows(store, sa.select(Ticket).order_by(Ticket.id))
    assert outage.due_at == at(24, 14, 30)  # 30 min before lunch, 30 min after
    assert other.due_at == at(24, 18)


async def test_x_acknowledgement_fits_280_weighted_characters(store):
    long_text = "{handle} " + "очень длинный текст подтверждения " * 20 + "{promise}"
    inbox, _ = inbox_at(store, at(24, 10), ack={"texts": {
        "ru": {"default": "{name}", "twitter": long_text}, "en": {"default": "{name}"}}})
    await inbox.ingest([inbound("t1", channel="twitter", author="5", handle="@покупатель",
                                text="где заказ", at=at(24, 10))])
    [ack] = await acks(store)
    from bots.twitter.text import weighted_length

    assert weighted_length(ack.text) <= 280 and ack.text.startswith("@покупатель очень")


async def test_an_acknowledgement_never_names_a_customer_by_a_platform_id(inbox, store):
    """A VK customer whose name could not be read is "id700001" to VK: not a name."""
    import dataclasses

    import sqlalchemy as sa

    from core.store.tables import Outbox
    from tests.helpers import inbound, rows

    anonymous = dataclasses.replace(inbound("m1", channel="vk", author="700001"),
                                    author_handle="id700001", author_name=None)
    await inbox.ingest([anonymous])
    [ack] = await rows(store, sa.select(Outbox).where(Outbox.kind == "ack"))
    assert "id700001" not in ack.text and not ack.text.startswith(",")
