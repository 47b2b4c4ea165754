"""The X adapter with tweepy's AsyncClient against the loopback X API v2 emulator,
and the pure 280-weighted-character rule."""

from __future__ import annotations

import logging
import time

import aiohttp
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.twitter.adapter import TwitterAdapter, newest_id, parse_created_at
from bots.twitter.emulator import BOT_USER, RateWindow, XEmulator
from bots.twitter.text import ELLIPSIS, fit_tweet, weighted_length
from core.clock import SystemClock
from core.delivery.contract import AdapterContext, DeliveryError
from core.domain.records import Outbound
from core.intake.inbox import Inbox
from core.store.tables import Cursor, Customer, Message, Ticket
from tests.adapter_harness import eventually, running
from tests.conftest import make_settings

POLL = 0.05  # seconds; the config refuses < 5 s, the constructor override exists for this
SECRETS = {
    "SAMEDAY_X_BEARER_TOKEN": "test-bearer-token",
    "SAMEDAY_X_CONSUMER_KEY": "test-consumer-key",
    "SAMEDAY_X_CONSUMER_SECRET": "test-consumer-secret",
    "SAMEDAY_X_ACCESS_TOKEN": "1000000001-test-access-token",
    "SAMEDAY_X_ACCESS_TOKEN_SECRET": "test-access-token-secret",
}


@pytest.fixture
async def emulator():
    async with XEmulator() as emulator:
        yield emulator


@pytest.fixture
def x_settings(emulator, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return make_settings(
        channels={"twitter": {"enabled": True, "user_id": BOT_USER["id"],
                              "base_url": emulator.url}},
        staff={"chat": "console"})


def x_adapter(settings) -> TwitterAdapter:
    return TwitterAdapter(settings, poll_interval=POLL, request_timeout=5)


def mention(emulator: XEmulator, n: int, text: str | None = None) -> dict:
    return emulator.inject_mention(str(500 + n), f"customer{n}",
                                   text or f"@acme_support order {n} is late")


async def message_ids(h) -> list[str]:
    """External ids of stored messages, in the order they were stored."""
    return [m.external_id for m in await h.rows(sa.select(Message).order_by(Message.id))]


async def saved_cursor(h) -> str | None:
    return await h.scalar(sa.select(Cursor.value).where(Cursor.channel == "twitter",
                                                        Cursor.key == "since_id"))


# --- receiving and acknowledging ------------------------------------------------------------


async def test_mention_becomes_ticket_and_ack_replies_to_that_tweet(emulator, store,
                                                                    x_settings):
    async with running(x_adapter(x_settings), store, x_settings) as h:
        tweet = emulator.inject_mention("501", "kate", "@acme_support где мой заказ? 😡",
                                        name="Катя")
        await eventually(lambda: len(emulator.sent) == 1, what="the acknowledgement")
        [ticket] = await h.rows(sa.select(Ticket))
        assert ticket.channel == "twitter"
        assert ticket.thread_key == f"conv:{tweet['conversation_id']}:501"
        [ack] = emulator.sent
        assert ack["in_reply_to_tweet_id"] == tweet["id"]
        assert f"#{ticket.id}" in ack["text"] and weighted_length(ack["text"]) <= 280
        [message] = await h.rows(sa.select(Message))
        assert (message.external_id, message.text) == (tweet["id"], tweet["text"])
        assert message.created_at == parse_created_at(tweet["created_at"])
        [customer] = await h.rows(sa.select(Customer))
        assert (customer.external_user_id, customer.handle, customer.name) == \
            ("501", "@kate", "Катя")


async def test_replies_in_one_conversation_join_one_ticket(emulator, store, x_settings):
    async with running(x_adapter(x_settings), store, x_settings) as h:
        first = emulator.inject_mention("501", "kate", "@acme_support hi")
        await eventually(lambda: len(emulator.sent) == 1, what="the acknowledgement")
        emulator.inject_mention("501", "kate", "@acme_support still waiting",
                                in_reply_to_tweet_id=emulator.sent[0]["id"])
        await eventually(lambda: _count_is(h, Message, 2), what="the follow-up")
        [ticket] = await h.rows(sa.select(Ticket))
        assert ticket.thread_key == f"conv:{first['id']}:501"


async def test_long_answer_is_fitted_to_280_weighted_characters(emulator, store, x_settings):
    adapter = x_adapter(x_settings)
    async with running(adapter, store, x_settings):
        tweet = mention(emulator, 1)
        await eventually(lambda: len(emulator.sent) == 1, what="the acknowledgement")
        answer = "Здравствуйте! Ваш заказ уже в пути, курьер позвонит заранее. " * 10
        delivered = await adapter.send(_outbound(tweet["id"], answer))
        sent = emulator.sent[-1]
        assert sent["id"] == delivered.external_id
        assert sent["in_reply_to_tweet_id"] == tweet["id"]
        assert weighted_length(sent["text"]) <= 280 and sent["text"].endswith(ELLIPSIS)
        assert answer.startswith(sent["text"][:-1])


async def test_poll_spanning_several_pages_ingests_each_once_oldest_first(
        emulator, store, x_settings):
    emulator.page_size_cap = 5  # X may serve fewer than max_results: force 5 pages
    injected = [mention(emulator, n)["id"] for n in range(23)]
    async with running(x_adapter(x_settings), store, x_settings) as h:
        await eventually(lambda: _count_is(h, Message, 23), what="all 23 mentions")
        await eventually(lambda: len(emulator.since_ids) >= 2, what="the next poll")
        assert await message_ids(h) == injected  # oldest first, each once
        assert await saved_cursor(h) == injected[-1]
        first_poll = emulator.mention_requests[:5]
        assert first_poll[0].since_id is None and first_poll[0].max_results == 100
        assert all(r.pagination_token for r in first_poll[1:])
        assert emulator.since_ids[1] == injected[-1]
        assert await h.count(Ticket) == 23


async def test_restart_mid_stream_loses_and_doubles_nothing(emulator, store, x_settings):
    before = [mention(emulator, n)["id"] for n in range(3)]
    async with running(x_adapter(x_settings), store, x_settings) as h:
        await eventually(lambda: _count_is(h, Message, 3), what="the first mentions")
        await eventually(lambda: len(emulator.sent) == 3, what="their acknowledgements")
    cursor = await saved_cursor(h)
    assert cursor == before[-1]
    after = [mention(emulator, n)["id"] for n in range(3, 5)]
    polls_so_far = len(emulator.since_ids)
    async with running(x_adapter(x_settings), store, x_settings) as h:
        await eventually(lambda: _count_is(h, Message, 5), what="the mentions after restart")
        await eventually(lambda: len(emulator.sent) == 5, what="every acknowledgement")
        assert emulator.since_ids[polls_so_far] == cursor  # resumed from the saved cursor
        assert await message_ids(h) == before + after
        replied_to = sorted(s["in_reply_to_tweet_id"] for s in emulator.sent)
        assert replied_to == sorted(before + after)  # one acknowledgement per mention


async def test_our_own_tweets_are_skipped(emulator, store, x_settings):
    async with running(x_adapter(x_settings), store, x_settings) as h:
        own = emulator.inject_mention(BOT_USER["id"], BOT_USER["username"],
                                      "@acme_support note to self")
        await eventually(lambda: own["id"] in emulator.since_ids,
                         what="the cursor to move past our own tweet")
        assert await h.count(Message) == 0
        customer = mention(emulator, 1)
        await eventually(lambda: _count_is(h, Message, 1), what="the customer's mention")
        assert await message_ids(h) == [customer["id"]]


async def test_store_failure_retries_without_advancing_since_id(emulator, store, x_settings):
    inbox = Inbox(store, x_settings, SystemClock())
    attempts = []

    async def flaky_ingest(batch, cursor, unreadable=()):
        attempts.append(cursor)
        if len(attempts) <= 2:
            raise ConnectionError("database is down")
        return await inbox.ingest(batch, cursor, unreadable)

    tweets = [mention(emulator, n)["id"] for n in range(2)]
    adapter = x_adapter(x_settings)
    await adapter.start(AdapterContext(settings=x_settings, clock=SystemClock(),
                                       ingest=flaky_ingest, load_cursor=inbox.load_cursor))
    try:
        await eventually(lambda: len(emulator.since_ids) >= 2, what="a poll after storing")
    finally:
        await adapter.stop()
    assert len(attempts) >= 3 and {c.value for c in attempts} == {tweets[-1]}
    assert emulator.since_ids[:2] == [None, tweets[-1]]  # no read while storing failed
    assert await inbox.load_cursor("twitter", "since_id") == tweets[-1]


# --- faults while receiving -----------------------------------------------------------------


@pytest.mark.parametrize("kind, options", [
    ("500", {}),
    ("503", {}),
    # aiohttp retries an idempotent GET once on a dropped connection: drop it twice.
    ("timeout", {"count": 2, "seconds": 0.2}),
    ("malformed", {}),
    ("missing_fields", {"drop": ["meta"]}),  # no meta: pagination unknown, retry the poll
])
async def test_receiving_survives_faults(emulator, store, x_settings, kind, options, caplog):
    caplog.set_level(logging.WARNING, logger="bots")
    async with running(x_adapter(x_settings), store, x_settings) as h:
        first = mention(emulator, 1)["id"]
        await eventually(lambda: _count_is(h, Message, 1), what="the first mention")
        requests = emulator.requests["mentions"]
        emulator.faults.add("mentions", kind, **options)
        second = mention(emulator, 2)["id"]
        await eventually(lambda: _count_is(h, Message, 2), what="the mention after the fault")
        assert await message_ids(h) == [first, second]
        assert emulator.requests["mentions"] > requests + options.get("count", 1)
        assert emulator.faults.take("mentions") is None  # the fault was served
        assert any(r.name == "bots.common.polling" and "retrying" in r.getMessage()
                   for r in caplog.records)  # the adapter saw it, backed off, went on


async def test_rate_limited_poll_waits_until_reset(emulator, store, x_settings):
    async with running(x_adapter(x_settings), store, x_settings) as h:
        await eventually(lambda: emulator.since_ids, what="the first poll")
        limited_at = time.time()
        emulator.faults.add("mentions", "429", seconds=1)
        tweet = mention(emulator, 1)
        await eventually(lambda: _count_is(h, Message, 1), what="the mention after the 429")
        later = [r for r in emulator.mention_requests if r.at >= limited_at]
        # x-rate-limit-reset is >= the 429's time + 1 s; no read before it.
        assert later[0].at >= limited_at + 1.0
        assert await message_ids(h) == [tweet["id"]]


@pytest.mark.parametrize("drop", [["author_id"], ["id"], ["text"]])
async def test_tweet_missing_fields_is_skipped(emulator, store, x_settings, drop):
    async with running(x_adapter(x_settings), store, x_settings) as h:
        good = mention(emulator, 1)["id"]
        await eventually(lambda: _count_is(h, Message, 1), what="the first mention")
        emulator.faults.add("mentions", "missing_fields", drop=drop)
        kept, broken = mention(emulator, 2)["id"], mention(emulator, 3)["id"]  # newest breaks
        await eventually(lambda: _count_is(h, Message, 2), what="the intact mention")
        after = mention(emulator, 4)["id"]
        await eventually(lambda: _count_is(h, Message, 3), what="a mention after the fault")
        assert await message_ids(h) == [good, kept, after]
        assert broken not in await message_ids(h)


# --- sending errors -------------------------------------------------------------------------


async def test_reply_to_deleted_tweet_is_a_permanent_error(emulator, store, x_settings):
    adapter = x_adapter(x_settings)
    async with running(adapter, store, x_settings):
        tweet = mention(emulator, 1)
        await eventually(lambda: len(emulator.sent) == 1, what="the acknowledgement")
        emulator.delete_tweet(tweet["id"])
        with pytest.raises(DeliveryError) as refused:
            await adapter.send(_outbound(tweet["id"], "Your parcel left the warehouse."))
        assert refused.value.permanent
        assert "deleted or not visible" in refused.value.reason


async def test_server_error_on_send_is_temporary(emulator, store, x_settings):
    adapter = x_adapter(x_settings)
    async with running(adapter, store, x_settings):
        tweet = mention(emulator, 1)
        await eventually(lambda: len(emulator.sent) == 1, what="the acknowledgement")
        for kind in ("503", "500"):
            emulator.faults.add("tweets", kind)
            with pytest.raises(DeliveryError) as failed:
                await adapter.send(_outbound(tweet["id"], f"answer after {kind}"))
            assert not failed.value.permanent
        delivered = await adapter.send(_outbound(tweet["id"], "answer at last"))
        assert emulator.sent[-1]["id"] == delivered.external_id


async def test_posting_beyond_the_post_limit_is_retried_after_reset(emulator, store,
                                                                   x_settings):
    emulator.windows["tweets"] = RateWindow(limit=3, seconds=60)
    adapter = x_adapter(x_settings)
    async with running(adapter, store, x_settings):
        tweet = mention(emulator, 1)
        await eventually(lambda: len(emulator.sent) == 1, what="the acknowledgement")
        for n in range(2):
            await adapter.send(_outbound(tweet["id"], f"answer {n}"))
        with pytest.raises(DeliveryError) as limited:
            await adapter.send(_outbound(tweet["id"], "one too many"))
        assert not limited.value.permanent
        assert 0 < limited.value.retry_after <= 61
        assert [v["limit"] for v in emulator.violations] == ["posts"]
        assert len(emulator.sent) == 3


def _outbound(tweet_id: str, text: str) -> Outbound:
    return Outbound(outbox_id=0, channel="twitter", kind="reply",
                    target={"in_reply_to_tweet_id": tweet_id}, text=text,
                    idempotency_key=f"test:{time.monotonic_ns()}")


async def _count_is(h, table, n: int) -> bool:
    return await h.count(table) == n


async def test_emulator_refuses_requests_without_authorization(emulator):
    async with aiohttp.ClientSession() as session, \
            session.get(f"{emulator.url}/2/users/me") as response:
        assert response.status == 401
        assert (await response.json())["title"] == "Unauthorized"


async def test_emulator_control_routes_inject_and_delete(emulator):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{emulator.url}/_control/inject", json={
                "author_id": "77", "username": "ann", "text": "@acme_support hi"}) as response:
            tweet = await response.json()
        async with session.post(f"{emulator.url}/_control/inject",
                                json={"delete": tweet["id"]}) as response:
            assert (await response.json()) == {"deleted": tweet["id"]}
    assert tweet["author_id"] == "77" and tweet["created_at"].endswith("Z")
    assert emulator.deleted == {tweet["id"]}


# --- pure helpers: ids, times ---------------------------------------------------------------


def test_newest_id_compares_numerically():
    assert newest_id("999", "1000", None, "", "x") == "1000"
    assert newest_id(None, "") is None


def test_created_at_with_milliseconds_is_aware_utc():
    moment = parse_created_at("2026-11-24T07:00:00.123Z")
    assert moment.utcoffset().total_seconds() == 0
    assert (moment.hour, moment.microsecond) == (7, 123000)


# --- the 280 weighted-character rule --------------------------------------------------------


@pytest.mark.parametrize("text, weight", [
    ("hello", 5),
    ("привет, мир", 11),  # Cyrillic weighs 1 per letter
    ("日本語", 6),  # CJK weighs 2
    ("–‘’“”", 5),  # dashes and quotes in 8208..8223 weigh 1
    ("…", 2),  # the ellipsis is outside the light ranges
    ("👍", 2),
    ("👍🏽", 2),  # skin tone: one emoji
    ("👨‍👩‍👧", 2),  # ZWJ family: one emoji
    ("🇷🇺", 2),  # flag: one emoji
    ("1️⃣", 2),  # keycap
    ("e\u0301", 1),  # NFC: é
    ("https://example.com/" + "x" * 100, 23),  # every URL weighs 23
    ("see https://a.co/x.", 4 + 23 + 1),  # trailing punctuation is not the URL's
])
def test_weighted_length(text, weight):
    assert weighted_length(text) == weight


def test_280_latin_fits_and_140_cjk_fills_the_limit():
    assert fit_tweet("a" * 280) == "a" * 280
    assert weighted_length("字" * 140) == 280
    assert fit_tweet("字" * 141) != "字" * 141


def test_fit_tweet_shortens_cyrillic_at_a_word_boundary():
    text = "Спасибо за обращение, мы уже разбираемся с вашим заказом. " * 8
    fitted = fit_tweet(text)
    assert weighted_length(fitted) <= 280 and fitted.endswith(ELLIPSIS)
    prefix = fitted[:-1]
    assert text.startswith(prefix) and text[len(prefix)].isspace()
    # The next word would not have fitted.
    next_end = text.index(" ", len(prefix) + 1)
    assert weighted_length(text[:next_end] + ELLIPSIS) > 280


def test_fit_tweet_counts_emoji_as_two_and_never_splits_them():
    text = "Мы рядом 👍🏽 " * 40
    fitted = fit_tweet(text)
    assert weighted_length(fitted) <= 280 and text.startswith(fitted[:-1])
    assert fit_tweet("👍🏽" * 200, limit=10) == "👍🏽" * 4 + ELLIPSIS


def test_fit_tweet_cuts_a_single_word_only_when_it_alone_is_too_long():
    assert fit_tweet("a" * 300 + " tail", limit=10) == "a" * 8 + ELLIPSIS
    assert fit_tweet("short " + "a" * 300, limit=10) == "short" + ELLIPSIS


WORD_CHARS = st.sampled_from("abcxyzабвгдеж日本語👍😡ё")
WORDS = st.lists(st.text(WORD_CHARS, min_size=1, max_size=12), min_size=1, max_size=80)
SEPARATORS = st.sampled_from([" ", "  ", "\n", " \n"])


@settings(max_examples=200, deadline=None)
@given(words=WORDS, separator=SEPARATORS, limit=st.integers(min_value=30, max_value=280))
def test_fit_tweet_property_prefix_at_word_boundary(words, separator, limit):
    text = separator.join(words)
    fitted = fit_tweet(text, limit)
    assert weighted_length(fitted) <= limit
    if weighted_length(text) <= limit:
        assert fitted == text
        return
    prefix = fitted.removesuffix(ELLIPSIS)
    assert fitted.endswith(ELLIPSIS) and prefix
    assert text.startswith(prefix)
    assert text[len(prefix)].isspace() and not prefix[-1].isspace()  # never inside a word


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=600), limit=st.integers(min_value=2, max_value=280))
def test_fit_tweet_property_any_text_fits(text, limit):
    fitted = fit_tweet(text, limit)
    assert weighted_length(fitted) <= limit
    assert fitted == text or text.startswith(fitted.removesuffix(ELLIPSIS))


# --- a recorded real page ------------------------------------------------------------------

# GET /2/users/783214/mentions as X answered it on 2022-10-07, recorded by tweepy's own test
# suite (github.com/tweepy/tweepy, cassettes/test_client_get_users_mentions.yaml, the
# gzip body decoded; two of its ten tweets kept verbatim). tweepy asked for no fields, so
# the tweets carry no author_id: the shape our emulator must not be the only judge of.
RECORDED_MENTIONS_PAGE = {
    "data": [
        {"edit_history_tweet_ids": ["1578516295611748353"], "id": "1578516295611748353",
         "text": "@Twitter @TwitterSupport this is my ENTIRE feed, why do you think i want "
                 "this. respond to my ticket. https://t.co/W5GxALkkZd"},
        {"edit_history_tweet_ids": ["1578516273537118209"], "id": "1578516273537118209",
         "text": "Good @WilliamCohan financial dissection of @elonmusk’s @Twitter  deal—saying "
                 "his choice was to pay “$12 billion-or-so for nothing, or pay another $10 "
                 "billion or so and own 78.8% of a private Twitter and control everything.” "
                 "Also: nice headline, @PuckNews. https://t.co/jBgJzKrpZd"},
    ],
    "meta": {"next_token": "7140dibdnow9c7btw423i3sy3u5zupmkcpofxcsmxj48j",
             "result_count": 10, "newest_id": "1578516295611748353",
             "oldest_id": "1578516107798884353"},
}


def test_a_recorded_real_mentions_page_is_read_and_its_unusable_tweets_quarantined(
        x_settings):
    from bots.common.polling import read_payloads
    from bots.twitter.adapter import _checked_page, _tweet_key

    data, meta = _checked_page(RECORDED_MENTIONS_PAGE)
    assert [t["id"] for t in data] == ["1578516295611748353", "1578516273537118209"]
    assert newest_id(meta["newest_id"], *(t["id"] for t in data)) == "1578516295611748353"
    adapter = x_adapter(x_settings)
    batch, unreadable = read_payloads(adapter, [{"tweet": t} for t in data], _tweet_key)
    # Kept whole with the reason, for the quarantine; the poll goes on.
    assert batch == []
    assert [(u.external_id, u.error) for u in unreadable] == [
        (t["id"], "MalformedPage: a tweet without author_id") for t in data]
    with_author = {**data[0], "author_id": "783214", "conversation_id": data[0]["id"],
                   "created_at": "2022-10-07T22:43:00.000Z"}
    inbound = adapter.read_payload({"tweet": with_author, "author": {"username": "Twitter"}})
    assert inbound.reply_target == {"in_reply_to_tweet_id": "1578516295611748353",
                                    "username": "Twitter"}
    assert inbound.text.startswith("@Twitter @TwitterSupport this is my ENTIRE feed")
