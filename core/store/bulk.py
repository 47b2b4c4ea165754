"""Many rows in one statement: looked up by pairs of keys, or inserted with one driver
``executemany``.

SQLAlchemy's executemany builds a parameter dictionary per row and runs every value
through its type's processors one by one: about 10 µs a row, which on the ingest path
cost more than SQLite writing the row. Here the statement is compiled once per table,
columns and database, each column's processor is looked up once, and the rows go to the
driver as tuples. Values are converted exactly as SQLAlchemy would convert them (the
same bind processors, the same Python-side column defaults for absent keys), so what is
stored does not change; errors are SQLAlchemy's (an IntegrityError stays one).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

Converter = Callable[[Any], Any] | None


def pairs_in(first: sa.ColumnElement, second: sa.ColumnElement,
             pairs: Iterable[tuple[Any, Any]]) -> sa.ColumnElement[bool]:
    """A WHERE clause matching the rows whose (first, second) is among ``pairs``, in one
    statement through an index on (first, second): ``first = a AND second IN (...)`` per
    value of ``first`` (an adapter's batch has one channel: one such term). Neither
    database reads a row-value ``(a, b) IN (VALUES ...)`` through the index (SQLite
    scans it whole), nor PostgreSQL two ``IN`` lists on its two columns."""
    seconds: dict[Any, set[Any]] = {}
    for a, b in pairs:
        seconds.setdefault(a, set()).add(b)
    return sa.or_(sa.false(), *(sa.and_(first == a, second.in_(sorted(bs)))
                                for a, bs in sorted(seconds.items())))


async def insert_rows(session: Any, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT the rows (dicts of column values) in the session's transaction."""
    if not rows:
        return
    await session.flush()  # as session.execute would: pending ORM changes go first
    connection = await session.connection()
    for keys, same in _shapes(rows):
        insert = _compiled(table, keys, connection.dialect)
        await connection.exec_driver_sql(insert.sql, [insert.values(row) for row in same])


async def insert_returning(session: Any, table: sa.Table, rows: Sequence[dict[str, Any]],
                           returning: tuple[str, ...]) -> list[tuple]:
    """INSERT the rows and return the ``returning`` columns of each, in no particular
    order (match them by key): one multi-row ``INSERT ... RETURNING`` per few hundred
    rows. For plain columns (ids, names): returned values are the driver's."""
    if not rows:
        return []
    await session.flush()
    connection = await session.connection()
    found: list[tuple] = []
    for keys, same in _shapes(rows):
        insert = _compiled(table, keys, connection.dialect)
        per_statement = max(1, MAX_PARAMETERS // insert.width)
        for start in range(0, len(same), per_statement):
            chunk = same[start:start + per_statement]
            result = await connection.exec_driver_sql(
                insert.returning(len(chunk), returning),
                tuple(value for row in chunk for value in insert.values(row)))
            found += [tuple(row) for row in result]
    return found


MAX_PARAMETERS = 30_000  # per statement: under SQLite's 32,766 and PostgreSQL's 65,535


def _shapes(rows: Sequence[dict[str, Any]]) -> list[tuple[tuple[str, ...], list[dict]]]:
    """The rows grouped by their keys (almost always one group)."""
    keys = tuple(rows[0])
    if all(tuple(row) == keys for row in rows):
        return [(keys, list(rows))]
    groups: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.items())


class _Insert:
    """One table's INSERT for one set of keys, compiled for one database."""

    def __init__(self, head: str, marks: list[str], keys: tuple[str, ...],
                 converters: list[Converter], defaults: tuple[Any, ...], dialect: sa.Dialect):
        self.head, self.dialect = head, dialect
        self.width = len(marks)
        self.sql = f"{head} VALUES ({', '.join(marks)})"
        self.get = operator.itemgetter(*keys) if len(keys) > 1 else \
            (lambda row, key=keys[0]: (row[key],))
        self.converted = [(i, c) for i, c in enumerate(converters) if c is not None]
        self.defaults = defaults

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        values = list(self.get(row))
        for i, convert in self.converted:
            values[i] = convert(values[i])
        return (*values, *self.defaults)

    def returning(self, rows: int, columns: tuple[str, ...]) -> str:
        """The multi-row form for ``rows`` rows, returning ``columns``."""
        marks = _placeholders(self.dialect, self.width * rows)
        values = ", ".join(f"({', '.join(marks[i:i + self.width])})"
                           for i in range(0, len(marks), self.width))
        quote = self.dialect.identifier_preparer.quote
        return f"{self.head} VALUES {values} RETURNING {', '.join(map(quote, columns))}"


@functools.cache
def _compiled(table: sa.Table, keys: tuple[str, ...], dialect: sa.Dialect) -> _Insert:
    """The driver-level INSERT of these keys, plus the columns with a Python default
    (as SQLAlchemy would add them), with each value's bind processor."""
    defaulted = [c for c in table.columns
                 if c.name not in keys and c.default is not None and c.default.is_scalar]
    columns = [table.columns[key] for key in keys] + defaulted
    quote = dialect.identifier_preparer.quote
    head = (f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
            f"({', '.join(quote(c.name) for c in columns)})")
    processors = [column.type._cached_bind_processor(dialect) for column in columns]
    defaults = tuple(process(c.default.arg) if process else c.default.arg
                     for c, process in zip(defaulted, processors[len(keys):], strict=True))
    return _Insert(head, _placeholders(dialect, len(columns)), keys, processors[:len(keys)],
                   defaults, dialect)


def _placeholders(dialect: sa.Dialect, count: int) -> list[str]:
    style = dialect.paramstyle
    if style == "qmark":
        return ["?"] * count
    if style in ("format", "pyformat"):
        return ["%s"] * count
    if style == "numeric":
        return [f":{i}" for i in range(1, count + 1)]
    if style == "numeric_dollar":
        return [f"${i}" for i in range(1, count + 1)]
    raise ValueError(f"unsupported driver parameter style {style!r}")


