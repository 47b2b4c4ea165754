"""Health and metrics over HTTP on ``[daemon] health_host:health_port`` (0 turns it off).

``GET /healthz`` answers 200 when the database takes a write (each check commits this
process's heartbeat row), every channel this replica runs receives, and no channel's
intake or dispatch is failing to commit; else 503 with the reasons: for a load balancer,
a container probe or an uptime check. ``runs`` names the channels this replica runs,
``standby`` the enabled ones another replica runs (core.app.ownership): not a problem.
Quarantined payloads are counted there, not judged: they are kept, and their channel
goes on.
``GET /metrics`` is the Prometheus text format.

The figures on /metrics come from the database, not from what this process did, so a
restart loses nothing and several replicas on one PostgreSQL all report the same true
totals (aggregate replicas with ``max``, not ``sum``). Only what a process alone knows --
its adapters' connections and failed polls, the payloads it left out -- comes from memory.

A scrape costs the same at a million tickets as at none: the counters are counted from
the tables once (at the start) and then only in the rows added since, by primary key
(``core.app.tallies``, which says per counter why that stays true); the gauges read only
what they count, through indexes that hold only that (migration 0015): the outbox rows
still waiting, today's tickets, the held quarantine. ``bench/metrics.py`` measures it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.app.endpoint import Answer, Endpoint
from core.app.tallies import Tallies, snapshot
from core.clock import Clock
from core.config.channels import installed_channels
from core.config.settings import ChannelsSettings, Settings
from core.delivery.contract import STAFF_CHANNEL, ChannelAdapter, ChannelHealth
from core.domain.kpi import Rate, local_day
from core.intake import quarantine
from core.retention.purge import KINDS as PURGE_KINDS
from core.store.engine import Store
from core.store.tables import OUTBOX_WAITING, Outbox, Ticket
from core.store.writes import RECEIVE, SEND

log = logging.getLogger(__name__)

STALE_FACTOR = 3  # missed polls before a channel counts as stale...
STALE_FLOOR = 60.0  # ...but never sooner than this many seconds
DATABASE_TIMEOUT = 5.0  # a probe must answer even when the database hangs

# Per-channel figures: (name, counter or gauge, help), in the order /metrics lists them.
CHANNEL_METRICS = [
    ("sameday_messages_received", "counter", "Customer messages stored."),
    ("sameday_tickets_opened", "counter", "Tickets opened."),
    ("sameday_tickets_acknowledged", "counter", "Tickets that were sent an acknowledgement."),
    ("sameday_tickets_answered", "counter", "Tickets with a first staff answer."),
    ("sameday_tickets_escalated", "counter", "Tickets on which an escalation rule fired."),
    ("sameday_dead_letters", "counter", "Outbox rows given up after the last attempt."),
    ("sameday_outbox_depth", "gauge", "Outbox rows waiting to be sent (pending or retry)."),
    ("sameday_outbox_oldest_due_age_seconds", "gauge",
     "Seconds the oldest due outbox row has been waiting (0 when none is due)."),
    ("sameday_tickets_opened_today", "gauge",
     "Tickets opened today (the local day of calendar.timezone)."),
    ("sameday_tickets_answered_same_day_today", "gauge",
     "Tickets opened today and first answered the same local day."),
    ("sameday_quarantined", "gauge",
     "Payloads that could not be read or stored, held in quarantine (sameday quarantine)."),
    ("sameday_poll_errors", "counter", "Failed receive polls since this process started."),
    ("sameday_channel_connected", "gauge", "1 when the channel receives, else 0."),
    ("sameday_channel_last_poll_ok_timestamp_seconds", "gauge",
     "Unix time of the channel's latest successful receive poll."),
]


# --- the staleness rule (pure) ----------------------------------------------------------


def poll_seconds(channels: ChannelsSettings, channel: str) -> float:
    """The longest a healthy channel goes between two successful polls: an idle long poll
    (Telegram, VK) answers after its wait; X is read every poll interval."""
    config = getattr(channels, channel, None)
    description = installed_channels().get(channel)
    field = description.poll_setting if description else None
    if config is None or field is None:
        return STALE_FLOOR / STALE_FACTOR
    return getattr(config, field).total_seconds()


def stale_after(poll: float) -> float:
    """Three missed polls make a channel stale, but never under a minute, so one slow
    answer or a short network blip does not wake anybody up."""
    return max(STALE_FACTOR * poll, STALE_FLOOR)


def judge_channel(name: str, report: ChannelHealth | None, now: datetime,
                  stale: float, running_since: datetime) -> tuple[dict[str, Any], list[str]]:
    """One channel's /healthz entry, and what is wrong with it (empty when healthy).

    A channel that has not polled successfully yet is given the staleness window from the
    daemon's start: the first Telegram long poll may take its whole wait to answer.
    """
    if report is None:  # an adapter without health(): listed, never judged
        return {"connected": None, "last_poll_ok": None, "last_poll_age_seconds": None}, []
    last_ok = report.last_poll_ok
    age = (now - last_ok).total_seconds() if last_ok else None
    entry = {"connected": report.connected,
             "last_poll_ok": last_ok.isoformat() if last_ok else None,
             "last_poll_age_seconds": round(age, 1) if age is not None else None,
             "stale_after_seconds": stale, "poll_errors": report.poll_errors}
    reasons = []
    if report.problem:
        entry["problem"] = report.problem
        reasons.append(f"{name}: {report.problem}")
    if not entry["connected"]:
        reasons.append(f"{name}: not connected (its latest poll failed or polling stopped)")
    if age is not None and age > stale:
        reasons.append(f"{name}: last successful poll {age:.0f}s ago (stale after {stale:.0f}s)")
    elif age is None and (now - running_since).total_seconds() > stale:
        reasons.append(f"{name}: no successful poll since the start")
    return entry, reasons


# --- /metrics ------------------------------------------------------------------------------


class DatabaseCollector(Collector):
    """Figures from the database and the adapters as Prometheus metric families.

    The database is async and prometheus_client's ``collect`` is not: each scrape first
    awaits ``refresh`` and then renders, with no await in between, so ``collect`` always
    sees one consistent reading. The counters come from ``core.app.tallies`` (counted
    once, then by what was added since); the gauges from queries through indexes that
    hold only what they count.
    """

    def __init__(self, store: Store, clock: Clock, settings: Callable[[], Settings],
                 channels: Callable[[], Mapping[str, ChannelAdapter]],
                 ignored: Mapping[tuple[str, str], int] | None = None):
        self.store = store
        self.ignored = ignored if ignored is not None else {}
        self.clock = clock
        self.settings = settings
        self.channels = channels
        self.database_up = False
        self.figures: dict[str, dict[str, float]] = {}
        self.noted: dict[tuple[str, str], float] = {}  # stored non-tickets by channel, kind
        # What the retention purge emptied so far, by kind, and its latest run.
        self.purged: dict[str, int] = {}
        self.purged_at: datetime | None = None
        self.tallies = Tallies()
        self._reading: asyncio.Task | None = None

    def start_reading(self) -> None:
        """Count the tables now (the daemon's start), not at the first scrape."""
        self._read()

    async def close(self) -> None:
        if self._reading is not None and not self._reading.done():
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reading

    async def refresh(self) -> None:
        enabled = list(self.settings().channels.enabled())
        figures: dict[str, dict[str, float]] = {
            name: dict.fromkeys(enabled, 0.0) for name, _, _ in CHANNEL_METRICS}
        try:
            # Shielded: a reading that outlasts the timeout (the first count of a large
            # database, a slow disk) goes on, and the next scrape awaits the same one.
            gauges = await asyncio.wait_for(asyncio.shield(self._read()), DATABASE_TIMEOUT)
            self.database_up = True
        except TimeoutError:
            if self.tallies.counted:
                log.warning("metrics: the database does not answer within %.0fs",
                            DATABASE_TIMEOUT)
            else:
                log.warning("metrics: still counting the tables (the first count since the "
                            "start); the figures follow at a later scrape")
            gauges, self.database_up = {}, False
        except Exception as error:
            log.warning("metrics: the database does not answer (%s: %s)",
                        type(error).__name__, error)
            gauges, self.database_up = {}, False
        # Counters as of the latest reading: still true (if late) when this one failed.
        for name, values in {**self.tallies.channel_figures(), **gauges}.items():
            figures[name].update(values)
        ages = figures["sameday_outbox_oldest_due_age_seconds"]
        figures["sameday_outbox_oldest_due_age_seconds"] = {
            channel: ages.get(channel, 0.0) for channel in figures["sameday_outbox_depth"]}
        self.noted = self.tallies.noted()
        self.purged, self.purged_at = self.tallies.purged()
        figures.update(self._adapter_figures())
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("sameday_database_up", "1 when the database answered this "
                                "scrape, else 0 (the database figures are then absent).",
                                value=1 if self.database_up else 0)
        failing = GaugeMetricFamily(
            "sameday_writes_failing", "1 while this process's latest commit of a channel's "
            "receiving or sending failed (a full disk, a read-only database), else 0.",
            labels=["channel", "activity"])
        now_failing = self.store.writes.failing()
        for channel in sorted(self.figures.get("sameday_outbox_depth", {})):
            for activity in (RECEIVE, SEND):
                failing.add_metric([channel, activity],
                                   1 if (channel, activity) in now_failing else 0)
        yield failing
        left_out = CounterMetricFamily(
            "sameday_ignored", "Payloads that are not for the inbox, by kind (group chatter, "
            "bots, retweets, event types not read), since this process started.",
            labels=["channel", "kind"])
        for (channel, kind), count in sorted(self.ignored.items()):
            left_out.add_metric([channel, kind], count)
        yield left_out
        kept = CounterMetricFamily(
            "sameday_noted", "Posts kept as non-tickets (no ticket, no acknowledgement), "
            "by kind (retweet, quote).", labels=["channel", "kind"])
        for (channel, kind), count in sorted(self.noted.items()):
            kept.add_metric([channel, kind], count)
        yield kept
        if self.database_up and self.purged:
            purged = CounterMetricFamily(
                "sameday_purged", "What the retention purge emptied ([retention]): message "
                "texts, raw payloads, media (attachments) and copies of texts (sent rows, "
                "edit history, survey comments).", labels=["kind"])
            for kind in PURGE_KINDS:
                purged.add_metric([kind], self.purged.get(kind, 0))
            yield purged
        if self.database_up and self.purged_at is not None:
            yield GaugeMetricFamily(
                "sameday_retention_last_run_timestamp_seconds",
                "Unix time of the latest retention purge run (absent before the first).",
                value=self.purged_at.timestamp())
        for name, kind, help_text in CHANNEL_METRICS:
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(name, help_text, labels=["channel"])
            for channel, value in sorted(self.figures.get(name, {}).items()):
                family.add_metric([channel], value)
            yield family
        opened = sum(self.figures.get("sameday_tickets_opened_today", {}).values())
        if self.database_up and opened:
            same_day = sum(self.figures["sameday_tickets_answered_same_day_today"].values())
            rate = Rate(int(same_day), int(opened))
            yield GaugeMetricFamily(
                "sameday_same_day_rate", "Share of today's tickets first answered the same "
                "local day (absent before the day's first ticket).", value=rate.fraction)

    def _adapter_figures(self) -> dict[str, dict[str, float]]:
        errors, connected, last_ok = {}, {}, {}
        for name, adapter in self.channels().items():
            report = adapter.health()
            if report is None:
                continue
            errors[name] = float(report.poll_errors)
            connected[name] = 1.0 if report.connected else 0.0
            if report.last_poll_ok is not None:
                last_ok[name] = report.last_poll_ok.timestamp()
        return {"sameday_poll_errors": errors, "sameday_channel_connected": connected,
                "sameday_channel_last_poll_ok_timestamp_seconds": last_ok}

    def _read(self) -> asyncio.Task:
        """The reading under way, or a new one: never two at once (the counters are
        brought up to the database by one reading at a time)."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read_database())
            # Retrieved here too, so a reading nobody awaited (a start with the database
            # down) does not end as "exception never retrieved".
            self._reading.add_done_callback(
                lambda task: task.cancelled() or task.exception())
        return self._reading

    async def _read_database(self) -> dict[str, dict[str, float]]:
        now = self.clock.now()
        await self.tallies.read(self.store, now)
        return await self._gauges(now)

    async def _gauges(self, now: datetime) -> dict[str, dict[str, float]]:
        """What is waiting now and what happened today, through indexes that hold only
        that: the outbox rows still waiting (``ix_outbox_waiting``), today's tickets
        (``ix_ticket_opened``), the quarantine's held payloads (its state index)."""
        day_start, day_end = local_day(now, ZoneInfo(self.settings().calendar.timezone))
        depth, ages, opened, answered = {}, {}, {}, {}
        async with snapshot(self.store) as session:
            for channel, count, earliest in await session.execute(outbox_waiting()):
                depth[channel] = float(count)
                # The earliest waiting row is the oldest due one when its time has come.
                ages[channel] = max(0.0, (now - earliest).total_seconds())
            for channel, count, answered_count in await session.execute(
                    tickets_of_the_day(day_start, day_end)):
                opened[channel] = float(count)
                if answered_count:
                    answered[channel] = float(answered_count)
            held = await quarantine.held_counts(session)
        return {"sameday_outbox_depth": depth, "sameday_outbox_oldest_due_age_seconds": ages,
                "sameday_tickets_opened_today": opened,
                "sameday_tickets_answered_same_day_today": answered,
                "sameday_quarantined": {channel: float(n) for channel, n in held.items()}}


def outbox_waiting() -> sa.Select:
    """(channel, rows waiting, the earliest one's send time) through ix_outbox_waiting;
    OUTBOX_WAITING word for word: SQLite uses the partial index only then."""
    return (sa.select(Outbox.channel, sa.func.count(), sa.func.min(Outbox.next_attempt_at))
            .where(sa.text(OUTBOX_WAITING)).group_by(Outbox.channel))


def tickets_of_the_day(day_start: datetime, day_end: datetime) -> sa.Select:
    """(channel, tickets opened in the day, of those first answered in it) through
    ix_ticket_opened; kpi.answered_same_day as a query: answered before the day ends."""
    same_day = sa.func.sum(sa.case((Ticket.first_response_at < day_end, 1), else_=0))
    return (sa.select(Ticket.channel, sa.func.count(), same_day)
            .where(Ticket.opened_at >= day_start, Ticket.opened_at < day_end,
                   Ticket.merged_into.is_(None)).group_by(Ticket.channel))


# --- the HTTP server -----------------------------------------------------------------------


class HealthServer:
    """/healthz and /metrics (core.app.endpoint), started and stopped by the daemon."""

    def __init__(self, store: Store, settings: Settings, clock: Clock,
                 adapters: Mapping[str, ChannelAdapter],
                 ignored: Mapping[tuple[str, str], int] | None = None,
                 channels: list[str] | None = None):
        self.store = store
        # The enabled channels; those without an adapter here are run by another replica.
        self.enabled = channels
        self.settings = settings
        self.clock = clock
        self.adapters = adapters  # the daemon's own dict: read afresh at every request
        self.running_since = clock.now()
        # The adapters poll with the channel settings they started with (channel settings
        # change on restart only), so staleness is judged by those too.
        self.polled_with = settings.channels
        # Our own registry: the global default would add this process's Python and GC
        # figures, and tests that start several daemons would collide in it.
        self.registry = CollectorRegistry()
        self.collector = DatabaseCollector(store, clock, lambda: self.settings, self.channels,
                                           ignored)
        self.registry.register(self.collector)
        self.endpoint = Endpoint({"/healthz": self._healthz, "/metrics": self._metrics})
        self.port = 0

    def reconfigure(self, settings: Settings) -> None:
        """A config reload: calendar.timezone applies at once; the host and port, like
        the channel settings, only on restart."""
        self.settings = settings

    def channels(self) -> dict[str, ChannelAdapter]:
        # The staff chat is a second name for an adapter, not a channel of its own.
        return {name: a for name, a in self.adapters.items() if name != STAFF_CHANNEL}

    async def start(self) -> bool:
        """Listen; False (logged) if the address is taken: support goes on without it."""
        host, port = self.settings.daemon.health_host, self.settings.daemon.health_port
        try:
            self.port = await self.endpoint.start(host, port)
        except OSError as error:
            log.error("health endpoint NOT started: cannot listen on %s:%s (%s); change "
                      "[daemon] health_port or set it to 0", host, port, error.strerror or error)
            await self.stop()
            return False
        log.info("health on http://%s:%d/healthz, metrics on /metrics", host, self.port)
        self.collector.start_reading()  # the counters' first count, before the first scrape
        return True

    async def stop(self) -> None:
        await self.collector.close()
        await self.endpoint.stop()

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the /healthz body)."""
        reasons = []
        database = await self._database_status()
        if database != "ok":
            reasons.append(f"database: {database}")
        now = self.clock.now()
        channels = {}
        for name, adapter in self.channels().items():
            stale = stale_after(poll_seconds(self.polled_with, name))
            channels[name], problems = judge_channel(name, adapter.health(), now,
                                                     stale, self.running_since)
            channels[name]["writes_failing"] = []
            reasons += problems
        for (channel, activity), failure in sorted(self.store.writes.failing().items()):
            what = "storing received messages" if activity == RECEIVE else "recording sends"
            reasons.append(f"{channel}: {what} fails since {failure.since:%H:%M:%S}Z: "
                           f"{failure.reason}")
            if channel in channels:
                channels[channel]["writes_failing"].append(activity)
        body: dict[str, Any] = {"status": "unhealthy" if reasons else "ok",
                                "database": database, "channels": channels,
                                "runs": sorted(channels),
                                "standby": sorted(set(self.enabled or channels) - set(channels)),
                                "quarantined": await self._quarantined()}
        if reasons:
            body["reasons"] = reasons
        return not reasons, body

    async def _quarantined(self) -> dict[str, int] | None:
        """Held payloads by channel; None when the database cannot say."""
        try:
            async with snapshot(self.store) as session:
                return await asyncio.wait_for(quarantine.held_counts(session), DATABASE_TIMEOUT)
        except Exception:
            return None

    async def _database_status(self) -> str:
        try:
            await asyncio.wait_for(self.store.beat(self.clock.now()),
                                   DATABASE_TIMEOUT)
        except TimeoutError:
            return f"no answer within {DATABASE_TIMEOUT:.0f}s"
        except Exception as error:
            log.warning("healthz: the database does not take a write (%s: %s)",
                        type(error).__name__, error)
            first_line = str(error).splitlines()[0][:200] if str(error) else ""
            return f"error: {type(error).__name__}: {first_line}".rstrip(": ")
        return "ok"

    async def _healthz(self) -> Answer:
        healthy, body = await self.check()
        return Answer(200 if healthy else 503, "application/json; charset=utf-8",
                      json.dumps(body).encode())

    async def _metrics(self) -> Answer:
        await self.collector.refresh()
        return Answer(200, CONTENT_TYPE_LATEST, generate_latest(self.registry))
