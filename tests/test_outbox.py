"""The first dispatcher: hands due rows to the channel adapter and records the outcome."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from core.config.settings import OutboxSettings
from core.delivery.contract import ChannelAdapter, DeliveryError
from core.delivery.dispatcher import Dispatcher
from core.domain.records import Delivered, Outbound, OutboxState
from core.store.tables import Event, Outbox
from tests.conftest import make_settings
from tests.helpers import inbound, rows


class RecordingAdapter(ChannelAdapter):
    """Stands in for a platform adapter: records sends, fails as told."""

    name = "telegram"

    def __init__(self, failures: list[Exception] | None = None, delay: float = 0):
        self.sent: list[Outbound] = []
        self.failures = failures or []
        self.delay = delay

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        return [("per_bot", "bot")]

    async def send(self, outbound: Outbound) -> Delivered:
        await asyncio.sleep(self.delay)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(outbound)
        return Delivered(external_id=f"ext-{outbound.outbox_id}")

    async def start(self, context) -> None:
        """Nothing to receive."""

    async def stop(self) -> None:
        """Nothing to stop."""


def dispatcher(store, clock, adapter, idle_poll: float = 1.0, **settings) -> Dispatcher:
    return Dispatcher(store, clock, OutboxSettings(**settings),
                      {"telegram": adapter, "staff": adapter}, idle_poll=idle_poll)


async def test_rows_are_sent_and_marked_with_platform_id(inbox, store, clock):
    await inbox.ingest([inbound("m1"), inbound("m2", author="u2")])
    adapter = RecordingAdapter()
    assert await dispatcher(store, clock, adapter).dispatch_once() == 4
    sent = await rows(store, sa.select(Outbox).order_by(Outbox.id))
    assert all(r.state == OutboxState.SENT and r.external_id == f"ext-{r.id}" for r in sent)
    assert {o.kind for o in adapter.sent} == {"ack", "staff_card"}
    assert await dispatcher(store, clock, adapter).dispatch_once() == 0  # nothing twice


async def test_earliest_deadline_goes_first_within_a_lane(inbox, store, clock):
    await inbox.ingest([inbound("m1"), inbound("m2", author="u2")])
    await store_update_deadlines(store)
    adapter = RecordingAdapter()
    await dispatcher(store, clock, adapter).dispatch_once()
    queued = await rows(store, sa.select(Outbox))
    assert [o.outbox_id for o in adapter.sent] == [
        r.id for r in sorted(queued, key=lambda r: (r.lane, r.deadline_at))]
    # Both acknowledgements (the customer lane) before both cards, each by deadline.
    assert [o.kind for o in adapter.sent] == ["ack", "ack", "staff_card", "staff_card"]
    assert [o.ticket_id for o in adapter.sent] == [2, 1, 2, 1]


async def store_update_deadlines(store):
    # The second ticket's rows get the earlier deadlines, so they must go first.
    async with store.session() as session, session.begin():
        for row in await session.scalars(sa.select(Outbox)):
            row.deadline_at = row.deadline_at.replace(year=2030 if row.ticket_id == 1 else 2029)


async def test_temporary_error_is_retried_later(inbox, store, clock):
    await inbox.ingest([inbound("m1")])
    adapter = RecordingAdapter([DeliveryError("502 bad gateway")])
    await dispatcher(store, clock, adapter).dispatch_once()
    states = {r.kind: r for r in await rows(store, sa.select(Outbox))}
    failed = next(r for r in states.values() if r.state == OutboxState.RETRY)
    assert failed.last_error == "502 bad gateway" and failed.attempts == 1
    assert failed.next_attempt_at > clock.now()


async def test_retry_after_is_honoured(store, clock):
    d = dispatcher(store, clock, RecordingAdapter())
    assert d.backoff(1, retry_after=30) >= 30
    assert d.backoff(1, retry_after=None) <= 2


async def test_permanent_error_goes_dead_at_once(inbox, store, clock):
    await inbox.ingest([inbound("m1")])
    adapter = RecordingAdapter([DeliveryError("bot was blocked by the user", permanent=True)])
    await dispatcher(store, clock, adapter).dispatch_once()
    dead = await rows(store, sa.select(Outbox).where(Outbox.state == OutboxState.DEAD))
    assert len(dead) == 1 and dead[0].last_error == "bot was blocked by the user"


async def test_dead_after_max_attempts(inbox, store, clock):
    await inbox.ingest([inbound("m1")])
    adapter = RecordingAdapter([DeliveryError("timeout")] * 2)
    d = dispatcher(store, clock, adapter, max_attempts=1)
    await d.dispatch_once()
    dead = await rows(store, sa.select(Outbox).where(Outbox.state == OutboxState.DEAD))
    assert len(dead) == 2


async def test_adapter_crash_does_not_stop_other_rows(inbox, store, clock):
    await inbox.ingest([inbound("m1")])
    adapter = RecordingAdapter([RuntimeError("bug")])
    await dispatcher(store, clock, adapter).dispatch_once()
    states = sorted(r.state for r in await rows(store, sa.select(Outbox)))
    assert states == [OutboxState.RETRY, OutboxState.SENT]


async def test_rows_without_an_adapter_wait(inbox, store, clock):
    await inbox.ingest([inbound("v1", channel="vk")])
    d = Dispatcher(store, clock, OutboxSettings(), {"staff": RecordingAdapter()})
    await d.dispatch_once()
    [vk_row] = await rows(store, sa.select(Outbox).where(Outbox.channel == "vk"))
    assert vk_row.state == OutboxState.PENDING


async def test_two_dispatchers_never_send_a_row_twice(inbox, store, clock):
    await inbox.ingest([inbound(f"m{i}", author=f"u{i}") for i in range(20)])
    # Sends slow enough that one dispatcher cannot drain the queue before the other starts.
    first, second = RecordingAdapter(delay=0.05), RecordingAdapter(delay=0.05)
    stopping = asyncio.Event()
    # A pass locks every candidate row it looks at (SKIP LOCKED makes the other skip
    # them), so the other dispatcher must look again soon to find rows of its own.
    runs = [asyncio.create_task(dispatcher(store, clock, a, idle_poll=0.02).run(stopping))
            for a in (first, second)]
    for _ in range(200):
        if len(first.sent) + len(second.sent) >= 40:
            break
        await asyncio.sleep(0.05)
    stopping.set()
    await asyncio.gather(*runs)
    ids = [o.outbox_id for o in first.sent + second.sent]
    assert len(ids) == len(set(ids)) == 40
    assert first.sent and second.sent  # both took part


async def test_woken_dispatcher_sends_without_waiting_for_the_poll(inbox, store, clock):
    adapter = RecordingAdapter()
    d = Dispatcher(store, clock, OutboxSettings(), {"telegram": adapter, "staff": adapter},
                   idle_poll=60)
    inbox.on_outbox = d.wake
    stopping = asyncio.Event()
    task = asyncio.create_task(d.run(stopping))
    await asyncio.sleep(0.1)  # idle, waiting
    await inbox.ingest([inbound("m1")])
    for _ in range(100):
        if len(adapter.sent) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(adapter.sent) == 2
    stopping.set()
    await asyncio.wait_for(task, 5)


class PickyAdapter(RecordingAdapter):
    """Cannot address one row (a malformed target): rate_keys raises for it."""

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        if outbound.kind == "ack":
            raise ValueError("no chat in this target")
        return super().rate_keys(outbound)


async def test_a_row_the_adapter_cannot_address_is_dead_and_holds_up_nothing(inbox, store,
                                                                             clock):
    await inbox.ingest([inbound("m1")])
    adapter = PickyAdapter()
    d = dispatcher(store, clock, adapter)
    await d.dispatch_once()
    await d.dispatch_once()
    states = {r.kind: r for r in await rows(store, sa.select(Outbox))}
    assert states["ack"].state == OutboxState.DEAD
    assert "no chat in this target" in states["ack"].last_error
    assert states["staff_card"].state == OutboxState.SENT  # the row behind it went out
    [event] = await rows(store, sa.select(Event).where(Event.kind == "dead_letter"))
    assert event.data["outbox_id"] == states["ack"].id


class SlowToAddress(RecordingAdapter):
    """Takes its time inside the claim (a unit of work, in the database thread)."""

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        import time
        time.sleep(0.3)
        return super().rate_keys(outbound)


async def test_a_claim_cancelled_half_way_hands_its_rows_back(inbox, store, clock):
    """The claim commits in its database thread whatever becomes of the loop that asked
    (a daemon stopping past its grace cancels it): the rows go back to the queue, their
    attempt not counted, instead of waiting in "sending" to be recovered as a crash's."""
    await inbox.ingest([inbound("m1")])
    loop = dispatcher(store, clock, SlowToAddress()).loops["telegram"]
    claiming = asyncio.create_task(loop._claim(free=10))
    await asyncio.sleep(0.2)  # inside the unit now
    claiming.cancel()
    try:
        await claiming
        raise AssertionError("the claim was not cancelled")
    except asyncio.CancelledError:
        pass
    stored = await rows(store, sa.select(Outbox))
    assert stored and {(r.state, r.attempts, r.claimed_by) for r in stored} == {
        (OutboxState.PENDING, 0, None)}
    adapter = RecordingAdapter()
    assert await dispatcher(store, clock, adapter).dispatch_once() == len(stored)


async def test_a_loop_that_takes_over_counts_the_previous_owners_recent_sends(
        inbox, store, clock):
    """Another replica ran the channel until now: its sends of the last window count
    against the bot's limit here too (the platform counts the bot, not the process)."""
    await inbox.ingest([inbound(f"m{n}", author=f"u{n}") for n in range(3)])  # 6 rows
    outbox = make_settings(outbox={"limits": {"telegram": {"per_bot": "4/1m"}}}).outbox
    previous = RecordingAdapter()
    first = Dispatcher(store, clock, outbox, {"telegram": previous, "staff": previous})
    assert await first.dispatch_once() == 4  # the previous owner spent the minute's 4
    # The new owner's loop, as Dispatcher.serve starts it after a takeover.
    taking_over = Dispatcher(store, clock, outbox, {})
    adapter = RecordingAdapter()
    loop = taking_over.serve(["telegram", "staff"], adapter)
    try:
        await asyncio.sleep(1.5)  # its first passes
        assert adapter.sent == []  # the 2 still waiting wait for the window
        assert loop.limiter.ready_at([("per_bot", "bot")]) > loop.limiter.now() + 50
    finally:
        await taking_over.retire(loop, grace=5)
    assert loop.task.done() and "telegram" not in taking_over.loops
