"""Recorded real X API v2 responses (tests/fixtures/real/twitter, sources in SOURCES.md
and in each file) driven through the real adapter and the inbox: what staff see. A page's
``includes`` are split per post as the adapter does (bots.twitter.media.payloads_of)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from bots.twitter.adapter import TwitterAdapter, _collect
from bots.twitter.media import attachments_of, payloads_of, text_of
from core.store.tables import Message, Outbox
from tests.conftest import make_settings
from tests.helpers import rows

FIXTURES = Path(__file__).parent / "fixtures" / "real" / "twitter"
X_TOKENS = ("BEARER_TOKEN", "CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
            "ACCESS_TOKEN_SECRET")

POSTS = {  # fixture -> attachment kinds staff must see
    "animated_gif": ["animation"],
    "edited_tweet": [],
    "edited_tweet_with_photo_original": ["photo"],
    "japanese_text": [],
    "media_policy_violation_four_photos": ["photo", "photo", "photo", "photo"],
    "photo_with_cashtags": ["photo"],
    "plain_emoji_verified_type": [],
    "quote_and_reply": ["post"],
    "reply_five_mentions_deep_conversation": [],
    "reply_many_urls": [],
    "reply_russian_parent_not_found": [],
    "reply_with_place": [],
    "stream_photo_emoji_hashtags": ["photo"],
    "stream_plain_with_place": [],
    "stream_quote_with_photo": ["photo", "post"],
    "stream_reply": [],
    "support_request_photo_not_in_includes": ["other"],  # its photo is not in the includes
    "three_photos_quote_mentions": ["photo", "photo", "photo", "post"],
    "video_with_edit_history": ["video"],
    "withheld_in_country": [],
}


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())["payload"]


def payload_of(response: dict) -> dict:
    includes = {"users": {}, "media": {}, "tweets": {}}
    _collect(includes, response.get("includes"))
    data = response["data"]
    [payload] = payloads_of(data if isinstance(data, list) else [data], includes)
    return payload


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    return f"sqlite+aiosqlite:///{tmp_path / 'real.db'}"


@pytest.fixture
def adapter(monkeypatch):
    for name in X_TOKENS:
        monkeypatch.setenv(f"SAMEDAY_X_{name}", "x-test")
    return TwitterAdapter(make_settings(channels={"twitter": {"enabled": True,
                                                              "user_id": "1"}},
                                        staff={"chat": "console"}))


@pytest.mark.parametrize("name", sorted(POSTS))
async def test_a_real_post_reaches_staff_with_what_it_carries(name, adapter, inbox, store):
    payload = payload_of(load(name))
    inbound = adapter.read_payload(payload)
    assert inbound is not None
    assert "&amp;" not in inbound.text and "&lt;" not in inbound.text
    assert [a.kind for a in inbound.attachments] == POSTS[name]
    shown = [a for a in inbound.attachments if a.kind != "other"]  # "other": X left it out
    for attachment in shown:
        assert attachment.url and attachment.url.startswith("https://")
    await inbox.ingest([inbound])
    [card] = await rows(store, sa.select(Outbox).where(Outbox.kind == "staff_card"))
    for attachment in shown:
        assert attachment.url in card.text
    [message] = await rows(store, sa.select(Message))
    assert [a["kind"] for a in message.attachments or []] == POSTS[name]


def test_a_video_links_its_best_mp4():
    [video] = attachments_of(payload_of(load("video_with_edit_history")))
    assert video.url.endswith("1280x720/WiZrNZKT2lMzK5zA.mp4?tag=12")  # 2,176,000 bit/s


@pytest.mark.parametrize("name, escaped, plain", [
    ("html_escaped_amp", "&amp;", "@snowman & I are testing"),
    ("html_escaped_lt", "&lt;", "<"),
])
def test_x_escaped_text_is_unescaped_once(name, escaped, plain):
    tweet = load(name)["data"]
    assert escaped in tweet["text"]  # as X sends it
    assert plain in text_of(tweet) and escaped not in text_of(tweet)


def test_an_edited_post_is_an_edit_of_the_original(adapter):
    """X gives an edited post a new id; its edit_history_tweet_ids start with the
    original's, under which the message is stored (recorded: edited_tweet.json)."""
    payload = payload_of(load("edited_tweet"))
    history = payload["tweet"]["edit_history_tweet_ids"]
    inbound = adapter.read_payload(payload)
    assert inbound.edited and inbound.external_id == history[0] != payload["tweet"]["id"]
    unedited = adapter.read_payload(payload_of(load("photo_with_cashtags")))
    assert not unedited.edited and unedited.external_id == unedited.raw["tweet"]["id"]


@pytest.mark.parametrize("name", ["retweet_with_mentions", "retweet_search_page"])
def test_a_retweet_opens_no_ticket(name, adapter):
    """Recorded retweets ("RT @...", referenced_tweets type "retweeted"): sharing a
    post asks nothing, so no public acknowledgement goes out: kept as a non-ticket
    (through the core: tests/test_x_noted.py)."""
    payload = payload_of(load(name))
    assert payload["tweet"]["text"].startswith("RT @")
    assert adapter.read_payload(payload).note == "retweet"


@pytest.mark.parametrize("name", ["three_photos_quote_mentions",
                                  "media_policy_violation_four_photos"])
def test_several_photos_reach_staff_each_in_the_posts_order(name, adapter):
    """A post with 3 or 4 photos: one attachment per media_key, in the post's order, each
    linking its own photo (and the first one's alt text as its caption)."""
    response = load(name)
    [tweet] = response["data"]
    media = {m["media_key"]: m for m in response["includes"]["media"]}
    keys = tweet["attachments"]["media_keys"]
    photos = [a for a in adapter.read_payload(payload_of(response)).attachments
              if a.kind == "photo"]
    assert [p.file_id for p in photos] == keys
    assert [p.url for p in photos] == [media[k]["url"] for k in keys]
    assert [p.caption for p in photos] == [media[k].get("alt_text") for k in keys]


def test_photos_and_a_quoted_post_and_mentions_in_one_post(adapter):
    """Recorded: 3 photos, a quote and 3 @mentions mid-text; the quoted post comes last,
    with its own text, and the mentions stay in the customer's words."""
    inbound = adapter.read_payload(payload_of(load("three_photos_quote_mentions")))
    assert inbound.attachments[0].caption == (
        "A long email from Green Energy - please request full text if required.")
    quoted = inbound.attachments[-1]
    assert quoted.url == "https://x.com/i/web/status/1440670794103754762"
    assert quoted.caption.startswith("And another one: Green Energy")
    assert "@KwasiKwarteng, @beisgovuk and @ofgem" in inbound.text
    assert inbound.note is None


def test_a_gif_is_an_animation_linking_what_x_sent(adapter):
    """Recorded animated_gif (media key 16_...) requested without variants: staff get
    its preview image, the only link X sent."""
    payload = payload_of(load("animated_gif"))
    [gif] = adapter.read_payload(payload).attachments
    assert gif.kind == "animation" and gif.file_id == "16_1440716895158636544"
    assert gif.url == payload["media"][0]["preview_image_url"]


async def test_a_photo_missing_from_the_includes_still_leaves_its_link(adapter, inbox, store):
    """Recorded: a customer's support request whose photo's media_key the page's
    includes do not carry. Staff are told media was left out (a line with its key), and
    the post's own t.co photo link reaches them in the text."""
    payload = payload_of(load("support_request_photo_not_in_includes"))
    [key] = payload["tweet"]["attachments"]["media_keys"]
    inbound = adapter.read_payload(payload)
    [missing] = inbound.attachments
    assert (missing.kind, missing.file_id) == ("other", key) and inbound.note is None
    await inbox.ingest([inbound])
    [card] = await rows(store, sa.select(Outbox).where(Outbox.kind == "staff_card"))
    assert "https://t.co/46JlmGA3XB" in card.text
    assert "media X did not include" in card.text


@pytest.mark.parametrize("name", ["withheld_in_country", "reply_russian_parent_not_found",
                                  "japanese_text", "reply_five_mentions_deep_conversation"])
async def test_the_customers_words_are_stored_as_written(name, adapter, inbox, store):
    """Withheld, Cyrillic, Japanese and mention-led posts: the text is stored exactly as
    X sent it (unescaped once), and the post is a ticket."""
    tweet = load(name)["data"]
    tweet = tweet[0] if isinstance(tweet, list) else tweet
    inbound = adapter.read_payload(payload_of(load(name)))
    assert inbound.note is None
    await inbox.ingest([inbound])
    [message] = await rows(store, sa.select(Message))
    assert message.text == html.unescape(tweet["text"])


def test_a_withheld_post_is_read_like_any_other(adapter):
    """Recorded: a post withheld in India (withheld.country_codes) by an author withheld
    there too. The adapter answers it where it is visible: a ticket like any other."""
    payload = payload_of(load("withheld_in_country"))
    assert payload["tweet"]["withheld"]["country_codes"] == ["IN"]
    inbound = adapter.read_payload(payload)
    assert inbound.external_id == "1388424788171841537" and inbound.author_handle == "@manavjivan"
    assert inbound.reply_target["in_reply_to_tweet_id"] == "1388424788171841537"


def test_a_reply_whose_parent_is_gone_threads_by_its_conversation(adapter):
    """Recorded: a Russian reply whose replied-to post X could not find (the response's
    errors say so): it is still read, in the conversation X names."""
    response = load("reply_russian_parent_not_found")
    assert response["errors"][0]["title"] == "Not Found Error"
    inbound = adapter.read_payload(payload_of(response))
    assert inbound.thread_key == "conv:506694458445152256:425674827"
    assert inbound.text.startswith("@ru_yarosh @Barsyaka1 Отлично")


def test_a_reply_deep_in_a_conversation_threads_by_the_conversation(adapter):
    """Recorded: a reply to a reply, led by five @mentions, with &amp;: threaded by the
    conversation (not by the post it answers), its text unescaped once."""
    payload = payload_of(load("reply_five_mentions_deep_conversation"))
    tweet = payload["tweet"]
    [parent] = [r["id"] for r in tweet["referenced_tweets"] if r["type"] == "replied_to"]
    assert parent != tweet["conversation_id"]
    inbound = adapter.read_payload(payload)
    assert inbound.thread_key == f"conv:{tweet['conversation_id']}:{tweet['author_id']}"
    assert inbound.text.startswith(
        "@Jordanj75603611 @stillo__ @KevOnPoint @Rosasburner @BleacherReport Yeah drake & Ross")
