"""The X (Twitter) channel: poll the bot's mentions, reply to them, with tweepy's AsyncClient.

Receiving: X has no push for mentions on the pay-per-use API, so the adapter polls
``GET /2/users/:id/mentions?since_id=...`` every ``poll_interval`` (each read is billed:
see docs/channels.md). One poll follows ``next_token`` through every page, then stores
the whole poll oldest-first in ONE ``ingest`` call together with the new ``since_id``
(same transaction); the in-memory ``since_id`` moves only after that commit. A crash at
any point means the same mentions are fetched again and deduplicated by the inbox.

First start (no saved cursor): the adapter takes what X returns without ``since_id`` --
the most recent mentions (X serves up to 800) -- so mentions written while sameday was
not yet running are answered too. Delete the cursor row to replay; there is no option
to skip the backlog.

Not every mention asks something: a retweet of the company's post, and a quote of its
own post whose text has no question mark, are kept as non-tickets (``Inbound.note``:
stored and counted, never acknowledged); ``retweets`` and ``quotes_of_own_posts`` in
``[channels.twitter]`` choose (docs/channels.md).

Sending: every answer is a reply to the customer's tweet (``in_reply_to_tweet_id``),
fitted to 280 weighted characters at a word boundary (``core.tweet_text``).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import time
from datetime import datetime
from typing import Any

import aiohttp
import tweepy
from tweepy.asynchronous import AsyncClient
from yarl import URL

from bots.common.polling import (
    Backoff,
    PollHealth,
    ingest_until_stored,
    read_payloads,
    run_until_stopped,
)
from bots.twitter import uploads
from bots.twitter.errors import delivery_error, seconds_until
from bots.twitter.media import (
    EXPANSIONS,
    MEDIA_FIELDS,
    TWEET_FIELDS,
    attachments_of,
    payloads_of,
    text_of,
)
from bots.twitter.settings import XTarget
from bots.twitter.text import fit_tweet
from core.config.settings import Settings
from core.delivery.actions import ANSWER_CHANGES
from core.delivery.contract import (
    AdapterContext,
    ChannelAdapter,
    ChannelHealth,
    Cursor,
    DeliveryError,
)
from core.delivery.outfiles import OutgoingFile
from core.domain.records import Delivered, Inbound, Outbound

log = logging.getLogger(__name__)

CHANNEL = "twitter"
CURSOR_KEY = "since_id"
X_API = "https://api.twitter.com"  # hard-coded in tweepy's AsyncBaseClient.request
MAX_RESULTS = 100  # the most X serves per page: fewest billed requests per poll
Includes = dict[str, dict[str, dict[str, Any]]]  # "users"/"media"/"tweets" by id
USER_FIELDS = ["username", "name"]
STOP_GRACE = 2.0  # seconds a poll in flight may take to finish when stopping
# What a quote's own text is read without when asking "does it ask something?": links
# (t.co, the quoted post's own link) and @mentions.
LINKS_AND_MENTIONS = re.compile(r"(?:https?://|www\.)\S+|@\w+")
QUESTION_MARKS = ("?", "？")  # ASCII and full-width (CJK)


class MalformedPage(Exception):
    """A mentions page we cannot trust (no meta, data not a list): retry the poll."""


class RebasedSession:
    """Points tweepy at another API host (the emulator, a proxy).

    tweepy has no base-URL option: ``AsyncBaseClient.request`` always builds
    ``"https://api.twitter.com" + route``. It does use ``client.session`` when one is set,
    calling only ``session.request(method, url, params=, json=, headers=)`` as an async
    context manager, so this wrapper rewrites the prefix and delegates to a real
    ``aiohttp.ClientSession``. With user auth, tweepy passes an already signed, encoded
    ``yarl.URL`` (the OAuth 1.0a signature covers the api.twitter.com URL: fine for the
    real API and for hosts that do not check signatures, like the emulator).
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str):
        self.session = session
        self.base_url = base_url.rstrip("/")
        # The rate-limit headers of the latest post: tweepy returns bodies only.
        self.post_limits: tuple[int, float] | None = None

    def rebase(self, url: str | URL) -> str | URL:
        text = str(url)
        if self.base_url == X_API or not text.startswith(X_API):
            return url
        rebased = self.base_url + text[len(X_API):]
        return URL(rebased, encoded=True) if isinstance(url, URL) else rebased

    @contextlib.asynccontextmanager
    async def request(self, method: str, url: str | URL, **kwargs: Any) -> Any:
        async with self.session.request(method, self.rebase(url), **kwargs) as response:
            yield response
            if method == "POST":
                self.post_limits = _rate_headers(response.headers)


class TwitterAdapter(ChannelAdapter):
    """Mentions in, replies out. ``poll_interval`` overrides the config (tests only:
    the config refuses less than 5 s because every read is billed)."""

    name = CHANNEL
    # One post at a time: X's x-rate-limit-remaining of each post is read before the next.
    max_in_flight = 1
    # A post cannot be edited through the API, only deleted; photos and videos go with a
    # reply (bots/twitter/uploads.py).
    can_delete = True
    file_rules = uploads.X_FILES

    @classmethod
    def survey_private(cls, target: dict[str, Any]) -> bool:
        """Every reply on X is a public post: no satisfaction survey unless
        ``[survey.channels] twitter = true`` (then customers reply with a number)."""
        return False

    def __init__(self, settings: Settings, *, poll_interval: float | None = None,
                 request_timeout: float = 30.0):
        self.settings = settings
        self.x = settings.channels.twitter
        self.poll_interval = (poll_interval if poll_interval is not None
                              else self.x.poll_interval.total_seconds())
        self.request_timeout = request_timeout
        self.user_id: str | None = self.x.user_id or None  # learnt from /2/users/me if unset
        self.since_id: str | None = None
        self.stopping = asyncio.Event()
        self.context: AdapterContext | None = None
        self.client: AsyncClient | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task | None = None
        self.polls = PollHealth()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self, context: AdapterContext) -> None:
        self.context = context
        self.stopping.clear()
        self.client = self._make_client()
        self.since_id = await context.load_cursor(CHANNEL, CURSOR_KEY)
        log.info("twitter: polling mentions every %.1fs from since_id=%s",
                 self.poll_interval, self.since_id or "(none: first start)")
        # Errors back off from well under a poll interval up to a minute.
        backoff = Backoff(base=min(1.0, self.poll_interval), ceiling=60.0)
        self._runner = asyncio.create_task(
            run_until_stopped(CHANNEL, self._poll_and_wait, self.stopping, backoff,
                              on_error=self.polls.failed),
            name="twitter-polling")

    def _make_client(self) -> AsyncClient:
        secret = self.x.secret
        client = AsyncClient(
            bearer_token=secret("bearer_token_env"),
            consumer_key=secret("consumer_key_env"),
            consumer_secret=secret("consumer_secret_env"),
            access_token=secret("access_token_env"),
            access_token_secret=secret("access_token_secret_env"),
            # Plain dicts, not tweepy.Tweet: Tweet() raises on a tweet without an id,
            # which would fail the whole page instead of skipping that one tweet.
            return_type=dict)
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.request_timeout))
        client.session = RebasedSession(self._http, self.x.base_url)
        return client

    async def stop(self) -> None:
        self.stopping.set()
        if self._runner is not None:
            try:
                # A poll in flight may finish (and store its batch) within the grace.
                await asyncio.wait_for(asyncio.shield(self._runner), STOP_GRACE)
            except TimeoutError:
                self._runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._runner
            self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        self.client = None

    def health(self) -> ChannelHealth:
        """For /healthz and /metrics: the client runs, and its latest mentions read worked."""
        return self.polls.report(self.client is not None)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the adapter stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), max(0.0, seconds))

    # --- receiving -------------------------------------------------------------------------

    async def _poll_and_wait(self) -> None:
        """One poll, then the poll interval. A 429 waits until X's reset time instead;
        other errors propagate to run_until_stopped, which backs off and retries."""
        try:
            await self.poll_once()
        except tweepy.TooManyRequests as error:
            self.polls.failed(error)  # no mentions read until X's reset time
            delay = seconds_until(error.reset_time)
            log.warning("twitter: mentions rate limit reached; next read in %.0fs", delay)
            await self._sleep(delay)
            return
        self.polls.succeeded()
        await self._sleep(self.poll_interval)

    async def poll_once(self) -> int:
        """Fetch every page of new mentions and store them; return how many were new."""
        assert self.context is not None, "start() first"
        if self.user_id is None:
            self.user_id = await self._whoami()
        tweets, includes, newest = await self._fetch_new_mentions()
        newest = newest_id(newest, self.since_id)
        if newest is None or newest == self.since_id:
            return 0
        payloads = payloads_of(sorted(tweets, key=_id_order), includes)
        batch, unreadable = read_payloads(self, payloads, _tweet_key)
        cursor = Cursor(CHANNEL, CURSOR_KEY, newest)
        context = self.context
        stored = await ingest_until_stored(
            CHANNEL, lambda: context.ingest(batch, cursor, unreadable), self.stopping)
        if stored:
            self.since_id = newest  # only after the commit that saved it
        return len(batch)

    async def _whoami(self) -> str:
        me = await self.client.get_me(user_auth=True)
        user_id = str((me.get("data") or {}).get("id") or "")
        if not user_id:
            raise MalformedPage(f"/2/users/me answered without an id: {me!r:.300}")
        log.info("twitter: channels.twitter.user_id is not set; using %s from /2/users/me",
                 user_id)
        return user_id

    async def _fetch_new_mentions(self) -> tuple[list[dict[str, Any]], Includes, str | None]:
        """All pages of one poll: (tweets, their includes, newest tweet id)."""
        tweets: list[dict[str, Any]] = []
        includes: Includes = {"users": {}, "media": {}, "tweets": {}}
        newest: str | None = None
        token: str | None = None
        seen_tokens: set[str] = set()
        while True:
            page = await self.client.get_users_mentions(
                id=self.user_id, since_id=self.since_id, max_results=MAX_RESULTS,
                pagination_token=token, expansions=EXPANSIONS, tweet_fields=TWEET_FIELDS,
                user_fields=USER_FIELDS, media_fields=MEDIA_FIELDS, user_auth=True)
            data, meta = _checked_page(page)
            _collect(includes, page.get("includes"))
            tweets.extend(data)
            newest = newest_id(newest, meta.get("newest_id"),
                               *(t.get("id") for t in data if isinstance(t, dict)))
            token = meta.get("next_token")
            if not token:
                return tweets, includes, newest
            if token in seen_tokens:
                raise MalformedPage(f"pagination loops on next_token {token!r}")
            seen_tokens.add(token)

    def read_payload(self, payload: Any) -> Inbound | None:
        """A mention as kept in ``Inbound.raw``: {"tweet": ..., "author", "media",
        "quoted": its share of the page's includes} (bots.twitter.media.payloads_of).
        None for our own posts (and retweets with ``retweets = "ignore"``); a retweet, or
        a quote of our own post that asks nothing, is a non-ticket (``Inbound.note``); a
        malformed tweet raises MalformedPage (it is quarantined)."""
        tweet, author = payload["tweet"], payload.get("author")
        if not isinstance(tweet, dict):
            raise MalformedPage(f"a tweet that is not an object: {tweet!r:.300}")
        missing = [f for f in ("id", "author_id", "text") if not _present(tweet.get(f))]
        if missing:
            raise MalformedPage(f"a tweet without {', '.join(missing)}")
        tweet_id, author_id = str(tweet["id"]), str(tweet["author_id"])
        if author_id == self.user_id:
            return self.ignored("own_post")
        note = self._note_kind(tweet, payload.get("quoted"))
        if note == "retweet" and self.x.retweets == "ignore":
            return self.ignored("retweet")
        user = author if isinstance(author, dict) else {}
        username = user.get("username")
        conversation = tweet.get("conversation_id") or tweet_id
        # An edited post is a new post whose history starts with the original: it is an
        # edit of the message stored under the original's id.
        history = [str(i) for i in tweet.get("edit_history_tweet_ids") or () if i]
        edited = len(history) > 1 and history[-1] == tweet_id
        return Inbound(
            channel=CHANNEL, external_id=history[0] if edited else tweet_id, edited=edited,
            thread_key=f"conv:{conversation}:{author_id}",
            author_id=author_id, text=text_of(tweet), sent_at=self._sent_at(tweet),
            attachments=attachments_of(payload),
            author_handle=f"@{username}" if username else None, author_name=user.get("name"),
            reply_target=XTarget(in_reply_to_tweet_id=tweet_id,
                                 username=username).model_dump(exclude_none=True),
            raw=payload, note=note)

    def _note_kind(self, tweet: dict[str, Any], quoted: Any) -> str | None:
        """The kind of non-ticket this post is kept as, or None for a ticket: "retweet"
        for a retweet ("RT @company ...": sharing asks nothing), "quote" for a quote of
        our own post that is not to be a ticket (``quotes_of_own_posts``). A quote of
        somebody else's post, or of a post X did not include (deleted, protected), is a
        mention like any other; so is a quote that also replies (it is written in a
        conversation, to whom it answers)."""
        kinds = {ref.get("type") for ref in tweet.get("referenced_tweets") or ()
                 if isinstance(ref, dict)}
        if "retweeted" in kinds:
            return "retweet"
        if "quoted" not in kinds or "replied_to" in kinds or not isinstance(quoted, dict) \
                or self.user_id is None or str(quoted.get("author_id")) != self.user_id:
            return None
        policy = self.x.quotes_of_own_posts
        if policy == "ticket" or (policy == "question" and asks_something(text_of(tweet))):
            return None
        return "quote"

    def _sent_at(self, tweet: dict[str, Any]) -> datetime:
        """created_at ("2026-11-24T07:00:00.000Z") as aware UTC; arrival time if absent."""
        created = tweet.get("created_at")
        try:
            return parse_created_at(created)
        except (TypeError, ValueError):
            log.warning("twitter: tweet %s has no usable created_at (%r); using arrival time",
                        tweet.get("id"), created)
            return self.context.clock.now()

    # --- sending ---------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> Delivered:
        if self.client is None:
            raise DeliveryError("the X adapter is not running")
        return await self._post_reply(outbound, text=fit_tweet(outbound.text))

    async def send_file(self, outbound: Outbound, file: OutgoingFile) -> Delivered:
        """Upload the photo or video, then the reply carrying its media id."""
        if self.client is None:
            raise DeliveryError("the X adapter is not running")
        media_id = await uploads.upload(self.client, X_API, file)
        return await self._post_reply(outbound, text=fit_tweet(outbound.text) or None,
                                      media_ids=[media_id])

    async def _post_reply(self, outbound: Outbound, **post: Any) -> Delivered:
        """Post a reply to the customer's post; its id and X's posting limits."""
        reply_to = self.reply_target(outbound).in_reply_to_tweet_id
        try:
            response = await self.client.create_tweet(
                in_reply_to_tweet_id=str(reply_to), user_auth=True, **post)
        except Exception as error:
            raise delivery_error(error) from error
        tweet_id = ((response or {}).get("data") or {}).get("id")
        if not tweet_id:
            # Possibly posted: checked with find_sent before any retry.
            raise DeliveryError(f"X answered without a tweet id: {response!r:.300}",
                                unknown=True)
        remaining, reset_in = self.client.session.post_limits or (None, None)
        return Delivered(external_id=str(tweet_id), limit_remaining=remaining,
                         limit_reset_in=reset_in)

    async def delete(self, outbound: Outbound) -> Delivered:
        """Delete our reply post (DELETE /2/tweets/:id); one that is gone counts."""
        if self.client is None:
            raise DeliveryError("the X adapter is not running")
        tweet_id = str((outbound.target.get("answer") or {}).get("external_id") or "")
        if not tweet_id.isdigit():
            raise DeliveryError(f"the answer's post on X is unknown ({tweet_id!r})",
                                permanent=True)
        try:
            await self.client.delete_tweet(tweet_id, user_auth=True)
        except tweepy.NotFound:
            pass  # already gone
        except Exception as error:
            raise delivery_error(error) from error
        return Delivered(external_id=tweet_id)

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        return [("per_user", self.user_id or "me")]

    async def find_sent(self, outbound: Outbound) -> Delivered | None:
        """After an unknown outcome (a crash mid-send, a lost answer, X calling it a
        duplicate): our reply to that tweet, if X has it (one read of our timeline; X
        returns text with &, < and > escaped)."""
        if self.client is None or self.user_id is None or outbound.kind in ANSWER_CHANGES:
            return None  # a deletion is simply tried again: a post that is gone counts
        reply_to = str(outbound.target.get("in_reply_to_tweet_id"))
        text = fit_tweet(outbound.text)
        # X appends a link to a post's media: a reply with a file starts with its text.
        with_file = bool(outbound.target.get("file"))
        page = await self.client.get_users_tweets(
            self.user_id, max_results=100, tweet_fields=["referenced_tweets"], user_auth=True)
        for tweet in (page or {}).get("data") or []:
            replied = {ref.get("id") for ref in tweet.get("referenced_tweets") or []
                       if ref.get("type") == "replied_to"}
            posted = html.unescape(str(tweet.get("text")))
            if reply_to in replied and (posted == text or with_file and posted.startswith(
                    text) and posted[len(text):].strip().startswith("https://t.co/")):
                return Delivered(external_id=str(tweet["id"]))
        return None


# --- pure helpers ----------------------------------------------------------------------------


def _rate_headers(headers: Any) -> tuple[int, float] | None:
    """(remaining, seconds until reset) from X's x-rate-limit-* headers, if present."""
    try:
        remaining = int(headers["x-rate-limit-remaining"])
        reset_at = int(headers["x-rate-limit-reset"])
    except (KeyError, ValueError):
        return None
    return remaining, max(0.0, reset_at - time.time())


def asks_something(text: str) -> bool:
    """Whether a post's own words ask something: a question mark ("?" or the full-width
    "？") once links and @mentions are left out (a link's query string is no question)."""
    words = LINKS_AND_MENTIONS.sub(" ", text)
    return any(mark in words for mark in QUESTION_MARKS)


def parse_created_at(value: Any) -> datetime:
    """X's ISO 8601 UTC time with milliseconds and "Z" as an aware datetime."""
    if not isinstance(value, str):
        raise TypeError(f"created_at is {type(value).__name__}, not a string")
    moment = datetime.fromisoformat(value)  # 3.11+ reads the "Z" and the milliseconds
    if moment.tzinfo is None:
        raise ValueError(f"created_at {value!r} has no time zone")
    return moment


def newest_id(*ids: Any) -> str | None:
    """The largest tweet id (ids are numeric strings that grow with time)."""
    numeric = [str(i) for i in ids if _present(i) and str(i).isdigit()]
    return max(numeric, key=int) if numeric else None


def _id_order(tweet: Any) -> int:
    value = str(tweet.get("id", "")) if isinstance(tweet, dict) else ""
    return int(value) if value.isdigit() else 0


def _present(value: Any) -> bool:
    return value is not None and value != ""


def _checked_page(page: Any) -> tuple[list[Any], dict[str, Any]]:
    """A page's data and meta, or MalformedPage: without meta we cannot know whether
    more pages follow, and advancing since_id past unseen pages would lose mentions."""
    if not isinstance(page, dict) or not isinstance(page.get("meta"), dict):
        raise MalformedPage(f"mentions page without meta: {page!r:.300}")
    data = page.get("data") or []
    if not isinstance(data, list):
        raise MalformedPage(f"mentions data is not a list: {data!r:.300}")
    return data, page["meta"]


def _collect(includes: Includes, page_includes: Any) -> None:
    """A page's includes into the poll's: users and posts by id, media by media_key."""
    if not isinstance(page_includes, dict):
        return
    for name, key in (("users", "id"), ("tweets", "id"), ("media", "media_key")):
        for item in page_includes.get(name) or []:
            if isinstance(item, dict) and item.get(key) is not None:
                includes[name][str(item[key])] = item


def _tweet_key(payload: Any) -> str | None:
    tweet = payload.get("tweet") if isinstance(payload, dict) else None
    tweet_id = tweet.get("id") if isinstance(tweet, dict) else None
    return str(tweet_id) if isinstance(tweet_id, str | int) and str(tweet_id) else None
