"""X retweets and quotes of the company's own posts that ask nothing are kept as
non-tickets (issue 13): stored in ``mention``, counted on /metrics, never acknowledged,
no staff card. tweepy's AsyncClient against the X emulator, and recorded real payloads
(tests/fixtures/real/twitter, sources in SOURCES.md) through the adapter and the core."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bots.twitter.adapter import TwitterAdapter, asks_something
from bots.twitter.emulator import BOT_USER, XEmulator
from core.app.health import DatabaseCollector
from core.clock import SystemClock
from core.config.load import ConfigError, settings_from_dict
from core.delivery.contract import AdapterContext
from core.domain.payload import unpack
from core.intake.inbox import Inbox
from core.store.tables import Mention, Message, Outbox, Ticket
from tests.adapter_harness import eventually, running
from tests.conftest import make_settings
from tests.helpers import inbound, rows
from tests.test_real_payloads_twitter import load, payload_of
from tests.test_twitter import POLL, SECRETS

BOT = f"@{BOT_USER['username']}"


@pytest.fixture
async def emulator():
    async with XEmulator() as emulator:
        yield emulator


@pytest.fixture
def secrets(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def x_settings(emulator: XEmulator | None = None, **twitter):
    channel = {"enabled": True, "user_id": BOT_USER["id"], **twitter}
    if emulator is not None:
        channel["base_url"] = emulator.url
    return make_settings(channels={"twitter": channel}, staff={"chat": "console"})


def x_adapter(settings) -> TwitterAdapter:
    return TwitterAdapter(settings, poll_interval=POLL, request_timeout=5)


async def noted_metrics(store, settings) -> dict[tuple[str, str], float]:
    """sameday_noted_total as /metrics renders it, by (channel, kind)."""
    registry = CollectorRegistry()
    collector = DatabaseCollector(store, SystemClock(), lambda: settings, dict)
    registry.register(collector)
    await collector.refresh()
    text = generate_latest(registry).decode()
    return {(s.labels["channel"], s.labels["kind"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "sameday_noted_total"}


async def ticket_texts(h) -> list[str]:
    return [m.text for m in await h.rows(sa.select(Message).order_by(Message.id))]


async def settled(h, emulator: XEmulator, tickets: int) -> None:
    """A marker mention after the posts under test: once its acknowledgement is out,
    every earlier post has been read and every acknowledgement queued before it sent."""
    marker = emulator.inject_mention("999", "marker", f"{BOT} marker: where is my order?")
    await eventually(lambda: any(s["in_reply_to_tweet_id"] == marker["id"]
                                 for s in emulator.sent), what="the marker's acknowledgement")
    assert await h.count(Ticket) == tickets + 1


# --- retweets -------------------------------------------------------------------------------


async def test_a_retweet_of_our_post_is_kept_as_a_non_ticket(emulator, store, secrets):
    settings = x_settings(emulator)
    post = emulator.post_as_bot("Our spring sale starts today & runs until Sunday!")
    async with running(x_adapter(settings), store, settings) as h:
        retweet = emulator.inject_retweet("501", "kate", post["id"], name="Катя")
        await settled(h, emulator, tickets=0)
        [kept] = await h.rows(sa.select(Mention))
    assert (kept.channel, kept.external_id, kept.kind) == ("twitter", retweet["id"], "retweet")
    assert (kept.author_id, kept.author_handle, kept.author_name) == ("501", "@kate", "Катя")
    assert kept.text == f"RT {BOT}: Our spring sale starts today & runs until Sunday!"
    assert unpack(kept.raw)["tweet"]["referenced_tweets"] == [
        {"type": "retweeted", "id": post["id"]}]
    assert all(s["in_reply_to_tweet_id"] != retweet["id"] for s in emulator.sent)  # no ack
    cards = await h.rows(sa.select(Outbox).where(Outbox.kind == "staff_card"))
    assert len(cards) == 1 and "RT @" not in cards[0].text  # only the marker's card
    assert await noted_metrics(store, settings) == {("twitter", "retweet"): 1}


async def test_retweets_ignore_only_counts_them(emulator, store, secrets):
    settings = x_settings(emulator, retweets="ignore")
    inbox = Inbox(store, settings, SystemClock())
    post = emulator.post_as_bot("New opening hours from Monday")
    emulator.inject_retweet("501", "kate", post["id"])
    adapter = x_adapter(settings)
    await adapter.start(AdapterContext(settings=settings, clock=SystemClock(),
                                       ingest=inbox.ingest, load_cursor=inbox.load_cursor,
                                       ignore=inbox.ignore))
    try:
        await eventually(lambda: inbox.ignored[("twitter", "retweet")] == 1,
                         what="the retweet counted")
    finally:
        await adapter.stop()
    async with store.session() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Mention)) == 0
        assert await session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 0


# --- quotes ---------------------------------------------------------------------------------

QUOTES = {  # the quote's own text -> asks something?
    f"{BOT} love the new app": False,
    f"{BOT} does it work on Android?": True,
    f"{BOT} これはAndroidで使えますか？": True,  # the full-width question mark
    f"{BOT} see https://example.com/faq?lang=en": False,  # a link's "?" asks nothing
}


@pytest.mark.parametrize("policy, tickets_when", [
    ("question", {False: False, True: True}),
    ("ticket", {False: True, True: True}),
    ("note", {False: False, True: False}),
])
async def test_quotes_of_our_posts_follow_quotes_of_own_posts(emulator, store, secrets,
                                                              policy, tickets_when):
    settings = x_settings(emulator, quotes_of_own_posts=policy)
    post = emulator.post_as_bot("Version 2.0 of our app is out")
    quotes = {text: emulator.inject_quote(str(600 + n), f"fan{n}", text, post["id"])
              for n, text in enumerate(QUOTES)}
    expect_ticket = {text: tickets_when[asks] for text, asks in QUOTES.items()}
    async with running(x_adapter(settings), store, settings) as h:
        await settled(h, emulator, tickets=sum(expect_ticket.values()))
        kept = {m.external_id: m for m in await h.rows(sa.select(Mention))}
        acked = {s["in_reply_to_tweet_id"] for s in emulator.sent}
        stored = {m.external_id for m in await h.rows(sa.select(Message))}
    for text, quote in quotes.items():
        if expect_ticket[text]:
            assert quote["id"] in stored and quote["id"] in acked, text
            assert quote["id"] not in kept, text
        else:
            assert kept[quote["id"]].kind == "quote", text
            assert quote["id"] not in stored and quote["id"] not in acked, text
            [post_line] = [a for a in kept[quote["id"]].attachments if a["kind"] == "post"]
            assert post_line["caption"] == "Version 2.0 of our app is out"
    notes = sum(not ticket for ticket in expect_ticket.values())
    assert await noted_metrics(store, settings) == ({("twitter", "quote"): notes}
                                                    if notes else {})


async def test_a_quote_of_someone_elses_post_mentioning_us_is_a_ticket(emulator, store,
                                                                       secrets):
    settings = x_settings(emulator)
    other = emulator.inject_tweet("700", "news", "Acme raises prices again")
    async with running(x_adapter(settings), store, settings) as h:
        quote = emulator.inject_quote("701", "ann", f"{BOT} is this true", other["id"])
        await eventually(lambda: any(s["in_reply_to_tweet_id"] == quote["id"]
                                     for s in emulator.sent), what="the acknowledgement")
        [message] = await h.rows(sa.select(Message))
        assert message.external_id == quote["id"]
        assert [a["kind"] for a in message.attachments] == ["post"]
        assert await h.count(Mention) == 0


async def test_a_quote_of_our_post_not_naming_us_never_arrives(emulator, store, secrets):
    """X's mentions timeline lists posts that mention the account: a quote that does not
    name it never reaches sameday (nothing stored, nothing billed beyond the read)."""
    settings = x_settings(emulator)
    post = emulator.post_as_bot("We are hiring")
    async with running(x_adapter(settings), store, settings) as h:
        emulator.inject_quote("702", "bob", "nice", post["id"])
        await settled(h, emulator, tickets=0)
        assert await h.count(Mention) == 0


# --- the inbox: stored once, edits ------------------------------------------------------------


async def test_a_noted_mention_delivered_again_is_stored_once(inbox, store):
    retweet = dataclasses.replace(inbound("rt1", channel="twitter"), note="retweet")
    first = await inbox.ingest([retweet, retweet])
    again = await inbox.ingest([retweet])
    assert (first.noted, first.duplicates, first.received) == (1, 1, 0)
    assert (again.noted, again.duplicates) == (0, 1)
    assert [m.kind for m in await rows(store, sa.select(Mention))] == ["retweet"]
    assert await rows(store, sa.select(Ticket)) == []
    assert await rows(store, sa.select(Outbox)) == []


async def test_noted_edits_update_the_kept_one_and_edit_a_tickets_message(inbox, store):
    quote = dataclasses.replace(inbound("q1", channel="twitter", text="nice"), note="quote")
    await inbox.ingest([quote])
    await inbox.ingest([dataclasses.replace(quote, text="very nice", edited=True)])
    [kept] = await rows(store, sa.select(Mention))
    assert kept.text == "very nice"
    # Edited into a question: the edit is a ticket now (stored under the original's id).
    result = await inbox.ingest([dataclasses.replace(quote, text="does it work?",
                                                     edited=True, note=None)])
    assert len(result.opened) == 1
    [message] = await rows(store, sa.select(Message))
    assert (message.external_id, message.text) == ("q1", "does it work?")
    await inbox.ingest([dataclasses.replace(quote, text="works!", edited=True, note=None)])
    # The customer edited the question away: still an edit of the ticket's message.
    result = await inbox.ingest([dataclasses.replace(quote, text="never mind", edited=True)])
    assert result.edited and result.noted == 0
    [message] = await rows(store, sa.select(Message))
    assert (message.external_id, message.text) == ("q1", "never mind")
    assert len(await rows(store, sa.select(Mention))) == 1
    assert len(await rows(store, sa.select(Ticket))) == 1


# --- recorded real payloads through the adapter and the core ---------------------------------


def real_adapter(user_id: str, **twitter) -> TwitterAdapter:
    return TwitterAdapter(x_settings(None, user_id=user_id, **twitter))


@pytest.mark.parametrize("name", ["retweet_with_mentions", "retweet_search_page"])
async def test_recorded_retweets_are_kept_as_non_tickets(name, inbox, store, secrets):
    payload = payload_of(load(name))
    inbound_ = real_adapter("1").read_payload(payload)
    result = await inbox.ingest([inbound_])
    assert (result.noted, result.received, result.opened) == (1, 0, [])
    [kept] = await rows(store, sa.select(Mention))
    assert kept.kind == "retweet" and kept.text.startswith("RT @")
    assert kept.external_id == payload["tweet"]["id"]
    assert kept.author_handle == "@" + payload["author"]["username"]
    assert unpack(kept.raw) == payload
    assert await rows(store, sa.select(Outbox)) == []  # no acknowledgement, no card


async def test_a_recorded_quote_of_our_post_without_a_question_is_a_non_ticket(
        inbox, store, secrets):
    """stream_quote_with_photo.json: "Fury" + a photo, quoting @Manie_DS (41783881): as
    that account, the quote asks nothing and is kept with its photo."""
    payload = payload_of(load("stream_quote_with_photo"))
    result = await inbox.ingest([real_adapter("41783881").read_payload(payload)])
    assert result.noted == 1 and result.opened == []
    [kept] = await rows(store, sa.select(Mention))
    assert kept.kind == "quote" and kept.text.startswith("Fury https://t.co/")
    assert [a["kind"] for a in kept.attachments] == ["photo", "post"]
    assert kept.attachments[0]["url"] == "https://pbs.twimg.com/media/Ex5ldKwXEAEnEnI.jpg"
    assert await rows(store, sa.select(Outbox)) == []


@pytest.mark.parametrize("name, user_id, twitter", [
    ("stream_quote_with_photo", "41783881", {"quotes_of_own_posts": "ticket"}),
    ("stream_quote_with_photo", "1", {}),  # somebody else's post: a mention
    # A reply to @wongmjane (337119125) that also quotes her post: a reply, a ticket.
    ("quote_and_reply", "337119125", {}),
    ("quote_and_reply", "1", {}),
])
async def test_recorded_quotes_that_open_tickets(name, user_id, twitter, inbox, store, secrets):
    payload = payload_of(load(name))
    inbound_ = real_adapter(user_id, **twitter).read_payload(payload)
    assert inbound_.note is None
    result = await inbox.ingest([inbound_])
    assert len(result.opened) == 1 and result.noted == 0
    [card] = await rows(store, sa.select(Outbox).where(Outbox.kind == "staff_card"))
    assert "https://x.com/i/web/status/" + payload["quoted"]["id"] in card.text
    assert await rows(store, sa.select(Mention)) == []


# --- the rule and the config -----------------------------------------------------------------


@pytest.mark.parametrize("text, asks", [
    ("@acme why was I charged twice?", True),
    ("@acme 退款什么时候到？", True),
    ("@acme ? ", True),
    ("@acme love it https://t.co/abc?x=1", False),
    ("great news www.example.com/?q", False),
    ("", False),
])
def test_asks_something(text, asks):
    assert asks_something(text) is asks


@pytest.mark.parametrize("key, value, allowed", [
    ("retweets", "drop", "'note' or 'ignore'"),
    ("quotes_of_own_posts", "always", "'question', 'ticket' or 'note'"),
])
def test_a_bad_value_names_the_key_and_what_is_allowed(key, value, allowed):
    with pytest.raises(ConfigError) as caught:
        settings_from_dict({"channels": {"twitter": {key: value}}}, source="my.toml",
                           check_secrets=False)
    [line] = [str(p) for p in caught.value.problems]
    assert line.startswith(f"my.toml: channels.twitter.{key}") and allowed in line, line
    assert repr(value) in line


def test_the_defaults():
    settings = make_settings()
    assert settings.channels.twitter.retweets == "note"
    assert settings.channels.twitter.quotes_of_own_posts == "question"


def test_migration_0010_goes_down_and_up(tmp_path):
    from alembic import command

    from core.config.settings import DatabaseSettings
    from core.store.engine import alembic_config, current_revision, upgrade

    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    upgrade(settings)
    head = current_revision(settings)
    command.downgrade(alembic_config(settings), "0009")
    assert current_revision(settings) == "0009"
    upgrade(settings)
    assert current_revision(settings) == head
