"""The histories `sameday replay` reads, as plain events sorted by time.

Two inputs are read (see docs/configuration.md, "Replaying history"):

- the "Customer Support on Twitter" (TWCS) CSV as published: customer tweets become
  inbound messages on channel ``twitter``, company tweets that answer a customer tweet
  become staff answers;
- a JSONL history, one event per line, for any channel.

Every inbound row is accounted for: either read as an event or counted as skipped with a
reason.

``read_history`` holds a whole file in memory (tests, the event-by-event replay);
``sameday replay`` reads files through core.replay.stream, which parses rows with the
functions here and keeps the events on disk.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
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


Event = CustomerMessage | StaffAnswer


@dataclass
class Rows:
    """The bookkeeping that explains every row not replayed (kept by both readers: this
    module's, in memory, and core.replay.stream's, on disk)."""

    source: str
    format: str
    read: Counter = field(default_factory=Counter)  # rows per kind ("inbound", "answer"...)
    skipped: dict[str, Counter] = field(default_factory=dict)  # kind -> reason -> rows

    def skip(self, kind: str, reason: str, rows: int = 1) -> None:
        if rows:
            self.skipped.setdefault(kind, Counter())[reason] += rows


@dataclass
class History(Rows):
    """The events of a file, in memory, plus the bookkeeping of the rows not replayed."""

    events: list[Event] = field(default_factory=list)

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
class Tweet:
    tweet_id: str
    author_id: str
    customer: bool
    at: datetime
    text: str
    parent: str


def read_twcs(lines: Iterable[str], source: str = "<twcs>") -> History:
    """Customer tweets -> inbound messages; company answers to them -> staff answers."""
    history = History(source=source, format="twcs")
    tweets: dict[str, Tweet] = {}
    order: list[Tweet] = []
    for tweet in twcs_tweets(lines, history):
        if tweet.tweet_id in tweets:
            order.append(tweet)  # the core's dedupe decides; it is reported as a duplicate
            continue
        tweets[tweet.tweet_id] = tweet
        order.append(tweet)
    roots: dict[str, str | None] = {}
    for tweet in order:
        if tweet.customer:
            root = _conversation_root(tweet, tweets, roots)
            history.events.append(twcs_message(tweet, root))
        elif (parent := tweets.get(tweet.parent)) is not None and parent.customer:
            history.events.append(StaffAnswer(tweet.at, "twitter", parent.tweet_id, tweet.text))
        else:
            history.skip(ANSWER, NO_QUESTION)
    return history


NO_QUESTION = "answers no customer tweet in the file"


def twcs_message(tweet: Tweet, root: str) -> CustomerMessage:
    """A customer tweet as the X adapter would hand it over, threaded by its root."""
    return CustomerMessage(tweet.at, Inbound(
        channel="twitter", external_id=tweet.tweet_id,
        thread_key=f"conv:{root}:{tweet.author_id}", author_id=tweet.author_id,
        text=tweet.text, sent_at=tweet.at, author_handle=f"@{tweet.author_id}",
        reply_target={"in_reply_to_tweet_id": tweet.tweet_id}))


def twcs_tweets(lines: Iterable[str], rows: Rows) -> Iterator[Tweet]:
    """The readable tweets of a TWCS CSV, in file order; the others are counted in `rows`."""
    reader = csv.DictReader(lines)
    missing = TWCS_COLUMNS - set(reader.fieldnames or ())
    if missing:
        raise ReplayError(f"{rows.source}: not a TWCS CSV (missing columns: "
                          f"{', '.join(sorted(missing))}) and not JSONL")
    for row in reader:
        tweet = _twcs_row(row, rows)
        if tweet is not None:
            yield tweet


def _twcs_row(row: dict[str, Any], history: Rows) -> Tweet | None:
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
    return Tweet(tweet_id, author, kind == INBOUND, at.astimezone(UTC),
                  row.get("text") or "", _tweet_id(row.get("in_response_to_tweet_id")))


def _conversation_root(tweet: Tweet, tweets: dict[str, Tweet],
                       roots: dict[str, str | None]) -> str:
    """The first customer tweet of the conversation, following in_response_to links.

    The links run through company answers too (customer -> company -> customer), so a
    customer's follow-up lands in the ticket of their first tweet. Where the chain leaves
    the file, the earliest customer tweet reached is the root. ``roots`` memoizes, per
    tweet, the topmost customer tweet at or above it, so a long conversation costs one walk.
    """
    chain: list[Tweet] = []
    seen: set[str] = set()
    current: Tweet | None = tweet
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
    for kind, at, item in jsonl_items(lines, history):
        if kind == ANSWER:
            pending.append((at, item))
            continue
        inbound = jsonl_inbound(item, at)
        if isinstance(inbound, str):
            history.skip(kind, inbound)
            continue
        channels_of.setdefault(inbound.external_id, inbound.channel)
        history.events.append(CustomerMessage(at, inbound))
    for at, item in pending:
        answers = str(item.get("answers") or "")
        channel = item.get("channel") or channels_of.get(answers)
        if not answers or channel not in channel_names():
            history.skip(ANSWER, NO_ANSWERED)
            continue
        history.events.append(StaffAnswer(at, channel, answers, str(item.get("text") or "")))
    return history


NO_ANSWERED = '"answers" names no "in" message of the file'


def jsonl_items(lines: Iterable[str], rows: Rows
                ) -> Iterator[tuple[str, datetime, dict[str, Any]]]:
    """The lines of a JSONL history as (kind, at, item), in file order; blank lines are
    passed over, unreadable ones counted in `rows` with the reason."""
    for line in lines:
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            kind = {"in": INBOUND, "answer": ANSWER}.get(item.get("kind"), "unknown")
        except (ValueError, AttributeError):
            rows.read["unknown"] += 1
            rows.skip("unknown", "not a JSON object")
            continue
        rows.read[kind] += 1
        if kind == "unknown":
            rows.skip(kind, 'kind is neither "in" nor "answer"')
            continue
        at = _iso_time(item.get("at"))
        if at is None:
            rows.skip(kind, '"at" is not an ISO time')
            continue
        yield kind, at, item


def jsonl_inbound(item: dict[str, Any], at: datetime) -> Inbound | str:
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
