"""Forgetting and exporting a customer (`sameday forget`, `sameday export`, `/forget N`):
after forgetting, no table holds their name, handle, id or anything they wrote; their
tickets stay as anonymous rows and the report of a past period does not change; running
it again changes nothing; the export holds everything. Both databases."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
import zlib
from collections.abc import AsyncIterator
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from rich.console import Console
from sqlmodel import SQLModel
from typer.testing import CliRunner

from core.app.cli import app
from core.domain.payload import encode
from core.domain.records import Attachment, Inbound, OutboxState, TicketStatus
from core.intake.inbox import Inbox
from core.reporting.period import period_of
from core.reporting.report import report_for_period
from core.staff.commands import Actor, StaffDesk
from core.staff.console import run_console
from core.staff.survey import record_comment
from core.store.tables import (
    Customer,
    Event,
    Mention,
    Message,
    Outbox,
    Quarantine,
    StaffFile,
    Survey,
    Ticket,
)
from tests.conftest import START, make_settings
from tests.helpers import rows

STAFF = {"chat": "console", "members": [
    {"name": "anna", "telegram_id": 1, "role": "admin"}, {"name": "boris", "telegram_id": 2}]}
ANNA = Actor("anna", "admin")
BORIS = Actor("boris", "agent")

UID = "5550001234"
HANDLE = "@kate_private"
NAME = "Kate Privatova"
FIRST = "my passport number is XK-4471, where is my order"
EDITED = "my passport XK-4471 and flat Lenina-77, where is my order"
AGAIN = "still waiting for the zebraparcel"
NOTE = "Kate says XK-4471 is hers, check Lenina-77"
COMMENT = "quick answer, thanks from Kate zebracomment"
REPLY = "Kate, your zebraparcel left today"
FILE_BYTES = b"\xff\xd8\xff\xe0 photo of Kate Privatova zebrafile"
# Everything that must not be found anywhere after forgetting.
NEEDLES = (UID, "kate_private", "Privatova", "XK-4471", "Lenina-77", "zebraparcel",
           "zebracomment", "zebrafile")


class World:
    def __init__(self, store, clock):
        self.store, self.clock = store, clock
        self.settings = make_settings(staff=STAFF)
        self.inbox = Inbox(store, self.settings, clock)
        self.desk = StaffDesk(store, self.settings, clock)

    def kate(self, external_id: str, text: str, **kwargs) -> Inbound:
        raw = {"message_id": external_id, "from": {"id": int(UID), "username": HANDLE[1:],
                                                    "first_name": NAME}, "text": text}
        return Inbound(channel="telegram", external_id=f"{UID}:{external_id}",
                       thread_key=f"chat:{UID}", author_id=UID, author_handle=HANDLE,
                       author_name=NAME, text=text, sent_at=self.clock.now(),
                       reply_target={"chat_id": UID}, raw=raw, **kwargs)

    async def ok(self, line: str, actor: Actor = ANNA) -> str:
        reply = await self.desk.execute(actor, line)
        assert reply.ok, reply.text
        return reply.text

    async def deliver_staff_rows(self) -> None:
        """What the dispatcher does once the staff chat's rows are sent."""
        async with self.store.session() as session, session.begin():
            await session.execute(sa.update(Outbox).where(
                Outbox.channel == "staff", Outbox.external_id.is_(None))
                .values(external_id=sa.cast(Outbox.id, sa.String), state=OutboxState.SENT))

    async def history(self, answered: bool = False) -> int:
        """Kate's story: two messages with media and payloads, a staff answer, an edit,
        a note, a staff file, a survey comment, a mention, a quarantined payload; and
        another customer's ticket that must stay as it is. Returns Kate's ticket."""
        photo = Attachment("photo", url="https://cdn.example/kate.jpg", file_id="AgADkate",
                           size=4800)
        await self.inbox.ingest([self.kate("0", "/start", greeting=True)])  # greeted
        async with self.store.session() as session, session.begin():
            await session.execute(sa.update(Outbox).where(Outbox.idempotency_key.like(
                "greet:%")).values(state=OutboxState.SENT, external_id=f"{UID}:500"))
        await self.inbox.ingest([self.kate("1", FIRST, attachments=(photo,))])
        await self.inbox.ingest([Inbound(
            channel="telegram", external_id="777:1", thread_key="chat:777", author_id="777",
            author_handle="@other", author_name="Other Person", text="other question",
            sent_at=self.clock.now(), reply_target={"chat_id": "777"})])
        ticket_id = await self.ticket_of(f"{UID}:1")
        await self.deliver_staff_rows()  # the card is in the staff chat
        self.clock.advance(timedelta(minutes=20))
        await self.ok(f"/reply {ticket_id} {REPLY}")
        self.clock.advance(timedelta(minutes=5))
        await self.inbox.ingest([self.kate("2", AGAIN)])  # open again, a follow-up
        await self.inbox.ingest([self.kate("1", EDITED, edited=True,
                                           attachments=(photo,))])
        await self.ok(f"/note {ticket_id} {NOTE}")
        if answered:  # staff answered the follow-up too: nothing is waiting
            await self.ok(f"/reply {ticket_id} {REPLY} again")
        await self.inbox.ingest([self.kate("3", f"RT {HANDLE} zebraparcel", note="quote")])
        async with self.store.session() as session, session.begin():
            session.add(StaffFile(ticket_id=ticket_id, kind="photo", name="kate.jpg",
                                  content_type="image/jpeg", size=len(FILE_BYTES),
                                  content=FILE_BYTES, created_at=self.clock.now()))
            survey = Survey(ticket_id=ticket_id, cycle=1, channel="telegram",
                            customer_id=(await session.get(Ticket, ticket_id)).customer_id,
                            state="answered", score=5, created_at=self.clock.now(),
                            due_at=self.clock.now(), answered_at=self.clock.now())
            session.add(survey)
            session.add(Quarantine(channel="telegram", external_id="update:99",
                                   payload=encode({"update_id": 99, "message": {
                                       "from": {"id": int(UID)}, "text": "\udc00 XK-4471"}}),
                                   error="bad", quarantined_at=self.clock.now()))
            session.add(Quarantine(channel="telegram", external_id="update:100",
                                   payload=encode({"update_id": 100, "message": {
                                       "from": {"id": 777}, "text": "\udc00"}}),
                                   error="bad", quarantined_at=self.clock.now()))
            await session.flush()
            await record_comment(session, self.desk.policy, survey, COMMENT, self.clock.now())
        return ticket_id

    async def ticket_of(self, external_id: str) -> int:
        async with self.store.session() as session:
            return await session.scalar(sa.select(Message.ticket_id)
                                        .where(Message.external_id == external_id))

    async def report(self):
        zone = ZoneInfo(self.settings.calendar.timezone)
        period = period_of(zone, START + timedelta(days=1), since=START - timedelta(hours=6),
                           until=START + timedelta(hours=12))
        return await report_for_period(self.store, period)


async def found_anywhere(store, needles=NEEDLES) -> list[str]:
    """Every needle found in any column of any table, as "table.column: needle"."""
    hits = []
    async with store.session() as session:
        for table in SQLModel.metadata.sorted_tables:
            for row in (await session.execute(sa.select(table))).mappings():
                for column, value in row.items():
                    for text in _readable(value):
                        hits += [f"{table.name}.{column}: {n}" for n in needles
                                 if n.lower() in text.lower()]
        if store.is_sqlite:  # /find's index (external content: it must be told too)
            for needle in ("passport", "zebraparcel"):
                count = await session.scalar(sa.text(
                    "SELECT count(*) FROM message_search WHERE message_search MATCH :q"),
                    {"q": f'"{needle}"'})
                if count:
                    hits.append(f"message_search: {needle}")
    return hits


def _readable(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bytes):
        texts = [value.decode("latin-1")]
        try:
            texts.append(zlib.decompress(value).decode("ascii"))
        except zlib.error:
            pass
        # JSON escapes (payloads are kept ASCII-escaped) read back as text too.
        return texts + [_unescaped(t) for t in texts]
    if isinstance(value, dict | list):
        return [json.dumps(value, ensure_ascii=False)]
    return [str(value), _unescaped(str(value))]


def _unescaped(text: str) -> str:
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except (ValueError, TypeError):
        return text


async def sameday(*args: str):
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


def config(tmp_path, store) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{store.settings.url}"\n[staff]\nchat = "console"\n'
                    '[[staff.members]]\nname = "anna"\ntelegram_id = 1\nrole = "admin"\n')
    return str(path)


# --- forget -------------------------------------------------------------------------------


async def test_forget_leaves_nothing_of_them_and_the_report_unchanged(store, clock, tmp_path):
    w = World(store, clock)
    # Answered: the report reconstructs a past backlog from the ticket's times, and a
    # ticket waiting in a later cycle reads differently once closed -- by /close or by
    # forgetting alike; forgetting itself changes no figure.
    ticket_id = await w.history(answered=True)
    before_hits = await found_anywhere(store)
    assert any(h.startswith("message.text") for h in before_hits)  # the search can find
    assert any(h.startswith("message.raw") for h in before_hits)
    assert any(h.startswith("staff_file.content") for h in before_hits)
    assert any(h.startswith("quarantine.payload") for h in before_hits)
    assert any(h.startswith("outbox.idempotency_key") for h in before_hits)
    clock.advance(timedelta(days=2))
    report_before = await w.report()
    assert report_before.received == 3 and report_before.opened == 2

    result = await sameday("forget", f"telegram:{UID}", "--config", config(tmp_path, store),
                           "--by", "dpo-desk")
    assert result.exit_code == 0, result.output
    assert "forgotten:" in result.output and f"#{ticket_id}" in result.output
    assert "recorded as asked by dpo-desk" in result.output

    assert await found_anywhere(store) == []
    assert await w.report() == report_before  # the past period reads the same

    [customer] = await rows(store, sa.select(Customer).where(Customer.handle.is_(None)))
    assert customer.external_user_id.startswith("forgotten:") and customer.name is None
    assert customer.tags == []
    [ticket] = await rows(store, sa.select(Ticket).where(Ticket.id == ticket_id))
    assert ticket.status == TicketStatus.CLOSED and ticket.reply_target is None
    assert ticket.opened_at == START and ticket.first_response_at is not None
    messages = await rows(store, sa.select(Message).where(Message.ticket_id == ticket_id))
    assert len(messages) == 5 and {m.text for m in messages} == {""}  # kept, emptied
    assert all(m.raw is None and m.attachments is None for m in messages)
    assert await rows(store, sa.select(StaffFile)) == []
    [greeting] = await rows(store, sa.select(Outbox).where(Outbox.ticket_id.is_(None),
                                                            Outbox.channel == "telegram"))
    assert (greeting.state, greeting.target, greeting.external_id) == ("sent", {}, None)
    # Nothing queued to them is sent any more; staff hear the ticket was closed.
    queued = await rows(store, sa.select(Outbox).where(
        Outbox.channel == "telegram", Outbox.state.in_(("pending", "retry"))))
    assert [r.target["chat_id"] for r in queued] == ["777"]  # the other customer's ack
    notices = await rows(store, sa.select(Outbox).where(
        Outbox.idempotency_key.like("forgotten:%:%"), Outbox.state == "pending"))
    assert [n.text for n in notices if "asked to be forgotten" in n.text] != []
    edits = await rows(store, sa.select(Outbox).where(Outbox.kind == "card_edit",
                                                      Outbox.state == "pending"))
    assert any("customer forgotten" in e.text and "🔒 closed" in e.text for e in edits)
    # The audit trail says who and when, with no personal data (checked above).
    [event] = await rows(store, sa.select(Event).where(Event.kind == "forgotten"))
    assert event.actor == "dpo-desk" and event.data["via"] == "cli"
    assert event.data["tickets"] == [ticket_id] and event.data["closed"] == [ticket_id]
    assert event.data["deleted"]["messages"] == 2 and event.data["deleted"]["files"] == 1
    # The other customer is untouched.
    other = await found_anywhere(store, ("Other Person", "other question", "777"))
    assert any(h.startswith("message.text") for h in other)
    assert len(await rows(store, sa.select(Quarantine))) == 1
    [mention] = await rows(store, sa.select(Mention))
    assert mention.text == "" and mention.author_handle is None  # counted, anonymous

    # Idempotent: by ticket it says so, by their old id there is nothing to find.
    again = await sameday("forget", f"#{ticket_id}", "--config", config(tmp_path, store))
    assert again.exit_code == 0 and "already forgotten" in again.output
    again = await sameday("forget", f"telegram:{UID}", "--config", config(tmp_path, store))
    assert again.exit_code == 0 and "nothing is held about" in again.output
    assert len(await rows(store, sa.select(Event).where(Event.kind == "forgotten"))) == 1
    assert await w.report() == report_before


async def test_forget_by_handle_and_bad_customers(store, clock, tmp_path):
    w = World(store, clock)
    await w.history()
    # A second customer with the same handle on another channel: the handle is ambiguous.
    await w.inbox.ingest([Inbound(channel="vk", external_id="9", thread_key="peer:42",
                                  author_id="42", author_handle=HANDLE, text="hi",
                                  sent_at=clock.now(), reply_target={"peer_id": 42})])
    path = config(tmp_path, store)
    result = await sameday("forget", HANDLE, "--config", path)
    assert result.exit_code == 2
    assert "matches 2 customers" in result.output and f"telegram:{UID}" in result.output
    assert "vk:42" in result.output
    for bad, why in (("kate", "is not a customer"), ("fax:1", "unknown channel 'fax'"),
                     ("#999", "there is no ticket #999"), ("telegram:", "is not a customer")):
        result = await sameday("forget", bad, "--config", path)
        assert result.exit_code == 2 and why in result.output, (bad, result.output)
        assert "channel:user_id" in result.output or "ticket" in result.output
    assert await rows(store, sa.select(Event).where(Event.kind == "forgotten")) == []
    result = await sameday("forget", "vk:42", "--config", path, "--dry-run")
    assert result.exit_code == 0 and "would delete" in result.output
    assert await rows(store, sa.select(Event).where(Event.kind == "forgotten")) == []
    result = await sameday("forget", "vk:42", "--config", path)
    assert result.exit_code == 0, result.output
    result = await sameday("forget", HANDLE, "--config", path)  # one left with it now
    assert result.exit_code == 0 and "forgotten:" in result.output
    assert await found_anywhere(store) == []


# --- /forget N through the staff desk and the console -------------------------------------


async def test_forget_command_asks_first_and_is_for_admins(store, clock):
    w = World(store, clock)
    ticket_id = await w.history()
    refused = await w.desk.execute(BORIS, f"/forget {ticket_id} yes")
    assert not refused.ok and "admins only" in refused.text
    preview = await w.ok(f"/forget {ticket_id}")
    assert HANDLE in preview and "2 messages" in preview and "1 note" in preview
    assert f"/forget {ticket_id} yes" in preview and "cannot be undone" in preview
    assert f"closed first: #{ticket_id}" in preview
    assert (await found_anywhere(store)) != []  # nothing changed yet
    bad = await w.desk.execute(ANNA, f"/forget {ticket_id} please")
    assert not bad.ok and "Usage: /forget N [yes]" in bad.text
    done = await w.ok(f"/forget {ticket_id} yes")
    assert "is forgotten" in done and "anna did it" in done and HANDLE not in done
    hits = await found_anywhere(store)
    # The preview went to the staff chat as text only (no outbox row): nothing is left.
    assert hits == []
    again = await w.ok(f"/forget {ticket_id} yes")
    assert "already forgotten" in again
    [event] = await rows(store, sa.select(Event).where(Event.kind == "forgotten"))
    assert event.actor == "anna" and event.data["via"] == "staff"


def captured() -> Console:
    return Console(file=io.StringIO(), width=140, soft_wrap=True)


async def wait_for(console: Console, text: str, timeout: float = 10) -> None:
    async def poll() -> None:
        while text not in console.file.getvalue():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


async def test_console_forget_confirmation_flow(store, clock):
    w = World(store, clock)
    ticket_id = await w.history()
    console = captured()

    async def session() -> AsyncIterator[str]:
        await wait_for(console, "edited a message")
        yield f"/forget {ticket_id}"
        await wait_for(console, f"/forget {ticket_id} yes")
        yield f"/forget {ticket_id} yes"
        await wait_for(console, "asked to be forgotten")
        yield f"/forget {ticket_id} yes"
        await wait_for(console, "already forgotten")

    await run_console(w.desk, w.desk.actor_named("anna"), session(), console, idle_poll=0.05)
    text = console.file.getvalue()
    asked = text.split(f"/forget {ticket_id} yes", 1)[0]
    assert "deletes everything held about" in asked and HANDLE in asked
    done = text.split("is forgotten", 1)[1]
    assert f"#{ticket_id} closed: its customer asked to be forgotten" in done
    assert "already forgotten" in done
    assert await found_anywhere(store) == []


async def test_console_forget_refused_for_an_agent(store, clock):
    w = World(store, clock)
    ticket_id = await w.history()
    console = captured()

    async def session() -> AsyncIterator[str]:
        yield f"/forget {ticket_id} yes"
        await wait_for(console, "admins only")

    await run_console(w.desk, w.desk.actor_named("boris"), session(), console,
                      staff_sink=False)
    assert "/forget is for admins only" in console.file.getvalue()
    assert await rows(store, sa.select(Event).where(Event.kind == "forgotten")) == []


# --- export -------------------------------------------------------------------------------


async def test_export_writes_everything_held(store, clock, tmp_path):
    w = World(store, clock)
    ticket_id = await w.history()
    zip_path = tmp_path / "kate.zip"
    result = await sameday("export", HANDLE, "--out", str(zip_path), "--config",
                           config(tmp_path, store))
    assert result.exit_code == 0, result.output
    assert zip_path.stat().st_mode & 0o777 == 0o600
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        assert {"customer.json", "tickets.json", "messages.json", "events.json",
                "media.json", "surveys.json", "mentions.json"} <= names
        read = {n: json.loads(archive.read(n)) for n in names if n.endswith(".json")}
        [file_name] = [n for n in names if n.startswith("media/")]
        assert archive.read(file_name) == FILE_BYTES
    customer = read["customer.json"]
    assert (customer["external_user_id"], customer["handle"], customer["name"]) == (
        UID, HANDLE, NAME)
    assert [t["id"] for t in read["tickets.json"]] == [ticket_id]
    texts = [m["text"] for m in read["messages.json"]]
    assert EDITED in texts and AGAIN in texts and REPLY in texts and NOTE in texts
    theirs = [m for m in read["messages.json"] if m["direction"] == "in"]
    assert theirs[0]["raw"]["from"]["id"] == int(UID)  # the payload decoded
    assert theirs[0]["attachments"][0]["url"] == "https://cdn.example/kate.jpg"
    edited = [e for e in read["events.json"] if e["kind"] == "edited"]
    assert edited and edited[0]["data"]["old"] == FIRST
    assert read["surveys.json"][0]["comment"] == COMMENT
    assert read["mentions.json"][0]["text"].startswith("RT ")
    links = [m for m in read["media.json"] if m.get("url")]
    assert links and links[0]["file_id"] == "AgADkate"
    kept = [m for m in read["media.json"] if m.get("held") == "bytes"]
    assert kept and kept[0]["file"] == file_name
    # The other customer is not in it.
    assert "other question" not in json.dumps(read, ensure_ascii=False)

    again = await sameday("export", HANDLE, "--out", str(zip_path), "--config",
                          config(tmp_path, store))
    assert again.exit_code == 2 and "exists" in again.output
    missing = await sameday("export", "telegram:1", "--out", str(tmp_path / "n.zip"),
                            "--config", config(tmp_path, store))
    assert missing.exit_code == 1 and "nothing is held" in missing.output
    bad = await sameday("export", "nobody", "--out", str(tmp_path / "n.zip"), "--config",
                        config(tmp_path, store))
    assert bad.exit_code == 2 and "is not a customer" in bad.output
    assert not (tmp_path / "n.zip").exists()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_export_after_forget_holds_nothing_personal(store, clock, tmp_path):
    w = World(store, clock)
    ticket_id = await w.history()
    path = config(tmp_path, store)
    assert (await sameday("forget", f"#{ticket_id}", "--config", path)).exit_code == 0
    result = await sameday("export", f"#{ticket_id}", "--out", str(tmp_path / "k.zip"),
                           "--config", path)
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(tmp_path / "k.zip") as archive:
        everything = " ".join(archive.read(n).decode("utf-8", "replace")
                              for n in archive.namelist())
    assert not [n for n in NEEDLES if n.lower() in everything.lower()]
