"""Run one real adapter with the real core (inbox, dispatcher) against its emulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from core.clock import SystemClock
from core.config.settings import Settings
from core.delivery.contract import STAFF_CHANNEL, AdapterContext, ChannelAdapter
from core.delivery.dispatcher import Dispatcher
from core.domain.policy import Policy
from core.intake.inbox import Inbox
from core.staff.board import StaffNotices
from core.store.engine import Store


@dataclass
class Harness:
    inbox: Inbox
    dispatcher: Dispatcher
    store: Store

    async def scalar(self, statement):
        async with self.store.session() as session:
            return await session.scalar(statement)

    async def rows(self, statement) -> list:
        async with self.store.session() as session:
            return list(await session.scalars(statement))

    async def count(self, table, *where) -> int:
        return await self.scalar(sa.select(sa.func.count()).select_from(table).where(*where))


@asynccontextmanager
async def running(adapter: ChannelAdapter, store: Store, settings: Settings, *,
                  staff: bool = False) -> AsyncIterator[Harness]:
    """Start the adapter with an inbox and a dispatcher; stop all of it on exit.

    With ``staff=True`` the adapter also receives the staff-chat rows (as the Telegram
    adapter does in the daemon); otherwise those rows simply wait.
    """
    clock = SystemClock()
    adapters = {adapter.name: adapter, **({STAFF_CHANNEL: adapter} if staff else {})}
    dispatcher = Dispatcher(store, clock, settings.outbox, adapters, idle_poll=0.2,
                            listener=StaffNotices(lambda: Policy(settings)))
    inbox = Inbox(store, settings, clock, on_outbox=dispatcher.wake)
    await adapter.start(AdapterContext(settings=settings, clock=clock, ingest=inbox.ingest,
                                       load_cursor=inbox.load_cursor, ignore=inbox.ignore))
    stopping = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stopping))
    try:
        yield Harness(inbox, dispatcher, store)
    finally:
        stopping.set()
        await adapter.stop()
        await asyncio.wait_for(task, 10)
        await inbox.drain()


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 15,
                     what: str = "condition") -> None:
    """Wait until `check()` is true (it may be async); fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@asynccontextmanager
async def running_all(adapters: list[ChannelAdapter], store: Store, settings: Settings, *,
                      reload_config=None) -> AsyncIterator[Harness]:
    """Several adapters with one inbox, one staff desk and one dispatcher, wired like the
    daemon: the Telegram adapter also carries the staff chat."""
    from core.staff.commands import StaffDesk

    clock = SystemClock()
    by_name = {adapter.name: adapter for adapter in adapters}
    if settings.staff.chat in by_name:
        by_name[STAFF_CHANNEL] = by_name[settings.staff.chat]
    wake = []
    inbox = Inbox(store, settings, clock, on_outbox=lambda: wake and wake[0]())
    desk = StaffDesk(store, settings, clock, on_outbox=lambda: wake and wake[0]())
    context = AdapterContext(settings=settings, clock=clock, ingest=inbox.ingest,
                             load_cursor=inbox.load_cursor, staff_desk=desk,
                             reload_config=reload_config, ignore=inbox.ignore)
    for adapter in adapters:
        await adapter.start(context)
    dispatcher = Dispatcher(store, clock, settings.outbox, by_name, idle_poll=0.2,
                            listener=StaffNotices(lambda: desk.policy))
    wake.append(dispatcher.wake)
    stopping = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stopping))
    harness = Harness(inbox, dispatcher, store)
    harness.desk = desk
    try:
        yield harness
    finally:
        stopping.set()
        for adapter in adapters:
            await adapter.stop()
        await asyncio.wait_for(task, 10)
        await inbox.drain()
