"""Ingest throughput: 20,000 synthetic mentions in batches of 100 into a fresh SQLite file.

Prints mentions/s through `Inbox.ingest`, and in the same run the rate of a raw sqlite3
`executemany` writing the same rows (customers, tickets, messages, events, outbox) with
the same pragmas and one transaction per batch: the physical floor for this durability.

    python bench/ingest.py [--mentions 20000] [--batch 100] [--synchronous full]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.clock import VirtualClock  # noqa: E402
from core.config.load import settings_from_dict  # noqa: E402
from core.config.settings import DatabaseSettings  # noqa: E402
from core.domain.records import Inbound  # noqa: E402
from core.intake.inbox import Inbox  # noqa: E402
from core.store.engine import Store, sqlite_pragmas, upgrade  # noqa: E402

START = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
CHANNELS = ("telegram", "vk", "twitter")


def synthetic_mentions(count: int, seed: int = 7) -> list[Inbound]:
    """Mentions from count/4 customers, so a quarter of them continue a ticket."""
    rng = random.Random(seed)
    words = "order delivery refund broken late thanks help where is my package today".split()
    mentions = []
    for i in range(count):
        channel = CHANNELS[i % 3]
        author = str(rng.randrange(count // 4))
        mentions.append(Inbound(
            channel=channel, external_id=f"{channel}-{i}", thread_key=f"thread:{author}",
            author_id=author, author_handle=f"@user{author}",
            text=" ".join(rng.choices(words, k=rng.randint(4, 25))),
            sent_at=START + timedelta(milliseconds=i), reply_target={"chat_id": author}))
    return mentions


async def run_ingest(path: Path, mentions: list[Inbound], batch: int, synchronous: str) -> float:
    database = DatabaseSettings(url=f"sqlite+aiosqlite:///{path}",
                                sqlite_synchronous=synchronous)
    upgrade(database)
    store = Store(database)
    inbox = Inbox(store, settings_from_dict({}, check_secrets=False), VirtualClock(START))
    started = time.perf_counter()
    for i in range(0, len(mentions), batch):
        await inbox.ingest(mentions[i:i + batch])
    elapsed = time.perf_counter() - started
    await store.close()
    return elapsed


def run_raw(path: Path, mentions: list[Inbound], batch: int, synchronous: str) -> float:
    """The same rows through plain sqlite3, no ORM, no lookups: the floor."""
    upgrade(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in sqlite_pragmas(DatabaseSettings(sqlite_synchronous=synchronous)):
        connection.execute(pragma)
    now = START.replace(tzinfo=None).isoformat(" ")
    customers: dict[tuple[str, str], int] = {}
    tickets: dict[tuple[str, str], int] = {}
    started = time.perf_counter()
    for i in range(0, len(mentions), batch):
        chunk = mentions[i:i + batch]
        connection.execute("BEGIN IMMEDIATE")
        new_customers = [m for m in dict.fromkeys((m.channel, m.author_id) for m in chunk)
                         if m not in customers]
        for key in new_customers:
            customers[key] = len(customers) + 1
        connection.executemany(
            "INSERT INTO customer (id, channel, external_user_id, handle, tags, created_at) "
            "VALUES (?, ?, ?, ?, '[]', ?)",
            [(customers[k], k[0], k[1], f"@user{k[1]}", now) for k in new_customers])
        new_tickets = [k for k in dict.fromkeys((m.channel, m.thread_key) for m in chunk)
                       if k not in tickets]
        for key in new_tickets:
            tickets[key] = len(tickets) + 1
        by_thread = {(m.channel, m.thread_key): m for m in chunk}
        connection.executemany(
            "INSERT INTO ticket (id, channel, thread_key, customer_id, status, priority, cycle,"
            " opened_at, last_customer_at, due_at, escalation_level) "
            "VALUES (?, ?, ?, ?, 'open', 'normal', 1, ?, ?, ?, 0)",
            [(tickets[k], k[0], k[1], customers[(k[0], by_thread[k].author_id)], now, now, now)
             for k in new_tickets])
        connection.executemany(
            "INSERT INTO message (ticket_id, channel, direction, author, external_id, text,"
            " created_at) VALUES (?, ?, 'in', ?, ?, ?, ?)",
            [(tickets[(m.channel, m.thread_key)], m.channel, m.author_handle, m.external_id,
              m.text, now) for m in chunk])
        connection.executemany(
            "INSERT INTO event (ticket_id, channel, kind, at, data) VALUES (?, ?, ?, ?, ?)",
            [(tickets[(m.channel, m.thread_key)], m.channel, "received", now,
              json.dumps({"external_id": m.external_id})) for m in chunk])
        connection.executemany(
            "INSERT INTO outbox (channel, kind, ticket_id, target, text, idempotency_key, state,"
            " attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
            [(m.channel, "ack", tickets[(m.channel, m.thread_key)], "{}", m.text,
              f"raw:{m.channel}:{m.external_id}", now, now) for m in chunk])
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mentions", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    args = parser.parse_args()
    mentions = synthetic_mentions(args.mentions)
    with tempfile.TemporaryDirectory() as tmp:
        raw_s = run_raw(Path(tmp) / "raw.db", mentions, args.batch, args.synchronous)
        ingest_s = asyncio.run(run_ingest(Path(tmp) / "ingest.db", mentions, args.batch,
                                          args.synchronous))
    ingest_rate, raw_rate = args.mentions / ingest_s, args.mentions / raw_s
    print(f"mentions={args.mentions} batch={args.batch} synchronous={args.synchronous}")
    print(f"ingest (sameday core)     : {ingest_rate:10,.0f} mentions/s  ({ingest_s:.2f} s)")
    print(f"raw sqlite3 executemany   : {raw_rate:10,.0f} mentions/s  ({raw_s:.2f} s)")
    print(f"ratio ingest/raw          : {ingest_rate / raw_rate:10.3f}")
    print(f"target >= 2,000 mentions/s: {'met' if ingest_rate >= 2000 else 'NOT met'}")


if __name__ == "__main__":
    main()
