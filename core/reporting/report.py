"""The same-day report: what the admin reads to know whether customers got their answer today.

Two layers, so the arithmetic can be checked by hand without a database:

- ``load_report_data`` reads plain facts (tickets, sent acknowledgements, audit events)
  from the store in one read transaction;
- ``compute_report`` and its small pure helpers turn those facts into a ``Report``.

Definitions (docs/staff.md, "The same-day report", says the same in words):

- the period is ``[since, until)``; "today" means local days of ``calendar.timezone``;
- **answered the same day** (the headline): tickets opened in the period whose first staff
  answer falls on the same *local calendar day* as the ticket was opened, divided by all
  tickets opened in the period (an unanswered ticket counts against the rate);
- **promises kept**: a ticket's first promise is judged once it is answered (kept when the
  first answer came at or before it) or once it has passed unanswered (broken);
- **percentiles** are *nearest-rank*: the p-th percentile of n sorted values is the value
  at rank ``ceil(p/100 * n)``. It is always one of the observed values, so "p90 = 2h"
  means one real ticket waited 2h, and the figure is easy to check by hand;
- **backlog**: tickets waiting for staff (not closed, not answered in their current
  waiting cycle) at the report's moment ``as_of`` = the earlier of ``until`` and now,
  bucketed by how long they have waited.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from sqlalchemy.ext.asyncio import AsyncSession

from core.config.durations import format_duration
from core.config.settings import CHANNELS, Settings
from core.domain.records import OutboxKind, OutboxState, TicketStatus
from core.store.engine import Store
from core.store.tables import Event, Outbox, Ticket

BACKLOG_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("<1h", timedelta(hours=1)),
    ("1-4h", timedelta(hours=4)),
    ("4-24h", timedelta(hours=24)),
    (">1d", None),
)
WAITING = (TicketStatus.OPEN, TicketStatus.SNOOZED)
EVENT_KINDS = ("received", "answered", "escalated", "dead_letter")


# --- the period ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """``[since, until)`` in UTC, the local zone, and the moment the backlog is measured."""

    since: datetime
    until: datetime
    zone: ZoneInfo
    as_of: datetime


def parse_moment(text: str, zone: ZoneInfo, *, end: bool = False) -> datetime:
    """A date ("2026-11-24") or ISO datetime as an aware UTC instant.

    A bare date means a whole local day: its start for --since, and the next midnight for
    --until, so ``--since 2026-11-24 --until 2026-11-24`` is that one day. A datetime
    without an offset is local time (what an admin types); one with an offset is exact.
    Raises ValueError with the accepted forms.
    """
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None:
        return local_midnight(day + timedelta(days=1) if end else day, zone)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date like 2026-11-24 or a time like "
                         f"2026-11-24T18:00 (local) or 2026-11-24T15:00+00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def make_period(since: str | None, until: str | None, zone: ZoneInfo, now: datetime) -> Period:
    """The period the options describe; by default the local day of now (or of --until).

    Without --until the period runs to the end of *today*, so ``--since 2026-11-01`` reads
    "from the 1st up to now". Without --since it starts at the local midnight of the day
    --until falls in (or of today).
    """
    end = parse_moment(until, zone, end=True) if until else \
        local_midnight(now.astimezone(zone).date() + timedelta(days=1), zone)
    if since:
        start = parse_moment(since, zone)
    else:
        # The day --until belongs to: an instant just before an exclusive midnight end.
        last = (end - timedelta(microseconds=1)).astimezone(zone).date()
        start = local_midnight(last, zone)
    if start >= end:
        raise ValueError(f"the period is empty: --since {start.astimezone(zone):%Y-%m-%d %H:%M} "
                         f"is not before --until {end.astimezone(zone):%Y-%m-%d %H:%M}")
    return Period(since=start, until=end, zone=zone, as_of=min(end, now))


# --- plain facts read from the store -------------------------------------------------------


@dataclass(frozen=True)
class TicketFacts:
    """The columns of one ticket the report needs.

    ``first_due_at`` is the promise made when the ticket was opened; ``due_at`` is the
    promise of the current waiting cycle (they differ once the customer wrote again after
    an answer). Promises kept are judged on the first one, like the first response.
    """

    id: int
    channel: str
    status: str
    opened_at: datetime
    first_due_at: datetime | None
    due_at: datetime | None = None
    waiting_since: datetime | None = None
    acked_at: datetime | None = None
    first_response_at: datetime | None = None
    closed_at: datetime | None = None


@dataclass(frozen=True)
class EventFacts:
    kind: str
    channel: str | None
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportData:
    tickets: list[TicketFacts]
    ack_sent: dict[int, datetime]  # ticket id -> when its acknowledgement was delivered
    events: list[EventFacts]


# --- the pure arithmetic -------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values): a real observation, checkable by hand."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def same_local_day(a: datetime, b: datetime, zone: ZoneInfo) -> bool:
    """Whether two instants fall on one calendar day *where the team works*, not in UTC."""
    return a.astimezone(zone).date() == b.astimezone(zone).date()


def answered_same_day(ticket: TicketFacts, zone: ZoneInfo) -> bool:
    return ticket.first_response_at is not None and \
        same_local_day(ticket.opened_at, ticket.first_response_at, zone)


def promise_kept(ticket: TicketFacts, as_of: datetime) -> bool | None:
    """True/False once the first promise can be judged; None while it still may be kept."""
    due = ticket.first_due_at
    if due is None:
        return None
    if ticket.first_response_at is not None:
        return ticket.first_response_at <= due
    return False if due < as_of else None


def waiting_since_at(ticket: TicketFacts, at: datetime) -> datetime | None:
    """Since when the ticket has been waiting for staff at `at` (None: it was not).

    Reconstructed from the ticket's times, so a report of a past period shows the backlog
    as it was then: waiting from opening until the first answer or the close; and, in a
    later waiting cycle (the customer wrote again), from ``waiting_since`` on.
    """
    if ticket.opened_at > at or (ticket.closed_at is not None and ticket.closed_at <= at):
        return None
    if ticket.status in WAITING and ticket.waiting_since is not None \
            and ticket.waiting_since > ticket.opened_at and ticket.waiting_since <= at:
        return ticket.waiting_since
    if ticket.first_response_at is None or ticket.first_response_at > at:
        return ticket.opened_at
    return None


def due_while_waiting(ticket: TicketFacts, since: datetime) -> datetime | None:
    """The promise that applies to a wait that started at `since`."""
    return ticket.first_due_at if since == ticket.opened_at else ticket.due_at


def backlog_bucket(age: timedelta) -> str:
    """The bucket label of a wait; each bucket includes its lower bound (1h is "1-4h")."""
    for label, upper in BACKLOG_BUCKETS:
        if upper is None or age < upper:
            return label
    raise AssertionError("the last bucket is open-ended")


def backlog(tickets: Iterable[TicketFacts], at: datetime) -> dict[str, int]:
    counts = dict.fromkeys((label for label, _ in BACKLOG_BUCKETS), 0)
    for ticket in tickets:
        since = waiting_since_at(ticket, at)
        if since is not None:
            counts[backlog_bucket(at - since)] += 1
    return counts


def overdue_at(tickets: Iterable[TicketFacts], at: datetime) -> int:
    """Tickets waiting at `at` whose promise had already passed."""
    count = 0
    for ticket in tickets:
        since = waiting_since_at(ticket, at)
        due = due_while_waiting(ticket, since) if since is not None else None
        if due is not None and due < at:
            count += 1
    return count


def hour_starts(period: Period) -> list[datetime]:
    """The local hours of the period (UTC instants); a DST day has 23 or 25."""
    first = period.since.astimezone(period.zone).replace(minute=0, second=0, microsecond=0)
    start = first.astimezone(UTC)
    hours = []
    while start < period.until:
        hours.append(start)
        start += timedelta(hours=1)  # UTC arithmetic: real hours across DST changes
    return hours


@dataclass(frozen=True)
class Rate:
    part: int
    whole: int

    @property
    def value(self) -> float | None:
        return round(self.part / self.whole, 4) if self.whole else None


@dataclass(frozen=True)
class Spread:
    """Nearest-rank p50/p90 of durations in seconds, and how many there were."""

    count: int
    p50: float | None
    p90: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Spread:
        return cls(len(seconds), percentile(seconds, 50), percentile(seconds, 90))


@dataclass(frozen=True)
class HourSlot:
    start: datetime
    arrivals: int
    answers: int
    overdue: int | None  # None for hours after as_of (not happened yet)


@dataclass
class Report:
    period: Period
    channel: str | None
    same_day: Rate
    same_day_by_channel: dict[str, Rate]
    received: int
    opened: int
    acknowledged: int
    ack_latency: Spread
    first_response: dict[str, Spread]  # per channel, plus "all"
    promises: Rate
    escalations: dict[str, int]
    backlog: dict[str, int]
    dead_letters: int
    hourly: list[HourSlot]

    @property
    def scope(self) -> str:
        """The channel column of overall figures: the filtered channel, or "all"."""
        return self.channel or "all"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; times ISO 8601 UTC, durations in seconds, rates 0..1."""
        return {
            "period": {"since": self.period.since.isoformat(),
                       "until": self.period.until.isoformat(),
                       "as_of": self.period.as_of.isoformat(),
                       "timezone": self.period.zone.key, "channel": self.scope},
            "same_day": _rate_dict(self.same_day),
            "same_day_by_channel": {c: _rate_dict(r) for c, r in self.same_day_by_channel.items()},
            "messages_received": self.received,
            "tickets_opened": self.opened,
            "acknowledged": self.acknowledged,
            "ack_latency_seconds": vars(self.ack_latency),
            "first_response_seconds": {c: vars(s) for c, s in self.first_response.items()},
            "promises": {"kept": self.promises.part, "judged": self.promises.whole,
                         "rate": self.promises.value},
            "escalations": dict(self.escalations),
            "backlog": dict(self.backlog),
            "dead_letters": self.dead_letters,
            "hourly": [{"start": h.start.isoformat(), "arrivals": h.arrivals,
                        "answers": h.answers, "overdue": h.overdue} for h in self.hourly],
        }

    def figures(self) -> list[tuple[str, str, Any]]:
        """One (name, channel, value) row per figure, the headline first (the CSV rows)."""
        scope = self.scope
        rows: list[tuple[str, str, Any]] = [
            ("same_day_rate", scope, self.same_day.value),
            ("same_day_answered", scope, self.same_day.part),
            ("tickets_opened", scope, self.opened),
            ("messages_received", scope, self.received),
            ("acknowledged", scope, self.acknowledged),
            ("ack_latency_p50_seconds", scope, self.ack_latency.p50),
            ("ack_latency_p90_seconds", scope, self.ack_latency.p90),
        ]
        for channel, rate in self.same_day_by_channel.items():
            rows.append(("same_day_rate", channel, rate.value))
        for channel, spread in self.first_response.items():
            where = scope if channel == "all" else channel
            rows += [("first_response_answered", where, spread.count),
                     ("first_response_p50_seconds", where, spread.p50),
                     ("first_response_p90_seconds", where, spread.p90)]
        rows += [("promises_kept", scope, self.promises.part),
                 ("promises_judged", scope, self.promises.whole),
                 ("promises_kept_rate", scope, self.promises.value)]
        rows += [(f"escalations.{rule}", scope, n) for rule, n in self.escalations.items()]
        rows += [(f"backlog.{bucket}", scope, n) for bucket, n in self.backlog.items()]
        rows.append(("dead_letters", scope, self.dead_letters))
        return rows


def _rate_dict(rate: Rate) -> dict[str, Any]:
    return {"answered": rate.part, "opened": rate.whole, "rate": rate.value}


def _channels_in(tickets: Iterable[TicketFacts]) -> list[str]:
    """Channels in a fixed order (known ones first), so tables and charts do not shuffle."""
    seen = {t.channel for t in tickets}
    return [c for c in CHANNELS if c in seen] + sorted(seen - set(CHANNELS))


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def compute_report(data: ReportData, period: Period, channel: str | None = None) -> Report:
    """All figures of the period from plain facts (already filtered to `channel`)."""
    zone = period.zone
    opened = [t for t in data.tickets if period.since <= t.opened_at < period.until]
    events = [e for e in data.events if period.since <= e.at < period.until]
    answered = [t for t in opened if t.first_response_at is not None]
    judged = [k for k in (promise_kept(t, period.as_of) for t in opened) if k is not None]
    first_response = {c: Spread.of([_seconds(t.first_response_at, t.opened_at)
                                    for t in answered if t.channel == c])
                      for c in _channels_in(opened)}
    first_response["all"] = Spread.of([_seconds(t.first_response_at, t.opened_at)
                                       for t in answered])
    return Report(
        period=period,
        channel=channel,
        same_day=_same_day(opened, zone),
        same_day_by_channel={c: _same_day([t for t in opened if t.channel == c], zone)
                             for c in _channels_in(opened)},
        received=sum(1 for e in events if e.kind == "received"),
        opened=len(opened),
        acknowledged=sum(1 for t in opened if t.acked_at is not None),
        ack_latency=Spread.of([_seconds(data.ack_sent[t.id], t.opened_at)
                               for t in opened if t.id in data.ack_sent]),
        first_response=first_response,
        promises=Rate(sum(judged), len(judged)),
        escalations=dict(Counter(str(e.data.get("rule", "?")) for e in events
                                 if e.kind == "escalated").most_common()),
        backlog=backlog(data.tickets, period.as_of),
        dead_letters=sum(1 for e in events if e.kind == "dead_letter"),
        hourly=_hourly(data.tickets, events, period),
    )


def _same_day(opened: list[TicketFacts], zone: ZoneInfo) -> Rate:
    return Rate(sum(1 for t in opened if answered_same_day(t, zone)), len(opened))


def _hourly(tickets: list[TicketFacts], events: list[EventFacts], period: Period
            ) -> list[HourSlot]:
    """Per local hour: arrivals, staff answers, and overdue waiting tickets at its end."""
    starts = hour_starts(period)
    arrivals = Counter(_hour_of(e.at, starts) for e in events if e.kind == "received")
    answers = Counter(_hour_of(e.at, starts) for e in events if e.kind == "answered")
    slots = []
    for i, start in enumerate(starts):
        end = min(start + timedelta(hours=1), period.until)
        overdue = overdue_at(tickets, end) if end <= period.as_of else None
        slots.append(HourSlot(start, arrivals[i], answers[i], overdue))
    return slots


def _hour_of(at: datetime, starts: list[datetime]) -> int:
    return int((at - starts[0]).total_seconds() // 3600)


# --- reading the store ---------------------------------------------------------------------


async def load_report_data(store: Store, period: Period, channel: str | None = None
                           ) -> ReportData:
    """Every fact the report needs, read in ONE transaction (a consistent snapshot)."""
    async with store.session() as session, session.begin():
        tickets = await _load_tickets(session, period, channel)
        ack_sent = await _load_acks(session, period, channel)
        events = await _load_events(session, period, channel)
    return ReportData(tickets, ack_sent, events)


async def report_for_period(store: Store, period: Period, channel: str | None = None
                            ) -> Report:
    return compute_report(await load_report_data(store, period, channel), period, channel)


async def build_report(store: Store, settings: Settings, *, since: datetime | None = None,
                       until: datetime | None = None, channel: str | None = None,
                       now: datetime | None = None) -> Report:
    """The report for aware datetimes, in the settings' calendar zone (for callers in code).

    Defaults: the local day of `until` (or of now). The backlog is measured at `now`, or
    at `until` when `now` is not given: a caller on a virtual clock (``sameday demo``)
    names the end of its day, which may lie ahead of the wall clock.
    """
    zone = ZoneInfo(settings.calendar.timezone)
    moment = now or until or datetime.now(UTC)
    end = until.astimezone(UTC) if until else \
        local_midnight(moment.astimezone(zone).date() + timedelta(days=1), zone)
    start = since.astimezone(UTC) if since else \
        local_midnight((end - timedelta(microseconds=1)).astimezone(zone).date(), zone)
    period = Period(since=start, until=end, zone=zone, as_of=min(end, moment))
    return await report_for_period(store, period, channel)


async def _load_tickets(session: AsyncSession, period: Period, channel: str | None
                        ) -> list[TicketFacts]:
    """Tickets opened in the period, plus any that may have waited during it (backlog,
    overdue line): opened before its end and neither closed nor answered before its start."""
    query = sa.select(Ticket).where(
        Ticket.opened_at < period.until,
        sa.or_(Ticket.closed_at.is_(None), Ticket.closed_at >= period.since),
        sa.or_(Ticket.first_response_at.is_(None), Ticket.first_response_at >= period.since,
               Ticket.status.in_(WAITING)))
    if channel:
        query = query.where(Ticket.channel == channel)
    rows = list(await session.scalars(query.order_by(Ticket.id)))
    first_due = await _first_promises(session, [t.id for t in rows if t.cycle > 1])
    return [TicketFacts(id=t.id, channel=t.channel, status=t.status, opened_at=t.opened_at,
                        first_due_at=first_due.get(t.id, t.due_at), due_at=t.due_at,
                        waiting_since=t.waiting_since, acked_at=t.acked_at,
                        first_response_at=t.first_response_at, closed_at=t.closed_at)
            for t in rows]


async def _first_promises(session: AsyncSession, ticket_ids: list[int]) -> dict[int, datetime]:
    """The promise made at opening, for tickets whose ``due_at`` moved to a later cycle."""
    if not ticket_ids:
        return {}
    rows = await session.execute(sa.select(Event.ticket_id, Event.data).where(
        Event.kind == "opened", Event.ticket_id.in_(ticket_ids)))
    promises = {}
    for ticket_id, data in rows:
        if data and data.get("due_at"):
            promises[ticket_id] = datetime.fromisoformat(data["due_at"]).astimezone(UTC)
    return promises


async def _load_acks(session: AsyncSession, period: Period, channel: str | None
                     ) -> dict[int, datetime]:
    """When each acknowledgement of a ticket opened in the period was delivered."""
    query = (sa.select(Outbox.ticket_id, Outbox.sent_at)
             .join(Ticket, Ticket.id == Outbox.ticket_id)
             .where(Outbox.kind == OutboxKind.ACK, Outbox.state == OutboxState.SENT,
                    Outbox.sent_at.is_not(None), Ticket.opened_at >= period.since,
                    Ticket.opened_at < period.until))
    if channel:
        query = query.where(Ticket.channel == channel)
    result: dict[int, datetime] = {}
    for ticket_id, sent_at in await session.execute(query):
        # One acknowledgement per ticket today; the earliest wins should that change.
        result[ticket_id] = min(sent_at, result.get(ticket_id, sent_at))
    return result


async def _load_events(session: AsyncSession, period: Period, channel: str | None
                       ) -> list[EventFacts]:
    query = sa.select(Event.kind, Event.channel, Event.at, Event.data).where(
        Event.kind.in_(EVENT_KINDS), Event.at >= period.since, Event.at < period.until)
    if channel:
        query = query.where(Event.channel == channel)
    return [EventFacts(kind, ch, at, data or {})
            for kind, ch, at, data in await session.execute(query.order_by(Event.at))]


# --- output --------------------------------------------------------------------------------


def report_csv(report: Report) -> str:
    """The figures as CSV (name,channel,value), one row per figure; empty value = none."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "channel", "value"])
    for name, channel, value in report.figures():
        writer.writerow([name, channel, "" if value is None else value])
    return buffer.getvalue()


def report_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


def human_duration(seconds: float | None) -> str:
    """"45s", "12m", "2h5m", "1d3h": minutes are exact enough for waits over ten minutes."""
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds >= 600:
        seconds = round(seconds / 60) * 60
    if seconds >= 86400:
        seconds = round(seconds / 3600) * 3600
    return format_duration(timedelta(seconds=seconds))


def _percent(rate: Rate) -> str:
    return "—" if rate.value is None else f"{rate.value:.0%} ({rate.part} of {rate.whole})"


def print_report(report: Report, console: Console) -> None:
    """The report as rich tables: the headline first, big, then the figures behind it."""
    console.print(_headline_panel(report))
    console.print(_summary_table(report))
    console.print(_channel_table(report))
    console.print(_counts_table("Escalations by rule", "rule", report.escalations,
                                empty="no escalation fired"))
    zone = report.period.zone
    console.print(_counts_table(
        f"Backlog at {report.period.as_of.astimezone(zone):%d.%m %H:%M} (waiting for staff)",
        "waiting", report.backlog))


def _period_words(report: Report) -> str:
    zone = report.period.zone
    since = report.period.since.astimezone(zone)
    until = report.period.until.astimezone(zone)
    if until - since == timedelta(days=1) and since.time() == time(0):
        words = f"{since:%a %d %b %Y}"
    else:
        words = f"{since:%d.%m.%Y %H:%M} – {until:%d.%m.%Y %H:%M}"
    scope = f" · {report.channel} only" if report.channel else ""
    return f"{words} ({zone.key}){scope}"


def _headline_panel(report: Report) -> Panel:
    rate = report.same_day
    big = "—" if rate.value is None else f"{rate.value:.0%}"
    color = "grey50" if rate.value is None else \
        "green" if rate.value >= 0.8 else "yellow" if rate.value >= 0.5 else "red"
    text = Text.assemble(("Answered the same day: ", "bold"), (big, f"bold {color}"),
                         (f"   {rate.part} of {rate.whole} tickets opened", ""))
    return Panel(text, title="sameday report", subtitle=_period_words(report),
                 expand=False, padding=(1, 4))


def _summary_table(report: Report) -> Table:
    table = Table(title="The period", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    acked = Rate(report.acknowledged, report.opened)
    for label, value in [
        ("messages received", str(report.received)),
        ("tickets opened", str(report.opened)),
        ("acknowledged", _percent(acked)),
        ("acknowledgement delivered after (p50 / p90)",
         f"{human_duration(report.ack_latency.p50)} / {human_duration(report.ack_latency.p90)}"),
        ("first response (p50 / p90)", f"{human_duration(report.first_response['all'].p50)} / "
                                       f"{human_duration(report.first_response['all'].p90)}"),
        ("promises kept", _percent(report.promises)),
        ("dead letters", str(report.dead_letters)),
    ]:
        table.add_row(label, value)
    return table


def _channel_table(report: Report) -> Table:
    table = Table(title="By channel", title_justify="left")
    for name in ("channel", "opened", "answered the same day", "first response p50", "p90"):
        table.add_column(name, justify="left" if name == "channel" else "right")
    for channel, rate in report.same_day_by_channel.items():
        spread = report.first_response[channel]
        table.add_row(channel, str(rate.whole), _percent(rate), human_duration(spread.p50),
                      human_duration(spread.p90))
    if not report.same_day_by_channel:
        table.add_row("—", "0", "—", "—", "—")
    return table


def _counts_table(title: str, what: str, counts: dict[str, int], empty: str = "") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(what)
    table.add_column("tickets" if what == "waiting" else "times", justify="right")
    for name, count in counts.items():
        table.add_row(name, str(count))
    if not counts:
        table.add_row(empty, "0")
    return table
