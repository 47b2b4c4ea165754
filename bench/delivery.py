"""Delivery through the outbox against the platform emulators.

For each platform:
- rate: N outbound rows queued at once and drained under the platform's limit. Prints
  the achieved rate (first to last arrival at the emulator) as a share of the limit's
  rate (target >= 95%) and the limit violations the emulator counted (target 0).
- latency: rows committed one at a time while no limit binds. Prints commit-to-arrival
  p50/p99 (target p99 <= 100 ms) and, as the same-run baseline, the round trip of a
  direct `adapter.send` with no outbox in between.

X's real limit is 100 posts per 15 minutes (5,000 posts = 12.5 hours); the benchmark
compresses it to 100 per 5 s on both sides, the emulator and the config.

    python bench/delivery.py [--platform telegram|vk|twitter|all] [--messages 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

import sqlalchemy as sa  # noqa: E402

from bots.telegram.adapter import TelegramAdapter  # noqa: E402
from bots.telegram.emulator import TelegramEmulator  # noqa: E402
from bots.twitter.adapter import TwitterAdapter  # noqa: E402
from bots.twitter.emulator import BOT_USER as X_BOT  # noqa: E402
from bots.twitter.emulator import XEmulator
from bots.vk.adapter import VKAdapter  # noqa: E402
from bots.vk.emulator import VKEmulator  # noqa: E402
from core.clock import SystemClock  # noqa: E402
from core.config.load import settings_from_dict  # noqa: E402
from core.config.settings import Settings  # noqa: E402
from core.delivery.contract import AdapterContext  # noqa: E402
from core.delivery.dispatcher import Dispatcher  # noqa: E402
from core.domain.records import Outbound, OutboxState  # noqa: E402
from core.intake.inbox import Inbox  # noqa: E402
from core.store.engine import Store, upgrade  # noqa: E402
from core.store.tables import Outbox  # noqa: E402

for name in ("SAMEDAY_TELEGRAM_TOKEN", "SAMEDAY_VK_TOKEN", "SAMEDAY_X_BEARER_TOKEN",
             "SAMEDAY_X_CONSUMER_KEY", "SAMEDAY_X_CONSUMER_SECRET", "SAMEDAY_X_ACCESS_TOKEN",
             "SAMEDAY_X_ACCESS_TOKEN_SECRET"):
    os.environ.setdefault(name, "123:bench-token")


@dataclass
class Platform:
    name: str
    limit: tuple[int, float]  # messages per seconds: the binding limit of the rate run

    def emulator(self) -> Any:
        if self.name == "telegram":
            return TelegramEmulator()
        if self.name == "vk":
            return VKEmulator()
        return XEmulator(post_limit=self.limit[0], post_window=self.limit[1],
                         read_limit=10_000)

    def settings(self, emulator: Any, db: Path) -> Settings:
        count, seconds = self.limit
        channel = {
            "telegram": {"enabled": True, "base_url": f"{emulator.url}/bot",
                         "poll_timeout": "1s"},
            "vk": {"enabled": True, "group_id": 1, "base_url": emulator.url,
                   "long_poll_wait": "1s"},
            "twitter": {"enabled": True, "user_id": X_BOT["id"], "base_url": emulator.url},
        }[self.name]
        limits = {"twitter": {"twitter": {"per_user": f"{count}/{int(seconds)}s"}}}.get(
            self.name, {})
        return settings_from_dict({
            "database": {"url": f"sqlite+aiosqlite:///{db}", "sqlite_synchronous": "normal"},
            "channels": {self.name: channel}, "staff": {"chat": "console"},
            "outbox": {"limits": limits}}, check_secrets=True)

    def adapter(self, settings: Settings) -> Any:
        if self.name == "telegram":
            return TelegramAdapter(settings)
        if self.name == "vk":
            return VKAdapter(settings)
        return TwitterAdapter(settings, poll_interval=3600)

    def target(self, i: int, emulator: Any) -> dict[str, Any]:
        if self.name == "telegram":
            return {"chat_id": 1 + i % 1000}  # 1,000 chats: only the per-bot limit binds
        if self.name == "vk":
            return {"type": "message", "peer_id": 1 + i % 1000}
        tweet = emulator.inject_tweet(str(10_000 + i), f"customer{i}", f"question {i}")
        return {"in_reply_to_tweet_id": tweet["id"]}


PLATFORMS = {"telegram": Platform("telegram", (30, 1.0)), "vk": Platform("vk", (20, 1.0)),
             "twitter": Platform("twitter", (100, 5.0))}


class Running:
    """An adapter, a store and a dispatcher, like the daemon wires them."""

    def __init__(self, platform: Platform, emulator: Any, db: Path):
        self.platform = platform
        self.emulator = emulator
        self.settings = platform.settings(emulator, db)
        upgrade(self.settings.database)
        self.store = Store(self.settings.database)
        self.adapter = platform.adapter(self.settings)
        self.stopping = asyncio.Event()

    async def __aenter__(self) -> Running:
        clock = SystemClock()
        self.dispatcher = Dispatcher(self.store, clock, self.settings.outbox,
                                     {self.platform.name: self.adapter}, idle_poll=0.5)
        inbox = Inbox(self.store, self.settings, clock)
        await self.adapter.start(AdapterContext(self.settings, clock, inbox.ingest,
                                                inbox.load_cursor))
        self.task = asyncio.create_task(self.dispatcher.run(self.stopping))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stopping.set()
        await self.task
        await self.adapter.stop()
        await self.store.close()

    async def queue(self, rows: list[tuple[int, dict[str, Any]]]) -> None:
        now = datetime.now(UTC)
        async with self.store.session() as session, session.begin():
            await session.execute(sa.insert(Outbox.__table__), [
                {"channel": self.platform.name, "kind": "reply", "target": target,
                 "text": f"answer number {i} from the support team",
                 "idempotency_key": f"bench:{self.platform.name}:{i}", "state": "pending",
                 "attempts": 0, "recovered": 0, "deadline_at": now, "next_attempt_at": now,
                 "created_at": now} for i, target in rows])
        self.dispatcher.wake()

    async def sent_rows(self) -> int:
        async with self.store.session() as session:
            return await session.scalar(sa.select(sa.func.count()).select_from(Outbox)
                                        .where(Outbox.state == OutboxState.SENT))


async def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the emulator did not receive everything in time")
        await asyncio.sleep(0.01)


async def rate_run(platform: Platform, messages: int, tmp: Path) -> dict[str, float]:
    async with platform.emulator() as emulator:
        rows = [(i, platform.target(i, emulator)) for i in range(messages)]
        async with Running(platform, emulator, tmp / f"{platform.name}-rate.db") as run:
            await run.queue(rows)
            count, seconds = platform.limit
            ideal = (math.ceil(messages / count) - 1) * seconds
            await wait_for(lambda: len(emulator.sent) >= messages, timeout=ideal * 2 + 60)
            times = emulator.sent_times
            elapsed = times[messages - 1] - times[0]
            sent = await run.sent_rows()
        rate = (messages - 1) / elapsed if elapsed else float("inf")
        return {"messages": messages, "elapsed": elapsed, "ideal": ideal, "rate": rate,
                "share": rate / (count / seconds),
                "violations": len(emulator.violations), "sent_rows": sent,
                "duplicates": len(emulator.sent) - messages}


async def latency_run(platform: Platform, samples: int, tmp: Path) -> dict[str, float]:
    async with platform.emulator() as emulator:
        async with Running(platform, emulator, tmp / f"{platform.name}-latency.db") as run:
            direct = []
            for i in range(samples // 2):  # baseline: the adapter alone
                target = platform.target(100_000 + i, emulator)
                started = time.monotonic()
                await run.adapter.send(Outbound(
                    outbox_id=0, channel=platform.name, kind="reply", target=target,
                    text=f"direct {i}", idempotency_key=f"direct:{i}"))
                direct.append(time.monotonic() - started)
                await asyncio.sleep(0.05)
            through_outbox = []
            for i in range(samples):
                seen = len(emulator.sent)
                target = platform.target(200_000 + i, emulator)
                await run.queue([(200_000 + i, target)])  # returns right after the commit
                committed = time.monotonic()
                await wait_for(lambda s=seen: len(emulator.sent) > s, timeout=10)
                through_outbox.append(emulator.sent_times[seen] - committed)
                await asyncio.sleep(0.05)  # well below every limit
        return {"p50": _pct(through_outbox, 50), "p99": _pct(through_outbox, 99),
                "direct_p50": _pct(direct, 50), "direct_p99": _pct(direct, 99)}


def _pct(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=[*PLATFORMS, "all"], default="all")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args()
    names = list(PLATFORMS) if args.platform == "all" else [args.platform]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            platform = PLATFORMS[name]
            count, seconds = platform.limit
            rate = await rate_run(platform, args.messages, Path(tmp))
            latency = await latency_run(platform, args.latency_samples, Path(tmp))
            print(f"{name}: limit {count}/{seconds:g}s, {rate['messages']} messages")
            print(f"  rate     : {rate['rate']:.2f} msg/s, first to last arrival "
                  f"{rate['elapsed']:.1f} s (burst-then-limit ideal {rate['ideal']:.0f} s) "
                  f"-> {rate['share']:.1%} of the limit's {count / seconds:g} msg/s "
                  f"(target >= 95%)")
            print(f"  violations seen by the emulator: {rate['violations']} (target 0); "
                  f"rows marked sent: {rate['sent_rows']}; doubled: {rate['duplicates']}")
            print(f"  latency  : commit->arrival p50 {latency['p50']:.1f} ms, p99 "
                  f"{latency['p99']:.1f} ms (target p99 <= 100 ms); direct send p50 "
                  f"{latency['direct_p50']:.1f} ms, p99 {latency['direct_p99']:.1f} ms; "
                  f"ratio p50 {latency['p50'] / latency['direct_p50']:.2f}")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
