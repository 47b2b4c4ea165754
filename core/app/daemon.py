"""The long-lived daemon: wires the store, inbox, dispatcher and channel adapters.

Signals: SIGTERM and SIGINT stop it cleanly (adapters stop receiving, transactions in
flight finish, exit code 0); SIGHUP reloads the config file (a broken file keeps the
old config running and the reason is logged).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.app import reloads
from core.app.ownership import Ownership
from core.clock import Clock, SystemClock
from core.config.load import ConfigError, load_settings
from core.config.settings import Settings
from core.delivery.contract import (
    STAFF_CHANNEL,
    AdapterContext,
    AdapterFactory,
    ChannelAdapter,
    adapter_factories,
)
from core.delivery.dispatcher import ChannelLoop, Dispatcher
from core.escalation.sweep import Escalator
from core.intake.inbox import Inbox
from core.retention.purge import Retention
from core.staff.board import StaffNotices
from core.staff.commands import StaffDesk
from core.store.engine import Store, is_sqlite, is_transient, private_sqlite_file
from core.store.revision import schema_is_current

if TYPE_CHECKING:
    from core.app.health import HealthServer

log = logging.getLogger(__name__)

PURGE_FIRST_AFTER = timedelta(minutes=5)  # the daily purge: not in the start's rush


class Daemon:
    def __init__(self, config_path: str | Path, settings: Settings, *,
                 clock: Clock | None = None,
                 factories: dict[str, AdapterFactory] | None = None):
        self.config_path = Path(config_path)
        self.settings = settings
        self.clock = clock or SystemClock()
        self.factories = factories if factories is not None else adapter_factories()
        self.stopping = asyncio.Event()
        self.adapters: dict[str, ChannelAdapter] = {}
        self.reload_listeners: list[Callable[[Settings], None]] = []
        self.store: Store | None = None
        self.inbox: Inbox | None = None
        self.desk: StaffDesk | None = None
        self.escalator: Escalator | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self._sweeping = self._sweep_again = False
        self._sweep_task: asyncio.Task | None = None
        self.retention: Retention | None = None
        self._purge_task: asyncio.Task | None = None
        self._last_reload_error = ""
        self._config_version = 0  # the shared config version this process runs
        self._announcing: asyncio.Task | None = None
        self.dispatcher: Dispatcher | None = None
        self.context: AdapterContext | None = None  # what each channel's adapter is given
        self._loops: dict[str, ChannelLoop] = {}  # the dispatch loops of the owned channels
        self._terms_over = asyncio.Event()
        self.ownership: Ownership | None = None
        self._owning: asyncio.Task | None = None
        self._beating: asyncio.Task | None = None
        self.health: HealthServer | None = None

    async def run(self) -> int:
        """Run until stopped; return the process exit code."""
        self._install_signal_handlers()
        self.store = Store(self.settings.database)
        try:
            if not await self._upgrade_when_available():
                return 0  # stopped while waiting for the database
            await self._start()
            log.info("sameday is running (channels: %s; run here: %s)",
                     ", ".join(self.ownership.channels) or "none",
                     ", ".join(self.ownership.owned) or "none yet")
            await self.stopping.wait()
            log.info("stopping")
            await self._shutdown()
        finally:
            await self.store.close()
        log.info("stopped")
        return 0

    def stop(self) -> None:
        self.stopping.set()

    async def _upgrade_when_available(self) -> bool:
        """Migrate at start, waiting out a database that is unavailable for now (down,
        disk full): the daemon starts when it answers instead of exiting. False if
        stopped first; any other error (a broken schema) stops the start."""
        delay = 0.5
        while True:
            try:
                await self._upgrade()
                return True
            except Exception as error:
                if not is_transient(error):
                    raise
                log.error("the database is unavailable at start (%s); retrying in %.0fs",
                          str(error).splitlines()[0][:200], delay)
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
                return False
            except TimeoutError:
                delay = min(delay * 2, 30.0)

    async def _upgrade(self) -> None:
        """Apply pending migrations. Most starts have none: then alembic is not loaded at
        all (it would stay in the process's memory, about 10 MB, for nothing) and only
        the SQLite file is made private, as a migration does (core.store.revision)."""
        database = self.settings.database
        if await asyncio.to_thread(schema_is_current, database):
            if is_sqlite(database.url):
                private_sqlite_file(database.url)
            return
        await self.store.upgrade()

    def reload_for_staff(self) -> str | None:
        """/reload from the staff chat: None on success, else the problems."""
        return None if self.reload() else self._last_reload_error

    def reload(self, announce: bool = True) -> bool:
        """Re-read the config file; keep the running config if the new one is broken.
        ``announce``: tell the other replicas to reload theirs (core.app.reloads)."""
        try:
            new = load_settings(self.config_path)
        except ConfigError as error:
            log.error("config reload refused, the old config stays in force:\n%s", error)
            self._last_reload_error = str(error)
            return False
        if new.database != self.settings.database or \
                new.channels != self.settings.channels:
            log.warning("database and channel settings change only on restart")
        self.settings = new
        if self.inbox:
            self.inbox.reconfigure(new)
        if self.desk:
            self.desk.reconfigure(new)
        if self.escalator:
            self.escalator.reconfigure(new)
            # New calendar and rules apply to the tickets already waiting.
            self._recompute = asyncio.get_running_loop().create_task(self._recompute_open())
        if self.dispatcher:
            self.dispatcher.settings = new.outbox
        for listener in self.reload_listeners:
            listener(new)
        log.info("config reloaded from %s", self.config_path)
        if announce and self.store is not None:
            self._announcing = asyncio.get_running_loop().create_task(self._announce())
        return True

    async def _announce(self) -> None:
        try:
            self._config_version = await reloads.announce(self.store)
        except Exception:  # the others then follow at the next reload
            log.exception("could not tell the other replicas about the reload")

    async def _follow_reloads(self) -> None:
        """Another replica reloaded the config: reload ours (core.app.reloads)."""
        if self.stopping.is_set():
            return
        try:
            version = await reloads.current(self.store)
        except Exception:  # the database may be briefly unavailable; the next check retries
            return
        if version != self._config_version:
            self._config_version = version
            log.info("another replica reloaded the config (version %d): reloading %s",
                     version, self.config_path)
            self.reload(announce=False)

    async def _recompute_open(self) -> None:
        try:
            count = await self.escalator.recompute_open_tickets()
            log.info("promises and escalations recomputed for %d waiting tickets", count)
        except Exception:
            log.exception("could not recompute the waiting tickets after the reload")

    async def _start(self) -> None:
        assert self.store is not None
        self.inbox = Inbox(self.store, self.settings, self.clock, on_outbox=self._on_change)
        self.desk = StaffDesk(self.store, self.settings, self.clock, on_outbox=self._on_change)
        self.context = AdapterContext(
            settings=self.settings, clock=self.clock, ingest=self.inbox.ingest,
            load_cursor=self.inbox.load_cursor, staff_desk=self.desk,
            reload_config=self.reload_for_staff, ignore=self.inbox.ignore)
        channels = self.settings.channels.enabled()
        for name in channels:
            if name not in self.factories:
                raise RuntimeError(f"no adapter is installed for channel {name!r}")
        self.dispatcher = Dispatcher(self.store, self.clock, self.settings.outbox, {},
                                     listener=StaffNotices(lambda: self.desk.policy))
        self._beating = asyncio.create_task(self.dispatcher.beat_until(self._terms_over),
                                            name="heartbeat")
        if self.settings.daemon.health_port:
            # Imported only when enabled: prometheus_client and the metrics code (~1 MB).
            from core.app.health import HealthServer

            self.health = HealthServer(self.store, self.settings, self.clock, self.adapters,
                                       ignored=self.inbox.ignored, channels=channels)
            self.reload_listeners.append(self.health.reconfigure)
            await self.health.start()
        # Which channels this replica runs (core.app.ownership): all of them on SQLite; on
        # PostgreSQL those whose lock it holds, taken over when their owner dies.
        locks = None
        if not self.store.is_sqlite:
            from core.store.locks import ChannelLocks  # psycopg: PostgreSQL only

            locks = ChannelLocks(self.settings.database.url)
        self.ownership = Ownership(channels, locks, self._begin_term, self._end_term)
        if locks is None:
            await self.ownership.check()  # at once: nothing to wait for
        self._owning = asyncio.create_task(self.ownership.run(self.stopping), name="ownership")
        self.escalator = Escalator(self.store, self.settings, self.clock,
                                   on_outbox=self._wake_dispatcher)
        self.retention = Retention(self.store, self.clock)
        self._config_version = await reloads.current(self.store)
        self._start_scheduler()

    async def _begin_term(self, name: str) -> None:
        """This replica took the channel: a fresh adapter receives, and a dispatch loop
        sends its rows (and the staff chat's, when it is this channel's)."""
        adapter = self.factories[name](self.settings)
        try:
            await adapter.start(self.context)
        except BaseException:
            await adapter.stop()  # what it started before failing
            raise
        served = [name, STAFF_CHANNEL] if self.settings.staff.chat == name else [name]
        for channel in served:
            self.adapters[channel] = adapter
        self._loops[name] = self.dispatcher.serve(served, adapter)

    async def _end_term(self, name: str, handover: bool) -> None:
        """Stop the channel here. Handed over (a stop, the lock still ours): the sends in
        flight finish, then receiving stops (stopping an adapter closes its client).
        Lost (the lock may be another replica's already): receiving stops at once, so a
        long poll is cut before the next owner opens one; the sends it cuts are
        recovered as a crash's."""
        grace = self.settings.daemon.shutdown_grace.total_seconds()
        loop = self._loops.pop(name)
        loop.retiring.set()  # no new claims
        for channel in loop.channels:
            self.adapters.pop(channel, None)
        if handover:
            await self.dispatcher.retire(loop, grace)
        try:
            await asyncio.wait_for(loop.adapter.stop(), grace)
        except Exception:
            log.exception("adapter %s did not stop cleanly", name)
        if not handover:
            await self.dispatcher.retire(loop, grace)

    def _start_scheduler(self) -> None:
        """APScheduler 3 with its in-memory job store: the state lives in our tables."""
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.add_job(self._sweep, "interval", id="sweep", max_instances=1,
                               coalesce=True, next_run_time=datetime.now(UTC),
                               seconds=self.settings.daemon.sweep_interval.total_seconds())
        self.scheduler.add_job(self._follow_reloads, "interval", id="reloads",
                               max_instances=1, coalesce=True,
                               seconds=reloads.CHECK_SECONDS)
        # The retention purge ([retention]): daily, the first a while after the start.
        self.scheduler.add_job(self._purge, "interval", id="retention", max_instances=1,
                               coalesce=True, days=1,
                               next_run_time=datetime.now(UTC) + PURGE_FIRST_AFTER)
        self.scheduler.start()

    async def _purge(self) -> None:
        """Empty what [retention] no longer keeps, in short batches (core.retention)."""
        if self.stopping.is_set() or self.retention is None:
            return
        self._purge_task = asyncio.current_task()
        try:
            await self.retention.run(self.settings.retention, stopping=self.stopping.is_set)
        except Exception:  # the database may be briefly unavailable; tomorrow's run retries
            log.exception("retention purge failed")
        finally:
            self._purge_task = None

    async def _sweep(self) -> None:
        """Fire due escalations, then wake up again at the next due time."""
        if self.stopping.is_set():
            return
        if self._sweeping:  # asked again while running: run once more when done
            self._sweep_again = True
            return
        self._sweeping = True
        self._sweep_task = asyncio.current_task()
        try:
            while True:
                self._sweep_again = False
                await self.escalator.sweep()
                if not self._sweep_again:
                    break
            due = await self.escalator.next_due()
        except Exception:  # the database may be briefly unavailable; the next run retries
            log.exception("escalation sweep failed")
            return
        finally:
            self._sweeping = False
        if due is not None:
            # The sweep runs on the core's clock (virtual in the demo); the scheduler on
            # real time.
            delay = max(0.0, self.clock.real_seconds((due - self.clock.now()).total_seconds()))
            self._schedule_sweep(datetime.now(UTC) + timedelta(seconds=delay))

    def _wake_dispatcher(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def _on_change(self) -> None:
        """New messages or staff actions: deliver what they queued, and let the sweep plan
        the escalations of new or changed tickets now."""
        self._wake_dispatcher()
        if self._sweeping:
            self._sweep_again = True
        else:
            self._schedule_sweep(datetime.now(UTC))

    def _schedule_sweep(self, run_date: datetime) -> None:
        if self.scheduler is not None and self.scheduler.running \
                and not self.stopping.is_set():
            self.scheduler.add_job(self._sweep, "date", id="wake", replace_existing=True,
                                   run_date=run_date)

    async def _shutdown(self) -> None:
        grace = self.settings.daemon.shutdown_grace.total_seconds()
        if self.scheduler is not None:
            self.scheduler.pause()  # no new sweep starts
        if self._sweeping and self._sweep_task is not None:
            # A sweep in flight finishes its transaction before the database closes (an
            # abandoned connection would keep its thread, and the process, alive), and
            # before the scheduler's shutdown, which would cancel it half-way.
            try:
                await asyncio.wait_for(asyncio.shield(self._sweep_task), grace)
            except (TimeoutError, Exception):
                log.warning("the escalation sweep did not finish within %.0fs", grace)
        if self._purge_task is not None:  # stops after its current batch
            try:
                await asyncio.wait_for(asyncio.shield(self._purge_task), grace)
            except (TimeoutError, Exception):
                log.warning("the retention purge did not finish within %.0fs", grace)
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self._owning is not None:
            await self._owning  # stopping: every channel stopped here and given up
        self._terms_over.set()  # sends in flight at shutdown are still ours: beat till here
        if self._beating is not None:
            await self._beating
        if self.inbox:
            await self.inbox.drain()
        if self.health is not None:
            await self.health.stop()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
