"""A loopback X API v2 server: the subset the X adapter (tweepy's AsyncClient) uses.

Endpoints, with X's JSON shapes, status codes and rate-limit headers:

    GET  /2/users/me                  the bot account
    GET  /2/users/{id}/mentions       since_id, pagination_token, max_results (5..100),
                                      expansions=author_id, tweet.fields, user.fields
    POST /2/tweets                    {"text", "reply": {"in_reply_to_tweet_id"}}

Every response carries ``x-rate-limit-limit``, ``x-rate-limit-remaining`` and
``x-rate-limit-reset`` (epoch seconds) for a fixed 15-minute window per endpoint and
user, as X does. Posting beyond the post limit answers 429 and records a violation: the
adapter and the dispatcher must never get there.

Fault kinds (method names "mentions", "tweets", "me"): the base kinds "500", "timeout",
"malformed", plus "429" (``seconds`` until ``x-rate-limit-reset``), "503" and
"missing_fields" (``drop`` = any of "id", "author_id", "text", "meta"; default
["author_id"]: the newest tweet of the page loses that field, or the page its meta).

Control: ``inject_mention``, ``delete_tweet`` in Python, or ``POST /_control/inject``
with the same keys (or ``{"delete": id}``); ``sent`` lists the bot's tweets.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Awaitable, Callable
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
                        "me": RateWindow(75, WINDOW)}
        self._next_id = FIRST_TWEET_ID
        self._mangle: dict[str, Fault] = {}
        self.app.add_routes([
            web.get("/2/users/me", self._me),
            web.get("/2/users/{id}/mentions", self._mentions),
            web.get("/2/users/{id}/tweets", self._timeline),
            web.post("/2/tweets", self._create_tweet),
        ])

    # --- control (Python) ------------------------------------------------------------------

    def inject_mention(self, author_id: str, username: str, text: str, name: str | None = None,
                       in_reply_to_tweet_id: str | None = None,
                       conversation_id: str | None = None) -> dict[str, Any]:
        """A customer's tweet mentioning the bot; returns it as the API would."""
        self.users[str(author_id)] = {"id": str(author_id), "username": username,
                                      "name": name or username}
        return self._store_tweet(str(author_id), text, in_reply_to_tweet_id, conversation_id,
                                 mention=True)

    def inject_tweet(self, author_id: str, username: str, text: str) -> dict[str, Any]:
        """A customer's tweet that does not mention the bot (a reply target only)."""
        self.users[str(author_id)] = {"id": str(author_id), "username": username,
                                      "name": username}
        return self._store_tweet(str(author_id), text, None, None, mention=False)

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
        return self.inject_mention(**body)

    @property
    def since_ids(self) -> list[str | None]:
        """The since_id of every first-page mentions request, in order."""
        return [r.since_id for r in self.mention_requests if r.pagination_token is None]

    # --- state ---------------------------------------------------------------------------

    def _store_tweet(self, author_id: str, text: str, in_reply_to: str | None,
                     conversation_id: str | None, *, mention: bool) -> dict[str, Any]:
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
        if parent is not None:
            tweet["in_reply_to_user_id"] = parent["author_id"]
        elif in_reply_to:
            tweet["in_reply_to_user_id"] = self.bot["id"]
        self.tweets[tweet_id] = tweet
        return self._public(tweet, TWEET_FIELDS)

    @staticmethod
    def _public(tweet: dict[str, Any], fields: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """The tweet as X renders it: default fields plus the requested ones, the text
        with &, < and > escaped as X does (e.g. "So @alanbenlee @snowman &amp; I are
        testing..." in tests/fixtures/real/twitter/html_escaped_amp.json)."""
        shown = {"id": tweet["id"], "text": html.escape(str(tweet["text"]), quote=False),
                 "edit_history_tweet_ids": tweet["edit_history_tweet_ids"]}
        shown.update({f: tweet[f] for f in fields if f in tweet})
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
        ids = sorted((int(i) for i, t in self.tweets.items()
                      if t["_mention"] and i not in self.deleted and int(i) > since
                      and (until is None or int(i) <= until)), reverse=True)
        page = [self.tweets[str(i)] for i in ids[:size]]
        next_token = f"pt{ids[size]}" if len(ids) > size else None
        return page, next_token

    def _render_page(self, page: list[dict[str, Any]], next_token: str | None,
                     query: Any) -> dict[str, Any]:
        if not page:
            return {"meta": {"result_count": 0}}
        fields = [f for f in query.get("tweet.fields", "").split(",") if f]
        expansions = query.get("expansions", "").split(",")
        if "author_id" in expansions and "author_id" not in fields:
            fields.append("author_id")
        body: dict[str, Any] = {"data": [self._public(t, fields) for t in page]}
        if "author_id" in expansions:
            authors = dict.fromkeys(t["author_id"] for t in page)
            body["includes"] = {"users": [dict(self.users[a]) for a in authors
                                          if a in self.users]}
        meta = {"result_count": len(page), "newest_id": page[0]["id"],
                "oldest_id": page[-1]["id"]}
        if next_token:
            meta["next_token"] = next_token
        body["meta"] = meta
        return body

    async def _create_tweet(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "tweets", self._answer_create_tweet)

    async def _answer_create_tweet(self, request: web.Request) -> web.Response:
        body = await self.params(request)
        text = body.get("text")
        if not isinstance(text, str) or not text:
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
        if any(t["author_id"] == self.bot["id"] and t["text"] == text
               and i not in self.deleted for i, t in self.tweets.items()):
            return _problem(403, "Forbidden",
                            "You are not allowed to create a Tweet with duplicate content.")
        tweet = self._store_tweet(self.bot["id"], text, in_reply_to, None, mention=False)
        self.tweets[tweet["id"]]["_reply_to"] = str(in_reply_to) if in_reply_to else None
        self.record_sent({"id": tweet["id"], "text": text,
                          "in_reply_to_tweet_id": str(in_reply_to) if in_reply_to else None})
        return web.json_response({"data": {"id": tweet["id"], "text": text,
                                           "edit_history_tweet_ids": [tweet["id"]]}},
                                 status=201)


def _drop_fields(body: dict[str, Any], drop: list[str]) -> None:
    """The "missing_fields" fault: the newest tweet loses fields, or the page its meta."""
    tweets = body.get("data") or []
    for name in drop:
        if name == "meta":
            body.pop("meta", None)
        elif tweets:
            tweets[0].pop(name, None)
