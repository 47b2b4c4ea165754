"""/metrics and /healthz scrape time at 0, 100,000 and 1,000,000 stored tickets (issue 16).

For each size, a fresh SQLite file is migrated (``upgrade()``) and filled with raw
sqlite3 ``executemany``: a year of tickets on three channels with their customer
messages, staff answers, audit events, outbox rows (acknowledgement and card; a few
dead, the newest waiting), escalations and X mentions. The daemon's own ``HealthServer``
then serves it on 127.0.0.1, and the run measures, through HTTP as Prometheus would:

- the first scrape after the start (it waits for the counters' one count of the tables);
- ``--scrapes`` scrapes, each after another writer added ``--between`` tickets with their
  rows (a second process, a replica): median and slowest;
- ``/healthz`` (a heartbeat write and the quarantine count): median;
- the baseline, in the same run: a ``SELECT 1`` round trip through the same store
  (median), and the scrape of the empty database.

    python bench/metrics.py [--tickets 0,100000,1000000] [--scrapes 30] [--between 20]
                            [--postgres postgresql://root@127.0.0.1:5432/postgres]

With ``--postgres`` the same run follows on PostgreSQL (a throw-away database per size,
filled with COPY, then ANALYZE as autovacuum would).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pgtemp import throwaway_postgres  # noqa: E402
from core.app.health import HealthServer  # noqa: E402
from core.clock import VirtualClock  # noqa: E402
from core.config.load import settings_from_dict  # noqa: E402
from core.config.settings import DatabaseSettings  # noqa: E402
from core.store.engine import Store, sync_url, upgrade  # noqa: E402

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CHANNELS = ("telegram", "vk", "twitter")
DAYS = 365
CHUNK = 50_000
WORDS = "order delivery refund late where is my package".split()
TARGET_MS = 50.0


def stamp(at: datetime) -> str:
    """As UTCDateTime stores a time in SQLite: naive UTC text with microseconds
    (PostgreSQL's COPY reads it as UTC: the session's time zone is set so)."""
    return at.replace(tzinfo=None).isoformat(" ", "microseconds")


COLUMNS = {
    "customer": ("id", "channel", "external_user_id", "tags", "created_at"),
    "ticket": ("id", "channel", "thread_key", "customer_id", "status", "priority", "cycle",
               "opened_at", "last_customer_at", "acked_at", "first_response_at", "due_at",
               "escalation_level"),
    "message": ("ticket_id", "channel", "direction", "author", "external_id", "text",
                "created_at"),
    "event": ("ticket_id", "channel", "kind", "at", "data"),
    "outbox": ("channel", "kind", "ticket_id", "target", "text", "idempotency_key", "state",
               "attempts", "next_attempt_at", "created_at"),
    "escalation": ("ticket_id", "rule", "cycle", "fired_at"),
    "mention": ("channel", "external_id", "kind", "author_id", "text", "created_at"),
}
SERIAL = ("customer", "ticket", "message", "event", "outbox", "escalation", "mention")


class Filler:
    """Writes tickets and their rows with the raw driver, as another process would:
    sqlite3 ``executemany``, or psycopg ``COPY`` for PostgreSQL."""

    def __init__(self, url: str, seed: int = 16):
        self.postgres = url.startswith("postgresql")
        if self.postgres:
            import psycopg

            self.connection = psycopg.connect(url.replace("+psycopg", ""), autocommit=True)
            self.connection.execute("SET TIME ZONE 'UTC'")
        else:
            self.connection = sqlite3.connect(sync_url(url).split("///", 1)[1],
                                              isolation_level=None)
            self.connection.execute("PRAGMA synchronous=OFF")
            self.connection.execute("PRAGMA cache_size=-200000")
        self.rng = random.Random(seed)
        self.tickets = 0

    def add(self, count: int, newest: datetime, span: timedelta, waiting: int = 0) -> None:
        """``count`` tickets opened over ``span`` up to ``newest``, in one transaction;
        the last ``waiting`` still have their acknowledgement and card in the outbox."""
        self.connection.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
        for start in range(0, count, CHUNK):
            size = min(CHUNK, count - start)
            rows = self._rows(start, size, count, newest, span, waiting)
            for table, values in rows.items():
                self._write(table, values)
            self.tickets += size
        if self.postgres:  # the ids were given: the sequences go on after them
            for table in SERIAL:
                self.connection.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)")
        self.connection.execute("COMMIT")

    def _rows(self, start: int, size: int, count: int, newest: datetime, span: timedelta,
              waiting: int) -> dict[str, list[tuple]]:
        rng = self.rng
        rows: dict[str, list[tuple]] = {table: [] for table in COLUMNS}
        for n in range(size):
            ticket_id = self.tickets + n + 1
            channel = CHANNELS[ticket_id % 3]
            opened = newest - span * (1 - (start + n + 1) / max(count, 1))
            answered = rng.random() < 0.85
            acked = rng.random() < 0.9
            first_response = opened + timedelta(minutes=rng.randint(5, 300))
            recent = start + n >= count - waiting
            rows["customer"].append((ticket_id, channel, f"u{ticket_id}", "[]", stamp(opened)))
            rows["ticket"].append((
                ticket_id, channel, f"thread:{ticket_id}", ticket_id,
                "open" if recent or not answered else "closed", "normal", 1, stamp(opened),
                stamp(opened), stamp(opened) if acked else None,
                stamp(first_response) if answered and not recent else None,
                stamp(opened + timedelta(days=1)), 0))
            text = " ".join(rng.choices(WORDS, k=4))
            rows["message"].append((ticket_id, channel, "in", f"u{ticket_id}",
                                    f"{channel}-{ticket_id}", text, stamp(opened)))
            rows["event"].append((ticket_id, channel, "received", stamp(opened), "{}"))
            state = "pending" if recent else "dead" if rng.random() < 0.001 else "sent"
            for kind in ("ack", "staff_card"):
                rows["outbox"].append((channel if kind == "ack" else "staff", kind, ticket_id,
                                       "{}", text, f"{kind}:{ticket_id}", state, 1,
                                       stamp(opened), stamp(opened)))
            if answered and not recent:
                rows["message"].append((ticket_id, channel, "out", "anna", None, "on its way",
                                        stamp(first_response)))
                rows["event"].append((ticket_id, channel, "answered", stamp(first_response),
                                      json.dumps({"first": True})))
            if rng.random() < 0.05:
                rows["escalation"].append((ticket_id, "nudge", 1,
                                           stamp(opened + timedelta(hours=1))))
            if rng.random() < 0.01:
                rows["mention"].append(("twitter", f"rt-{ticket_id}", "retweet",
                                        f"u{ticket_id}", "", stamp(opened)))
        return rows

    def _write(self, table: str, values: list[tuple]) -> None:
        columns = ", ".join(COLUMNS[table])
        if self.postgres:
            with self.connection.cursor().copy(
                    f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(COLUMNS[table]))
            self.connection.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                                        values)

    def analyze(self) -> None:
        """PostgreSQL: the statistics autovacuum keeps on a database in use."""
        if self.postgres:
            self.connection.execute("ANALYZE")

    def close(self) -> None:
        self.connection.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def timed_get(http: aiohttp.ClientSession, url: str) -> tuple[float, str]:
    started = time.perf_counter()
    async with http.get(url) as response:
        body = await response.text()
        assert response.status == 200, (url, response.status, body[:300])
    return (time.perf_counter() - started) * 1000, body


def figure(body: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(name + "{"))


async def measure(url: str, scrapes: int, between: int, filler: Filler) -> dict[str, float]:
    database = DatabaseSettings(url=url)
    settings = settings_from_dict({"daemon": {"health_port": free_port()}}, check_secrets=False)
    store = Store(database)
    clock = VirtualClock(NOW)
    server = HealthServer(store, settings, clock, {})
    started = time.perf_counter()
    assert await server.start()  # starts the first count of the tables
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            # The first scrape awaits that count; one taking over 5 s answers with
            # sameday_database_up 0 while the count goes on, and the next one gets it.
            for _ in range(60):
                _, body = await timed_get(http, f"{base}/metrics")
                if "sameday_database_up 1.0" in body:
                    break
            first_ms = (time.perf_counter() - started) * 1000
            assert "sameday_database_up 1.0" in body, body[:500]
            opened = figure(body, "sameday_tickets_opened_total")
            times, health = [], []
            for _ in range(scrapes):
                filler.add(between, clock.now(), timedelta(seconds=between), waiting=between)
                clock.advance(timedelta(seconds=between))
                elapsed, body = await timed_get(http, f"{base}/metrics")
                times.append(elapsed)
                health.append((await timed_get(http, f"{base}/healthz"))[0])
            grown = figure(body, "sameday_tickets_opened_total") - opened
            assert grown == scrapes * between, (grown, scrapes * between)
            select_one = []
            for _ in range(max(scrapes, 30)):
                started = time.perf_counter()
                async with store.session() as session:
                    await session.execute(sa.text("SELECT 1"))
                select_one.append((time.perf_counter() - started) * 1000)
    finally:
        await server.stop()
        await store.close()
    return {"first": first_ms, "median": statistics.median(times), "max": max(times),
            "healthz": statistics.median(health), "select1": statistics.median(select_one)}


@contextmanager
def database(engine: str, admin_url: str, tmp: Path, size: int) -> Iterator[str]:
    """A fresh database for one size: an SQLite file, or a throw-away PostgreSQL one."""
    if engine == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / f'metrics-{size}.db'}"
        return
    with throwaway_postgres(admin_url) as url:
        yield url


def run(engine: str, sizes: list[int], args: argparse.Namespace) -> dict[int, dict]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            with database(engine, args.postgres, Path(tmp), size) as url:
                upgrade(DatabaseSettings(url=url))
                filler = Filler(url)
                started = time.perf_counter()
                filler.add(size, NOW - timedelta(hours=1), timedelta(days=DAYS), waiting=50)
                filler.analyze()
                fill_s = time.perf_counter() - started
                try:
                    results[size] = r = asyncio.run(
                        measure(url, args.scrapes, args.between, filler))
                finally:
                    filler.close()
            print(f"{engine:<10} {size:>9,} tickets (filled in {fill_s:5.1f} s): first scrape "
                  f"{r['first']:7.1f} ms | scrape median {r['median']:5.1f} ms, max "
                  f"{r['max']:5.1f} ms | /healthz median {r['healthz']:4.1f} ms | SELECT 1 "
                  f"{r['select1']:4.2f} ms | scrape/SELECT 1 {r['median'] / r['select1']:5.1f}",
                  flush=True)
    smallest, largest = results[min(sizes)], results[max(sizes)]
    verdict = "met" if largest["median"] < TARGET_MS and largest["max"] < TARGET_MS \
        else "NOT met"
    print(f"{engine:<10} scrape at {max(sizes):,} / at {min(sizes):,} tickets: "
          f"{largest['median'] / smallest['median']:.2f}; target (a scrape under "
          f"{TARGET_MS:.0f} ms at {max(sizes):,}, median and slowest): {verdict}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", default="0,100000,1000000",
                        help="stored tickets, comma-separated (default: %(default)s)")
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--between", type=int, default=20,
                        help="tickets another writer adds before each scrape")
    parser.add_argument("--postgres", metavar="ADMIN_URL", default=None,
                        help="also on PostgreSQL: a server where throw-away databases may be "
                             "made, e.g. postgresql://root@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    sizes = [int(size) for size in args.tickets.split(",")]
    run("sqlite", sizes, args)
    if args.postgres:
        run("postgresql", sizes, args)


if __name__ == "__main__":
    main()
