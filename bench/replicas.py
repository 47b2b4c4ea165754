"""`sameday run` replicas on one PostgreSQL database, against one process on SQLite.

Scenarios, each on a fresh database and fresh emulators (bots/*/emulator.py, on
127.0.0.1, in this process): one process on SQLite (the baseline), then 1, 2 and 3
replicas on a throw-away PostgreSQL database, started together (after `upgrade`, as
`sameday db upgrade` would) so that they spread the channels (core.app.ownership).

Once every replica runs and every channel has its owner, N customer messages -- each
from a customer of its own, half Telegram, 40 % VK, 10 % X, as tests/test_replicas.py
-- arrive at once. X is read by polling (every 5 s at least, each read billed), so its
mentions are injected first and the Telegram and VK burst goes in the moment X's next
read starts: from then on all three channels have their messages to read, and the
clock runs.

Measured:
- ingest: messages stored per second, from that moment until the database holds all of
  them (`message` rows with direction 'in', counted every 20 ms); per channel as well;
- delivery: each platform's acknowledgements per second, first to last arrival at the
  emulator, as a share of the limit the dispatcher honours (Telegram 30/s per bot, VK
  20/s per token); X (`per_user = "1000/15m"`, nothing binds) as a rate only;
- the emulators' limit violations (target 0) and Telegram's overlapping getUpdates.

Every scenario runs in ``--rounds`` rounds, their order alternated: the first also waits
for every acknowledgement (delivery is bound by the limits, not by the machine's noise),
the others measure the ingest only; the ingest figure is the best of the rounds.

A channel runs on one replica at a time, so a channel's throughput cannot grow with
replicas; what replicas give is failover, and the three channels on different processes.

    python bench/replicas.py [--messages 3000] [--rounds 3] [--quick]
                             [--pg-admin postgresql://root@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from bench.pgtemp import DEFAULT_ADMIN, throwaway_postgres  # noqa: E402
from bots.telegram.emulator import TelegramEmulator  # noqa: E402
from bots.twitter.emulator import BOT_USER as X_BOT  # noqa: E402
from bots.twitter.emulator import XEmulator  # noqa: E402
from bots.vk.emulator import VKEmulator  # noqa: E402
from core.config.settings import DatabaseSettings  # noqa: E402
from core.store.engine import sync_url, upgrade  # noqa: E402

CHANNELS = ("telegram", "vk", "twitter")
SHARES = {"telegram": 0.5, "vk": 0.4, "twitter": 0.1}  # as tests/test_replicas.py
LIMITS = {"telegram": 30.0, "vk": 20.0}  # per second: per_bot, per_token (the defaults)
TOKENS = {"SAMEDAY_TELEGRAM_TOKEN": "123:bench-replicas", "SAMEDAY_VK_TOKEN": "vk-bench",
          **{f"SAMEDAY_X_{n}": f"x-{n.lower()}" for n in (
              "BEARER_TOKEN", "CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
              "ACCESS_TOKEN_SECRET")}}
REPLICA_NAMES = "abc"


def config_text(url: str, tg: str, vk: str, x: str) -> str:
    return f"""
[database]
url = "{url}"
[daemon]
health_port = 0
log_level = "info"
[channels.telegram]
enabled = true
base_url = "{tg}/bot"
poll_timeout = "2s"
[channels.vk]
enabled = true
group_id = 1
base_url = "{vk}"
long_poll_wait = "2s"
[channels.twitter]
enabled = true
user_id = "{X_BOT['id']}"
base_url = "{x}"
poll_interval = "5s"
[outbox.limits.twitter]
per_user = "1000/15m"
[staff]
chat = "console"
"""


class Replica:
    """A `sameday run` process; its log lines collected by a reader thread."""

    def __init__(self, name: str, config: Path):
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "core.app.cli", "run", "-c", str(config)],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT,
            env={**os.environ, **TOKENS, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def logged(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def runs(self) -> list[str]:
        """The channels whose latest word in its log is that this replica runs them."""
        owned = []
        for channel in CHANNELS:
            for line in reversed(list(self.lines)):
                if f"channel {channel}: this replica runs it now" in line:
                    owned.append(channel)
                    break
                if f"channel {channel}: this replica stopped running it" in line:
                    break
        return owned

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM by its PID; SIGKILL if it has not exited within ``timeout``."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return None


@dataclass
class Result:
    scenario: str
    owners: dict[str, list[str]]
    ingest_seconds: float = float("nan")
    ingest_ended: float = float("nan")  # time.monotonic() when the last was stored
    channel_seconds: dict[str, float] = field(default_factory=dict)
    # Where the CPU went while ingesting: the machine's busy share (of every core), the
    # replicas' and this process's (the emulators') CPU seconds.
    machine_busy: float = float("nan")
    replica_cpu: dict[str, float] = field(default_factory=dict)
    bench_cpu: float = float("nan")
    delivery: dict[str, float] = field(default_factory=dict)  # acks per second
    # ... counting only the acknowledgements that arrived after the ingest ended
    delivery_after_ingest: dict[str, float] = field(default_factory=dict)
    acks: dict[str, int] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
    overlapping_polls: int = 0
    not_sent: int = 0  # customer-channel outbox rows not sent at the end
    exit_codes: list[int | None] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def arrival_rate(times: list[float], since: float = -math.inf) -> float:
    """Arrivals per second, first to last, of those at or after ``since``."""
    times = [t for t in times if t >= since]
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else math.nan


def counts_by_channel(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT channel, count(*) FROM message WHERE direction = 'in' GROUP BY channel")
        return {channel: count for channel, count in rows}


def outbox_not_sent(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.exec_driver_sql(
            "SELECT channel, state, count(*) FROM outbox WHERE channel != 'staff' "
            "AND state != 'sent' GROUP BY channel, state")]


def load_average() -> str:
    """The machine's 1/5/15-minute load: other jobs on the 2 cores skew a run."""
    return " / ".join(f"{load:.2f}" for load in os.getloadavg())


def plan(messages: int) -> dict[str, int]:
    counts = {c: round(messages * SHARES[c]) for c in ("telegram", "vk")}
    counts["twitter"] = messages - sum(counts.values())
    return counts


async def until(condition, timeout: float, step: float = 0.05) -> bool:
    """Poll ``condition`` until true or ``timeout`` seconds pass: whether it came true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(step)
    return bool(condition())


async def scenario(name: str, url: str, replicas: int, messages: int, tmp: Path,
                   deliver: bool) -> Result:
    """Start the replicas, wait for every channel's owner, inject and measure; stop them.
    ``deliver``: also wait for every acknowledgement and measure the delivery."""
    expected = plan(messages)
    upgrade(DatabaseSettings(url=url))  # as `sameday db upgrade`: the replicas start together
    engine = sa.create_engine(sync_url(url))
    async with TelegramEmulator() as tg, VKEmulator() as vk, \
            XEmulator(post_limit=1000) as x:
        emulators = {"telegram": tg, "vk": vk, "twitter": x}
        config = tmp / "sameday.toml"
        config.write_text(config_text(url, tg.url, vk.url, x.url))
        running = [Replica(REPLICA_NAMES[i], config) for i in range(replicas)]
        result = Result(name, {})
        try:
            ready = await until(lambda: all(r.logged("sameday is running") for r in running)
                                and {c for r in running for c in r.runs()} == set(CHANNELS),
                                timeout=90)
            result.owners = {r.name: r.runs() for r in running}
            if not ready:
                result.problems.append("not every channel got an owner within 90 s")
                return result
            if await ingest(result, engine, emulators, expected, running) and deliver:
                await delivery(result, emulators, expected)
                result.not_sent = sum(n for *_, n in await asyncio.to_thread(
                    outbox_not_sent, engine))
        finally:
            result.exit_codes = await asyncio.gather(*(asyncio.to_thread(r.stop)
                                                       for r in running))
            if any(code != 0 for code in result.exit_codes):
                for replica in running:
                    tail = "".join(replica.lines[-30:])
                    result.problems.append(f"replica {replica.name} log tail:\n{tail}")
            engine.dispose()
        # Counted after the stop: a violation or an overlap in any phase shows.
        result.violations = {c: len(e.violations) for c, e in emulators.items()}
        result.overlapping_polls = tg.overlapping_polls
        if any(result.violations.values()):
            result.problems.append("VIOLATIONS: " + "; ".join(
                f"{c}: {e.violations[:3]}" for c, e in emulators.items() if e.violations))
    return result


async def ingest(result: Result, engine: sa.Engine, emulators: dict,
                 expected: dict[str, int], running: list[Replica]) -> bool:
    """Inject the burst and time the stores; False on a stall."""
    tg, vk, x = emulators["telegram"], emulators["vk"], emulators["twitter"]
    # X first: its mentions become readable at its next poll, and that poll starts the
    # clock, with Telegram's and VK's burst injected at the same moment.
    for n in range(expected["twitter"]):
        x.inject_mention(author_id=str(300_000 + n), username=f"c{n}",
                         text=f"@{X_BOT['username']} order {n} is late")
    reads = len(x.mention_requests)
    if not await until(lambda: len(x.mention_requests) > reads, timeout=15, step=0.005):
        result.problems.append("STALL: X's mentions were not read within 15 s")
        return False
    started = time.monotonic()
    cpu_before = ({r.name: process_cpu(r.process.pid) for r in running}, time.process_time(),
                  machine_ticks())
    burst = [("telegram", n) for n in range(expected["telegram"])] + \
        [("vk", n) for n in range(expected["vk"])]
    random.Random(17).shuffle(burst)
    for i, (platform, n) in enumerate(burst):
        if platform == "telegram":
            tg.inject_message(chat_id=100_000 + n, user_id=100_000 + n,
                              text=f"Где мой заказ {n}?")
        else:
            vk.inject_message(from_id=200_000 + n, text=f"Посылка {n} не пришла")
        if i % 200 == 199:
            await asyncio.sleep(0)  # let the emulators answer the polls meanwhile
    done: dict[str, float] = {}
    counts: dict[str, int] = {}
    deadline = started + 300
    while len(done) < len(CHANNELS) and time.monotonic() < deadline:
        counts = await asyncio.to_thread(counts_by_channel, engine)
        now = time.monotonic()
        for channel in CHANNELS:
            if channel not in done and counts.get(channel, 0) >= expected[channel]:
                done[channel] = now - started
        await asyncio.sleep(0.02)
    result.channel_seconds = done
    if len(done) < len(CHANNELS):
        result.problems.append(f"STALL: stored after 300 s: {counts} of {expected}")
        return False
    result.ingest_seconds = max(done.values())
    result.ingest_ended = started + result.ingest_seconds
    replicas, bench, (busy, total) = cpu_before
    result.replica_cpu = {r.name: process_cpu(r.process.pid) - replicas[r.name]
                          for r in running}
    result.bench_cpu = time.process_time() - bench
    now_busy, now_total = machine_ticks()
    result.machine_busy = (now_busy - busy) / (now_total - total)
    return True


async def delivery(result: Result, emulators: dict, expected: dict[str, int]) -> None:
    """Wait for every acknowledgement; each platform's rate, first to last arrival."""
    longest = max(expected[c] / LIMITS[c] for c in LIMITS)
    delivered = await until(lambda: all(len(emulators[c].sent) >= expected[c]
                                        for c in CHANNELS), timeout=longest * 2 + 60)
    await asyncio.sleep(1)  # the last outcomes committed; a late double would show
    for channel, emulator in emulators.items():
        result.acks[channel] = len(emulator.sent)
        result.delivery[channel] = arrival_rate(emulator.sent_times)
        result.delivery_after_ingest[channel] = arrival_rate(emulator.sent_times,
                                                             result.ingest_ended)
    if not delivered:
        result.problems.append(f"STALL: acknowledgements received {result.acks} of "
                               f"{expected}")
    doubled = {c: n - expected[c] for c, n in result.acks.items() if n > expected[c]}
    if doubled:
        result.problems.append(f"sent more than once: {doubled}")


async def run_scenario(name: str, args: argparse.Namespace, deliver: bool) -> Result:
    """One scenario on a database and in a folder of its own."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if name == "sqlite":
            return await scenario(name, f"sqlite+aiosqlite:///{tmp / 'sameday.db'}", 1,
                                  args.messages, tmp, deliver)
        with throwaway_postgres(args.pg_admin) as url:
            return await scenario(name, url, int(name[-1]), args.messages, tmp, deliver)


def report(results: list[Result], messages: int) -> None:
    counts = plan(messages)
    by_name: dict[str, list[Result]] = {}
    for r in results:
        by_name.setdefault(r.scenario, []).append(r)
    rounds = len(by_name["sqlite"])
    print(f"\n{messages:,} messages (Telegram {counts['telegram']:,}, VK {counts['vk']:,}, "
          f"X {counts['twitter']:,}); ingest: best of {rounds} alternated round(s) (every "
          f"round in brackets); delivery: the first round")
    baseline = min((r.ingest_seconds for r in by_name["sqlite"]
                    if math.isfinite(r.ingest_seconds)), default=math.nan)
    print("| scenario | owners | ingest msg/s | ratio to SQLite | best per channel msg/s "
          "(Telegram / VK / X) | Telegram acks, share of 30/s | VK acks, share of 20/s | "
          "X acks/s | violations | overlapping getUpdates |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, runs in by_name.items():
        seconds = [r.ingest_seconds for r in runs]
        best = min((s for s in seconds if math.isfinite(s)), default=math.nan)  # NaN: stall
        per_channel = " / ".join(
            f"{counts[c] / min(r.channel_seconds.get(c, float('inf')) for r in runs):,.0f}"
            for c in CHANNELS)
        every = ", ".join(f"{messages / s:,.0f}" for s in seconds)
        delivered = next((r for r in runs if r.delivery), None)
        if delivered is None:
            shares, x_rate = {c: "-" for c in LIMITS}, "-"
        else:
            shares = {c: f"{delivered.delivery[c]:.2f}/s, "
                         f"{delivered.delivery[c] / LIMITS[c]:.1%} (after the ingest "
                         f"{delivered.delivery_after_ingest[c] / LIMITS[c]:.1%})"
                      for c in LIMITS}
            x_rate = f"{delivered.delivery['twitter']:.1f}/s"
        owners = "; ".join(f"{replica}: {'+'.join(owned) or '-'}"
                           for replica, owned in runs[0].owners.items())
        violations = sum(sum(r.violations.values()) for r in runs)
        overlaps = sum(r.overlapping_polls for r in runs)
        print(f"| {name} | {owners} | {messages / best:,.0f} ({every}) | "
              f"{baseline / best:.2f} | {per_channel} | {shares['telegram']} "
              f"| {shares['vk']} | {x_rate} | {violations} | {overlaps} |")
    print("\nWhile ingesting (the best round): | scenario | ingest s | machine busy "
          "(all cores) | replicas' CPU s | this process's CPU s (emulators) |")
    for name, runs in by_name.items():
        best = min(runs, key=lambda r: r.ingest_seconds if math.isfinite(r.ingest_seconds)
                   else math.inf)
        cpu = ", ".join(f"{n} {s:.1f}" for n, s in best.replica_cpu.items())
        print(f"| {name} | {best.ingest_seconds:.2f} | {best.machine_busy:.0%} | {cpu} | "
              f"{best.bench_cpu:.1f} |")
    print("\nA channel runs on one replica at a time (one lock each): its receiving and "
          "its sends do not speed up with more replicas, and the limits are per bot and "
          "per token whatever the number of processes. Replicas give failover, and spread "
          "the three channels over processes.")
    for r in results:
        extra = f", rows not sent at the end {r.not_sent}" if r.not_sent else ""
        owners = "; ".join(f"{n}: {'+'.join(o) or '-'}" for n, o in r.owners.items())
        print(f"{r.scenario}: owners {owners}; exit codes {r.exit_codes}{extra}")
        for problem in r.problems:
            print(f"  PROBLEM: {problem}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the four scenarios, alternating their order; the "
                             "first also measures delivery, the others ingest only")
    parser.add_argument("--quick", action="store_true", help="600 messages, one round")
    parser.add_argument("--pg-admin", default=DEFAULT_ADMIN)
    parser.add_argument("--sweep", action="store_true",
                        help="then the escalation sweep at 10,000 and 1,000,000 tickets on "
                             "both databases (bench/sweep.py, about 2 minutes)")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.rounds = 600, 1
    order = ["sqlite", "postgresql x1", "postgresql x2", "postgresql x3"]
    results = []
    print(f"load average at the start: {load_average()}", flush=True)
    for round_ in range(args.rounds):
        for name in order if round_ % 2 == 0 else order[::-1]:
            started = time.monotonic()
            result = await run_scenario(name, args, deliver=round_ == 0)
            results.append(result)
            stored = {c: round(s, 2) for c, s in result.channel_seconds.items()}
            rates = {c: round(v, 2) for c, v in result.delivery.items()}
            after = {c: round(v, 2) for c, v in result.delivery_after_ingest.items()}
            cpu = {n: round(s, 1) for n, s in result.replica_cpu.items()}
            print(f"round {round_ + 1} {name}: ingest {result.ingest_seconds:.2f} s "
                  f"(per channel {stored}; machine busy {result.machine_busy:.0%}, replicas' "
                  f"CPU s {cpu}, emulators' {result.bench_cpu:.1f}), acks/s {rates or '-'} "
                  f"(after the ingest {after or '-'}), violations {result.violations}, "
                  f"owners {result.owners} ({time.monotonic() - started:.0f} s)", flush=True)
    print(f"load average at the end: {load_average()}")
    report(results, args.messages)
    if args.sweep:  # measured by its own bench, run as it is run alone
        subprocess.run([sys.executable, str(Path(__file__).with_name("sweep.py")),
                        "--postgres", args.pg_admin], check=True)


if __name__ == "__main__":
    asyncio.run(main())
