"""The X emulator is as faithful as X where sameday depends on it: each shape it serves
(media, quotes, retweets, replies, edit chains, long posts, users, page meta) is checked
key by key against recorded real payloads (tests/fixtures/real/twitter, sources in
SOURCES.md); fields not requested are not returned; pages carry their own includes.
Then the adapter (tweepy's AsyncClient) reads such pages into the core: edit chains join
the original's ticket, media and long posts reach staff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
import tweepy

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.emulator import TelegramEmulator
from bots.twitter.adapter import TwitterAdapter
from bots.twitter.emulator import BOT_USER, JPEG, MP4, XEmulator, _retweet_text
from bots.twitter.media import EXPANSIONS, MEDIA_FIELDS, TWEET_FIELDS
from core.store.tables import Mention, Message, Outbox, Ticket
from tests.adapter_harness import eventually, running, running_all
from tests.conftest import make_settings
from tests.test_staff_telegram import STAFF, settings_for, tokens  # noqa: F401
from tests.test_twitter import POLL, RECORDED_MENTIONS_PAGE, SECRETS

FIXTURES = Path(__file__).parent / "fixtures" / "real" / "twitter"
BOT = f"@{BOT_USER['username']}"
ADAPTER_QUERY = {"expansions": ",".join(EXPANSIONS), "tweet.fields": ",".join(TWEET_FIELDS),
                 "media.fields": ",".join(MEDIA_FIELDS), "user.fields": "username,name",
                 "max_results": "100"}
LONG = ("Hello! I ordered the blue kettle on Monday and it arrived with a cracked lid. "
        "The box itself looked fine, so it must have happened before packing. I attach "
        "nothing because the photo would not upload from my phone, sorry. Could you send "
        "a new lid, or should I return the whole kettle? I would rather keep it & wait. "
        "Order 48213, delivered to Tver.")


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())["payload"]


def first(value: Any) -> dict:
    return value[0] if isinstance(value, list) else value


def since_2022(tweet: dict) -> dict:
    """Posts recorded before edits existed (2021) lack the field X now always sends
    (tweepy_get_tweet_default_fields.json: id, text, edit_history_tweet_ids)."""
    return {"edit_history_tweet_ids": [tweet["id"]], **tweet}


def shape_problems(ours: Any, real: Any, path: str = "") -> list[str]:
    """Where `ours` has a key the recorded real payload has not there, or a value of
    another JSON type (lists: each item against all the recorded items merged)."""
    if isinstance(real, dict):
        if not isinstance(ours, dict):
            return [f"{path}: {type(ours).__name__}, X sends an object"]
        problems = []
        for key, value in ours.items():
            if key not in real:
                problems.append(f"{path}.{key}: X does not send it here")
            else:
                problems += shape_problems(value, real[key], f"{path}.{key}")
        return problems
    if isinstance(real, list):
        if not isinstance(ours, list):
            return [f"{path}: {type(ours).__name__}, X sends a list"]
        merged = ({k: v for item in real for k, v in item.items()}
                  if real and all(isinstance(i, dict) for i in real) else (real or [None])[0])
        return [p for item in ours for p in shape_problems(item, merged, f"{path}[]")
                ] if merged is not None else []
    kinds = (bool, int, float, str, type(None))
    if next(k for k in kinds if isinstance(real, k)) is not next(
            k for k in kinds if isinstance(ours, k)):
        return [f"{path}: {ours!r} is not a {type(real).__name__} like {real!r}"]
    return []


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    # The shapes do not depend on the database (test_x_noted.py covers PostgreSQL).
    return f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"


@pytest.fixture
async def emulator():
    async with XEmulator() as emulator:
        yield emulator


@pytest.fixture
def x_settings(emulator, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return make_settings(channels={"twitter": {"enabled": True, "user_id": BOT_USER["id"],
                                               "base_url": emulator.url}},
                         staff={"chat": "console"})


async def get_page(emulator: XEmulator, **query: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{emulator.url}/2/users/{BOT_USER['id']}/mentions", params=query,
            headers={"Authorization": "Bearer test"}) as response:
        return response.status, await response.json()


def by_id(items: list[dict], key: str = "id") -> dict[str, dict]:
    return {item[key]: item for item in items}


# --- shapes, against recorded real payloads ---------------------------------------------------


async def test_each_shape_is_what_x_sends(emulator):
    post = emulator.post_as_bot("Spring sale: everything -20% until Sunday")
    photo = emulator.inject_mention("501", "kate", f"{BOT} the lid is cracked",
                                    name="Kate", media=[{"type": "photo",
                                                         "alt_text": "a cracked lid"}])
    video = emulator.inject_mention("502", "oleg", f"{BOT} it does not start",
                                    media=["video"])
    gif = emulator.inject_mention("506", "ira", f"{BOT} me waiting", media=["animated_gif"])
    quote = emulator.inject_quote("503", "ann", f"{BOT} does this apply online?", post["id"],
                                  media=["photo"])
    retweet = emulator.inject_retweet("504", "bob", post["id"])
    reply = emulator.inject_mention("505", "max", f"{BOT} and in shops?",
                                    in_reply_to_tweet_id=post["id"])
    edited = emulator.edit_tweet(emulator.inject_mention("507", "eva", f"{BOT} hi")["id"],
                                 f"{BOT} hi, my order 12 is late")
    status, page = await get_page(emulator, **ADAPTER_QUERY)
    assert status == 200
    data, includes = by_id(page["data"]), page["includes"]
    media, tweets = by_id(includes["media"], "media_key"), by_id(includes["tweets"])
    checks = [
        (data[photo["id"]], first(recorded("photo_with_cashtags")["data"])),
        (media[photo["attachments"]["media_keys"][0]],
         recorded("edited_tweet_with_photo_original")["includes"]["media"][0]),
        (data[video["id"]], first(recorded("video_with_edit_history")["data"])),
        (media[video["attachments"]["media_keys"][0]],
         recorded("video_with_edit_history")["includes"]["media"][0]),
        (data[quote["id"]], since_2022(first(recorded("stream_quote_with_photo")["data"]))),
        (tweets[post["id"]], first(recorded("photo_with_cashtags")["data"])),
        (data[retweet["id"]], first(recorded("retweet_with_mentions")["data"])),
        (data[reply["id"]], since_2022(first(recorded("stream_reply")["data"]))),
        (data[edited["id"]], first(recorded("edited_tweet")["data"])),
        (includes["users"][0], recorded("retweet_with_mentions")["includes"]["users"][0]),
        (page["meta"], RECORDED_MENTIONS_PAGE["meta"]),
    ]
    for ours, real in checks:
        assert shape_problems(ours, real) == [], ours
    # The values that matter, as X gives them.
    assert data[retweet["id"]]["text"] == f"RT {BOT}: Spring sale: everything -20% until Sunday"
    assert data[retweet["id"]]["referenced_tweets"] == [{"type": "retweeted", "id": post["id"]}]
    assert data[retweet["id"]]["conversation_id"] == retweet["id"]
    assert "attachments" not in data[retweet["id"]]
    assert data[quote["id"]]["referenced_tweets"] == [{"type": "quoted", "id": post["id"]}]
    assert data[quote["id"]]["text"].count("https://t.co/") == 2  # photo, then quoted post
    assert data[reply["id"]]["referenced_tweets"] == [{"type": "replied_to", "id": post["id"]}]
    assert data[reply["id"]]["in_reply_to_user_id"] == BOT_USER["id"]
    assert media[photo["attachments"]["media_keys"][0]]["alt_text"] == "a cracked lid"
    gif_media = media[gif["attachments"]["media_keys"][0]]
    assert gif_media["type"] == "animated_gif" and gif_media["media_key"].startswith("16_")
    assert [v["bit_rate"] for v in gif_media["variants"]] == [0]
    variants = media[video["attachments"]["media_keys"][0]]["variants"]
    recorded_variants = recorded("video_with_edit_history")["includes"]["media"][0]["variants"]
    assert sorted(v["content_type"] for v in variants) == sorted(
        v["content_type"] for v in recorded_variants)
    # A quoted post's own media are not expanded (stream_quote_with_photo.json).
    assert set(media) == {k for t in page["data"]
                          for k in t.get("attachments", {}).get("media_keys", [])}


async def test_a_field_not_requested_is_not_returned(emulator):
    """With no fields asked, a post is id, text and edit_history_tweet_ids only
    (tweepy_get_tweet_default_fields.json), media are media_key and type."""
    post = emulator.post_as_bot("Opening hours")
    emulator.inject_quote("501", "kate", f"{BOT} nice " + "very " * 60, post["id"],
                          media=["photo"])
    status, page = await get_page(emulator)
    assert status == 200 and "includes" not in page
    [tweet] = page["data"]
    assert set(tweet) == set(recorded("tweepy_get_tweet_default_fields")["data"])
    _, page = await get_page(emulator, expansions="attachments.media_keys")
    [tweet] = page["data"]
    assert set(tweet) == {"id", "text", "edit_history_tweet_ids", "attachments"}
    assert set(page["includes"]) == {"media"}
    assert set(page["includes"]["media"][0]) == {"media_key", "type"}
    _, page = await get_page(emulator, **{"tweet.fields": "note_tweet",
                                          "media.fields": "url"})
    [tweet] = page["data"]
    assert set(tweet) == {"id", "text", "edit_history_tweet_ids", "note_tweet"}


async def test_an_unknown_expansion_or_field_is_refused_like_x(emulator):
    for query in ({"expansions": "author"}, {"tweet.fields": "full_text"},
                  {"media.fields": "src"}):
        status, body = await get_page(emulator, **query)
        [(name, value)] = query.items()
        assert status == 400 and body["title"] == "Invalid Request"
        assert body["errors"][0]["parameters"] == {name: [value]}
        assert f"[{value}] is not one of" in body["errors"][0]["message"]


async def test_text_is_escaped_like_x_and_a_long_post_carries_note_tweet(emulator):
    tweet = emulator.inject_mention("501", "kate", f"{BOT} {LONG}")
    _, page = await get_page(emulator, **ADAPTER_QUERY)
    [shown] = page["data"]
    assert shown["id"] == tweet["id"]
    assert shown["note_tweet"]["text"] == f"{BOT} {LONG}".replace("&", "&amp;")
    assert LONG.startswith(shown["text"][len(BOT) + 1:]) and len(shown["text"]) <= 270
    assert "&" not in shown["text"].replace("&amp;", "")


def test_a_retweets_text_is_cut_as_x_cuts_it():
    for name in ("retweet_with_mentions", "retweet_search_page"):
        page = recorded(name)
        retweet = first(page["data"])
        original = by_id(page["includes"]["tweets"])[retweet["referenced_tweets"][0]["id"]]
        author = by_id(page["includes"]["users"])[original["author_id"]]["username"]
        assert _retweet_text(author, original["text"]) == retweet["text"]


async def test_a_deleted_quoted_post_is_a_partial_error(emulator):
    post = emulator.inject_tweet("700", "news", "Acme raises prices")
    quote = emulator.inject_quote("701", "ann", f"{BOT} true?", post["id"])
    emulator.delete_tweet(post["id"])
    _, page = await get_page(emulator, **ADAPTER_QUERY)
    assert [t["id"] for t in page["data"]] == [quote["id"]]
    assert "tweets" not in page.get("includes", {})
    [error] = page["errors"]
    assert error["resource_id"] == post["id"] and error["parameter"] == "referenced_tweets.id"
    assert error["title"] == "Not Found Error"


# --- edit chains -------------------------------------------------------------------------------


async def test_an_edit_chain_lists_its_latest_version_with_the_whole_history(emulator):
    original = emulator.inject_mention("501", "kate", f"{BOT} my order is late")
    second = emulator.edit_tweet(original["id"], f"{BOT} my order 48213 is late")
    third = emulator.edit_tweet(second["id"], f"{BOT} my order 48213 is late, 5 days")
    chain = [original["id"], second["id"], third["id"]]
    _, page = await get_page(emulator, expansions="edit_history_tweet_ids")
    [shown] = page["data"]
    assert shown["id"] == third["id"] and shown["edit_history_tweet_ids"] == chain
    # Every version is included, each with the whole chain (edited_tweet.json).
    assert [t["id"] for t in page["includes"]["tweets"]] == chain
    assert all(t["edit_history_tweet_ids"] == chain for t in page["includes"]["tweets"])
    # The edit of a post that started its conversation starts its own (edited_tweet.json).
    assert emulator.tweets[third["id"]]["conversation_id"] == third["id"]


async def test_an_edit_chain_joins_the_originals_ticket(emulator, store, x_settings):
    async with running(TwitterAdapter(x_settings, poll_interval=POLL), store,
                       x_settings) as h:
        original = emulator.inject_mention("501", "kate", f"{BOT} my order is late")
        await eventually(lambda: len(emulator.sent) == 1, what="the acknowledgement")
        second = emulator.edit_tweet(original["id"], f"{BOT} my order 48213 is late")
        emulator.edit_tweet(second["id"], f"{BOT} my order 48213 is late, 5 days now")
        await eventually(lambda: _text_is(h, f"{BOT} my order 48213 is late, 5 days now"),
                         what="the latest version stored")
        [ticket] = await h.rows(sa.select(Ticket))
        [message] = await h.rows(sa.select(Message))
        assert message.external_id == original["id"] and message.ticket_id == ticket.id
        notices = await h.rows(sa.select(Outbox).where(Outbox.kind == "notice"))
        assert any("edited a message" in n.text for n in notices)
        assert len(emulator.sent) == 1  # one acknowledgement for the whole chain


async def test_a_post_edited_before_it_was_read_is_one_ticket(emulator, store, x_settings):
    original = emulator.inject_mention("501", "kate", f"{BOT} hi")
    emulator.edit_tweet(original["id"], f"{BOT} hi, where is order 48213?")
    async with running(TwitterAdapter(x_settings, poll_interval=POLL), store,
                       x_settings) as h:
        await eventually(lambda: len(emulator.sent) == 1, what="the acknowledgement")
        [message] = await h.rows(sa.select(Message))
        assert (message.external_id, message.text) == (original["id"],
                                                       f"{BOT} hi, where is order 48213?")
        assert await h.count(Ticket) == 1


async def _text_is(h, text: str) -> bool:
    return [m.text for m in await h.rows(sa.select(Message))] == [text]


# --- pages of every kind, through the adapter ---------------------------------------------------


async def test_pages_of_every_kind_are_read_once_each_with_their_includes(
        emulator, store, x_settings):
    emulator.page_size_cap = 2  # 7 posts: 4 pages, each with its own includes
    post = emulator.post_as_bot("We moved to a new warehouse")
    posted = [
        emulator.inject_mention("501", "kate", f"{BOT} cracked lid", media=["photo"]),
        emulator.inject_retweet("502", "oleg", post["id"]),
        emulator.inject_quote("503", "ann", f"{BOT} so slower deliveries?", post["id"]),
        emulator.inject_mention("504", "max", f"{BOT} {LONG}"),
        emulator.inject_quote("505", "ira", f"{BOT} congrats", post["id"]),
        emulator.inject_mention("506", "eva", f"{BOT} it does not start", media=["video"]),
        emulator.inject_mention("507", "lev", f"{BOT} two photos", media=["photo", "photo"]),
    ]
    async with running(TwitterAdapter(x_settings, poll_interval=POLL), store,
                       x_settings) as h:
        await eventually(lambda: _count(h, Message, 5), what="the five tickets' messages")
        await eventually(lambda: _count(h, Mention, 2), what="the retweet and the quote")
        await eventually(lambda: len(emulator.since_ids) >= 2, what="the next poll")
        messages = await h.rows(sa.select(Message).order_by(Message.id))
        kept = await h.rows(sa.select(Mention).order_by(Mention.id))
    ids = [p["id"] for p in posted]
    assert [m.external_id for m in messages] == [ids[0], ids[2], ids[3], ids[5], ids[6]]
    assert [(m.external_id, m.kind) for m in kept] == [(ids[1], "retweet"), (ids[4], "quote")]
    kinds = {m.external_id: [a["kind"] for a in m.attachments or []] for m in messages}
    assert kinds == {ids[0]: ["photo"], ids[2]: ["post"], ids[3]: [], ids[5]: ["video"],
                     ids[6]: ["photo", "photo"]}
    assert messages[2].text == f"{BOT} {LONG}"  # the whole long post, unescaped
    first_poll = [r for r in emulator.mention_requests if r.since_id is None]
    assert len(first_poll) == 4 and all(r.pagination_token for r in first_poll[1:])


async def test_a_page_carries_only_its_own_includes(emulator):
    emulator.page_size_cap = 1
    post = emulator.post_as_bot("News")
    quote = emulator.inject_quote("503", "ann", f"{BOT} ok?", post["id"])
    photo = emulator.inject_mention("501", "kate", f"{BOT} look", media=["photo"])
    _, newest = await get_page(emulator, **ADAPTER_QUERY)
    assert [t["id"] for t in newest["data"]] == [photo["id"]]
    assert set(newest["includes"]) == {"users", "media"}
    _, older = await get_page(emulator, **ADAPTER_QUERY,
                              pagination_token=newest["meta"]["next_token"])
    assert [t["id"] for t in older["data"]] == [quote["id"]]
    assert set(older["includes"]) == {"users", "tweets"}
    assert "next_token" not in older["meta"]


async def test_the_control_route_injects_every_kind(emulator):
    async def inject(body: dict) -> dict:
        async with aiohttp.ClientSession() as session, session.post(
                f"{emulator.url}/_control/inject", json=body) as response:
            return await response.json()

    post = await inject({"bot_post": "New app"})
    retweet = await inject({"retweet": post["id"], "author_id": "9", "username": "zoe"})
    quote = await inject({"quote": post["id"], "author_id": "8", "username": "yan",
                          "text": f"{BOT} nice", "media": ["photo"]})
    edit = await inject({"edit": quote["id"], "text": f"{BOT} nice, on iOS too?"})
    assert retweet["referenced_tweets"] == [{"type": "retweeted", "id": post["id"]}]
    assert quote["referenced_tweets"] == [{"type": "quoted", "id": post["id"]}]
    assert edit["edit_history_tweet_ids"] == [quote["id"], edit["id"]]
    assert edit["referenced_tweets"] == quote["referenced_tweets"]
    _, page = await get_page(emulator)
    assert [t["id"] for t in page["data"]] == [edit["id"], retweet["id"]]


async def test_tweepy_refuses_a_field_x_does_not_know(emulator, x_settings):
    adapter = TwitterAdapter(x_settings, poll_interval=POLL)
    client = adapter._make_client()
    try:
        with pytest.raises(tweepy.BadRequest):
            await client.get_users_mentions(BOT_USER["id"], tweet_fields=["full_text"],
                                            user_auth=True)
    finally:
        await adapter._http.close()


# --- staff see media and long posts -----------------------------------------------------------


async def test_media_and_long_posts_reach_the_staff_group(store, tokens):  # noqa: F811
    photo_bytes = JPEG + b"kettle"
    async with TelegramEmulator() as telegram, XEmulator() as x:
        settings = settings_for(telegram, x=x)
        adapters = [TelegramAdapter(settings), TwitterAdapter(settings, poll_interval=0.3)]
        async with running_all(adapters, store, settings):
            x.inject_mention("55", "kate", f"{BOT} the lid came cracked",
                             media=[{"type": "photo", "content": photo_bytes}, "video"])
            x.inject_mention("56", "oleg", f"{BOT} {LONG}")
            await eventually(lambda: len(telegram.uploads) >= 2, timeout=20,
                             what="the photo and the video in the staff group")
            await eventually(lambda: _card_with(telegram, "Order 48213"), timeout=20,
                             what="the long post's card")
    uploads = {u["kind"]: u["content"] for u in telegram.uploads}
    assert uploads == {"photo": photo_bytes, "video": MP4}


def _card_with(telegram, words: str) -> bool:
    return any(words in m.get("text", "") for m in telegram.sent_to(STAFF))


async def _count(h, table, n: int) -> bool:
    return await h.count(table) == n
