"""The escalation sweep with 10,000 and 1,000,000 stored tickets, SQLite and PostgreSQL.

For each size a fresh database is migrated and filled server-side (raw SQL): the tickets
are waiting, 300 have an escalation due now, one in a hundred of the others one planned
for tomorrow. Measured through the real core (``Escalator``): ``next_due`` (the daemon asks it to
schedule the next wake-up; median of 200 calls) and one ``sweep()`` firing the 300 due
escalations. The baseline is the same run's 10,000-ticket case: the target is the
1,000,000 case within 2x of it.

    python bench/sweep.py [--sizes 10000 1000000] [--postgres postgresql://root@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pgtemp import throwaway_postgres  # noqa: E402
from core.clock import VirtualClock  # noqa: E402
from core.config.load import settings_from_dict  # noqa: E402
from core.config.settings import DatabaseSettings  # noqa: E402
from core.escalation.sweep import Escalator  # noqa: E402
from core.store.engine import Store, sync_url, upgrade  # noqa: E402

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
DUE = 300
RULES = [{"name": "nudge", "after": "1h", "clock": "wall"}]


def fill(url: str, tickets: int) -> None:
    """Waiting tickets for two hours: the first DUE have an escalation due now, every
    100th of the others one planned for tomorrow, the rest none left."""
    engine = sa.create_engine(sync_url(url))
    sqlite = engine.dialect.name == "sqlite"
    zone = "" if sqlite else "+00"  # SQLite keeps UTC without a zone (core.store.tables)
    stamp = NOW.replace(tzinfo=None).isoformat(" ") + zone
    waited = (NOW - timedelta(hours=2)).replace(tzinfo=None).isoformat(" ") + zone
    later = (NOW + timedelta(days=1)).replace(tzinfo=None).isoformat(" ") + zone
    numbers = ("(WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g "
               f"WHERE n < {tickets}) SELECT n FROM g)" if sqlite
               else f"(SELECT generate_series(1, {tickets}) AS n)")
    percent = "%" if sqlite else "%%"  # psycopg reads % as a placeholder
    cast = "" if sqlite else "::timestamptz"
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO customer (id, channel, external_user_id, tags, created_at, "
            f"flood_count) VALUES (1, 'vk', '1', '[]', '{stamp}', 0)")
        connection.exec_driver_sql(
            "INSERT INTO ticket (channel, thread_key, customer_id, status, priority, cycle,"
            " opened_at, last_customer_at, waiting_since, due_at, escalation_level, language,"
            " reply_target, next_escalation_at) "
            f"SELECT 'vk', 't' || n, 1, 'open', 'normal', 1, '{waited}', '{waited}', "
            f"'{waited}', '{later}', 0, 'ru', '{{}}', CASE WHEN n <= {DUE} THEN "
            f"'{stamp}'{cast} WHEN n {percent} 100 = 0 THEN '{later}'{cast} END "
            f"FROM {numbers} AS numbers")
        if not sqlite:
            connection.exec_driver_sql("ANALYZE ticket")  # as autovacuum would have
    engine.dispose()


async def measure(url: str) -> tuple[float, float, int]:
    """(next_due median seconds, sweep seconds, escalations fired)."""
    store = Store(DatabaseSettings(url=url))
    escalator = Escalator(store, settings_from_dict({"escalation": RULES},
                                                    check_secrets=False),
                          VirtualClock(NOW + timedelta(minutes=1)))
    times = []
    for _ in range(200):
        started = time.perf_counter()
        await escalator.next_due()
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    fired = await escalator.sweep()
    swept = time.perf_counter() - started
    await store.close()
    return statistics.median(times), swept, len(fired)


def run(url: str, tickets: int) -> tuple[float, float, int]:
    upgrade(DatabaseSettings(url=url))
    fill(url, tickets)
    return asyncio.run(measure(url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--postgres", metavar="ADMIN_URL",
                        help="also on PostgreSQL (a database is created and dropped)")
    args = parser.parse_args()
    engines = ["sqlite"] + (["postgresql"] if args.postgres else [])
    for engine in engines:
        results = {}
        for tickets in args.sizes:
            if engine == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    results[tickets] = run(f"sqlite+aiosqlite:///{tmp}/sweep.db", tickets)
            else:
                with throwaway_postgres(args.postgres) as url:
                    results[tickets] = run(url, tickets)
            next_due, swept, fired = results[tickets]
            print(f"{engine:<10} {tickets:>9,} tickets: next_due {next_due * 1000:7.3f} ms, "
                  f"sweep of {fired} due escalations {swept:6.2f} s")
        base, top = results[min(args.sizes)], results[max(args.sizes)]
        for label, i in (("next_due", 0), ("sweep", 1)):
            ratio = top[i] / base[i]
            print(f"{engine:<10} {label} {max(args.sizes):,} / {min(args.sizes):,} tickets: "
                  f"x{ratio:.2f} (target <= 2: {'met' if ratio <= 2 else 'NOT met'})")


if __name__ == "__main__":
    main()
