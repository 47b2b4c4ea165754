"""Escalation rules, the sweep that fires them exactly once, cycles, snooze, reload."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from core.clock import VirtualClock
from core.domain.records import OutboxKind, TicketStatus
from core.escalation.sweep import Escalator
from core.intake.inbox import Inbox
from core.staff.cards import Button, StaffMessage
from core.staff.commands import Actor, StaffDesk
from core.store.tables import Escalation, Outbox, Ticket
from tests.conftest import make_settings
from tests.helpers import inbound, rows

MSK = ZoneInfo("Europe/Moscow")
STAFF = {"chat": "console", "members": [
    {"name": "anna", "telegram_id": 111, "role": "admin"}, {"name": "lead", "role": "admin"}]}
LEVELS = [
    {"name": "reminder", "after": "2h", "clock": "business", "mention": ["anna"]},
    {"name": "warning", "before_due": "1h", "raise_priority": "high"},
    {"name": "breach", "at_due": True, "mention": ["lead"], "assign": "lead"},
]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=MSK).astimezone(UTC)


class World:
    def __init__(self, store, start: datetime, rules: list[dict], **config):
        self.clock = VirtualClock(start)
        self.settings = make_settings(staff=STAFF, escalation=rules, **config)
        self.inbox = Inbox(store, self.settings, self.clock)
        self.desk = StaffDesk(store, self.settings, self.clock)
        self.escalator = Escalator(store, self.settings, self.clock)
        self.store = store

    async def message(self, external_id: str = "m1", author: str = "u1", text: str = "help"):
        await self.inbox.ingest([inbound(external_id, author=author, text=text,
                                         at=self.clock.now())])

    async def at(self, moment: datetime) -> list[str]:
        self.clock.set(moment)
        return [f.rule for f in await self.escalator.sweep()]

    async def ticket(self, ticket_id: int = 1) -> Ticket:
        [ticket] = await rows(self.store, sa.select(Ticket).where(Ticket.id == ticket_id))
        return ticket

    async def command(self, line: str) -> None:
        reply = await self.desk.execute(Actor("anna", "admin"), line)
        assert reply.ok, reply.text


async def test_levels_fire_in_order_each_at_its_time(store):
    world = World(store, at(24, 10), LEVELS)  # Tuesday 10:00: due today 18:00
    await world.message()
    assert await world.at(at(24, 10)) == []
    assert await world.at(at(24, 11, 59)) == []
    assert await world.at(at(24, 12)) == ["reminder"]  # 2 business hours in
    assert await world.at(at(24, 16, 59)) == []
    assert await world.at(at(24, 17)) == ["warning"]  # 1 hour before the promise
    assert (await world.ticket()).priority == "high"
    assert await world.at(at(24, 18)) == ["breach"]  # the promise itself
    ticket = await world.ticket()
    assert ticket.escalation_level == 3 and ticket.assignee == "lead"
    assert ticket.next_escalation_at is None  # nothing left in this cycle
    assert await world.at(at(25, 12)) == []


async def test_business_clock_skips_nights_and_wall_clock_does_not(store):
    world = World(store, at(24, 17, 30), [
        {"name": "business", "after": "1h", "clock": "business"},
        {"name": "wall", "after": "1h", "clock": "wall"}])
    await world.message()
    assert await world.at(at(24, 18, 30)) == ["wall"]
    assert await world.at(at(25, 9, 29)) == []
    assert await world.at(at(25, 9, 30)) == ["business"]  # 30 min Tue + 30 min Wed


async def test_business_hours_only_waits_for_the_next_opening(store):
    world = World(store, at(24, 17, 30), [
        {"name": "night", "after": "2h", "clock": "wall", "business_hours_only": True}])
    await world.message()
    assert await world.at(at(24, 19, 30)) == []  # due at 19:30, but the team is gone
    assert await world.at(at(25, 9)) == ["night"]


async def test_each_rule_fires_once_even_when_swept_again_or_twice_at_once(store):
    world = World(store, at(24, 10), LEVELS)
    await world.message()
    world.clock.set(at(24, 18))
    twin = Escalator(store, world.settings, world.clock)
    results = await asyncio.gather(world.escalator.sweep(), twin.sweep())
    assert sorted(f.rule for batch in results for f in batch) == ["breach", "reminder",
                                                                   "warning"]
    assert await world.escalator.sweep() == []
    assert len(await rows(store, sa.select(Escalation))) == 3


async def test_replicas_sweeping_at_once_fire_each_escalation_once(store, database_url):
    """Three replicas (a store each: their own connections) sweep the same 60 waiting
    tickets at the same moment, past every level: each escalation fires once (unique
    escalation rows; on PostgreSQL SKIP LOCKED lets each take tickets the others have
    not)."""
    from core.config.settings import DatabaseSettings
    from core.store.engine import Store

    world = World(store, at(24, 10), LEVELS)
    for n in range(60):
        await world.message(f"m{n}", author=f"u{n}")
    world.clock.set(at(24, 18))
    replicas = [Store(DatabaseSettings(url=database_url)) for _ in range(3)]
    try:
        sweeps = await asyncio.gather(*(Escalator(replica, world.settings, world.clock)
                                        .sweep() for replica in replicas))
    finally:
        for replica in replicas:
            await replica.close()
    fired = [(f.ticket_id, f.rule) for sweep in sweeps for f in sweep]
    assert len(fired) == len(set(fired)) == 180
    assert len(await rows(store, sa.select(Escalation))) == 180
    assert await world.escalator.sweep() == []


async def test_a_sweep_interrupted_midway_fires_nothing_twice(store, monkeypatch):
    world = World(store, at(24, 10), LEVELS)
    await world.message()
    world.clock.set(at(24, 18))
    calls = []
    original = Escalator._notice

    async def crash_on_second(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Escalator, "_notice", crash_on_second)
    with pytest.raises(RuntimeError):
        await world.escalator.sweep()
    assert await rows(store, sa.select(Escalation)) == []  # the whole sweep rolled back
    monkeypatch.setattr(Escalator, "_notice", original)
    restarted = Escalator(store, world.settings, world.clock)
    assert sorted(f.rule for f in await restarted.sweep()) == ["breach", "reminder", "warning"]
    notices = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.NOTICE))
    assert len(notices) == 3


async def test_an_answer_stops_the_clock_and_a_new_message_starts_a_cycle(store):
    world = World(store, at(24, 10), LEVELS)
    await world.message()
    assert await world.at(at(24, 12)) == ["reminder"]
    await world.command("/reply 1 On it")
    assert await world.at(at(24, 18)) == []  # answered: no warning, no breach
    world.clock.set(at(25, 10))
    await world.message("m2")  # the customer writes again: a new waiting cycle
    ticket = await world.ticket()
    assert ticket.cycle == 2 and ticket.status == TicketStatus.OPEN
    assert await world.at(at(25, 12)) == ["reminder"]
    fired = await rows(store, sa.select(Escalation.cycle).where(Escalation.rule == "reminder"))
    assert sorted(fired) == [1, 2]


async def test_snooze_moves_the_clock(store):
    world = World(store, at(24, 10), [{"name": "reminder", "after": "1h", "clock": "wall"}])
    await world.message()
    await world.at(at(24, 10))
    await world.command("/snooze 1 3h")
    assert await world.at(at(24, 11, 30)) == []  # would be due at 11:00, but snoozed
    assert (await world.ticket()).next_escalation_at == at(24, 13)
    assert await world.at(at(24, 13)) == ["reminder"]
    assert (await world.ticket()).status == TicketStatus.OPEN  # back in the queue


@pytest.mark.parametrize(("condition", "fires"), [
    ({"channels": ["vk"]}, False), ({"channels": ["telegram"]}, True),
    ({"keywords": ["возврат"]}, True), ({"keywords": ["refund"]}, False),
    ({"priorities": ["urgent"]}, False), ({"unassigned": True}, True),
    ({"tags": ["vip"]}, True), ({"tags": ["wholesale"]}, False),
])
async def test_conditions(store, condition, fires):
    world = World(store, at(24, 10), [{"name": "rule", "at_due": True, **condition}],
                  customers={"tags": {"telegram:u1": ["vip"]}})
    await world.message(text="Хочу ВОЗВРАТ денег")
    assert await world.at(at(24, 18)) == (["rule"] if fires else [])


async def test_unassigned_rule_skips_taken_tickets(store):
    world = World(store, at(24, 10), [{"name": "rule", "at_due": True, "unassigned": True}])
    await world.message()
    await world.command("/take 1")
    assert await world.at(at(24, 18)) == []


async def test_the_notice_reposts_the_card_with_reason_and_mentions(store):
    world = World(store, at(24, 10), LEVELS)
    await world.message(text="<b>where</b> is it?")
    await world.at(at(24, 12))
    [notice] = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.NOTICE))
    message = StaffMessage.from_row(notice.target)
    assert message.lines[0].startswith("⚠ reminder: no answer yet")
    assert message.mentions == ("anna",)  # the staff chat links them (test_staff_telegram)
    assert message.card.quote == "<b>where</b> is it?"  # data: the renderer escapes it
    assert message.buttons[0] == Button("Take", "/take 1") and message.tone == "warning"


async def test_the_delivered_card_is_edited_to_show_the_escalation(store):
    world = World(store, at(24, 10), LEVELS)
    await world.message()
    async with store.session() as session, session.begin():
        await session.execute(sa.update(Outbox).where(Outbox.kind == OutboxKind.STAFF_CARD)
                              .values(external_id="-100:7", state="sent"))
    await world.at(at(24, 12))
    [edit] = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.CARD_EDIT))
    assert edit.target["edit"] == "-100:7" and "escalated: reminder" in edit.text


async def test_reload_with_a_changed_calendar_recomputes_waiting_tickets(store):
    world = World(store, at(24, 10), [{"name": "breach", "at_due": True}])
    await world.message()
    assert (await world.ticket()).due_at == at(24, 18)
    longer = make_settings(staff=STAFF, escalation=[{"name": "breach", "at_due": True}],
                           calendar={"hours": {d: ["09:00-20:00"] for d in
                                               ("mon", "tue", "wed", "thu", "fri")}})
    world.escalator.reconfigure(longer)
    assert await world.escalator.recompute_open_tickets() == 1
    assert (await world.ticket()).due_at == at(24, 20)
    assert await world.at(at(24, 18)) == []
    assert await world.at(at(24, 20)) == ["breach"]


async def test_next_due_is_the_earliest_planned_escalation(store):
    world = World(store, at(24, 10), LEVELS)
    await world.message()
    await world.at(at(24, 10))
    assert await world.escalator.next_due() == at(24, 12)
    world.clock.advance(timedelta(minutes=1))
    assert await world.escalator.sweep() == []


async def test_the_daemon_fires_within_two_seconds_of_the_due_time(tmp_path):
    """The APScheduler job in the running daemon, on real time."""
    from core.app.daemon import Daemon
    from core.clock import SystemClock

    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "d.db"}"\n'
                      '[daemon]\nhealth_port = 0\nsweep_interval = "30s"\n'
                      '[staff]\nchat = "console"\n'
                      '[[escalation]]\nname = "fast"\nafter = "3s"\nclock = "wall"\n')
    from core.config.load import load_settings

    daemon = Daemon(config, load_settings(config), clock=SystemClock(), factories={})
    running = asyncio.create_task(daemon.run())
    try:
        for _ in range(100):
            if daemon.escalator is not None:
                break
            await asyncio.sleep(0.05)
        sent = datetime.now(UTC)
        await daemon.inbox.ingest([inbound("m1", at=sent)])
        fired = []
        for _ in range(120):
            fired = await rows(daemon.store, sa.select(Escalation))
            if fired:
                break
            await asyncio.sleep(0.05)
        assert fired, "the escalation never fired"
        # Due 3 s after the message; the interval is 30 s, so the wake-up job did it.
        late = (fired[0].fired_at - (sent + timedelta(seconds=3))).total_seconds()
        assert -0.05 <= late <= 2.0
    finally:
        daemon.stop()
        assert await asyncio.wait_for(running, 30) == 0


async def test_a_follow_up_with_a_keyword_brings_its_rule_in(store):
    world = World(store, at(24, 10), [{"name": "refunds", "at_due": True,
                                       "keywords": ["возврат"]}])
    await world.message(text="здравствуйте")
    assert (await world.ticket()).next_escalation_at is None  # no rule matches yet
    world.clock.set(at(24, 11))
    await world.message("m2", text="хочу возврат")
    assert await world.at(at(24, 11)) == []
    assert await world.at(at(24, 18)) == ["refunds"]
