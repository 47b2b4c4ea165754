"""The histories `sameday replay` reads, as plain events sorted by time.

Two inputs are read (see docs/configuration.md, "Replaying history"):

- the "Customer Support on Twitter" (TWCS) CSV as published: customer tweets become
  inbound messages on channel ``twitter``, company tweets that answer a customer tweet
  become staff answers;
- a JSONL history, one event per line, for any channel.

Every inbound row is accounted for: either read as an event or counted as skipped with a
reason.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config.channels import channel_names
from core.domain.records import Inbound

TWCS_COLUMNS = {"tweet_id", "author_id", "inbound", "created_at", "text",
                "in_response_to_tweet_id"}
TWCS_TIME = "%a %b %d %H:%M:%S %z %Y"  # "Tue Oct 31 22:10:47 +0000 2017"
INBOUND, ANSWER = "inbound", "answer"


class ReplayError(ValueError):
    """A mistake the admin can fix: an unreadable file, an unknown --staff-name, a bad
    --until (single bad rows are not errors: they are skipped and reported)."""


# --- the history: plain events, sorted by time ------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerMessage:
    at: datetime
    inbound: Inbound


@dataclass(frozen=True, slots=True)
class StaffAnswer:
    at: datetime
    channel: str
    answers: str  # external id of the customer message it answers
    text: str


@dataclass
class History:
    """The events of a file plus the bookkeeping that explains every row not replayed."""

    source: str
    format: str
    events: list[CustomerMessage | StaffAnswer] = field(default_factory=list)
    read: Counter = field(default_factory=Counter)  # rows per kind ("inbound", "answer"...)
    skipped: dict[str, Counter] = field(default_factory=dict)  # kind -> reason -> rows

    def skip(self, kind: str, reason: str) -> None:
        self.skipped.setdefault(kind, Counter())[reason] += 1

    def sort(self) -> None:
        # Stable sort; at the same moment a customer message comes before an answer to it.
        self.events.sort(key=lambda e: (e.at, isinstance(e, StaffAnswer)))


def read_history(path: Path) -> History:
    """Read a TWCS CSV or a JSONL history, chosen by the first non-blank character."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            head = handle.read(4096).lstrip("\ufeff \t\r\n")
            handle.seek(0)
            history = (read_jsonl(handle, str(path)) if head.startswith("{")
                       else read_twcs(handle, str(path)))
    except (OSError, UnicodeDecodeError) as error:
        raise ReplayError(f"{path}: unreadable: {error}") from None
    history.sort()
    return history


def _tweet_id(value: str | None) -> str:
    """TWCS ids are sometimes written as floats ("192625.0"); an id is the integer part."""
    value = (value or "").strip()
    return value[:-2] if value.endswith(".0") else value


@dataclass(frozen=True, slots=True)
class _Tweet:
    tweet_id: str
    author_id: str
    customer: bool
    at: datetime
    text: str
    parent: str


def read_twcs(lines: Iterable[str], source: str = "<twcs>") -> History:
    """Customer tweets -> inbound messages; company answers to them -> staff answers."""
    history = History(source=source, format="twcs")
    reader = csv.DictReader(lines)
    missing = TWCS_COLUMNS - set(reader.fieldnames or ())
    if missing:
        raise ReplayError(f"{source}: not a TWCS CSV (missing columns: "
                           f"{', '.join(sorted(missing))}) and not JSONL")
    tweets: dict[str, _Tweet] = {}
    order: list[_Tweet] = []
    for row in reader:
        tweet = _twcs_row(row, history)
        if tweet is None:
            continue
        if tweet.tweet_id in tweets:
            order.append(tweet)  # the core's dedupe decides; it is reported as a duplicate
            continue
        tweets[tweet.tweet_id] = tweet
        order.append(tweet)
    roots: dict[str, str | None] = {}
    for tweet in order:
        if tweet.customer:
            root = _conversation_root(tweet, tweets, roots)
            history.events.append(CustomerMessage(tweet.at, Inbound(
                channel="twitter", external_id=tweet.tweet_id,
                thread_key=f"conv:{root}:{tweet.author_id}", author_id=tweet.author_id,
                text=tweet.text, sent_at=tweet.at, author_handle=f"@{tweet.author_id}",
                reply_target={"in_reply_to_tweet_id": tweet.tweet_id})))
        elif (parent := tweets.get(tweet.parent)) is not None and parent.customer:
            history.events.append(StaffAnswer(tweet.at, "twitter", parent.tweet_id, tweet.text))
        else:
            history.skip(ANSWER, "answers no customer tweet in the file")
    return history


def _twcs_row(row: dict[str, Any], history: History) -> _Tweet | None:
    """One CSV row as a tweet, or None (counted as skipped with the reason)."""
    flag = (row.get("inbound") or "").strip().lower()
    kind = {"true": INBOUND, "false": ANSWER}.get(flag, "unknown")
    history.read[kind] += 1
    if kind == "unknown":
        history.skip(kind, "inbound is neither True nor False")
        return None
    tweet_id, author = _tweet_id(row.get("tweet_id")), (row.get("author_id") or "").strip()
    if not tweet_id or not author:
        history.skip(kind, "no tweet_id or author_id")
        return None
    try:
        at = datetime.strptime((row.get("created_at") or "").strip(), TWCS_TIME)
    except ValueError:
        history.skip(kind, "created_at is not a Twitter time")
        return None
    return _Tweet(tweet_id, author, kind == INBOUND, at.astimezone(UTC),
                  row.get("text") or "", _tweet_id(row.get("in_response_to_tweet_id")))


def _conversation_root(tweet: _Tweet, tweets: dict[str, _Tweet],
                       roots: dict[str, str | None]) -> str:
    """The first customer tweet of the conversation, following in_response_to links.

    The links run through company answers too (customer -> company -> customer), so a
    customer's follow-up lands in the ticket of their first tweet. Where the chain leaves
    the file, the earliest customer tweet reached is the root. ``roots`` memoizes, per
    tweet, the topmost customer tweet at or above it, so a long conversation costs one walk.
    """
    chain: list[_Tweet] = []
    seen: set[str] = set()
    current: _Tweet | None = tweet
    while current is not None and current.tweet_id not in roots:
        if current.tweet_id in seen:  # a cycle in broken data: stop where it closes
            break
        seen.add(current.tweet_id)
        chain.append(current)
        current = tweets.get(current.parent)
    top = roots.get(current.tweet_id) if current is not None else None
    for node in reversed(chain):  # from the top down: the first customer found wins
        top = top or (node.tweet_id if node.customer else None)
        roots[node.tweet_id] = top
    return roots[tweet.tweet_id] or tweet.tweet_id


def read_jsonl(lines: Iterable[str], source: str = "<jsonl>") -> History:
    """One JSON object per line: {"at", "kind": "in"|"answer", "channel", "id", ...}."""
    history = History(source=source, format="jsonl")
    channels_of: dict[str, str] = {}  # message id -> channel, for answers without one
    pending: list[tuple[datetime, dict[str, Any]]] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            kind = {"in": INBOUND, "answer": ANSWER}.get(item.get("kind"), "unknown")
        except (ValueError, AttributeError):
            history.read["unknown"] += 1
            history.skip("unknown", "not a JSON object")
            continue
        history.read[kind] += 1
        if kind == "unknown":
            history.skip(kind, 'kind is neither "in" nor "answer"')
            continue
        at = _iso_time(item.get("at"))
        if at is None:
            history.skip(kind, '"at" is not an ISO time')
            continue
        if kind == ANSWER:
            pending.append((at, item))
            continue
        inbound = _jsonl_inbound(item, at)
        if isinstance(inbound, str):
            history.skip(kind, inbound)
            continue
        channels_of.setdefault(inbound.external_id, inbound.channel)
        history.events.append(CustomerMessage(at, inbound))
    for at, item in pending:
        answers = str(item.get("answers") or "")
        channel = item.get("channel") or channels_of.get(answers)
        if not answers or channel not in channel_names():
            history.skip(ANSWER, '"answers" names no "in" message of the file')
            continue
        history.events.append(StaffAnswer(at, channel, answers, str(item.get("text") or "")))
    return history


def _jsonl_inbound(item: dict[str, Any], at: datetime) -> Inbound | str:
    """The Inbound of an "in" line, or the reason it cannot be one."""
    channel, message_id = item.get("channel"), str(item.get("id") or "")
    author = str(item.get("author") or "")
    if channel not in channel_names():
        return f"channel is not one of {', '.join(channel_names())}"
    if not message_id or not author:
        return 'no "id" or "author"'
    target = {"replayed": message_id}  # never sent: a replay only counts outbox rows
    return Inbound(channel=channel, external_id=message_id,
                   thread_key=str(item.get("thread") or f"author:{author}"), author_id=author,
                   text=str(item.get("text") or ""), sent_at=at,
                   author_handle=item.get("handle"), author_name=item.get("name"),
                   reply_target=target)


def _iso_time(value: Any) -> datetime | None:
    """An ISO 8601 time; one without an offset is UTC (histories are exported in UTC)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
