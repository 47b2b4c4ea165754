"""/healthz and /metrics: the staleness rule, a database outage, and the daemon with all
three real adapters against their emulators losing and regaining a platform."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from bots.telegram.emulator import TelegramEmulator
from bots.twitter.adapter import TwitterAdapter
from bots.twitter.emulator import XEmulator
from bots.vk.emulator import VKEmulator
from core.app.daemon import Daemon
from core.app.health import DatabaseCollector, HealthServer, judge_channel, stale_after
from core.clock import SystemClock
from core.config.load import load_settings
from core.config.settings import DatabaseSettings
from core.delivery.contract import ChannelHealth, adapter_factories
from core.domain.kpi import local_day
from core.store.engine import Store
from core.store.tables import Outbox
from tests.adapter_harness import eventually
from tests.conftest import make_settings
from tests.test_daemon_channels import TOKENS, config_text

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
UNREACHABLE_PG = "postgresql+psycopg://sameday@127.0.0.1:1/sameday"  # nothing listens on 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def get(url: str) -> tuple[int, str, dict | None]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
        is_json = response.content_type == "application/json"
        return response.status, text, (await response.json() if is_json else None)


def samples(text: str) -> dict[tuple[str, str | None], float]:
    """Every sample of a /metrics page by (sample name, channel label)."""
    return {(s.name, s.labels.get("channel")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# --- the staleness rule ------------------------------------------------------------------


def test_stale_after_is_three_polls_but_at_least_a_minute():
    assert stale_after(1) == 60
    assert stale_after(30) == 90
    assert stale_after(60) == 180


def test_a_channel_is_judged_by_connection_and_age_of_its_last_success():
    report = ChannelHealth(connected=True, last_poll_ok=NOW - timedelta(seconds=10),
                           poll_errors=2)
    entry, reasons = judge_channel("vk", report, NOW, 60, NOW - timedelta(hours=1))
    assert reasons == [] and entry["last_poll_age_seconds"] == 10 and entry["poll_errors"] == 2

    old = replace(report, last_poll_ok=NOW - timedelta(seconds=61))
    assert "stale" in judge_channel("vk", old, NOW, 60, NOW - timedelta(hours=1))[1][0]
    down = replace(report, connected=False)
    assert "not connected" in judge_channel("vk", down, NOW, 60, NOW)[1][0]

    never = ChannelHealth(connected=True, last_poll_ok=None, poll_errors=0)
    assert judge_channel("vk", never, NOW, 60, NOW - timedelta(seconds=30))[1] == []
    assert judge_channel("vk", never, NOW, 60, NOW - timedelta(seconds=90))[1] != []
    assert judge_channel("vk", None, NOW, 60, NOW - timedelta(hours=1))[1] == []


def test_the_same_day_counts_the_calendar_day_not_the_utc_day():
    # 23:30 UTC is already 02:30 of the next day in Moscow.
    start, end = local_day(datetime(2026, 11, 24, 23, 30, tzinfo=UTC), ZoneInfo("Europe/Moscow"))
    assert start == datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
    assert end - start == timedelta(days=1)


# --- a database outage ---------------------------------------------------------------------


async def test_an_unreachable_database_makes_healthz_503_and_metrics_say_so():
    settings = make_settings(daemon={"health_port": free_port()})
    store = Store(DatabaseSettings(url=UNREACHABLE_PG))
    server = HealthServer(store, settings, SystemClock(), {})
    assert await server.start()
    try:
        status, _, body = await get(f"http://127.0.0.1:{server.port}/healthz")
        assert status == 503
        assert body["status"] == "unhealthy" and body["database"].startswith("error")
        assert body["reasons"][0].startswith("database:")
        status, text, _ = await get(f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200
        assert samples(text)[("sameday_database_up", None)] == 0
    finally:
        await server.stop()
        await store.close()


async def test_a_taken_port_is_reported_and_the_daemon_goes_on(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = make_settings(daemon={"health_port": taken.getsockname()[1]})
        server = HealthServer(None, settings, SystemClock(), {})
        assert not await server.start()
    assert "health endpoint NOT started" in caplog.text


# --- the daemon with the three real adapters -------------------------------------------------


@asynccontextmanager
async def running_daemon(tmp_path, monkeypatch, tg, vk, x) -> AsyncIterator[Daemon]:
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "config.toml"
    config.write_text(config_text(tmp_path / "health.db", tg.url, vk.url, x.url)
                      .replace("health_port = 0", f"health_port = {free_port()}"))
    # X's poll_interval may not go below 5 s in the config; the test polls faster.
    factories = {**adapter_factories(), "twitter": partial(TwitterAdapter, poll_interval=0.3)}
    daemon = Daemon(config, load_settings(config), factories=factories)
    task = asyncio.create_task(daemon.run())
    try:
        await eventually(lambda: daemon.health is not None and daemon.health.port, 20,
                         "the health endpoint to listen")
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 20)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def healthz(daemon: Daemon) -> tuple[int, dict]:
    status, _, body = await get(f"http://127.0.0.1:{daemon.health.port}/healthz")
    return status, body


async def test_daemon_health_follows_each_platform_and_metrics_count_messages(
        tmp_path, monkeypatch):
    async with TelegramEmulator() as tg, VKEmulator() as vk, XEmulator() as x, \
            running_daemon(tmp_path, monkeypatch, tg, vk, x) as daemon:
        last: dict = {}

        async def status_is(expected: int) -> bool:
            last["status"], last["body"] = await healthz(daemon)
            return last["status"] == expected

        async def all_polled() -> bool:
            return await status_is(200) and all(
                c["last_poll_ok"] for c in last["body"]["channels"].values())
        await eventually(all_polled, 20, "a healthy daemon that polled every channel")
        channels = last["body"]["channels"]
        assert set(channels) == {"telegram", "vk", "twitter"}
        assert all(c["connected"] and c["last_poll_age_seconds"] < 60
                   for c in channels.values()), channels

        tg.inject_message(chat_id=11, user_id=11, text="where is my order?")
        page: dict = {}

        async def counted() -> bool:
            page["samples"] = samples((await get(
                f"http://127.0.0.1:{daemon.health.port}/metrics"))[1])
            return page["samples"].get(
                ("sameday_tickets_acknowledged_total", "telegram")) == 1
        await eventually(counted, 15, "the acknowledged ticket on /metrics")
        found = page["samples"]
        assert found[("sameday_messages_received_total", "telegram")] == 1
        assert found[("sameday_messages_received_total", "vk")] == 0
        assert found[("sameday_database_up", None)] == 1
        assert found[("sameday_channel_connected", "twitter")] == 1
        assert found[("sameday_same_day_rate", None)] == 0  # opened today, not answered

        for emulator, channel in ((tg, "telegram"), (vk, "vk"), (x, "twitter")):
            port = emulator.port
            await emulator.stop()
            await eventually(lambda: status_is(503), 15, f"503 without {channel}")
            assert any(r.startswith(channel) for r in last["body"]["reasons"]), last
            assert last["body"]["channels"][channel]["connected"] is False
            await emulator.start(port=port)
            await eventually(lambda: status_is(200), 15, f"200 when {channel} is back")

        errors = samples((await get(f"http://127.0.0.1:{daemon.health.port}/metrics"))[1])
        assert all(errors[("sameday_poll_errors_total", c)] >= 1
                   for c in ("telegram", "vk", "twitter"))


# --- figures from the database ---------------------------------------------------------------


async def test_outbox_depth_oldest_due_age_and_dead_letters_are_read_from_the_database(store):
    now = datetime.now(UTC)

    def row(key: str, state: str, due: datetime) -> Outbox:
        return Outbox(channel="vk", kind="ack", target={}, text="t", idempotency_key=key,
                      state=state, next_attempt_at=due, created_at=now)
    async with store.session() as session, session.begin():
        session.add_all([row("a", "pending", now - timedelta(seconds=30)),
                         row("b", "retry", now + timedelta(minutes=5)),  # not due yet
                         row("c", "dead", now - timedelta(hours=1)),
                         row("d", "sent", now - timedelta(hours=2))])
    settings = make_settings(channels={"vk": {"enabled": True, "group_id": 1}})
    collector = DatabaseCollector(store, SystemClock(), lambda: settings, dict)
    await collector.refresh()
    figures = collector.figures
    assert collector.database_up
    assert figures["sameday_outbox_depth"] == {"vk": 2}
    assert 30 <= figures["sameday_outbox_oldest_due_age_seconds"]["vk"] < 40
    assert figures["sameday_dead_letters"] == {"vk": 1}
    assert figures["sameday_messages_received"] == {"vk": 0}  # enabled: listed at zero


# --- health that sees writes ------------------------------------------------------------------


async def refuse_writes(store: Store) -> Callable[[], Awaitable[None]]:
    """Make the SQLite database refuse every write, as a full disk does: SELECT 1 still
    answers, every transaction that writes fails with an OperationalError. Returns the
    undo."""
    def read_only(dbapi_connection, _record):  # noqa: ANN001
        dbapi_connection.execute("PRAGMA query_only = ON")

    async def reconnect() -> None:  # new connections get (or lose) the pragma
        await store.engine.dispose()
        await asyncio.to_thread(store.units.engine.dispose)

    for engine in store.sync_engines:
        sa.event.listen(engine, "connect", read_only)
    await reconnect()

    async def undo() -> None:
        for engine in store.sync_engines:
            sa.event.remove(engine, "connect", read_only)
        await reconnect()
    return undo


async def test_healthz_sees_a_database_that_refuses_writes_and_recovers(sqlite_url):
    from core.domain.records import Unreadable
    from core.intake.inbox import Inbox
    from core.store.engine import upgrade
    from tests.helpers import inbound

    upgrade(DatabaseSettings(url=sqlite_url))
    store = Store(DatabaseSettings(url=sqlite_url))
    settings = make_settings(daemon={"health_port": free_port()},
                             channels={"vk": {"enabled": True, "group_id": 1}})
    inbox = Inbox(store, settings, SystemClock())
    silent_adapter = type("Adapter", (), {"health": lambda self: None})()
    server = HealthServer(store, settings, SystemClock(), {"vk": silent_adapter})
    assert await server.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        await inbox.ingest([], None, [Unreadable("vk", {"x": 1}, "KeyError: 'type'", "e1")])
        status, _, body = await get(f"{url}/healthz")
        assert status == 200 and body["quarantined"] == {"vk": 1}
        _, text, _ = await get(f"{url}/metrics")
        assert samples(text)[("sameday_quarantined", "vk")] == 1
        undo = await refuse_writes(store)
        with pytest.raises(sa.exc.OperationalError):
            await inbox.ingest([inbound("m1", channel="vk")])
        status, _, body = await get(f"{url}/healthz")
        assert status == 503 and body["database"].startswith("error: OperationalError")
        assert any(r.startswith("vk: storing received messages fails") and "readonly" in r
                   for r in body["reasons"]), body["reasons"]
        assert body["channels"]["vk"]["writes_failing"] == ["receive"]
        _, text, _ = await get(f"{url}/metrics")
        figures = {(s.name, s.labels.get("channel"), s.labels.get("activity")): s.value
                   for f in text_string_to_metric_families(text) for s in f.samples}
        assert figures[("sameday_writes_failing", "vk", "receive")] == 1
        assert figures[("sameday_writes_failing", "vk", "send")] == 0
        await undo()
        await inbox.ingest([inbound("m1", channel="vk")])
        status, _, body = await get(f"{url}/healthz")
        assert status == 200 and body["database"] == "ok", body
    finally:
        await server.stop()
        await store.close()
