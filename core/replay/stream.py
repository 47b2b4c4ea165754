"""A history file indexed on disk and handed back in time order, in constant memory.

``read_history`` (core.replay.history) holds a whole file as events in memory: fine for
thousands of rows, not for the 2.8 million of the full TWCS data set (the events alone
would take gigabytes). ``open_history`` reads the file once, row by row, into a scratch
SQLite file in the replay's temporary folder, threads the TWCS conversations there, and
``StreamedHistory.events`` hands the events back through one cursor, in the order
``History.sort`` gives: by time, a customer message before an answer of the same moment,
then in file order.

The events, the counts and the skip reasons are exactly those of ``read_history`` (a test
compares them): both readers parse rows with the same functions, and the conversation
roots come from the same walk with the same memo, kept in a table instead of a dict. The
scratch file needs no durability: no journal, no syncs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.config.channels import channel_names
from core.replay.history import (
    ANSWER,
    INBOUND,
    NO_ANSWERED,
    NO_QUESTION,
    CustomerMessage,
    Event,
    ReplayError,
    Rows,
    StaffAnswer,
    Tweet,
    jsonl_inbound,
    jsonl_items,
    twcs_message,
    twcs_tweets,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
ROWS_PER_INSERT = 5_000  # rows buffered before one executemany
FETCH = 1_000  # rows a cursor fetches at a time

# journal off, no syncs: the file is thrown away with the replay; a small page cache keeps
# the process's memory flat however long the file.
SCRATCH_PRAGMAS = ("PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF",
                   "PRAGMA cache_size=-8000", "PRAGMA temp_store=FILE")

TWCS_SCHEMA = """
CREATE TABLE tweet (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, answer INTEGER NOT NULL,
                    tweet_id TEXT NOT NULL, author TEXT NOT NULL, text TEXT NOT NULL,
                    parent TEXT NOT NULL);
-- The first row of each tweet id (what read_twcs's dict keeps) and the walk's memo:
-- `walked` = the id is in the memo, `top` = the topmost customer tweet at or above it.
CREATE TABLE node (tweet_id TEXT PRIMARY KEY, customer INTEGER NOT NULL,
                   parent TEXT NOT NULL, walked INTEGER NOT NULL DEFAULT 0, top TEXT)
                  WITHOUT ROWID;
"""

JSONL_SCHEMA = """
CREATE TABLE line (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, answer INTEGER NOT NULL,
                   item TEXT, answers TEXT, channel TEXT, text TEXT, bad INTEGER NOT NULL);
-- The channel of the first "in" line of each message id (an answer may leave it out).
CREATE TABLE first_channel (id TEXT PRIMARY KEY, channel TEXT NOT NULL) WITHOUT ROWID;
"""


def micros(moment: datetime) -> int:
    """An aware time as whole microseconds since 1970 (sortable, exact)."""
    return (moment - EPOCH) // MICROSECOND


def moment(micros_: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros_)


class StreamedHistory(Rows):
    """A history indexed in a scratch SQLite file: its counts in memory, its events on disk."""

    def __init__(self, source: str, format_: str, scratch: Path):
        super().__init__(source=source, format=format_)
        self.db = sqlite3.connect(scratch, isolation_level=None)
        for pragma in SCRATCH_PRAGMAS:
            self.db.execute(pragma)

    def close(self) -> None:
        self.db.close()

    def span(self) -> tuple[datetime, datetime] | None:
        """The times of the first and the last event (None: no event)."""
        table = "tweet" if self.format == "twcs" else "line"
        first, last = self.db.execute(f"SELECT min(at), max(at) FROM {table}").fetchone()
        return None if first is None else (moment(first), moment(last))

    def events(self) -> Iterator[Event]:
        """The events in replay order, read through one cursor."""
        return self._twcs_events() if self.format == "twcs" else self._jsonl_events()

    # --- TWCS ------------------------------------------------------------------------------

    def index_twcs(self, lines: Iterable[str]) -> None:
        self.db.executescript(TWCS_SCHEMA)
        self.db.execute("BEGIN")
        rows, nodes = [], []
        for tweet in twcs_tweets(lines, self):
            rows.append((micros(tweet.at), int(not tweet.customer), tweet.tweet_id,
                         tweet.author_id, tweet.text, tweet.parent))
            nodes.append((tweet.tweet_id, int(tweet.customer), tweet.parent))
            if len(rows) >= ROWS_PER_INSERT:
                self._insert_tweets(rows, nodes)
                rows, nodes = [], []
        self._insert_tweets(rows, nodes)
        _RootWalk(self.db).run()
        # A company tweet is an answer only to a customer tweet of the file.
        not_answers = ("FROM tweet WHERE answer = 1 AND NOT EXISTS (SELECT 1 FROM node "
                       "WHERE node.tweet_id = tweet.parent AND node.customer = 1)")
        self.skip(ANSWER, NO_QUESTION, self.db.execute(f"SELECT count(*) {not_answers}")
                  .fetchone()[0])
        self.db.execute(f"DELETE {not_answers}")
        self.db.execute("CREATE INDEX tweet_order ON tweet (at, answer, seq)")
        self.db.execute("COMMIT")

    def _insert_tweets(self, rows: list[tuple], nodes: list[tuple]) -> None:
        self.db.executemany("INSERT INTO tweet (at, answer, tweet_id, author, text, parent) "
                            "VALUES (?, ?, ?, ?, ?, ?)", rows)
        self.db.executemany("INSERT OR IGNORE INTO node (tweet_id, customer, parent) "
                            "VALUES (?, ?, ?)", nodes)

    def _twcs_events(self) -> Iterator[Event]:
        cursor = self.db.execute(
            "SELECT tweet.at, answer, tweet.tweet_id, author, text, tweet.parent, node.top "
            "FROM tweet JOIN node ON node.tweet_id = tweet.tweet_id "
            "ORDER BY tweet.at, answer, seq")
        while page := cursor.fetchmany(FETCH):
            for at_, answer, tweet_id, author, text, parent, top in page:
                at = moment(at_)
                if answer:
                    yield StaffAnswer(at, "twitter", parent, text)
                else:
                    yield twcs_message(Tweet(tweet_id, author, True, at, text, parent),
                                       top or tweet_id)

    # --- JSONL -----------------------------------------------------------------------------

    def index_jsonl(self, lines: Iterable[str]) -> None:
        self.db.executescript(JSONL_SCHEMA)
        self.db.execute("BEGIN")
        names = channel_names()
        rows, firsts = [], []
        for kind, at, item in jsonl_items(lines, self):
            if kind == INBOUND:
                inbound = jsonl_inbound(item, at)
                if isinstance(inbound, str):
                    self.skip(kind, inbound)
                    continue
                rows.append((micros(at), 0, json.dumps(item), None, None, None, 0))
                firsts.append((inbound.external_id, inbound.channel))
            else:
                # read_jsonl: channel = the line's own, else its question's; answers
                # without a known question or channel are counted after the whole file.
                answers, given = str(item.get("answers") or ""), item.get("channel")
                bad = not answers or bool(given) and given not in names
                rows.append((micros(at), 1, None, answers, given if given and not bad
                             else None, str(item.get("text") or ""), int(bad)))
            if len(rows) >= ROWS_PER_INSERT:
                self._insert_lines(rows, firsts)
                rows, firsts = [], []
        self._insert_lines(rows, firsts)
        self.db.execute("UPDATE line SET channel = (SELECT channel FROM first_channel "
                        "WHERE first_channel.id = line.answers) "
                        "WHERE answer = 1 AND bad = 0 AND channel IS NULL")
        not_answers = "FROM line WHERE answer = 1 AND (bad = 1 OR channel IS NULL)"
        self.skip(ANSWER, NO_ANSWERED, self.db.execute(f"SELECT count(*) {not_answers}")
                  .fetchone()[0])
        self.db.execute(f"DELETE {not_answers}")
        self.db.execute("CREATE INDEX line_order ON line (at, answer, seq)")
        self.db.execute("COMMIT")

    def _insert_lines(self, rows: list[tuple], firsts: list[tuple]) -> None:
        self.db.executemany("INSERT INTO line (at, answer, item, answers, channel, text, bad) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.executemany("INSERT OR IGNORE INTO first_channel (id, channel) VALUES (?, ?)",
                            firsts)

    def _jsonl_events(self) -> Iterator[Event]:
        cursor = self.db.execute("SELECT at, answer, item, answers, channel, text FROM line "
                                 "ORDER BY at, answer, seq")
        while page := cursor.fetchmany(FETCH):
            for at_, answer, item, answers, channel, text in page:
                at = moment(at_)
                if answer:
                    yield StaffAnswer(at, channel, answers, text)
                else:  # checked when indexed: an Inbound, not a reason
                    yield CustomerMessage(at, jsonl_inbound(json.loads(item), at))


class _RootWalk:
    """``history._conversation_root`` for every customer row, in file order, with the
    memo in the ``node`` table: the same walk, so the same roots (even in broken data
    whose answers form a cycle). The memo of the latest page waits in a dict and is
    written once per page."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.pending: dict[str, str | None] = {}  # tweet id -> top, not written yet

    def run(self) -> None:
        rows = self.db.cursor()
        rows.execute("SELECT tweet_id, parent FROM tweet WHERE answer = 0 ORDER BY seq")
        while page := rows.fetchmany(FETCH):
            for tweet_id, parent in page:
                self._walk(tweet_id, parent)
            self.db.executemany("UPDATE node SET walked = 1, top = ? WHERE tweet_id = ?",
                                [(top, tweet_id) for tweet_id, top in self.pending.items()])
            self.pending.clear()

    def _memo(self, tweet_id: str, known: tuple | None) -> tuple[bool, str | None]:
        """(in the memo, its top)."""
        if tweet_id in self.pending:
            return True, self.pending[tweet_id]
        return (True, known[3]) if known is not None and known[2] else (False, None)

    def _node(self, tweet_id: str) -> tuple | None:
        """(customer, parent, walked, top) of the first row of a tweet id."""
        return self.db.execute("SELECT customer, parent, walked, top FROM node "
                               "WHERE tweet_id = ?", (tweet_id,)).fetchone()

    def _walk(self, tweet_id: str, parent: str) -> None:
        chain: list[tuple[str, bool]] = []
        seen: set[str] = set()
        # The row itself starts the walk; above it, the first row of each parent id.
        current: tuple | None = (tweet_id, True, parent, self._node(tweet_id))
        top = None
        while current is not None:
            current_id, customer, current_parent, known = current
            walked, memo = self._memo(current_id, known)
            if walked:
                top = memo
                break
            if current_id in seen:  # a cycle in broken data: stop where it closes
                break
            seen.add(current_id)
            chain.append((current_id, customer))
            up = self._node(current_parent)
            current = None if up is None else (current_parent, bool(up[0]), up[1], up)
        for node_id, customer in reversed(chain):  # from the top down: the first wins
            top = top or (node_id if customer else None)
            self.pending[node_id] = top


def open_history(path: Path, scratch: Path) -> StreamedHistory:
    """Index a TWCS CSV or a JSONL history (chosen as ``read_history`` chooses) into the
    SQLite file `scratch`, reading the file once."""
    history: StreamedHistory | None = None
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            head = handle.read(4096).lstrip("\ufeff \t\r\n")
            handle.seek(0)
            jsonl = head.startswith("{")
            history = StreamedHistory(str(path), "jsonl" if jsonl else "twcs", scratch)
            (history.index_jsonl if jsonl else history.index_twcs)(handle)
    except (OSError, UnicodeDecodeError) as error:
        if history is not None:
            history.close()
        raise ReplayError(f"{path}: unreadable: {error}") from None
    except BaseException:
        if history is not None:
            history.close()
        raise
    return history
