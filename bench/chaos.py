"""Chaos: the whole product under crashes, platform faults, poison and a full disk.

The emulators of the three platforms run in their own process; `sameday run` runs as a
subprocess on SQLite. In one run this script:

- streams customer messages across Telegram, VK and X (unique customers; 1 % carry a
  lone surrogate and a NUL), while a simulated staff member answers a share of the
  tickets with `/reply N ...` in the Telegram staff group;
- kills the daemon with SIGKILL at random moments and starts it again at once;
- has the emulators answer every call with faults at fixed rates: 5xx, 429 with a retry
  hint, timeouts (held, then dropped unanswered), malformed bodies, and lost responses
  (performed, then the connection drops);
- injects poison: payloads no adapter can read (they must be quarantined, not block);
- makes every file write of the daemon fail for a while, as on a full disk (the
  daemon's RLIMIT_FSIZE is set to 0: SQLite's writes fail, reads work);
- then stops the faults, lets everything settle, and counts, per platform, from what the
  emulators received and what the database holds: messages sent / stored once / lost /
  doubled / quarantined; acknowledgements exactly once / twice / none (and of the none,
  how many were dead-lettered with a notice to staff); staff answers lost or doubled;
  outbox rows stuck; the longest delivery delay, and p99 delays of a calm first phase
  (the same-run baseline) and of the chaos.

    python bench/chaos.py [--messages 3000] [--kills 20] [--disk-full 30] [--poison 20]
                          [--rate 25] [--seed 1] [--json]

Every process it starts is stopped by its pid; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

STAFF_GROUP = -1001000000001
STAFF_ID = 1001
X_BOT = {"id": "1000000001", "username": "sameday_support"}
PLATFORMS = ("telegram", "vk", "twitter")
FAULTS = {"500": 0.10, "429": 0.05, "timeout": 0.02, "malformed": 0.01, "lost_response": 0.02}
FAULT_SECONDS = {"429": 1.0, "timeout": 2.0}
TOKENS = {"SAMEDAY_TELEGRAM_TOKEN": "100000:chaos-telegram", "SAMEDAY_VK_TOKEN": "chaos-vk",
          **{f"SAMEDAY_X_{n}": "chaos-x" for n in (
              "BEARER_TOKEN", "CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
              "ACCESS_TOKEN_SECRET")}}
CALM = 12.0  # seconds without faults first (two X polls): the same-run baseline
STARTED, ENDED = re.compile(r"#(\d+)"), re.compile(r"\[(c\d+)\]")


# --- the emulators' own process -------------------------------------------------------------


async def serve_platforms(ready_file: Path) -> None:
    """Run the three emulators until SIGTERM; write their URLs to `ready_file`. The
    limits are raised so that the run measures faults, not the platforms' quotas."""
    from bots.common.emulator import SlidingWindow
    from bots.telegram.emulator import TelegramEmulator
    from bots.twitter.emulator import XEmulator
    from bots.vk.emulator import VKEmulator

    telegram = TelegramEmulator()
    telegram.per_bot, telegram.per_group = SlidingWindow(500, 1.0), SlidingWindow(10**6, 60.0)
    vk = VKEmulator()
    vk.per_token = SlidingWindow(10**6, 1.0)
    x = XEmulator(bot=X_BOT, post_limit=10**6, read_limit=10**6)
    for emulator in (telegram, vk, x):
        await emulator.start()
    ready_file.write_text(json.dumps({"telegram": telegram.url, "vk": vk.url,
                                      "twitter": x.url}))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for emulator in (telegram, vk, x):
        await emulator.stop()


# --- the daemon ------------------------------------------------------------------------------


def config_text(workdir: Path, urls: dict[str, str], health_port: int) -> str:
    return f"""
[database]
url = "sqlite+aiosqlite:///{workdir / 'chaos.db'}"

[daemon]
health_port = {health_port}
log_level = "info"

[channels.telegram]
enabled = true
base_url = "{urls['telegram']}/bot"
poll_timeout = "1s"

[channels.vk]
enabled = true
group_id = 1
base_url = "{urls['vk']}"
long_poll_wait = "1s"

[channels.twitter]
enabled = true
user_id = "{X_BOT['id']}"
base_url = "{urls['twitter']}"
poll_interval = "5s"

[staff]
chat = "telegram"
telegram_chat_id = {STAFF_GROUP}

[[staff.members]]
name = "anna"
telegram_id = {STAFF_ID}
role = "admin"

[ack]
ignore_keywords = []
company_accounts = []

[outbox]
retry_base = "1s"
retry_max = "10s"

[outbox.limits.telegram]
per_bot = "200/1s"
per_group = "100000/1m"

[outbox.limits.twitter]
per_user = "100000/15m"

[outbox.limits.vk]
per_token = "100/1s"
"""


class Daemon:
    """`sameday run` as a subprocess, its log lines appended to a file by a thread."""

    def __init__(self, config: Path, log_path: Path):
        self.config = config
        self.log = log_path.open("a", encoding="utf-8", errors="replace")
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, disk_full: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "core.app.cli", "run", "-c", str(self.config)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            errors="replace", env={**os.environ, **TOKENS, "PYTHONUNBUFFERED": "1"})
        self.starts += 1
        if disk_full:
            self.fill_disk(True)
        threading.Thread(target=self._copy, args=(self.process,), daemon=True).start()

    def _copy(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self.log.write(line)
        self.log.flush()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=30)

    def fill_disk(self, full: bool) -> None:
        """Every write beyond offset 0 of any file fails (EFBIG), as on a full disk;
        Python ignores SIGXFSZ, so the daemon lives and sees failing writes."""
        if self.process is None or self.process.poll() is not None:
            return
        _, hard = resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE,
                         (0 if full else hard, hard))


# --- the traffic -----------------------------------------------------------------------------


@dataclass
class Sent:
    platform: str
    token: str  # unique text marker, e.g. "c17"
    customer: int
    at: float
    calm: bool  # sent before the faults started (the baseline phase)


@dataclass
class Run:
    args: argparse.Namespace
    urls: dict[str, str]
    daemon: Daemon
    rng: random.Random
    messages: list[Sent] = field(default_factory=list)
    poison: Counter = field(default_factory=Counter)
    answers: dict[int, str] = field(default_factory=dict)  # ticket -> answer token
    disk_full_now: bool = False
    kills: int = 0
    settled: float = 0.0
    final_health: dict[str, Any] = field(default_factory=dict)


async def control(http: aiohttp.ClientSession, url: str, path: str,
                  body: dict[str, Any] | None = None) -> Any:
    for attempt in range(20):  # the emulators' own process is not faulted; be patient
        try:
            method = http.post if body is not None else http.get
            async with method(f"{url}/_control/{path}", json=body) as response:
                response.raise_for_status()
                return await response.json()
        except aiohttp.ClientError:
            await asyncio.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"the emulator at {url} does not answer /_control/{path}")


def customer_text(rng: random.Random, token: str) -> str:
    text = rng.choice(["Где мой заказ?", "Order not delivered, help", "Списали дважды",
                       "The app crashes on login", "Возврат не пришёл", "Wrong size sent"])
    if rng.random() < 0.01:
        text += " \ud800\x00"  # legal in JSON; must be stored, not block the channel
    return f"{text} [{token}]"


async def inject_customer(http: aiohttp.ClientSession, run: Run, index: int,
                          calm: bool) -> None:
    platform = PLATFORMS[index % 3]
    customer = 100_000 + index
    token = f"c{index}"
    text = customer_text(run.rng, token)
    if platform == "telegram":
        body = {"chat_id": customer, "user_id": customer, "text": text,
                "first_name": f"Клиент {index}"}
    elif platform == "vk":
        body = {"kind": "message", "from_id": customer, "text": text}
    else:
        body = {"author_id": str(customer), "username": f"client{index}",
                "text": f"@{X_BOT['username']} {text}"}
    run.messages.append(Sent(platform, token, customer, time.time(), calm))
    await control(http, run.urls[platform], "inject", body)


async def inject_poison(http: aiohttp.ClientSession, run: Run, index: int) -> None:
    platform = PLATFORMS[index % 3]
    body = {"telegram": {"update": {"message": {"message_id": index, "text": "no chat"}}},
            "vk": {"kind": "event", "type": "message_new",
                   "object": {"message": {"id": 900_000 + index, "text": "no peer"}}},
            "twitter": {"without_author": True, "text": f"@{X_BOT['username']} poison"},
            }[platform]
    run.poison[platform] += 1
    await control(http, run.urls[platform], "inject", body)


async def staff_answers(http: aiohttp.ClientSession, run: Run) -> None:
    """Answer about a third of the new tickets, as a staff member typing /reply."""
    cards = await control(http, run.urls["telegram"], "sent")
    for card in cards:
        if card.get("chat", {}).get("id") != STAFF_GROUP:
            continue
        ticket, token = STARTED.search(card.get("text", "")), ENDED.search(
            card.get("text", ""))
        if not ticket or not token or int(ticket[1]) in run.answers:
            continue
        number = int(ticket[1])
        run.answers[number] = ""  # decided
        if run.rng.random() < 0.33:
            answer = f"a{number}"
            run.answers[number] = answer
            await control(http, run.urls["telegram"], "inject", {
                "chat_id": STAFF_GROUP, "user_id": STAFF_ID, "first_name": "Anna",
                "chat_type": "supergroup",
                "text": f"/reply {number} Проверили, всё в порядке ({answer})"})


async def chaos(run: Run) -> None:
    args = run.args
    async with aiohttp.ClientSession() as http:
        await wait_healthy(http, run, 60)
        await _stream(http, run)
        for platform in PLATFORMS:
            await control(http, run.urls[platform], "clear", {})
        if run.disk_full_now:
            run.disk_full_now = False
            run.daemon.fill_disk(False)
        run.settled = await settle(http, run, args.settle)
        run.final_health = await healthz(http, run)
    run.daemon.stop()


async def _stream(http: aiohttp.ClientSession, run: Run) -> None:
    """Customers, staff, kills, poison and the full disk, on one schedule."""
    args = run.args
    total = args.messages / args.rate
    began = time.monotonic()
    start = began + CALM  # a calm first phase: the baseline
    end = start + total
    kill_at = sorted(start + run.rng.uniform(0.05, 0.9) * total for _ in range(args.kills))
    disk_from = start + run.rng.uniform(0.3, 0.5) * total
    disk_until = disk_from + args.disk_full
    poison_at = sorted(start + run.rng.uniform(0.05, 0.95) * total
                       for _ in range(args.poison))
    sent, faults_on, next_staff = 0, False, 0.0
    while True:
        now = time.monotonic()
        if not faults_on and now >= start:
            for platform in PLATFORMS:
                await control(http, run.urls[platform], "chaos", {
                    "rates": FAULTS, "seconds": FAULT_SECONDS, "seed": args.seed})
            faults_on = True
        due = min(args.messages, int((now - began) * args.messages / (end - began)))
        while sent < due:
            await inject_customer(http, run, sent, calm=now < start)
            sent += 1
        while poison_at and poison_at[0] <= now:
            poison_at.pop(0)
            await inject_poison(http, run, sum(run.poison.values()))
        while kill_at and kill_at[0] <= now:
            kill_at.pop(0)
            run.daemon.kill()
            run.kills += 1
            run.daemon.start(disk_full=run.disk_full_now)
        full = disk_from <= now < disk_until
        if full != run.disk_full_now:
            run.disk_full_now = full
            run.daemon.fill_disk(full)
        if now >= next_staff:
            await staff_answers(http, run)
            next_staff = now + 1.0
        if sent >= args.messages and not poison_at and not kill_at and now >= disk_until:
            return
        await asyncio.sleep(0.02)


async def wait_healthy(http: aiohttp.ClientSession, run: Run, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and run.daemon.process.poll() is None:
        if (await healthz(http, run)).get("status") == "ok":
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the daemon was not healthy within {seconds:.0f}s; see the log")


async def healthz(http: aiohttp.ClientSession, run: Run) -> dict[str, Any]:
    try:
        async with http.get(f"http://127.0.0.1:{run.args.health_port}/healthz") as response:
            return await response.json()
    except (aiohttp.ClientError, ValueError):
        return {}


async def settle(http: aiohttp.ClientSession, run: Run, seconds: float) -> float:
    """Wait until every message is stored or quarantined and the outbox is empty, and
    the answers already typed are delivered; return how long it took (or the limit)."""
    began = time.monotonic()
    last_staff = 0.0
    while time.monotonic() - began < seconds:
        if time.monotonic() - last_staff > 1:
            await staff_answers(http, run)  # cards sent late still get their answer
            last_staff = time.monotonic()
        figures = read_database(run)
        stored = {m for m in figures["tokens"]}
        if (all(m.token in stored for m in run.messages)
                and figures["quarantined_total"] >= sum(run.poison.values())
                and figures["stuck"] == 0):
            await asyncio.sleep(2)  # a last card may still bring an answer
            if read_database(run)["stuck"] == 0:
                return time.monotonic() - began
        await asyncio.sleep(1)
    return seconds


def read_database(run: Run) -> dict[str, Any]:
    path = run.daemon.config.parent / "chaos.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        tokens: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for ticket_id, channel, text in db.execute(
                "SELECT ticket_id, channel, text FROM message WHERE direction = 'in'"):
            for token in ENDED.findall(text):
                tokens[token].append((ticket_id, channel))
        quarantined = Counter(dict(db.execute(
            "SELECT channel, COUNT(*) FROM quarantine GROUP BY channel")))
        stuck = db.execute("SELECT COUNT(*) FROM outbox WHERE state IN "
                           "('pending', 'retry', 'sending')").fetchone()[0]
        dead = Counter(dict(db.execute(
            "SELECT channel, COUNT(*) FROM outbox WHERE state = 'dead' AND kind = 'ack' "
            "GROUP BY channel")))
        dead_by_ticket = {row[0] for row in db.execute(
            "SELECT ticket_id FROM outbox WHERE state = 'dead' AND kind = 'ack'")}
        dead_answers = {row[0] for row in db.execute(
            "SELECT ticket_id FROM outbox WHERE state = 'dead' AND kind = 'reply'")}
    return {"tokens": tokens, "quarantined": quarantined,
            "quarantined_total": sum(quarantined.values()), "stuck": stuck,
            "dead_acks": dead, "dead_ack_tickets": dead_by_ticket,
            "dead_answer_tickets": dead_answers}


# --- the figures -----------------------------------------------------------------------------


async def received(urls: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    async with aiohttp.ClientSession() as http:
        return {p: await control(http, urls[p], "sent?times=1") for p in PLATFORMS}


def customer_texts(platform: str, sent: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """What customers (not the staff group) received on a platform: (text, arrival)."""
    out = []
    for entry in sent:
        item = entry["item"]
        if platform == "telegram":
            if item.get("chat", {}).get("id") == STAFF_GROUP:
                continue
            text = item.get("text", "")
        else:
            text = item.get("message") if platform == "vk" else item.get("text")
        out.append((text or "", entry["at"]))
    return out


def figures(run: Run, sent: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    database = read_database(run)
    answer_of = {token: ticket for ticket, token in run.answers.items() if token}
    table: dict[str, Any] = {}
    for platform in PLATFORMS:
        mine = [m for m in run.messages if m.platform == platform]
        stored = Counter(len(database["tokens"].get(m.token, [])) for m in mine)
        texts = customer_texts(platform, sent[platform])
        acks: dict[int, list[float]] = defaultdict(list)
        answers: Counter = Counter()
        for text, at in texts:
            for answer in re.findall(r"\((a\d+)\)", text):
                answers[answer] += 1
            if "(a" not in text:
                for number in STARTED.findall(text):
                    acks[int(number)].append(at)
        ack_counts = Counter()
        delays: dict[bool, list[float]] = {True: [], False: []}
        for message in mine:
            tickets = database["tokens"].get(message.token, [])
            if not tickets:
                continue
            arrivals = acks.get(tickets[0][0], [])
            count = len(arrivals)
            ack_counts["once" if count == 1 else "twice" if count == 2 else
                       "none" if count == 0 else "more"] += 1
            if count == 0 and tickets[0][0] in database["dead_ack_tickets"]:
                ack_counts["none_with_notice"] += 1
            if arrivals:
                delays[message.calm].append(min(arrivals) - message.at)
        typed = [token for token, ticket in answer_of.items()
                 if any(t[1] == platform and t[0] == ticket
                        for m in mine for t in database["tokens"].get(m.token, []))]
        table[platform] = {
            "messages_sent": len(mine), "stored_once": stored[1], "lost": stored[0],
            "doubled": sum(v for k, v in stored.items() if k > 1),
            "poison_injected": run.poison[platform],
            "quarantined": database["quarantined"].get(platform, 0),
            "acks_exactly_once": ack_counts["once"], "acks_twice": ack_counts["twice"],
            "acks_more": ack_counts["more"], "acks_none": ack_counts["none"],
            "acks_none_with_dead_letter_notice": ack_counts["none_with_notice"],
            "staff_answers_typed": len(typed),
            # Not delivered and nobody told: a dead-lettered answer is announced to staff.
            "staff_answers_lost": sum(1 for t in typed if answers[t] == 0
                                      and answer_of[t] not in database["dead_answer_tickets"]),
            "staff_answers_dead_lettered": sum(
                1 for t in typed if answers[t] == 0
                and answer_of[t] in database["dead_answer_tickets"]),
            "staff_answers_doubled": sum(1 for t in typed if answers[t] > 1),
            "longest_delivery_delay_s": round(max(delays[True] + delays[False], default=0), 2),
            "p99_delay_calm_s": _p99(delays[True]), "p99_delay_chaos_s": _p99(delays[False]),
        }
    table["all"] = {"outbox_rows_stuck": database["stuck"], "daemon_kills": run.kills,
                    "daemon_starts": run.daemon.starts, "disk_full_s": run.args.disk_full,
                    "settled_in_s": round(run.settled, 1),
                    "healthz_after": run.final_health.get("status"),
                    "channels_stopped": sum(1 for p in PLATFORMS if table[p]["lost"] > 0)}
    return table


def _p99(values: list[float]) -> float | None:
    if len(values) < 2:
        return round(values[0], 3) if values else None
    return round(statistics.quantiles(values, n=100)[98], 3)


def print_table(table: dict[str, Any]) -> None:
    rows = [key for key in table["telegram"]]
    print(f"{'':38}" + "".join(f"{p:>12}" for p in PLATFORMS))
    for key in rows:
        print(f"{key:38}" + "".join(f"{str(table[p][key]):>12}" for p in PLATFORMS))
    for p in PLATFORMS:
        calm, wild = table[p]["p99_delay_calm_s"], table[p]["p99_delay_chaos_s"]
        if calm and wild:
            print(f"{p}: p99 delivery delay under chaos / calm baseline = {wild / calm:.1f}x")
    for key, value in table["all"].items():
        print(f"{key:38}{value!s:>12}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--disk-full", type=float, default=30.0, help="seconds")
    parser.add_argument("--poison", type=int, default=20)
    parser.add_argument("--rate", type=float, default=25.0, help="customer messages a second")
    parser.add_argument("--settle", type=float, default=180.0, help="seconds at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="keep the database, config and daemon log here")
    parser.add_argument("--serve-emulators", metavar="READY_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulators:
        asyncio.run(serve_platforms(Path(args.serve_emulators)))
        return 0
    args.health_port = free_port()
    with tempfile.TemporaryDirectory(prefix="sameday-chaos-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        ready = workdir / "emulators.json"
        emulators = subprocess.Popen([sys.executable, __file__, "--serve-emulators",
                                      str(ready)], cwd=ROOT, stderr=subprocess.STDOUT,
                                     stdout=(workdir / "emulators.log").open("w"))
        daemon = None
        try:
            deadline = time.monotonic() + 30
            while not ready.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            urls = json.loads(ready.read_text())
            config = workdir / "config.toml"
            config.write_text(config_text(workdir, urls, args.health_port))
            daemon = Daemon(config, workdir / "daemon.log")
            run = Run(args, urls, daemon, random.Random(args.seed))
            daemon.start()
            asyncio.run(chaos(run))
            table = figures(run, asyncio.run(received(urls)))
        except BaseException:
            if daemon is not None:
                print((workdir / "daemon.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            if daemon is not None:
                daemon.kill()
            emulators.send_signal(signal.SIGTERM)
            try:
                emulators.wait(timeout=30)
            except subprocess.TimeoutExpired:
                emulators.kill()
                emulators.wait(timeout=30)
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print_table(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
