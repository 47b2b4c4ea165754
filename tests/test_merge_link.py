"""/merge and /link: a conversation moved into another ticket (messages, notes, audit
trail, escalations, the earlier promise), the customer's next message following it, and
customers on two channels made one person; through the desk on both databases, the
console and the Telegram staff group."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from core.delivery.contract import STAFF_CHANNEL
from core.domain.records import Direction, OutboxKind, OutboxState, TicketStatus
from core.escalation.sweep import Escalator
from core.intake.inbox import Inbox
from core.staff.commands import Actor, Reply, StaffDesk
from core.staff.console import run_console
from core.store.tables import Customer, Escalation, Event, Message, Outbox, Ticket
from tests.conftest import make_settings
from tests.helpers import count, inbound, rows, update

STAFF = {"chat": "console", "members": [
    {"name": "anna", "telegram_id": 1, "role": "admin"}, {"name": "boris", "telegram_id": 2}]}
ANNA = Actor("anna", "admin")


class World:
    """A desk, an inbox and a sweep on one store and one virtual clock."""

    def __init__(self, store, clock, **config):
        self.store, self.clock = store, clock
        self.settings = make_settings(staff=STAFF, **config)
        self.inbox = Inbox(store, self.settings, clock)
        self.desk = StaffDesk(store, self.settings, clock)
        self.escalator = Escalator(store, self.settings, clock)

    async def write(self, external_id: str, **kwargs) -> int:
        """A customer's message, sent now; the ticket it went to."""
        await self.inbox.ingest([inbound(external_id, at=self.clock.now(), **kwargs)])
        async with self.store.session() as session:
            return await session.scalar(sa.select(Message.ticket_id)
                                        .where(Message.external_id == external_id))

    async def ok(self, line: str) -> Reply:
        reply = await self.desk.execute(ANNA, line)
        assert reply.ok, reply.text
        return reply

    async def refused(self, line: str) -> str:
        reply = await self.desk.execute(ANNA, line)
        assert not reply.ok, reply.text
        return reply.text

    async def ticket(self, ticket_id: int) -> Ticket:
        [ticket] = await rows(self.store, sa.select(Ticket).where(Ticket.id == ticket_id))
        return ticket

    async def events(self, ticket_id: int, kind: str | None = None) -> list[Event]:
        query = sa.select(Event).where(Event.ticket_id == ticket_id)
        if kind:
            query = query.where(Event.kind == kind)
        return await rows(self.store, query.order_by(Event.id))

    async def deliver_cards(self) -> None:
        """What the dispatcher does once the staff cards are sent."""
        await update(self.store, sa.update(Outbox).where(
            Outbox.kind == OutboxKind.STAFF_CARD, Outbox.external_id.is_(None))
            .values(external_id=sa.cast(Outbox.id, sa.String), state=OutboxState.SENT))


async def card_edits(store, ticket_id: int) -> list[Outbox]:
    return await rows(store, sa.select(Outbox).where(
        Outbox.ticket_id == ticket_id, Outbox.kind == OutboxKind.CARD_EDIT).order_by(Outbox.id))


# --- /merge through the desk, both databases --------------------------------------------------


async def test_merge_moves_the_conversation_and_keeps_the_earlier_promise(store, clock):
    w = World(store, clock, escalation=[{"name": "nudge", "after": "1h", "clock": "wall"}])
    # The same customer asks on two VK wall threads: #1 at 10:00, #2 at 10:50.
    b = await w.write("c1", channel="vk", author="7", thread="wall:1_10:7",
                      text="where is order 4411?")
    await w.ok(f"/note {b} courier called")
    clock.advance(timedelta(minutes=50))
    a = await w.write("c2", channel="vk", author="7", thread="wall:1_11:7",
                      text="hello?? order 4411")
    await w.deliver_cards()
    clock.advance(timedelta(minutes=15))  # 11:05: #1 has waited over an hour, #2 not
    fired = await w.escalator.sweep()
    assert [(f.ticket_id, f.rule) for f in fired] == [(b, "nudge")]
    before = {t: await w.ticket(t) for t in (a, b)}

    reply = await w.ok(f"/merge {a} {b}")
    assert reply.text.startswith(f"#{b} merged into #{a} (1 message, 1 note moved); "
                                 f"#{b} is closed")
    merged, source = await w.ticket(a), await w.ticket(b)
    assert (source.status, source.merged_into, source.closed_at) == (
        TicketStatus.CLOSED, a, clock.now())
    assert source.next_escalation_at is None
    # Every message and note of #1 is in #2 now, in the order they were written.
    messages = await rows(store, sa.select(Message).where(Message.ticket_id == a)
                          .order_by(Message.id))
    assert [(m.direction, m.text) for m in messages] == [
        (Direction.IN, "where is order 4411?"), (Direction.NOTE, "courier called"),
        (Direction.IN, "hello?? order 4411")]
    assert await count(store, Message) == 3
    assert await rows(store, sa.select(Message).where(Message.ticket_id == b)) == []
    # The earlier promise of the two, and the earlier start of the wait.
    assert merged.due_at == min(before[a].due_at, before[b].due_at) == before[b].due_at
    assert merged.waiting_since == before[b].waiting_since
    assert merged.status == TicketStatus.OPEN and merged.next_escalation_at == clock.now()
    # The escalation history moved too: "nudge" fired for this wait and is not repeated.
    [escalation] = await rows(store, sa.select(Escalation))
    assert escalation.ticket_id == a
    assert [e.data["rule"] for e in await w.events(a, "escalated")] == ["nudge"]
    assert await w.escalator.sweep() == []
    # B's opening stays with B (the report judges B's first promise by it).
    assert len(await w.events(b, "opened")) == 1 and len(await w.events(a, "opened")) == 1
    [pointer] = await w.events(b, "merged_into")
    assert (pointer.data, pointer.actor) == ({"into": a}, "anna")
    [event] = await w.events(a, "merged")
    assert event.data["from"] == b and event.data["messages"] == 1 and \
        event.data["notes"] == 1 and event.data["escalations"] == 1
    # Both cards say so.
    edit_b = (await card_edits(store, b))[-1]  # (after the escalation's)
    assert f"merged into #{a} by anna" in edit_b.text and "🔒 closed" in edit_b.text
    assert "where is order 4411?" in edit_b.text  # B's card still quotes B's question
    [edit_a] = await card_edits(store, a)
    assert f"#{b} merged in by anna" in edit_a.text


async def test_the_customers_next_message_on_the_merged_thread_lands_in_the_target(store,
                                                                                    clock):
    w = World(store, clock)
    b = await w.write("c1", channel="vk", author="7", thread="wall:1_10:7")
    a = await w.write("c2", channel="vk", author="7", thread="wall:1_11:7")
    await w.ok(f"/merge {a} {b}")
    clock.advance(timedelta(minutes=5))
    assert await w.write("c3", channel="vk", author="7", thread="wall:1_10:7",
                         text="any news?") == a
    assert await count(store, Ticket) == 2
    assert (await w.ticket(b)).status == TicketStatus.CLOSED  # not reopened
    merged = await w.ticket(a)
    # Answers go where the customer wrote last.
    assert merged.reply_target == {"chat_id": "7"} and merged.status == TicketStatus.OPEN
    [notice] = await rows(store, sa.select(Outbox).where(
        Outbox.kind == OutboxKind.NOTICE, Outbox.text.contains("any news?")))
    assert notice.ticket_id == a and notice.text.startswith(f"#{a} ")
    # Days after #2 was closed, the thread opens a ticket of its own again.
    await w.ok(f"/close {a}")
    clock.advance(timedelta(days=3))
    later = await w.write("c4", channel="vk", author="7", thread="wall:1_10:7")
    assert later not in (a, b) and (await w.ticket(later)).status == TicketStatus.OPEN


async def test_merging_a_waiting_ticket_into_an_answered_one_makes_it_wait(store, clock):
    w = World(store, clock)
    a = await w.write("c1", channel="vk", author="7", thread="wall:1_10:7")
    await w.ok(f"/reply {a} it ships today")
    clock.advance(timedelta(minutes=20))
    b = await w.write("c2", channel="vk", author="7", thread="wall:1_11:7", text="and 4412?")
    b_due = (await w.ticket(b)).due_at
    await w.ok(f"/priority {b} high")
    reply = await w.ok(f"/merge {a} {b}")
    merged = await w.ticket(a)
    assert (merged.status, merged.cycle, merged.due_at, merged.priority) == (
        TicketStatus.OPEN, 2, b_due, "high")
    assert merged.waiting_since == (await w.ticket(b)).waiting_since
    assert f"#{a} is due" in reply.text
    [cycle] = await w.events(a, "cycle")
    assert cycle.data["cycle"] == 2 and cycle.actor == "anna"


async def test_bad_merges_are_refused_with_the_way_out(store, clock):
    w = World(store, clock)
    one = await w.write("m1", author="u1", handle="@kate")
    other = await w.write("m2", author="u2", handle="@ivan")
    assert "two different ticket numbers" in await w.refused(f"/merge {one} {one}")
    assert await w.refused(f"/merge {one} 999") == "There is no ticket #999."
    assert await w.refused(f"/merge 999 {one}") == "There is no ticket #999."
    assert "Usage: /merge A B" in await w.refused(f"/merge {one}")
    different = await w.refused(f"/merge {one} {other}")
    assert "@kate" in different and "@ivan" in different
    assert f"/link {one} {other} first" in different
    # A closed target, a ticket merged already, a merged target.
    third = await w.write("m3", author="u1", thread="chat:u1:other")
    await w.ok(f"/close {one}")
    assert f"/reopen {one} first" in await w.refused(f"/merge {one} {third}")
    await w.ok(f"/reopen {one}")
    await w.ok(f"/merge {one} {third}")
    assert await w.refused(f"/merge {one} {third}") == \
        f"#{third} is already merged into #{one}."
    assert f"merge into that one (/merge {one} " in await w.refused(f"/merge {third} {one}")
    # Nothing changed by the refusals: one merge event, two tickets of u1 only.
    assert len(await w.events(one, "merged")) == 1
    assert (await w.ticket(other)).merged_into is None


# --- /link ------------------------------------------------------------------------------------


async def test_link_makes_one_person_merges_tags_and_allows_merging(store, clock):
    w = World(store, clock, customers={"tags": {"telegram:501": ["vip"],
                                                "vk:77": ["wholesale", "vip"]}})
    a = await w.write("t1", channel="telegram", author="501", handle="@kate")
    b = await w.write("v1", channel="vk", author="77", thread="77",
                      text="same order, written on VK")
    assert "/link" in await w.refused(f"/merge {a} {b}")

    reply = await w.ok(f"/link {a} {b}")
    assert "@kate (Telegram) and 77 (VK) are one person now; tags: vip, wholesale" in \
        reply.text
    customers = await rows(store, sa.select(Customer).order_by(Customer.id))
    assert [c.person_id for c in customers] == [customers[0].id] * 2
    assert [c.tags for c in customers] == [["vip", "wholesale"]] * 2
    assert [len(await w.events(t, "linked")) for t in (a, b)] == [1, 1]
    assert "already linked" in await w.refused(f"/link {b} {a}")

    await w.ok(f"/merge {a} {b}")
    # The VK customer writes again: it lands in the Telegram ticket, whose answers still
    # go on Telegram (the ticket's channel), and staff see the VK message in it.
    assert await w.write("v2", channel="vk", author="77", thread="77", text="hello?") == a
    merged = await w.ticket(a)
    assert merged.channel == "telegram" and merged.reply_target == {"chat_id": "501"}
    channels = await rows(store, sa.select(Message.channel).where(Message.ticket_id == a)
                          .order_by(Message.id))
    assert channels == ["telegram", "vk", "vk"]


async def test_linking_a_third_account_joins_the_person(store, clock):
    w = World(store, clock)
    a = await w.write("t1", channel="telegram", author="501")
    b = await w.write("v1", channel="vk", author="77", thread="77")
    c = await w.write("x1", channel="twitter", author="9", thread="x:9")
    await w.ok(f"/link {b} {c}")
    await w.ok(f"/link {c} {a}")
    customers = await rows(store, sa.select(Customer).order_by(Customer.id))
    assert {c.person_id for c in customers} == {customers[0].id}
    assert "already linked" in await w.refused(f"/link {a} {b}")


async def test_bad_links_are_refused(store, clock):
    w = World(store, clock)
    a = await w.write("m1", author="u1")
    b = await w.write("m2", author="u1", thread="chat:u1:two")
    assert "two different ticket numbers" in await w.refused(f"/link {a} #{a}")
    assert await w.refused(f"/link {a} 999") == "There is no ticket #999."
    same = await w.refused(f"/link {a} {b}")
    assert "same customer" in same and f"/merge {a} {b}" in same
    assert await rows(store, sa.select(Event).where(Event.kind == "linked")) == []


# --- end to end: the console ------------------------------------------------------------------


async def test_console_merge_and_link_session(store, clock):
    import io

    from rich.console import Console

    w = World(store, clock)
    await w.write("t1", channel="telegram", author="501", handle="@kate", text="order 4411?")
    await w.write("v1", channel="vk", author="77", thread="77", text="4411 again, on VK")

    async def lines():
        for line in ("/merge 1 2", "link 1 2", "merge 1 2", "merge 1 2", "show 1", "merge 3 3"):
            yield line

    console = Console(file=io.StringIO(), width=120, soft_wrap=True)
    await run_console(w.desk, w.desk.actor_named("anna"), lines(), console, staff_sink=False)
    text = console.file.getvalue()
    assert "are different customers. If they are one person, /link 1 2 first." in text
    assert "@kate (Telegram) and 77 (VK) are one person now" in text
    assert "#2 merged into #1 (1 message moved); #2 is closed" in text
    assert "#2 is already merged into #1." in text
    assert "order 4411?" in text and "4411 again, on VK" in text  # /show 1: both
    assert "Usage: /merge A B (two different ticket numbers)" in text
    assert (await w.ticket(2)).merged_into == 1


# --- end to end: the Telegram staff group -----------------------------------------------------


async def test_telegram_staff_group_links_and_merges_a_telegram_and_a_vk_ticket(
        sqlite_store, monkeypatch):
    """Kate writes on Telegram and on VK; staff link and merge in the staff group; her
    next VK message lands in the Telegram ticket, and the answer goes to her Telegram."""
    from bots.telegram.adapter import TelegramAdapter
    from bots.telegram.emulator import TelegramEmulator
    from bots.vk.adapter import VKAdapter
    from bots.vk.emulator import VKEmulator
    from tests.adapter_harness import eventually, running_all
    from tests.test_staff_telegram import ANNA as ANNA_ID
    from tests.test_staff_telegram import STAFF as STAFF_CHAT
    from tests.test_staff_telegram import card_of, settings_for, staff_says

    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123:staff")
    monkeypatch.setenv("SAMEDAY_VK_TOKEN", "vk-staff")
    async with TelegramEmulator() as telegram, VKEmulator() as vk:
        settings = settings_for(telegram, vk=vk)
        async with running_all([TelegramAdapter(settings), VKAdapter(settings)],
                               sqlite_store, settings) as h:
            telegram.inject_message(chat_id=501, user_id=501, text="Where is 4411?",
                                    username="kate")
            card_tg = await card_of(telegram, 1, h)
            vk.inject_message(from_id=77, text="4411 again")
            card_vk = await card_of(telegram, 2, h)

            def said(text: str) -> bool:
                return any(text in m["text"] for m in telegram.sent_to(STAFF_CHAT))

            staff_says(telegram, ANNA_ID, "/merge 1 2")
            await eventually(lambda: said("/link 1 2 first"), what="the refusal")
            staff_says(telegram, ANNA_ID, "/link 1 2")
            await eventually(lambda: said("are one person now"), what="the link")
            staff_says(telegram, ANNA_ID, "/merge 1 2")
            await eventually(lambda: said("merged into"), what="the merge")
            await eventually(lambda: any("merged into #1" in e["text"] and
                                         e["message_id"] == card_vk["message_id"]
                                         for e in telegram.edits), what="#2's card edited")
            await eventually(lambda: any("#2 merged in by anna" in e["text"] and
                                         e["message_id"] == card_tg["message_id"]
                                         for e in telegram.edits), what="#1's card edited")
            vk.inject_message(from_id=77, text="any news?")
            await eventually(lambda: said("any news?"), what="the follow-up")
            notice = next(m for m in telegram.sent_to(STAFF_CHAT) if "any news?" in m["text"])
            assert "#1" in notice["text"] and "#2" not in notice["text"]
            staff_says(telegram, ANNA_ID, "It ships today.",
                       reply_to_message_id=card_tg["message_id"])
            await eventually(lambda: any(m["text"] == "It ships today."
                                         for m in telegram.sent_to(501)),
                             what="the answer on Telegram")
            assert not any("ships" in m["message"] for m in vk.sent)
            assert await h.count(Ticket) == 2
            [merged] = await h.rows(sa.select(Ticket).where(Ticket.id == 2))
            assert merged.merged_into == 1 and merged.status == TicketStatus.CLOSED
            staff = await h.rows(sa.select(Outbox).where(Outbox.channel == STAFF_CHANNEL,
                                                         Outbox.kind == OutboxKind.STAFF_CARD))
            assert len(staff) == 2  # no new card for the VK follow-up


async def test_a_merged_ticket_is_counted_once_and_answers_go_to_its_target(store, clock):
    """The report and /stats count the conversation once (in the ticket it was merged
    into); answering the merged one points to where it went."""
    from core.reporting.report import build_report

    w = World(store, clock)
    b = await w.write("c1", channel="vk", author="7", thread="wall:1_10:7", text="order?")
    a = await w.write("c2", channel="vk", author="7", thread="wall:1_11:7", text="hello?")
    await w.ok(f"/merge {a} {b}")
    assert await w.refused(f"/reply {b} it is on its way") == (
        f"#{b} was merged into #{a}: answer there.")
    await w.ok(f"/reply {a} it is on its way")
    report = await build_report(store, w.settings, since=clock.now() - timedelta(hours=1),
                                until=clock.now() + timedelta(hours=1))
    assert report.opened == 1
    assert (report.same_day.part, report.same_day.whole) == (1, 1)


async def test_history_and_customer_follow_linked_customers(store, clock):
    w = World(store, clock)
    on_telegram = await w.write("t1", channel="telegram", author="501", thread="chat:501",
                                text="где заказ?")
    clock.advance(timedelta(hours=1))
    on_vk = await w.write("v1", channel="vk", author="7001", thread="peer:7001",
                          text="заказ так и не пришёл")
    await w.ok(f"/link {on_telegram} {on_vk}")
    history = (await w.ok(f"/history {on_telegram}")).text
    assert f"#{on_vk} VK" in history and f"#{on_telegram} Telegram" in history
    assert "2 tickets" in history
    who = (await w.ok(f"/customer {on_vk}")).text
    assert "Telegram: " in who and "VK: " in who and "Tickets: 2" in who
