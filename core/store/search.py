"""Full-text search over customers' messages (``/find``), in the database itself.

Only what customers wrote is searched (``message.direction = 'in'``): never staff answers
or internal notes. Each database does what it does best:

- **SQLite**: an FTS5 index ``message_search`` over ``message.text`` (external content:
  the text is stored once, in ``message``), kept by three triggers on ``message``, with
  the ``unicode61 remove_diacritics 2`` tokenizer: case and Latin accents do not count
  ("cafe" finds "Café"). FTS5 does not stem, so every word of a search is a *prefix*:
  "заказ" finds "заказ", "заказы", "заказов", but "заказы" does not find "заказ".
  Ranked by bm25.
- **PostgreSQL**: a GIN expression index over the message's text read with both the
  'russian' and the 'english' text-search configurations; a search is
  ``websearch_to_tsquery`` in both, OR-ed, so each language is *stemmed*: "заказы" finds
  "заказ", "orders" finds "order". Ranked by ``ts_rank``.

Both understand the same small syntax (PostgreSQL's ``websearch_to_tsquery``): words must
all occur, ``"a phrase"`` in that order, ``-word`` must not occur, ``or`` between
alternatives.

The objects are made by ``create_search`` (the migration 0011, and ``metadata.create_all``
through the hook in ``core.store.tables``); changing them takes a new migration that makes
them again. A later SQLite migration that rebuilds the
``message`` table (alembic's batch mode copies it) drops its triggers: it must call
``create_search`` again at its end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.domain.text import valid_unicode

SEARCH_TABLE = "message_search"  # SQLite
SEARCH_INDEX = "ix_message_search"  # PostgreSQL
SEARCH_TRIGGERS = ("message_search_insert", "message_search_delete", "message_search_update")
MAX_TERMS = 16  # words of one search (a pasted paragraph must not become a huge query)
MAX_QUERY = 500  # characters of one search
# PostgreSQL: a tsvector holds at most 1 MB; a message longer than this is searched in its
# first part (no platform sends one that long, but a failed index write would refuse it).
PG_SEARCHED_CHARS = 100_000

_PG_VECTOR = (f"(to_tsvector('russian'::regconfig, left(text, {PG_SEARCHED_CHARS})) || "
              f"to_tsvector('english'::regconfig, left(text, {PG_SEARCHED_CHARS})))")
_PG_QUERY = ("(websearch_to_tsquery('russian'::regconfig, :query) || "
             "websearch_to_tsquery('english'::regconfig, :query))")

_SQLITE_DDL = [
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {SEARCH_TABLE} USING fts5(text, content='message', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2', prefix='2 3')",
    # External content: the index must be told the exact old text it holds to forget it.
    f"CREATE TRIGGER IF NOT EXISTS message_search_insert AFTER INSERT ON message "
    f"WHEN new.direction = 'in' BEGIN "
    f"INSERT INTO {SEARCH_TABLE}(rowid, text) VALUES (new.id, new.text); END",
    f"CREATE TRIGGER IF NOT EXISTS message_search_delete AFTER DELETE ON message "
    f"WHEN old.direction = 'in' BEGIN "
    f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}, rowid, text) "
    f"VALUES ('delete', old.id, old.text); END",
    f"CREATE TRIGGER IF NOT EXISTS message_search_update AFTER UPDATE OF text, direction "
    f"ON message BEGIN "
    f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}, rowid, text) "
    f"SELECT 'delete', old.id, old.text WHERE old.direction = 'in'; "
    f"INSERT INTO {SEARCH_TABLE}(rowid, text) "
    f"SELECT new.id, new.text WHERE new.direction = 'in'; END",
]


def create_search(connection: sa.Connection) -> None:
    """Make the search objects of this database and index the messages already stored
    (idempotent: what exists is kept)."""
    if connection.dialect.name == "sqlite":
        exists = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE name = ?", (SEARCH_TABLE,)).first()
        for statement in _SQLITE_DDL:
            connection.exec_driver_sql(statement)
        if not exists:
            connection.exec_driver_sql(
                f"INSERT INTO {SEARCH_TABLE}(rowid, text) "
                f"SELECT id, text FROM message WHERE direction = 'in'")
    elif connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS {SEARCH_INDEX} ON message USING gin ({_PG_VECTOR}) "
            f"WHERE direction = 'in'")


def drop_search(connection: sa.Connection) -> None:
    if connection.dialect.name == "sqlite":
        for trigger in SEARCH_TRIGGERS:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {SEARCH_TABLE}")
    elif connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {SEARCH_INDEX}")


def is_search_object(name: str | None) -> bool:
    """True for what ``create_search`` makes: the FTS5 table and the shadow tables SQLite
    keeps for it (``message_search_data`` ...), the PostgreSQL index."""
    return bool(name) and (name in (SEARCH_INDEX, SEARCH_TABLE)
                           or name.startswith(f"{SEARCH_TABLE}_"))


_autogenerate_told = False


def tell_autogenerate() -> None:
    """Register ``_leave_search_alone`` with alembic's comparators (once). Called by the
    migration environment (``migrations/env.py``), which every upgrade, autogenerate and
    ``alembic check`` runs through -- not at import: the daemon imports this module and
    loads alembic (about 10 MB a process keeps) only when it has a migration to apply."""
    global _autogenerate_told
    if _autogenerate_told:
        return
    from alembic.autogenerate import comparators
    from alembic.util import DispatchPriority

    comparators.dispatch_for("schema", priority=DispatchPriority.LAST)(_leave_search_alone)
    _autogenerate_told = True


def _leave_search_alone(_context: Any, upgrade_ops: Any, _schemas: Any) -> Any:
    """The search objects are no models: alembic's autogenerate (a new revision, a check
    that the migrations match the models) must not propose to drop them."""
    from alembic.operations import ops  # loaded with alembic's autogenerate, see above
    from alembic.util import PriorityDispatchResult

    def drops_search(op: Any) -> bool:
        return (isinstance(op, ops.DropTableOp) and is_search_object(op.table_name)) or \
            (isinstance(op, ops.DropIndexOp) and is_search_object(op.index_name))

    for container in upgrade_ops.ops:
        if isinstance(container, ops.ModifyTableOps):
            container.ops[:] = [op for op in container.ops if not drops_search(op)]
    upgrade_ops.ops[:] = [op for op in upgrade_ops.ops if not drops_search(op) and not (
        isinstance(op, ops.ModifyTableOps) and not op.ops)]
    return PriorityDispatchResult.CONTINUE


# --- searching ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """A ticket whose customer wrote what was searched, with its best matching message."""

    ticket_id: int
    message_id: int
    text: str


def search_terms(text: str) -> str:
    """The searched text as both databases may be given it (valid Unicode, bounded)."""
    return valid_unicode(text).replace("\x00", "").strip()[:MAX_QUERY]


@dataclass(frozen=True)
class _Term:
    words: str  # the word or phrase as typed (without quotes or the leading "-")
    negated: bool


_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')


def _terms(text: str) -> list[list[_Term]]:
    """Alternatives (split at "or"), each a list of terms, as websearch_to_tsquery reads
    them; terms without a letter or digit are dropped."""
    groups: list[list[_Term]] = [[]]
    count = 0
    for match in _TOKEN.finditer(text):
        minus, phrase, word = match.groups()
        if word is not None and word.lower() == "or":
            groups.append([])
            continue
        negated = bool(minus) or (word is not None and word.startswith("-"))
        words = phrase if phrase is not None else word.lstrip("-")
        if not re.search(r"[^\W_]", words) or count >= MAX_TERMS:
            continue
        groups[-1].append(_Term(words, negated))
        count += 1
    return [group for group in groups if any(not term.negated for term in group)]


def has_words(text: str) -> bool:
    """Whether a search has a word to look for (not only signs or exclusions)."""
    return bool(_terms(search_terms(text)))


def fts5_query(text: str) -> str | None:
    """The search as an FTS5 query: each word or phrase a quoted string (so no character
    of it is FTS5 syntax) matched as a prefix; None when there is nothing to look for."""
    alternatives = []
    for group in _terms(search_terms(text)):
        def quoted(term: _Term) -> str:
            return '"' + term.words.replace('"', '""') + '"*'
        wanted = " AND ".join(quoted(t) for t in group if not t.negated)
        unwanted = "".join(f" NOT {quoted(t)}" for t in group if t.negated)
        alternatives.append(f"(({wanted}){unwanted})")
    return " OR ".join(alternatives) or None


async def search_messages(session: AsyncSession, text: str, limit: int) -> list[Match]:
    """Tickets whose customer messages match ``text``, best first, at most ``limit``."""
    query = search_terms(text)
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        query = fts5_query(query)
        if query is None:
            return []
        # bm25: smaller is better.
        matches = (f"SELECT rowid AS id, bm25({SEARCH_TABLE}) AS score FROM {SEARCH_TABLE} "
                   f"WHERE {SEARCH_TABLE} MATCH :query")
    elif dialect == "postgresql":
        if not has_words(query):
            return []
        # The predicate is the index's expression, so the GIN index answers it.
        matches = (f"SELECT id, -ts_rank({_PG_VECTOR}, {_PG_QUERY}) AS score FROM message "
                   f"WHERE direction = 'in' AND {_PG_VECTOR} @@ {_PG_QUERY}")
    else:  # pragma: no cover - the engine accepts these two only
        raise ValueError(f"no full-text search on {dialect}")
    rows = await session.execute(sa.text(
        f"WITH matches AS ({matches}), "
        "ranked AS (SELECT message.ticket_id, message.id, message.text, matches.score, "
        "row_number() OVER (PARTITION BY message.ticket_id "
        "ORDER BY matches.score, message.id DESC) AS place "
        "FROM matches JOIN message ON message.id = matches.id) "
        "SELECT ticket_id, id, text FROM ranked WHERE place = 1 "
        "ORDER BY score, ticket_id DESC LIMIT :limit"), {"query": query, "limit": limit})
    return [Match(ticket_id, message_id, message_text)
            for ticket_id, message_id, message_text in rows]
