"""A loopback X API v2 server: the subset the X adapter (tweepy's AsyncClient) uses.

Endpoints, with X's JSON shapes, status codes and rate-limit headers:

    GET  /2/users/me                  the bot account
    GET  /2/users/{id}/mentions       since_id, pagination_token, max_results (5..100),
                                      expansions, tweet.fields, media.fields, user.fields
    GET  /2/users/{id}/tweets         the account's own posts (find_sent)
    POST /2/tweets                    {"text", "reply": {"in_reply_to_tweet_id"},
                                      "media": {"media_ids"}}
    DELETE /2/tweets/{id}             the bot's own post ({"data": {"deleted": true}})
    POST /2/media/upload              multipart command=INIT|APPEND|FINALIZE (``uploads``)
    GET  /2/media/upload              ?command=STATUS&media_id= (a video's processing)

What X serves, as X serves it (each shape checked against a recorded real payload in
tests/fixtures/real/twitter, named where it is built): text with &, < and > escaped;
only the fields asked for (``id``, ``text`` and ``edit_history_tweet_ids`` always, the
rest by ``tweet.fields`` or implied by an expansion; media ``media_key`` and ``type``,
the rest by ``media.fields``); an unknown expansion or field is a 400, as on X. Posts
carry media (``attachments.media_keys`` + ``includes.media``: photos with ``url``, videos
and GIFs with ``variants``), quotes and retweets (``referenced_tweets`` +
``includes.tweets``), replies (``replied_to``), edit chains (``edit_history_tweet_ids``;
the mentions timeline lists only an edited post's latest version) and long posts
(``note_tweet``). A referenced post that was deleted is left out of ``includes`` with a
partial error in ``errors``. Media files are served by the emulator itself
(``/_files/...``, where X's CDN is ``pbs.twimg.com`` / ``video.twimg.com``).

A post is in the mentions timeline when it @mentions the bot (``inject_mention`` always
does; a retweet of the bot's post starts "RT @bot:"; a quote only if its text names the
bot), as X's "Tweets mentioning a single user".

Every response carries ``x-rate-limit-limit``, ``x-rate-limit-remaining`` and
``x-rate-limit-reset`` (epoch seconds) for a fixed 15-minute window per endpoint and
user, as X does. Posting beyond the post limit answers 429 and records a violation: the
adapter and the dispatcher must never get there.

Fault kinds (method names "mentions", "tweets", "me", "media", "delete"): the base kinds
"500", "timeout", "malformed", plus "429" (``seconds`` until ``x-rate-limit-reset``), "503" and
"missing_fields" (``drop`` = any of "id", "author_id", "text", "meta"; default
["author_id"]: the newest tweet of the page loses that field, or the page its meta).

Control: ``inject_mention`` (with ``media``), ``inject_quote``, ``inject_retweet``,
``edit_tweet``, ``post_as_bot``, ``inject_tweet``, ``delete_tweet`` in Python, or
``POST /_control/inject`` with the same keys (``{"delete": id}``, ``{"edit": id, "text"}``,
``{"retweet": id, "author_id", "username"}``, ``{"quote": id, "author_id", "username",
"text"}``, ``{"bot_post": text}``); ``sent`` lists the bot's tweets.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bots.common.emulator import Emulator, Fault
from bots.twitter.text import MAX_WEIGHTED_LENGTH, weighted_length

BOT_USER = {"id": "1000000001", "name": "Acme Support", "username": "acme_support"}
FIRST_TWEET_ID = 1_861_000_000_000_000_000  # snowflake-sized, increasing
WINDOW = 15 * 60.0
Handler = Callable[[web.Request], Awaitable[web.Response]]
TWEET_FIELDS = ("created_at", "conversation_id", "author_id", "in_reply_to_user_id")
# What GET /2/users/:id/mentions accepts (X's API reference; anything else is a 400).
EXPANSIONS = frozenset({
    "attachments.poll_ids", "attachments.media_keys", "author_id", "edit_history_tweet_ids",
    "entities.mentions.username", "geo.place_id", "in_reply_to_user_id",
    "referenced_tweets.id", "referenced_tweets.id.author_id"})
ALLOWED_FIELDS = {
    "tweet.fields": frozenset({
        "attachments", "author_id", "card_uri", "context_annotations", "conversation_id",
        "created_at", "edit_controls", "edit_history_tweet_ids", "entities", "geo", "id",
        "in_reply_to_user_id", "lang", "non_public_metrics", "note_tweet",
        "organic_metrics", "possibly_sensitive", "promoted_metrics", "public_metrics",
        "referenced_tweets", "reply_settings", "source", "text", "withheld"}),
    "media.fields": frozenset({
        "alt_text", "duration_ms", "height", "media_key", "non_public_metrics",
        "organic_metrics", "preview_image_url", "promoted_metrics", "public_metrics",
        "type", "url", "variants", "width"}),
    "user.fields": frozenset({
        "created_at", "description", "entities", "id", "location", "most_recent_tweet_id",
        "name", "pinned_tweet_id", "profile_image_url", "protected", "public_metrics",
        "url", "username", "verified", "verified_type", "withheld"}),
}
# "The ID that represents the expanded data object will be included directly in the
# Tweet data object" (X's reference of this endpoint): an expansion implies its field.
IMPLIED_FIELDS = {"author_id": "author_id", "attachments.media_keys": "attachments",
                  "referenced_tweets.id": "referenced_tweets",
                  "referenced_tweets.id.author_id": "referenced_tweets",
                  "in_reply_to_user_id": "in_reply_to_user_id"}
MEDIA_PREFIX = {"photo": "3", "video": "7", "animated_gif": "16"}  # as in the fixtures
RETWEET_LIMIT = 140  # a retweet's own text: "RT @author: " + the start of the post
NOTE_PREVIEW = 270  # a long post's `text`: its first characters, at a word boundary
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(600)
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(600)
# What POST /2/media/upload takes: (media_category, media_type) -> the largest size.
MEDIA_LIMITS = {**{("tweet_image", t): 5 * 1024 * 1024
                   for t in ("image/jpeg", "image/png", "image/webp")},
                ("tweet_gif", "image/gif"): 15 * 1024 * 1024,
                ("tweet_video", "video/mp4"): 512 * 1024 * 1024}


@dataclass
class RateWindow:
    """X's fixed rate-limit window: ``limit`` requests until ``reset`` (epoch seconds)."""

    limit: int
    seconds: float
    started: float = 0.0
    used: int = 0

    def hit(self, now: float) -> bool:
        """Count one request; True when it is over the limit."""
        if now >= self.started + self.seconds:
            # Windows start on whole seconds, so x-rate-limit-reset (whole epoch seconds,
            # as X sends it) is exact.
            self.started, self.used = math.floor(now), 0
        self.used += 1
        return self.used > self.limit

    def headers(self) -> dict[str, str]:
        return {"x-rate-limit-limit": str(self.limit),
                "x-rate-limit-remaining": str(max(0, self.limit - self.used)),
                "x-rate-limit-reset": str(math.ceil(self.started + self.seconds))}


@dataclass
class MentionRequest:
    """One GET of the mentions timeline, as the tests inspect it."""

    at: float
    since_id: str | None
    pagination_token: str | None
    max_results: int
    params: dict[str, Any] = field(default_factory=dict)


def _problem(status: int, title: str, detail: str, type_: str = "about:blank",
             **extra: Any) -> web.Response:
    """X's v2 error body (RFC 7807 problem details)."""
    body = {"title": title, "detail": detail, "type": type_, "status": status, **extra}
    return web.json_response(body, status=status)


def _invalid_request(parameter: str, value: Any, message: str) -> web.Response:
    return web.json_response(
        {"errors": [{"parameters": {parameter: [str(value)]}, "message": message}],
         "title": "Invalid Request",
         "detail": "One or more parameters to your request was invalid.",
         "type": "https://api.twitter.com/2/problems/invalid-request"}, status=400)


def _timestamp(epoch: float) -> str:
    """X's created_at: ISO 8601 UTC with milliseconds and a Z."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class XEmulator(Emulator):
    name = "x"

    def __init__(self, *, bot: dict[str, str] | None = None, post_limit: int = 100,
                 post_window: float = WINDOW, read_limit: int = 450,
                 read_window: float = WINDOW, page_size_cap: int = 100):
        """``page_size_cap`` makes pages smaller than ``max_results`` (X may return
        fewer), so tests can exercise pagination with a handful of tweets."""
        super().__init__()
        self.bot = dict(bot or BOT_USER)
        self.users: dict[str, dict[str, str]] = {self.bot["id"]: self.bot}
        self.tweets: dict[str, dict[str, Any]] = {}  # id -> full tweet, every author
        self.deleted: set[str] = set()
        self.mention_requests: list[MentionRequest] = []
        self.page_size_cap = page_size_cap
        self.windows = {"mentions": RateWindow(read_limit, read_window),
                        "tweets": RateWindow(post_limit, post_window),
                        "timeline": RateWindow(read_limit, read_window),
                        "me": RateWindow(75, WINDOW),
                        # X's published limits per user: media upload, post deletion.
                        "media": RateWindow(500, WINDOW),
                        "delete": RateWindow(50, WINDOW)}
        # Media uploads (POST /2/media/upload): media id -> the upload as it stands.
        self.uploads: dict[str, dict[str, Any]] = {}
        self.deletions: list[str] = []  # ids of the bot's posts it deleted
        self.processing_seconds = 1  # a video's check_after_secs after FINALIZE
        self.media: dict[str, dict[str, Any]] = {}  # media_key -> full media object
        self._next_id = FIRST_TWEET_ID
        self._next_media = FIRST_TWEET_ID - 10**9  # media ids are snowflakes too
        self._next_link = 0
        self._mangle: dict[str, Fault] = {}
        self.app.add_routes([
            web.get("/2/users/me", self._me),
            web.get("/2/users/{id}/mentions", self._mentions),
            web.get("/2/users/{id}/tweets", self._timeline),
            web.post("/2/tweets", self._create_tweet),
            web.delete("/2/tweets/{id}", self._delete_tweet),
            web.post("/2/media/upload", self._media_upload),
            web.get("/2/media/upload", self._media_status),
        ])

    # --- control (Python) ------------------------------------------------------------------

    def inject_mention(self, author_id: str, username: str, text: str, name: str | None = None,
                       in_reply_to_tweet_id: str | None = None,
                       conversation_id: str | None = None,
                       media: Sequence[str | dict[str, Any]] = ()) -> dict[str, Any]:
        """A customer's tweet mentioning the bot; returns it as the API would.

        ``media``: "photo", "video", "animated_gif", or dicts with "type" and any of
        "alt_text", "duration_ms", "width", "height", "content" (the file's bytes). A
        text over 280 weighted characters is a long post (``note_tweet``)."""
        self._user(author_id, username, name)
        return self._store_tweet(str(author_id), text, in_reply_to_tweet_id, conversation_id,
                                 mention=True, media=media)

    def inject_tweet(self, author_id: str, username: str, text: str) -> dict[str, Any]:
        """A customer's tweet that does not mention the bot (a reply target only)."""
        self._user(author_id, username, None)
        return self._store_tweet(str(author_id), text, None, None, mention=False)

    def post_as_bot(self, text: str, media: Sequence[str | dict[str, Any]] = ()
                    ) -> dict[str, Any]:
        """The company's own post (not a reply): what customers quote and retweet."""
        return self._store_tweet(self.bot["id"], text, None, None, mention=False,
                                 media=media)

    def inject_retweet(self, author_id: str, username: str, tweet_id: str,
                       name: str | None = None) -> dict[str, Any]:
        """A customer's retweet of a post. Like X (retweet_with_mentions.json,
        retweet_search_page.json): its text is "RT @author: " and the start of the post,
        cut at a word boundary with "…" to 140 characters; ``referenced_tweets``
        [{"type": "retweeted"}]; its own conversation; no attachments of its own. It is
        a mention when the post is the bot's or mentions it."""
        original = self.tweets[str(tweet_id)]
        self._user(author_id, username, name)
        original_author = self.users[original["author_id"]]["username"]
        full = original.get("note_tweet", {}).get("text") or original["text"]
        return self._store_tweet(
            str(author_id), _retweet_text(original_author, full), None, None,
            mention=original["author_id"] == self.bot["id"] or self._names_bot(full),
            references=[{"type": "retweeted", "id": original["id"]}])

    def inject_quote(self, author_id: str, username: str, text: str, tweet_id: str,
                     name: str | None = None, in_reply_to_tweet_id: str | None = None,
                     media: Sequence[str | dict[str, Any]] = (),
                     mention: bool | None = None) -> dict[str, Any]:
        """A customer's quote of a post. Like X (stream_quote_with_photo.json,
        quote_and_reply.json): the text ends with a t.co link to the quoted post (after
        the media link), ``referenced_tweets`` lists "quoted" (then "replied_to" for a
        quote that also replies). A mention when its text names the bot (``mention``
        overrides)."""
        self._user(author_id, username, name)
        return self._store_tweet(
            str(author_id), text, in_reply_to_tweet_id, None,
            mention=self._names_bot(text) if mention is None else mention, media=media,
            quoted=str(tweet_id))

    def edit_tweet(self, tweet_id: str, text: str,
                   media: Sequence[str | dict[str, Any]] = ()) -> dict[str, Any]:
        """An edit: X makes a new post with a new id whose ``edit_history_tweet_ids``
        lists the original first and itself last, and every version's history becomes
        that list (edited_tweet.json, edited_tweet_with_photo_original.json). A post that
        started its conversation starts a new one (edited_tweet.json); a reply stays in
        its conversation. Only the latest version is in the mentions timeline."""
        old = self.tweets[str(tweet_id)]
        latest = self.tweets[old["edit_history_tweet_ids"][-1]]
        if any(r["type"] == "retweeted" for r in latest.get("referenced_tweets", ())):
            raise ValueError("a retweet cannot be edited (X offers no edit for it)")
        quoted = next((r["id"] for r in latest.get("referenced_tweets", ())
                       if r["type"] == "quoted"), None)
        own_conversation = latest["conversation_id"] == latest["id"]
        return self._store_tweet(
            latest["author_id"], text, latest.get("_reply_to_id"),
            None if own_conversation else latest["conversation_id"],
            mention=latest["_mention"], media=media, quoted=quoted,
            history=latest["edit_history_tweet_ids"])

    def delete_tweet(self, tweet_id: str) -> None:
        self.deleted.add(str(tweet_id))

    def inject_payload(self, body: dict[str, Any]) -> dict[str, Any]:
        if "delete" in body:
            self.delete_tweet(body["delete"])
            return {"deleted": str(body["delete"])}
        if body.get("without_author"):  # a mention X renders without its author_id
            tweet = self.inject_mention("0", "nobody", str(body["text"]))
            self.tweets[tweet["id"]]["author_id"] = None
            return {**tweet, "author_id": None}
        body = dict(body)
        if "edit" in body:
            return self.edit_tweet(body.pop("edit"), **body)
        if "retweet" in body:
            return self.inject_retweet(tweet_id=body.pop("retweet"), **body)
        if "quote" in body:
            return self.inject_quote(tweet_id=body.pop("quote"), **body)
        if "bot_post" in body:
            return self.post_as_bot(body.pop("bot_post"), **body)
        return self.inject_mention(**body)

    @property
    def since_ids(self) -> list[str | None]:
        """The since_id of every first-page mentions request, in order."""
        return [r.since_id for r in self.mention_requests if r.pagination_token is None]

    # --- state ---------------------------------------------------------------------------

    def _user(self, author_id: str, username: str, name: str | None) -> None:
        self.users[str(author_id)] = {"id": str(author_id), "username": username,
                                      "name": name or username}

    def _names_bot(self, text: str) -> bool:
        return f"@{self.bot['username']}".lower() in text.lower()

    def _store_tweet(self, author_id: str, text: str, in_reply_to: str | None,
                     conversation_id: str | None, *, mention: bool,
                     media: Sequence[str | dict[str, Any]] = (), quoted: str | None = None,
                     references: list[dict[str, str]] | None = None,
                     history: list[str] | None = None) -> dict[str, Any]:
        self._next_id += 1 + len(self.tweets) % 7  # gaps, like real snowflakes
        tweet_id = str(self._next_id)
        parent = self.tweets.get(str(in_reply_to)) if in_reply_to else None
        tweet: dict[str, Any] = {
            "id": tweet_id, "text": text, "author_id": author_id,
            "created_at": _timestamp(self.message_time()),
            "conversation_id": conversation_id or (parent or {}).get("conversation_id")
            or tweet_id,
            "edit_history_tweet_ids": [tweet_id],
            "_mention": mention,
        }
        if weighted_length(text) > MAX_WEIGHTED_LENGTH:
            # A long post: `text` is its start, the whole is in note_tweet (no recorded
            # real example; X's data dictionary, and the cut of a real long post in
            # github.com/xdevplatform/samples/issues/202: its first 270 characters).
            tweet["text"], tweet["note_tweet"] = _preview(text), {"text": text}
        links = []
        if media:
            # One t.co link for all of a post's media, then the quoted post's link
            # (stream_quote_with_photo.json: "Fury https://t.co/Yb… https://t.co/tX…").
            keys = [self._add_media(spec) for spec in media]
            tweet["attachments"] = {"media_keys": keys}
            links.append(self._tco())
        refs = list(references or [])
        if quoted is not None:
            refs.append({"type": "quoted", "id": quoted})
            links.append(self._tco())
        if in_reply_to:
            # stream_reply.json: a reply refers to its parent ("replied_to") and names
            # the parent's author in in_reply_to_user_id.
            refs.append({"type": "replied_to", "id": str(in_reply_to)})
            tweet["in_reply_to_user_id"] = parent["author_id"] if parent else self.bot["id"]
            tweet["_reply_to_id"] = str(in_reply_to)
        if refs:
            tweet["referenced_tweets"] = refs
        if links:
            tweet["text"] = " ".join([tweet["text"], *links])
        if history:
            chain = [*history, tweet_id]
            for version in chain[:-1]:
                self.tweets[version]["edit_history_tweet_ids"] = chain
            tweet["edit_history_tweet_ids"] = chain
        self.tweets[tweet_id] = tweet
        return self._public(tweet, [*TWEET_FIELDS, "attachments", "referenced_tweets",
                                    "note_tweet"])

    def _add_media(self, spec: str | dict[str, Any]) -> str:
        """A media object as X describes it (photo: photo_with_cashtags.json; video:
        video_with_edit_history.json, mp4 variants at three bit rates and an HLS
        playlist; animated GIF: X's data dictionary, one mp4 variant at bit rate 0),
        its files served by the emulator."""
        details = {"type": spec} if isinstance(spec, str) else dict(spec)
        kind = details.pop("type", "photo")
        content = details.pop("content", None)
        if kind not in MEDIA_PREFIX:
            raise ValueError(f"X media are photo, video or animated_gif, not {kind!r}")
        self._next_media += 1
        number = str(self._next_media)
        key = f"{MEDIA_PREFIX[kind]}_{number}"
        code = base64.urlsafe_b64encode(hashlib.sha1(key.encode()).digest()).decode()[:15]
        media: dict[str, Any] = {"media_key": key, "type": kind}
        if kind == "photo":
            media.update(width=1536, height=2048,
                         url=self.host_file(f"{code}.jpg", content or JPEG, "image/jpeg"))
        else:
            thumb = self.host_file(f"{code}-thumb.jpg", JPEG, "image/jpeg")
            media.update(width=1280, height=720, preview_image_url=thumb)
            if kind == "video":
                media["duration_ms"] = 7000
                media["public_metrics"] = {"view_count": 0}
                media["variants"] = [
                    {"bit_rate": rate, "content_type": "video/mp4",
                     "url": self.host_file(f"{code}-{size}.mp4", content or MP4, "video/mp4")}
                    for rate, size in ((256000, "480x270"), (2176000, "1280x720"),
                                       (832000, "640x360"))]
                media["variants"].insert(1, {
                    "content_type": "application/x-mpegURL",
                    "url": self.host_file(f"{code}.m3u8", b"#EXTM3U\n",
                                          "application/x-mpegURL")})
            else:
                media["variants"] = [{"bit_rate": 0, "content_type": "video/mp4",
                                      "url": self.host_file(f"{code}.mp4", content or MP4,
                                                            "video/mp4")}]
        media.update(details)  # alt_text, duration_ms, width, height as given
        self.media[key] = media
        return key

    def _tco(self) -> str:
        self._next_link += 1
        return "https://t.co/" + hashlib.sha1(str(self._next_link).encode()).hexdigest()[:10]

    @staticmethod
    def _superseded(tweet: dict[str, Any]) -> bool:
        return tweet["edit_history_tweet_ids"][-1] != tweet["id"]

    @staticmethod
    def _public(tweet: dict[str, Any], fields: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """The tweet as X renders it: default fields plus the requested ones, the text
        with &, < and > escaped as X does (e.g. "So @alanbenlee @snowman &amp; I are
        testing..." in tests/fixtures/real/twitter/html_escaped_amp.json)."""
        shown = {"id": tweet["id"], "text": html.escape(str(tweet["text"]), quote=False),
                 "edit_history_tweet_ids": list(tweet["edit_history_tweet_ids"])}
        for name in fields:
            if name in shown or name.startswith("_") or name not in tweet:
                continue
            value = copy.deepcopy(tweet[name])
            if name == "note_tweet":
                value = {"text": html.escape(value["text"], quote=False)}
            shown[name] = value
        return shown

    # --- HTTP plumbing ---------------------------------------------------------------------

    async def _guarded(self, request: web.Request, method: str,
                       answer: Handler) -> web.Response:
        """Auth, injected faults and the rate limit, then the real answer; with headers."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith(("Bearer ", "OAuth ")):
            return _problem(401, "Unauthorized", "Unauthorized")
        window = self.windows[method]
        over = window.hit(time.time())
        response = await self.apply_fault(method, request)
        if response is None and over:
            if method == "tweets":
                self.violation("posts", limit_per_window=window.limit, window=window.seconds)
            else:
                self.violation(method, limit_per_window=window.limit, window=window.seconds)
            response = _problem(429, "Too Many Requests", "Too Many Requests")
        if response is None:
            response = await answer(request)
        for name, value in window.headers().items():
            response.headers.setdefault(name, value)
        return self.answer(request, response)

    def platform_fault(self, method: str, fault: Fault) -> web.Response | None:
        if fault.kind == "429":
            response = _problem(429, "Too Many Requests", "Too Many Requests")
            response.headers["x-rate-limit-remaining"] = "0"
            response.headers["x-rate-limit-reset"] = str(math.ceil(time.time() + fault.seconds))
            return response
        if fault.kind == "503":
            return _problem(503, "Service Unavailable", "Service Unavailable")
        if fault.kind == "missing_fields":
            self._mangle[method] = fault  # read by the handler that answers this request
            return None
        raise ValueError(f"unknown fault kind {fault.kind!r} for the X emulator")

    # --- endpoints -------------------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "me", self._answer_me)

    async def _answer_me(self, request: web.Request) -> web.Response:
        return web.json_response({"data": dict(self.bot)})

    async def _mentions(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "mentions", self._answer_mentions)

    async def _answer_mentions(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            max_results = int(query.get("max_results", 10))
        except ValueError:
            max_results = -1
        if not 5 <= max_results <= 100:
            return _invalid_request("max_results", query.get("max_results"),
                                    f"The `max_results` query parameter value "
                                    f"[{query.get('max_results')}] is not between 5 and 100")
        since_id, token = query.get("since_id"), query.get("pagination_token")
        self.mention_requests.append(MentionRequest(time.time(), since_id, token, max_results,
                                                    dict(query)))
        refused = _unknown_fields(query)
        if refused is not None:
            return refused
        if token is not None and not token.startswith("pt"):
            return _invalid_request("pagination_token", token, "Invalid pagination_token")
        user_id = request.match_info["id"]
        page, next_token = self._mentions_page(user_id, since_id, token,
                                               min(max_results, self.page_size_cap))
        body = self._render_page(page, next_token, query)
        fault = self._mangle.pop("mentions", None)
        if fault is not None:
            _drop_fields(body, fault.extra.get("drop", ["author_id"]))
        return web.json_response(body)

    async def _timeline(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "timeline", self._answer_timeline)

    async def _answer_timeline(self, request: web.Request) -> web.Response:
        """GET /2/users/:id/tweets: the user's own latest tweets, newest first (used to
        check whether an interrupted reply was posted)."""
        user_id = request.match_info["id"]
        size = min(int(request.query.get("max_results", 10)), 100)
        ids = sorted((int(i) for i, t in self.tweets.items()
                      if t["author_id"] == user_id and i not in self.deleted), reverse=True)
        page = [self.tweets[str(i)] for i in ids[:size]]
        if not page:
            return web.json_response({"meta": {"result_count": 0}})
        data = []
        for tweet in page:
            shown = self._public(tweet, ["created_at", "conversation_id"])
            if tweet.get("_reply_to"):
                shown["referenced_tweets"] = [{"type": "replied_to", "id": tweet["_reply_to"]}]
            data.append(shown)
        return web.json_response({"data": data, "meta": {
            "result_count": len(data), "newest_id": data[0]["id"], "oldest_id": data[-1]["id"]}})

    def _mentions_page(self, user_id: str, since_id: str | None, token: str | None,
                       size: int) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; the token names the newest tweet id of the next page, so new
        mentions arriving between pages do not shift them."""
        if user_id != self.bot["id"]:
            return [], None
        since = int(since_id) if since_id else 0
        until = int(token[2:]) if token else None
        # "These endpoints will always return the most recent edit, along with the edit
        # history" (docs.x.com/x-api/x-api-v2/tweets/timelines): older versions are not
        # listed, the latest is, under its own (new) id.
        ids = sorted((int(i) for i, t in self.tweets.items()
                      if t["_mention"] and i not in self.deleted and not self._superseded(t)
                      and int(i) > since and (until is None or int(i) <= until)),
                     reverse=True)
        page = [self.tweets[str(i)] for i in ids[:size]]
        next_token = f"pt{ids[size]}" if len(ids) > size else None
        return page, next_token

    def _render_page(self, page: list[dict[str, Any]], next_token: str | None,
                     query: Any) -> dict[str, Any]:
        if not page:
            return {"meta": {"result_count": 0}}
        expansions = _listed(query, "expansions")
        fields = _listed(query, "tweet.fields")
        fields += [IMPLIED_FIELDS[e] for e in expansions
                   if e in IMPLIED_FIELDS and IMPLIED_FIELDS[e] not in fields]
        body: dict[str, Any] = {"data": [self._public(t, fields) for t in page]}
        includes, errors = self._includes(page, expansions, fields,
                                          _listed(query, "media.fields"))
        if includes:
            body["includes"] = includes
        if errors:
            body["errors"] = errors
        meta = {"result_count": len(page), "newest_id": page[0]["id"],
                "oldest_id": page[-1]["id"]}
        if next_token:
            meta["next_token"] = next_token
        body["meta"] = meta
        return body

    def _includes(self, page: list[dict[str, Any]], expansions: list[str],
                  fields: list[str], media_fields: list[str]
                  ) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
        """A page's ``includes``, each object once: users (authors; with
        referenced_tweets.id.author_id also the referenced posts' authors), tweets
        (with edit_history_tweet_ids every version first, then the referenced posts,
        as in quote_and_reply.json; rendered with the same tweet.fields), media of the
        page's own posts only (stream_quote_with_photo.json: the quoted post's photo is
        not included). A referenced post that is gone is a partial error instead."""
        users: dict[str, dict[str, Any]] = {}
        tweets: dict[str, dict[str, Any]] = {}
        media: dict[str, dict[str, Any]] = {}
        errors: dict[str, dict[str, Any]] = {}

        def add_user(user_id: Any) -> None:
            if user_id in self.users and user_id not in users:
                users[user_id] = dict(self.users[user_id])

        for tweet in page:
            if "author_id" in expansions:
                add_user(tweet["author_id"])
            if "in_reply_to_user_id" in expansions:
                add_user(tweet.get("in_reply_to_user_id"))
        if "edit_history_tweet_ids" in expansions:
            for tweet in page:
                for version in tweet["edit_history_tweet_ids"]:
                    tweets.setdefault(version, self._public(self.tweets[version], fields))
        referenced = {"referenced_tweets.id", "referenced_tweets.id.author_id"} & set(
            expansions)
        for tweet in page if referenced else ():
            for ref in tweet.get("referenced_tweets", ()):
                found = self.tweets.get(ref["id"])
                if found is None or ref["id"] in self.deleted:
                    errors[ref["id"]] = _not_found(ref["id"], "referenced_tweets.id")
                    continue
                if "referenced_tweets.id" in expansions:
                    tweets.setdefault(ref["id"], self._public(found, fields))
                if "referenced_tweets.id.author_id" in expansions:
                    add_user(found["author_id"])
        if "attachments.media_keys" in expansions:
            for tweet in page:
                for key in (tweet.get("attachments") or {}).get("media_keys", ()):
                    if key in self.media and key not in media:
                        media[key] = _render_media(self.media[key], media_fields)
        includes = {name: list(found.values()) for name, found in
                    (("users", users), ("tweets", tweets), ("media", media)) if found}
        return includes, list(errors.values())

    async def _create_tweet(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "tweets", self._answer_create_tweet)

    async def _answer_create_tweet(self, request: web.Request) -> web.Response:
        body = await self.params(request)
        text = body.get("text")
        media_ids = [str(i) for i in (body.get("media") or {}).get("media_ids") or []]
        media = [self.uploads.get(i) for i in media_ids]
        if any(m is None or m["state"] != "succeeded" for m in media):
            return _invalid_request("media.media_ids", media_ids, "Your media IDs are invalid.")
        if media_ids and not isinstance(text, str):
            text = ""
        elif not isinstance(text, str) or not text:
            return _invalid_request("text", text, "The `text` field is required")
        if weighted_length(text) > MAX_WEIGHTED_LENGTH:
            return _invalid_request("text", text,
                                    "Your Tweet text is too long. For more information on "
                                    "how X determines text length see "
                                    "https://github.com/twitter/twitter-text.")
        in_reply_to = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        if in_reply_to is not None and (str(in_reply_to) not in self.tweets
                                        or str(in_reply_to) in self.deleted):
            return _problem(403, "Forbidden", "You attempted to reply to a Tweet that is "
                                              "deleted or not visible to you.")
        if text and any(t["author_id"] == self.bot["id"] and t["text"] == text
                        and i not in self.deleted for i, t in self.tweets.items()):
            return _problem(403, "Forbidden",
                            "You are not allowed to create a Tweet with duplicate content.")
        tweet = self._store_tweet(self.bot["id"], text, in_reply_to, None, mention=False,
                                  media=[{"type": m["type"], "content": m["content"]}
                                         for m in media])
        self.tweets[tweet["id"]]["_reply_to"] = str(in_reply_to) if in_reply_to else None
        sent = {"id": tweet["id"], "text": text,
                "in_reply_to_tweet_id": str(in_reply_to) if in_reply_to else None}
        if media:  # what the customer sees: the media, their bytes as uploaded
            sent["media"] = [{"media_id": i, "type": m["type"], "content": m["content"]}
                             for i, m in zip(media_ids, media, strict=True)]
        self.record_sent(sent)
        shown = self.tweets[tweet["id"]]["text"] if media else text  # with the media link
        return web.json_response({"data": {"id": tweet["id"], "text": shown,
                                           "edit_history_tweet_ids": [tweet["id"]]}},
                                 status=201)

    # --- media upload (docs.x.com/x-api/media/quickstart/media-upload-chunked) and
    # --- deleting posts (DELETE /2/tweets/:id -> {"data": {"deleted": true}})

    async def _media_upload(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "media", self._answer_media_upload)

    async def _media_status(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "media", self._answer_media_status)

    async def _answer_media_upload(self, request: web.Request) -> web.Response:
        """multipart ``command``: INIT (media_type, total_bytes, media_category) ->
        {"data": {"id", "media_key", "expires_after_secs"}}; APPEND (media_id,
        segment_index, media: at most 5 MB) -> 204; FINALIZE (media_id) -> the media, with
        processing_info for a video. X's limits: images up to 5 MB (JPG, PNG, WebP;
        GIF up to 15 MB), MP4 videos up to 512 MB."""
        form = await request.post()
        command = str(form.get("command") or "")
        if command == "INIT":
            media_type = str(form.get("media_type") or "")
            category = str(form.get("media_category") or "")
            total = int(str(form.get("total_bytes") or "0") or 0)
            limit = MEDIA_LIMITS.get((category, media_type))
            if limit is None:
                return _invalid_request("media_type", media_type,
                                        f"media type {media_type} is not supported for "
                                        f"{category or 'a post'}")
            if not 0 < total <= limit:
                return _invalid_request("total_bytes", total,
                                        f"File size exceeds {limit} bytes.")
            self._next_media += 1
            media_id = str(self._next_media)
            kind = {"tweet_video": "video", "tweet_gif": "animated_gif"}.get(category, "photo")
            self.uploads[media_id] = {"type": kind, "media_type": media_type, "total": total,
                                      "chunks": {}, "state": "init", "content": b""}
            return web.json_response({"data": {
                "id": media_id, "media_key": f"{MEDIA_PREFIX[kind]}_{media_id}",
                "expires_after_secs": 86400}})
        upload = self.uploads.get(str(form.get("media_id") or ""))
        if upload is None:
            return _invalid_request("media_id", form.get("media_id"), "Invalid media_id")
        if command == "APPEND":
            media = form.get("media")
            if not isinstance(media, web.FileField) or upload["state"] != "init":
                return _invalid_request("media", "", "The media part is required")
            chunk = media.file.read()
            if len(chunk) > 5 * 1024 * 1024:
                return _invalid_request("media", "", "A segment is at most 5 MB")
            upload["chunks"][int(str(form.get("segment_index") or "0"))] = chunk
            return web.Response(status=204)
        if command == "FINALIZE":
            content = b"".join(upload["chunks"][i] for i in sorted(upload["chunks"]))
            if len(content) != upload["total"]:
                return _invalid_request("media_id", form.get("media_id"),
                                        "File size does not match total_bytes.")
            upload["content"] = content
            media_id = str(form.get("media_id"))
            data: dict[str, Any] = {"id": media_id, "size": len(content),
                                    "media_key": f"{MEDIA_PREFIX[upload['type']]}_{media_id}",
                                    "expires_after_secs": 86400}
            if upload["type"] == "photo":
                upload["state"] = "succeeded"
            else:
                upload["state"] = "pending"
                data["processing_info"] = {"state": "pending",
                                           "check_after_secs": self.processing_seconds}
            return web.json_response({"data": data})
        return _invalid_request("command", command, "command is INIT, APPEND or FINALIZE")

    async def _answer_media_status(self, request: web.Request) -> web.Response:
        """``?command=STATUS&media_id=``: a pending video is done at the first check."""
        media_id = request.query.get("media_id", "")
        upload = self.uploads.get(media_id)
        if request.query.get("command") != "STATUS" or upload is None:
            return _invalid_request("media_id", media_id, "Invalid media_id")
        if upload["state"] == "pending":
            upload["state"] = "succeeded"
        return web.json_response({"data": {"id": media_id, "processing_info": {
            "state": upload["state"], "progress_percent": 100}}})

    async def _delete_tweet(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "delete", self._answer_delete_tweet)

    async def _answer_delete_tweet(self, request: web.Request) -> web.Response:
        tweet_id = request.match_info["id"]
        tweet = self.tweets.get(tweet_id)
        if tweet is None or tweet_id in self.deleted:
            return _problem(404, "Not Found Error", f"Could not find tweet with id: "
                                                    f"[{tweet_id}].")
        if tweet["author_id"] != self.bot["id"]:
            return _problem(403, "Forbidden", "You are not allowed to delete a Tweet that "
                                              "does not belong to you.")
        self.deleted.add(tweet_id)
        self.deletions.append(tweet_id)
        return web.json_response({"data": {"deleted": True}})


def _listed(query: Any, name: str) -> list[str]:
    return [value for value in query.get(name, "").split(",") if value]


def _unknown_fields(query: Any) -> web.Response | None:
    """X refuses a whole request naming an expansion or a field it does not know."""
    for name, allowed in (("expansions", EXPANSIONS), *ALLOWED_FIELDS.items()):
        for value in _listed(query, name):
            if value not in allowed:
                return _invalid_request(
                    name, value, f"The `{name}` query parameter value [{value}] is not one "
                                 f"of [{','.join(sorted(allowed))}]")
    return None


def _not_found(tweet_id: str, parameter: str) -> dict[str, Any]:
    """X's partial error for a referenced post it cannot show (deleted, protected)."""
    return {"value": tweet_id, "detail": f"Could not find tweet with {parameter}: "
                                         f"[{tweet_id}].",
            "title": "Not Found Error", "resource_type": "tweet", "parameter": parameter,
            "resource_id": tweet_id,
            "type": "https://api.twitter.com/2/problems/resource-not-found"}


def _render_media(media: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """``media_key`` and ``type`` always, the rest only when asked for (a photo asked
    without ``variants`` has none: edited_tweet_with_photo_original.json)."""
    shown = {"media_key": media["media_key"], "type": media["type"]}
    shown.update({name: copy.deepcopy(media[name]) for name in fields
                  if name in media and name not in shown})
    return shown


def _retweet_text(author: str, text: str) -> str:
    """A retweet's text: "RT @author: " and the post, cut at a word boundary to 139
    characters and "…" when over 140 (exactly the texts of retweet_with_mentions.json
    and retweet_search_page.json)."""
    full = f"RT @{author}: {text}"
    if len(full) <= RETWEET_LIMIT:
        return full
    cut = full[:RETWEET_LIMIT - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > len(f"RT @{author}:") else cut).rstrip() + "…"


def _preview(text: str) -> str:
    """A long post's ``text``: its first NOTE_PREVIEW characters, at a word boundary."""
    if len(text) <= NOTE_PREVIEW:
        return text
    cut = text[:NOTE_PREVIEW]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 and not text[NOTE_PREVIEW].isspace() else cut).rstrip()


def _drop_fields(body: dict[str, Any], drop: list[str]) -> None:
    """The "missing_fields" fault: the newest tweet loses fields, or the page its meta."""
    tweets = body.get("data") or []
    for name in drop:
        if name == "meta":
            body.pop("meta", None)
        elif tweets:
            tweets[0].pop(name, None)
