"""`sameday replay`: run a history of customer messages and staff answers through the core.

Admins tune promise rules, calendars and escalation rules on their own history before they
deploy them. Replay feeds that history to the REAL core -- ``Inbox.ingest`` for customer
messages, ``StaffDesk.execute("/reply N ...")`` for staff answers, ``Escalator.sweep`` for
escalations -- on a ``VirtualClock``, in a throw-away database, and reports what would
have happened. Nothing is sent: outbox rows are only counted.

Two inputs are read (see docs/configuration.md, "Replaying history"):

- the "Customer Support on Twitter" (TWCS) CSV as published: customer tweets become
  inbound messages on channel ``twitter``, company tweets that answer a customer tweet
  become staff answers;
- a JSONL history, one event per line, for any channel.

Every inbound row is accounted for: either ingested or counted as skipped with a reason.
"""

from __future__ import annotations

import csv
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from core.clock import VirtualClock
from core.config.settings import CHANNELS, DatabaseSettings, Settings
from core.domain.records import Inbound, OutboxKind
from core.escalation.sweep import Escalator
from core.intake.inbox import Inbox
from core.staff.commands import Actor, StaffDesk
from core.store.engine import Store, upgrade
from core.store.tables import Escalation, Event, Message, Outbox, Ticket

TWCS_COLUMNS = {"tweet_id", "author_id", "inbound", "created_at", "text",
                "in_response_to_tweet_id"}
TWCS_TIME = "%a %b %d %H:%M:%S %z %Y"  # "Tue Oct 31 22:10:47 +0000 2017"
INBOUND, ANSWER = "inbound", "answer"
# A sweep that fires nothing while the same moment stays due would loop for ever; a
# correct engine never does that, but a replay must end even against a broken one.
MAX_IDLE_SWEEPS = 3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the clock of an empty history (never read)


class ReplayError(ValueError):
    """A mistake the admin can fix: an unreadable file, an unknown --staff-name, a bad
    --until (single bad rows are not errors: they are skipped and reported)."""


# --- the history: plain events, sorted by time ------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerMessage:
    at: datetime
    inbound: Inbound


@dataclass(frozen=True, slots=True)
class StaffAnswer:
    at: datetime
    channel: str
    answers: str  # external id of the customer message it answers
    text: str


@dataclass
class History:
    """The events of a file plus the bookkeeping that explains every row not replayed."""

    source: str
    format: str
    events: list[CustomerMessage | StaffAnswer] = field(default_factory=list)
    read: Counter = field(default_factory=Counter)  # rows per kind ("inbound", "answer"...)
    skipped: dict[str, Counter] = field(default_factory=dict)  # kind -> reason -> rows

    def skip(self, kind: str, reason: str) -> None:
        self.skipped.setdefault(kind, Counter())[reason] += 1

    def sort(self) -> None:
        # Stable sort; at the same moment a customer message comes before an answer to it.
        self.events.sort(key=lambda e: (e.at, isinstance(e, StaffAnswer)))


def read_history(path: Path) -> History:
    """Read a TWCS CSV or a JSONL history, chosen by the first non-blank character."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            head = handle.read(4096).lstrip("\ufeff \t\r\n")
            handle.seek(0)
            history = (read_jsonl(handle, str(path)) if head.startswith("{")
                       else read_twcs(handle, str(path)))
    except (OSError, UnicodeDecodeError) as error:
        raise ReplayError(f"{path}: unreadable: {error}") from None
    history.sort()
    return history


def _tweet_id(value: str | None) -> str:
    """TWCS ids are sometimes written as floats ("192625.0"); an id is the integer part."""
    value = (value or "").strip()
    return value[:-2] if value.endswith(".0") else value


@dataclass(frozen=True, slots=True)
class _Tweet:
    tweet_id: str
    author_id: str
    customer: bool
    at: datetime
    text: str
    parent: str


def read_twcs(lines: Iterable[str], source: str = "<twcs>") -> History:
    """Customer tweets -> inbound messages; company answers to them -> staff answers."""
    history = History(source=source, format="twcs")
    reader = csv.DictReader(lines)
    missing = TWCS_COLUMNS - set(reader.fieldnames or ())
    if missing:
        raise ReplayError(f"{source}: not a TWCS CSV (missing columns: "
                           f"{', '.join(sorted(missing))}) and not JSONL")
    tweets: dict[str, _Tweet] = {}
    order: list[_Tweet] = []
    for row in reader:
        tweet = _twcs_row(row, history)
        if tweet is None:
            continue
        if tweet.tweet_id in tweets:
            order.append(tweet)  # the core's dedupe decides; it is reported as a duplicate
            continue
        tweets[tweet.tweet_id] = tweet
        order.append(tweet)
    roots: dict[str, str | None] = {}
    for tweet in order:
        if tweet.customer:
            root = _conversation_root(tweet, tweets, roots)
            history.events.append(CustomerMessage(tweet.at, Inbound(
                channel="twitter", external_id=tweet.tweet_id,
                thread_key=f"conv:{root}:{tweet.author_id}", author_id=tweet.author_id,
                text=tweet.text, sent_at=tweet.at, author_handle=f"@{tweet.author_id}",
                reply_target={"in_reply_to_tweet_id": tweet.tweet_id})))
        elif (parent := tweets.get(tweet.parent)) is not None and parent.customer:
            history.events.append(StaffAnswer(tweet.at, "twitter", parent.tweet_id, tweet.text))
        else:
            history.skip(ANSWER, "answers no customer tweet in the file")
    return history


def _twcs_row(row: dict[str, Any], history: History) -> _Tweet | None:
    """One CSV row as a tweet, or None (counted as skipped with the reason)."""
    flag = (row.get("inbound") or "").strip().lower()
    kind = {"true": INBOUND, "false": ANSWER}.get(flag, "unknown")
    history.read[kind] += 1
    if kind == "unknown":
        history.skip(kind, "inbound is neither True nor False")
        return None
    tweet_id, author = _tweet_id(row.get("tweet_id")), (row.get("author_id") or "").strip()
    if not tweet_id or not author:
        history.skip(kind, "no tweet_id or author_id")
        return None
    try:
        at = datetime.strptime((row.get("created_at") or "").strip(), TWCS_TIME)
    except ValueError:
        history.skip(kind, "created_at is not a Twitter time")
        return None
    return _Tweet(tweet_id, author, kind == INBOUND, at.astimezone(UTC),
                  row.get("text") or "", _tweet_id(row.get("in_response_to_tweet_id")))


def _conversation_root(tweet: _Tweet, tweets: dict[str, _Tweet],
                       roots: dict[str, str | None]) -> str:
    """The first customer tweet of the conversation, following in_response_to links.

    The links run through company answers too (customer -> company -> customer), so a
    customer's follow-up lands in the ticket of their first tweet. Where the chain leaves
    the file, the earliest customer tweet reached is the root. ``roots`` memoizes, per
    tweet, the topmost customer tweet at or above it, so a long conversation costs one walk.
    """
    chain: list[_Tweet] = []
    seen: set[str] = set()
    current: _Tweet | None = tweet
    while current is not None and current.tweet_id not in roots:
        if current.tweet_id in seen:  # a cycle in broken data: stop where it closes
            break
        seen.add(current.tweet_id)
        chain.append(current)
        current = tweets.get(current.parent)
    top = roots.get(current.tweet_id) if current is not None else None
    for node in reversed(chain):  # from the top down: the first customer found wins
        top = top or (node.tweet_id if node.customer else None)
        roots[node.tweet_id] = top
    return roots[tweet.tweet_id] or tweet.tweet_id


def read_jsonl(lines: Iterable[str], source: str = "<jsonl>") -> History:
    """One JSON object per line: {"at", "kind": "in"|"answer", "channel", "id", ...}."""
    history = History(source=source, format="jsonl")
    channels_of: dict[str, str] = {}  # message id -> channel, for answers without one
    pending: list[tuple[datetime, dict[str, Any]]] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            kind = {"in": INBOUND, "answer": ANSWER}.get(item.get("kind"), "unknown")
        except (ValueError, AttributeError):
            history.read["unknown"] += 1
            history.skip("unknown", "not a JSON object")
            continue
        history.read[kind] += 1
        if kind == "unknown":
            history.skip(kind, 'kind is neither "in" nor "answer"')
            continue
        at = _iso_time(item.get("at"))
        if at is None:
            history.skip(kind, '"at" is not an ISO time')
            continue
        if kind == ANSWER:
            pending.append((at, item))
            continue
        inbound = _jsonl_inbound(item, at)
        if isinstance(inbound, str):
            history.skip(kind, inbound)
            continue
        channels_of.setdefault(inbound.external_id, inbound.channel)
        history.events.append(CustomerMessage(at, inbound))
    for at, item in pending:
        answers = str(item.get("answers") or "")
        channel = item.get("channel") or channels_of.get(answers)
        if not answers or channel not in CHANNELS:
            history.skip(ANSWER, '"answers" names no "in" message of the file')
            continue
        history.events.append(StaffAnswer(at, channel, answers, str(item.get("text") or "")))
    return history


def _jsonl_inbound(item: dict[str, Any], at: datetime) -> Inbound | str:
    """The Inbound of an "in" line, or the reason it cannot be one."""
    channel, message_id = item.get("channel"), str(item.get("id") or "")
    author = str(item.get("author") or "")
    if channel not in CHANNELS:
        return f"channel is not one of {', '.join(CHANNELS)}"
    if not message_id or not author:
        return 'no "id" or "author"'
    target = ({"in_reply_to_tweet_id": message_id} if channel == "twitter"
              else {"reply_to_message_id": message_id})
    return Inbound(channel=channel, external_id=message_id,
                   thread_key=str(item.get("thread") or f"author:{author}"), author_id=author,
                   text=str(item.get("text") or ""), sent_at=at,
                   author_handle=item.get("handle"), author_name=item.get("name"),
                   reply_target=target)


def _iso_time(value: Any) -> datetime | None:
    """An ISO 8601 time; one without an offset is UTC (histories are exported in UTC)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


# --- the replay ----------------------------------------------------------------------------


@dataclass
class ReplayRun:
    """What happened while replaying; the figures come from the database afterwards."""

    ingested: int = 0
    duplicates: int = 0
    answered: int = 0
    answer_skips: Counter = field(default_factory=Counter)
    sweeps: int = 0
    stalled_sweeps: int = 0
    until: datetime | None = None


def staff_actor(settings: Settings, name: str | None) -> Actor:
    """Who answers in the replay: the named member, the first admin, or "replay" (admin).

    StaffDesk authorizes by Actor only, so a config without staff still replays.
    """
    members = settings.staff.members
    if name is not None:
        for member in members:
            if member.name == name:
                return Actor(member.name, member.role)
        raise ReplayError(f"--staff-name {name}: not a staff member; staff: "
                         f"{', '.join(m.name for m in members) or 'none'}")
    admins = [m for m in members if m.role == "admin"]
    first = (admins or members or [None])[0]
    return Actor(first.name, first.role) if first else Actor("replay", "admin")


def end_of_local_day(moment: datetime, zone: ZoneInfo) -> datetime:
    """The next local midnight after `moment`: the default end of a replay."""
    local = moment.astimezone(zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
    return midnight.astimezone(UTC)


class Replayer:
    """The real core on a virtual clock: Inbox, StaffDesk and Escalator over one store."""

    def __init__(self, store: Store, settings: Settings, clock: VirtualClock, actor: Actor):
        self.store, self.clock, self.actor = store, clock, actor
        self.inbox = Inbox(store, settings, clock)
        self.desk = StaffDesk(store, settings, clock)
        self.escalator = Escalator(store, settings, clock)
        self.run = ReplayRun()

    async def replay(self, events: list[CustomerMessage | StaffAnswer], until: datetime) -> None:
        for group in _batches(events):
            await self.escalate_until(group[0].at)
            self.clock.set(max(self.clock.now(), group[0].at))
            if isinstance(group[0], StaffAnswer):
                await self._answer(group[0])
            else:
                result = await self.inbox.ingest([e.inbound for e in group])
                self.run.ingested += result.received
                self.run.duplicates += result.duplicates
        await self.escalate_until(until)
        self.clock.set(max(self.clock.now(), until))
        self.run.until = until

    async def escalate_until(self, moment: datetime) -> None:
        """Fire, in time order, every escalation due at or before `moment`."""
        idle, last_due = 0, None
        while (due := await self.escalator.next_due()) is not None and due <= moment:
            self.clock.set(max(self.clock.now(), due))
            fired = await self.escalator.sweep()
            self.run.sweeps += 1
            idle = idle + 1 if not fired and due == last_due else 0
            last_due = due
            if idle >= MAX_IDLE_SWEEPS:
                self.run.stalled_sweeps += 1  # reported: the engine kept a due time it ignores
                break

    async def _answer(self, answer: StaffAnswer) -> None:
        async with self.store.session() as session:
            ticket_id = await session.scalar(
                sa.select(Message.ticket_id).where(Message.channel == answer.channel,
                                                   Message.external_id == answer.answers))
        if ticket_id is None:
            # Its question was skipped, or the answer is older than the question.
            self.run.answer_skips["answers a message not ingested (yet)"] += 1
            return
        text = " ".join(answer.text.split()) or "…"
        reply = await self.desk.execute(self.actor, f"/reply {ticket_id} {text}")
        if reply.ok:
            self.run.answered += 1
        else:
            self.run.answer_skips[f"refused by /reply: {_plain(reply.text)}"] += 1


def _plain(html: str) -> str:
    for tag in ("<b>", "</b>", "<i>", "</i>"):
        html = html.replace(tag, "")
    return html[:80]


def _batches(events: list[CustomerMessage | StaffAnswer]
             ) -> Iterator[list[CustomerMessage | StaffAnswer]]:
    """Consecutive customer messages of the same moment form one ingest batch (as an
    adapter's poll would); each answer is its own step."""
    group: list[CustomerMessage | StaffAnswer] = []
    for event in events:
        if group and (isinstance(event, StaffAnswer) or isinstance(group[0], StaffAnswer)
                      or event.at != group[0].at):
            yield group
            group = []
        group.append(event)
    if group:
        yield group


async def replay_history(history: History, settings: Settings, *,
                         database_url: str | None = None, staff_name: str | None = None,
                         until: datetime | None = None) -> dict[str, Any]:
    """Replay `history` under `settings`; return the figures (see ``figures``).

    Without `database_url` the database is a temporary SQLite file, deleted afterwards.
    The config's own database is never touched.
    """
    actor = staff_actor(settings, staff_name)
    zone = ZoneInfo(settings.calendar.timezone)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sameday-replay-") as scratch:
        url = database_url or f"sqlite+aiosqlite:///{Path(scratch) / 'replay.db'}"
        # A throw-away database needs no power-loss durability: "normal" is much faster.
        database = DatabaseSettings(url=url, sqlite_synchronous="normal")
        settings = settings.model_copy(update={"database": database})
        upgrade(database)
        store = Store(database)
        try:
            events = history.events
            end = until or (end_of_local_day(events[-1].at, zone) if events else None)
            if events and end < events[-1].at:
                raise ReplayError(f"--until {end.isoformat()} is before the last event "
                                  f"({events[-1].at.isoformat()})")
            replayer = Replayer(store, settings, VirtualClock(events[0].at if events else
                                                              end or _EPOCH), actor)
            if end is not None:
                await replayer.replay(events, end)
            result = await figures(store, history, replayer.run, zone)
        finally:
            await store.close()
    result["run"]["seconds"] = round(time.monotonic() - started, 2)
    result["run"]["database"] = database_url or "temporary (deleted)"
    result["run"]["staff"] = actor.name
    return result


# --- the figures -----------------------------------------------------------------------------


async def figures(store: Store, history: History, run: ReplayRun, zone: ZoneInfo
                  ) -> dict[str, Any]:
    """The report as plain data (what `--format json` prints), read from the database."""
    async with store.session() as session:
        tickets = (await session.execute(sa.select(
            Ticket.id, Ticket.opened_at, Ticket.first_response_at))).all()
        opened = dict((await session.execute(
            sa.select(Event.ticket_id, Event.data).where(Event.kind == "opened"))).all())
        acks = await session.scalar(sa.select(sa.func.count()).select_from(Outbox)
                                    .where(Outbox.kind == OutboxKind.ACK))
        escalations = (await session.execute(
            sa.select(Escalation.ticket_id, Escalation.rule, Escalation.fired_at))).all()
    first_due = {ticket_id: datetime.fromisoformat(data["due_at"])
                 for ticket_id, data in opened.items() if data.get("due_at")}
    return {
        "source": {"file": history.source, "format": history.format,
                   "timezone": zone.key, "until": run.until.isoformat() if run.until else None},
        "messages": _message_figures(history, run),
        "tickets": _ticket_figures(tickets, first_due, acks, zone),
        "answers": _answer_figures(tickets, first_due, run.until, zone),
        "escalations": _escalation_figures(escalations, zone),
        "run": {"sweeps": run.sweeps, "stalled_sweeps": run.stalled_sweeps},
    }


def _message_figures(history: History, run: ReplayRun) -> dict[str, Any]:
    inbound_skipped = Counter(history.skipped.get(INBOUND, {}))
    if run.duplicates:
        inbound_skipped["duplicate (already ingested)"] += run.duplicates
    answer_skipped = Counter(history.skipped.get(ANSWER, {})) + run.answer_skips
    return {
        "read": dict(history.read),
        "inbound": {"rows": history.read[INBOUND], "ingested": run.ingested,
                    "skipped": sum(inbound_skipped.values()),
                    "skipped_by_reason": dict(inbound_skipped)},
        "answers": {"rows": history.read[ANSWER], "applied": run.answered,
                    "skipped": sum(answer_skipped.values()),
                    "skipped_by_reason": dict(answer_skipped)},
        "unknown": {"rows": history.read["unknown"],
                    "skipped_by_reason": dict(history.skipped.get("unknown", {}))},
    }


def _ticket_figures(tickets: list, first_due: dict[int, datetime], acks: int,
                    zone: ZoneInfo) -> dict[str, Any]:
    days: Counter = Counter()
    for ticket_id, opened_at, _ in tickets:
        due = first_due.get(ticket_id)
        if due is not None:
            days[_local_days(opened_at, due, zone)] += 1
    return {"opened": len(tickets), "acknowledgements": acks, "promises": sum(days.values()),
            "promised_for": {_day_label(n): days[n] for n in sorted(days)}}


def _local_days(start: datetime, end: datetime, zone: ZoneInfo) -> int:
    return (end.astimezone(zone).date() - start.astimezone(zone).date()).days


def _day_label(days: int) -> str:
    return {0: "same day", 1: "next day"}.get(days, f"{days} days later" if days > 1
                                               else "earlier day")


def _answer_figures(tickets: list, first_due: dict[int, datetime], end: datetime | None,
                    zone: ZoneInfo) -> dict[str, Any]:
    """Same-day rate, promises kept and first response times, over the first cycle."""
    answered = [(tid, o, f) for tid, o, f in tickets if f is not None]
    same_day = sum(1 for _, o, f in answered if _local_days(o, f, zone) == 0)
    kept = sum(1 for tid, _, f in answered if tid in first_due and f <= first_due[tid])
    broken_answered = sum(1 for tid, _, f in answered if tid in first_due and f > first_due[tid])
    overdue = sum(1 for tid, _, f in tickets if f is None and tid in first_due
                  and end is not None and first_due[tid] < end)
    judged = kept + broken_answered + overdue
    waits = [(f - o).total_seconds() for _, o, f in answered]
    return {
        "answered": len(answered),
        "same_day": same_day,
        "same_day_rate": _rate(same_day, len(tickets)),
        "promises_kept": kept,
        "promises_broken": broken_answered + overdue,
        "promises_judged": judged,
        "promises_kept_rate": _rate(kept, judged),
        "unanswered_overdue": overdue,
        "median_first_response_seconds": statistics.median(waits) if waits else None,
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _escalation_figures(escalations: list, zone: ZoneInfo) -> dict[str, Any]:
    by_rule = Counter(rule for _, rule, _ in escalations)
    by_hour = Counter(at.astimezone(zone).hour for _, _, at in escalations)
    return {"total": len(escalations), "tickets": len({tid for tid, _, _ in escalations}),
            "by_rule": dict(by_rule.most_common()),
            "by_local_hour": {f"{hour:02d}": by_hour[hour] for hour in range(24)
                              if by_hour[hour]}}


# --- the readable report -----------------------------------------------------------------


def print_report(report: dict[str, Any], console: Console) -> None:
    """The figures as rich tables, in the order an admin reads them."""
    source, messages = report["source"], report["messages"]
    console.print(f"[bold]Replay of {source['file']}[/] ({source['format']}; local time "
                  f"{source['timezone']}; escalations run until {source['until']})",
                  highlight=False)
    console.print(_messages_table(messages))
    tickets, answers = report["tickets"], report["answers"]
    summary = Table(title="Tickets and answers", show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    for label, value in [
        ("tickets opened", tickets["opened"]),
        ("acknowledgements queued", tickets["acknowledgements"]),
        ("promises made", tickets["promises"]),
        *[(f"  due {label}", n) for label, n in tickets["promised_for"].items()],
        ("tickets answered", answers["answered"]),
        ("same-day answer rate", _percent(answers["same_day_rate"], answers["same_day"],
                                          tickets["opened"])),
        ("promises kept", _percent(answers["promises_kept_rate"], answers["promises_kept"],
                                   answers["promises_judged"])),
        ("unanswered and overdue at the end", answers["unanswered_overdue"]),
        ("median first response", _duration(answers["median_first_response_seconds"])),
    ]:
        summary.add_row(label, str(value))
    console.print(summary)
    console.print(_escalations_table(report["escalations"]))
    run = report["run"]
    console.print(f"{run['sweeps']} sweeps in {run['seconds']} s; database: {run['database']}; "
                  f"answers by {run['staff']}", highlight=False)
    if run["stalled_sweeps"]:
        console.print(f"[yellow]warning: the escalation engine kept a due time it did not fire "
                      f"{run['stalled_sweeps']} time(s); those escalations were left out[/]")


def _messages_table(messages: dict[str, Any]) -> Table:
    table = Table(title="Messages read")
    for column in ("kind", "rows", "replayed", "skipped", "why skipped"):
        table.add_column(column, justify="left" if column in ("kind", "why skipped")
                         else "right")
    for label, key, done in (("customer messages", "inbound", "ingested"),
                             ("staff answers", "answers", "applied")):
        part = messages[key]
        reasons = "; ".join(f"{n} {why}" for why, n in part["skipped_by_reason"].items())
        table.add_row(label, str(part["rows"]), str(part[done]), str(part["skipped"]),
                      reasons or "—")
    unknown = messages["unknown"]
    if unknown["rows"]:
        reasons = "; ".join(f"{n} {why}" for why, n in unknown["skipped_by_reason"].items())
        table.add_row("unreadable", str(unknown["rows"]), "0", str(unknown["rows"]), reasons)
    return table


def _escalations_table(escalations: dict[str, Any]) -> Table:
    table = Table(title=f"Escalations: {escalations['total']} on {escalations['tickets']} "
                        f"ticket(s)")
    table.add_column("rule")
    table.add_column("fired", justify="right")
    for rule, n in escalations["by_rule"].items():
        table.add_row(rule, str(n))
    hours = escalations["by_local_hour"]
    if hours:
        peak = max(hours.values())
        table.add_section()
        for hour, n in hours.items():
            table.add_row(f"{hour}:00–{hour}:59 {'█' * max(1, round(20 * n / peak))}", str(n))
    return table


def _percent(rate: float | None, part: int, whole: int) -> str:
    return "—" if rate is None else f"{rate:.0%} ({part} of {whole})"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
