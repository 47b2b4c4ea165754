"""Peak memory of `sameday run` while idle, next to the platform SDKs imported alone.

Each figure is a child process's peak resident set: VmHWM from /proc/<pid>/status, read
while the daemon idles (for the floor, the child's own after its imports). The floor,
measured in the same run, is ``python -c "import sqlalchemy, telegram, tweepy, vk_api"``:
the database toolkit and the three SDKs, nothing of sameday.

The daemon runs as the tests run it (``python -m core.app.cli run -c CONFIG`` from the
project's root) on a temporary SQLite file, with the default daemon settings (the
/healthz and /metrics endpoint on, here on a free port), and is stopped by its PID
(SIGTERM, then SIGKILL after a bounded wait). Rows:

- no channels: only the console staff chat, on a database already at the newest
  migration (as after `sameday db upgrade`, or any start but the first);
- the same with 100,000 tickets stored (written with raw sqlite3 after ``upgrade()``);
- the same with the health endpoint off (``health_port = 0``), and the first start on a
  new file (the daemon migrates it: alembic is loaded); the target (<= 80 MiB idle) is
  checked on the first row and on the one without the endpoint;
- three channels: Telegram, VK and X enabled against their emulators on 127.0.0.1 (run
  in this process; the staff chat in the Telegram group), empty and with 100,000 tickets.

    python bench/memory.py [--tickets 100000] [--settle 4] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config.settings import DatabaseSettings  # noqa: E402
from core.store.engine import sqlite_pragmas, upgrade  # noqa: E402

FLOOR = "import sqlalchemy, telegram, tweepy, vk_api"
TARGET_MIB = 80.0
START_TIMEOUT = 60.0  # seconds for "sameday is running"
STOP_TIMEOUT = 30.0  # seconds after SIGTERM before SIGKILL
STAFF_GROUP = -1009000
TOKENS = {"SAMEDAY_TELEGRAM_TOKEN": "123:memory-bench", "SAMEDAY_VK_TOKEN": "vk-memory-bench",
          **{f"SAMEDAY_X_{n}": f"x-{n.lower()}" for n in (
              "BEARER_TOKEN", "CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
              "ACCESS_TOKEN_SECRET")}}


@dataclass
class Figure:
    label: str
    peak_kib: int
    rss_kib: int = 0  # resident at the end of the idle period (0: not read)

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024


# --- the floor -----------------------------------------------------------------------------


def floor_peak(runs: int) -> int:
    """Median peak RSS (KiB) of the SDKs imported alone, in a fresh interpreter each run.

    The child reports its own VmHWM after the imports: a child's ru_maxrss would also
    count the pages it shared with this process between fork and exec."""
    peaks = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", f"{FLOOR}; print(open('/proc/self/status').read())"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
        peaks.append(int(re.search(r"^VmHWM:\s+(\d+) kB", done.stdout, re.MULTILINE)[1]))
    return int(statistics.median(peaks))


# --- databases -----------------------------------------------------------------------------


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def fill(path: Path, tickets: int, seed: int = 16) -> None:
    """``tickets`` tickets of a busy history, written with raw sqlite3 after upgrade():
    two per customer over 100 days, each with the customer's message, the answer and
    its event; 1 % still open and answered (nothing due, so the sweep has nothing to
    fire and the daemon stays idle)."""
    upgrade(DatabaseSettings(url=sqlite_url(path)))
    rng = random.Random(seed)
    words = "order delivery refund broken late thanks help where is my package today".split()
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in sqlite_pragmas(DatabaseSettings()):
        connection.execute(pragma)
    connection.execute("BEGIN IMMEDIATE")
    channels = ("telegram", "vk", "twitter")
    customers = max(1, tickets // 2)
    connection.executemany(
        "INSERT INTO customer (id, channel, external_user_id, handle, tags, created_at) "
        "VALUES (?, ?, ?, ?, '[]', ?)",
        ((c, channels[c % 3], str(100_000 + c), f"@user{c}", now - timedelta(days=100))
         for c in range(1, customers + 1)))
    ticket_rows, message_rows, event_rows = [], [], []
    for t in range(1, tickets + 1):
        customer = (t - 1) % customers + 1
        channel = channels[customer % 3]
        opened = now - timedelta(seconds=rng.randrange(100 * 86400))
        answered = opened + timedelta(minutes=rng.randrange(5, 600))
        still_open = t % 100 == 0
        ticket_rows.append((
            t, channel, f"chat:{customer}:{t}", customer, "answered" if still_open else "closed",
            opened, opened, opened + timedelta(seconds=1), answered,
            opened + timedelta(hours=8), None if still_open else answered + timedelta(hours=1)))
        message_rows.append((t, channel, "in", f"@user{customer}", f"m{t}",
                             " ".join(rng.choices(words, k=rng.randint(4, 25))), opened))
        message_rows.append((t, channel, "out", "anna", f"a{t}", "Thanks, it is on its way.",
                             answered))
        event_rows.append((t, channel, "received", opened, json.dumps({"external_id": f"m{t}"})))
    connection.executemany(
        "INSERT INTO ticket (id, channel, thread_key, customer_id, status, priority, cycle, "
        "opened_at, last_customer_at, acked_at, first_response_at, due_at, closed_at, "
        "escalation_level) VALUES (?, ?, ?, ?, ?, 'normal', 1, ?, ?, ?, ?, ?, ?, 0)",
        ticket_rows)
    connection.executemany(
        "INSERT INTO message (ticket_id, channel, direction, author, external_id, text, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", message_rows)
    connection.executemany(
        "INSERT INTO event (ticket_id, channel, kind, at, data) VALUES (?, ?, ?, ?, ?)",
        event_rows)
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def copy_database(source: Path, target: Path) -> None:
    """A private copy per run (the daemon writes its heartbeat)."""
    shutil.copyfile(source, target)
    os.chmod(target, 0o600)


# --- the daemon ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_text(db: Path, *, health: bool, emulators: dict[str, str] | None) -> str:
    text = f"""[database]
url = "{sqlite_url(db)}"
[daemon]
health_port = {free_port() if health else 0}
"""
    if emulators is None:
        return text + '[staff]\nchat = "console"\n'
    from bots.twitter.emulator import BOT_USER as X_BOT  # the bench's side only

    return text + f"""[channels.telegram]
enabled = true
base_url = "{emulators['telegram']}/bot"
poll_timeout = "1s"
[channels.vk]
enabled = true
group_id = 1
base_url = "{emulators['vk']}"
long_poll_wait = "1s"
[channels.twitter]
enabled = true
user_id = "{X_BOT['id']}"
base_url = "{emulators['twitter']}"
poll_interval = "5s"
[staff]
chat = "telegram"
telegram_chat_id = {STAFF_GROUP}
"""


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of a live process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", status, re.MULTILINE))
    return int(found["VmHWM"]), int(found["VmRSS"])


async def idle_daemon(label: str, config: Path, settle: float) -> Figure:
    """Start `sameday run`, wait for it to be running and idle for `settle` seconds, read
    its peak, stop it by its PID (SIGTERM; SIGKILL after STOP_TIMEOUT)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.app.cli", "run", "-c", str(config), cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **TOKENS, "PYTHONUNBUFFERED": "1",
             "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    lines: list[str] = []
    running = asyncio.Event()

    async def read() -> None:  # drains stderr for the whole life of the process
        async for raw in process.stderr:
            line = raw.decode(errors="replace")
            lines.append(line)
            if "sameday is running" in line:
                running.set()

    reader = asyncio.create_task(read())
    try:
        waiter = asyncio.create_task(running.wait())
        done, _ = await asyncio.wait({waiter, asyncio.create_task(process.wait())},
                                     timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            raise SystemExit(f"{label}: the daemon did not start:\n{''.join(lines[-30:])}")
        await asyncio.sleep(settle)
        peak, rss = memory_kib(process.pid)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
        reader.cancel()
    if process.returncode != 0:
        raise SystemExit(f"{label}: the daemon exited {process.returncode}:\n"
                         f"{''.join(lines[-30:])}")
    return Figure(label, peak, rss)


# --- the run -------------------------------------------------------------------------------


async def measure(work: Path, tickets: int, settle: float, quick: bool) -> list[Figure]:
    empty, full = work / "empty.db", work / "full.db"
    upgrade(DatabaseSettings(url=sqlite_url(empty)))
    started = time.perf_counter()
    fill(full, tickets)
    print(f"(filled {tickets:,} tickets in {time.perf_counter() - started:.1f} s)",
          file=sys.stderr)
    figures: list[Figure] = []
    runs = 0

    async def run(label: str, source: Path | None, *, health: bool = True,
                  emulators: dict[str, str] | None = None) -> None:
        nonlocal runs
        runs += 1
        db = work / f"run{runs}.db"
        if source is not None:
            copy_database(source, db)
        config = work / f"run{runs}.toml"
        config.write_text(config_text(db, health=health, emulators=emulators))
        figure = await idle_daemon(label, config, settle)
        print(f"  {label}: {figure.peak_mib:.1f} MiB", file=sys.stderr)
        figures.append(figure)

    await run("no channels, empty database", empty)
    await run(f"no channels, {tickets:,} tickets", full)
    await run("no channels, empty, health endpoint off", empty, health=False)
    if not quick:
        await run("no channels, first start (migrates a new file)", None)
    from bots.telegram.emulator import TelegramEmulator
    from bots.twitter.emulator import XEmulator
    from bots.vk.emulator import VKEmulator

    async with TelegramEmulator() as tg, VKEmulator() as vk, XEmulator() as x:
        urls = {"telegram": tg.url, "vk": vk.url, "twitter": x.url}
        await run("3 channels (emulators), empty database", empty, emulators=urls)
        if not quick:
            await run(f"3 channels (emulators), {tickets:,} tickets", full, emulators=urls)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--settle", type=float, default=4.0,
                        help="seconds idle after 'sameday is running' before reading")
    parser.add_argument("--floor-runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="skip the first start and three channels with the tickets")
    args = parser.parse_args()
    floor = floor_peak(args.floor_runs)
    with tempfile.TemporaryDirectory(prefix="sameday-memory-") as tmp:
        figures = asyncio.run(measure(Path(tmp), args.tickets, args.settle, args.quick))
    print(f"peak RSS (VmHWM), read {args.settle:.0f} s after 'sameday is running'; "
          f"python {sys.version.split()[0]}")
    print(f"{'floor: python -c ' + repr(FLOOR):62s} {floor / 1024:7.1f} MiB")
    for figure in figures:
        print(f"{'sameday run, ' + figure.label:62s} {figure.peak_mib:7.1f} MiB"
              f"   x{figure.peak_kib / floor:.2f} of the floor")
    for figure in figures[0], figures[2]:
        verdict = "met" if figure.peak_mib <= TARGET_MIB else \
            f"NOT met (+{figure.peak_mib - TARGET_MIB:.1f} MiB)"
        print(f"target idle <= {TARGET_MIB:.0f} MiB, {figure.label}: {verdict}")


if __name__ == "__main__":
    main()
