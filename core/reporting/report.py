"""The same-day report: what the admin reads to know whether customers got their answer today.

Two layers, so the arithmetic can be checked by hand without a database:

- ``load_report_data`` (``core.reporting.facts``) reads plain facts (tickets, sent
  acknowledgements, audit events) from the store in one read transaction;
- ``compute_report`` and its small pure helpers turn those facts into a ``Report``.

The period is ``core.reporting.period``, the output ``core.reporting.render``. The
same-day rate, promises, percentiles and local days are defined once in
``core.domain.kpi`` (``/stats``, ``/metrics`` and ``sameday replay`` use them too).

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

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.config.channels import channel_names
from core.config.settings import Settings
from core.domain import lifecycle
from core.domain.kpi import (
    Rate,
    Spread,
    first_response_spread,
    promise_kept,
    same_day_rate,
    seconds_between,
)
from core.domain.survey import Csat
from core.reporting.agents import AgentFigures, agent_figures
from core.reporting.facts import (
    EventFacts,
    ReportData,
    SurveyFacts,
    TicketFacts,
    load_report_data,
)
from core.reporting.period import Period, hour_starts, period_of
from core.retention.purge import KINDS as PURGE_KINDS
from core.retention.purge import PURGED_EVENT, purged_counts
from core.store.engine import Store

BACKLOG_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("<1h", timedelta(hours=1)),
    ("1-4h", timedelta(hours=4)),
    ("4-24h", timedelta(hours=24)),
    (">1d", None),
)


# --- the pure arithmetic -------------------------------------------------------------------


def waiting_since_at(ticket: TicketFacts, at: datetime) -> datetime | None:
    """Since when the ticket has been waiting for staff at `at` (None: it was not).

    Reconstructed from the ticket's times, so a report of a past period shows the backlog
    as it was then: waiting from opening until the first answer or the close; and, in a
    later waiting cycle (the customer wrote again), from ``waiting_since`` on.
    """
    if ticket.opened_at > at or (ticket.closed_at is not None and ticket.closed_at <= at):
        return None
    if ticket.status in lifecycle.WAITING and ticket.waiting_since is not None \
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
    # The satisfaction survey: questions delivered in the period and their answers.
    csat: Csat = Csat(0)
    csat_by_channel: dict[str, Csat] = field(default_factory=dict)
    # Per staff member (sameday report --by agent): core.reporting.agents.
    agents: dict[str, AgentFigures] = field(default_factory=dict)
    # What the retention purge emptied in the period, by kind (core.retention.purge):
    # texts and payloads go, the figures above do not change.
    purged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PURGE_KINDS, 0))

    @property
    def scope(self) -> str:
        """The channel column of overall figures: the filtered channel, or "all"."""
        return self.channel or "all"

    def to_dict(self, by_agent: bool = False) -> dict[str, Any]:
        """Plain JSON-ready data; times ISO 8601 UTC, durations in seconds, rates 0..1;
        ``by_agent`` adds the figures of each staff member."""
        data = {
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
            "csat": {"all": self.csat.to_dict(),
                     "by_channel": {c: v.to_dict() for c, v in self.csat_by_channel.items()}},
            "purged": dict(self.purged),
        }
        if by_agent:
            data["agents"] = {name: a.to_dict() for name, a in self.agents.items()}
        return data

    def figures(self, by_agent: bool = False) -> list[tuple[str, str, Any]]:
        """One (name, channel, value) row per figure, the headline first (the CSV rows);
        ``by_agent`` adds agent.<name>.<figure> rows."""
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
        rows += [(f"purged.{kind}", scope, n) for kind, n in self.purged.items()]
        for channel, csat in [(scope, self.csat), *self.csat_by_channel.items()]:
            rows += [("surveys_asked", channel, csat.asked),
                     ("survey_responses", channel, csat.responses),
                     ("survey_response_rate", channel, csat.response_rate.value),
                     ("csat_average", channel, csat.average),
                     ("csat_satisfied_rate", channel, csat.satisfied.value)]
        if by_agent:
            rows += [(f"agent.{name}.{figure}", scope, value)
                     for name, agent in self.agents.items() for figure, value in agent.figures()]
        return rows


def _rate_dict(rate: Rate) -> dict[str, Any]:
    return {"answered": rate.part, "opened": rate.whole, "rate": rate.value}


def _channels_in(items: Iterable[TicketFacts | SurveyFacts]) -> list[str]:
    """Channels in a fixed order (known ones first), so tables and charts do not shuffle."""
    seen = {item.channel for item in items}
    return [c for c in channel_names() if c in seen] + sorted(seen - set(channel_names()))


def compute_report(data: ReportData, period: Period, channel: str | None = None) -> Report:
    """All figures of the period from plain facts (already filtered to `channel`)."""
    zone = period.zone
    opened = [t for t in data.tickets if period.since <= t.opened_at < period.until]
    events = [e for e in data.events if period.since <= e.at < period.until]
    judged = [k for k in (promise_kept(t.first_due_at, t.first_response_at, period.as_of)
                          for t in opened) if k is not None]
    first_response = {c: first_response_spread(_waits(t for t in opened if t.channel == c))
                      for c in _channels_in(opened)}
    first_response["all"] = first_response_spread(_waits(opened))
    return Report(
        period=period,
        channel=channel,
        same_day=same_day_rate(_waits(opened), zone),
        same_day_by_channel={c: same_day_rate(_waits(t for t in opened if t.channel == c), zone)
                             for c in _channels_in(opened)},
        received=sum(1 for e in events if e.kind == "received"),
        opened=len(opened),
        acknowledged=sum(1 for t in opened if t.acked_at is not None),
        ack_latency=Spread.of([seconds_between(t.opened_at, data.ack_sent[t.id])
                               for t in opened if t.id in data.ack_sent]),
        first_response=first_response,
        promises=Rate(sum(judged), len(judged)),
        escalations=dict(Counter(str(e.data.get("rule", "?")) for e in events
                                 if e.kind == "escalated").most_common()),
        backlog=backlog(data.tickets, period.as_of),
        dead_letters=sum(1 for e in events if e.kind == "dead_letter"),
        hourly=_hourly(data.tickets, events, period),
        csat=_csat(data.surveys),
        csat_by_channel={c: _csat(s for s in data.surveys if s.channel == c)
                         for c in _channels_in(data.surveys)},
        agents=agent_figures(opened, events, data.surveys, data.first_answered_by, zone,
                             period.as_of),
        purged=_purged(events),
    )


def _purged(events: Iterable[EventFacts]) -> dict[str, int]:
    total = dict.fromkeys(PURGE_KINDS, 0)
    for event in events:
        if event.kind == PURGED_EVENT:
            for kind, count in purged_counts(event.data).items():
                total[kind] += count
    return total


def _csat(surveys: Iterable[SurveyFacts]) -> Csat:
    surveys = list(surveys)
    return Csat.of(len(surveys), [s.score for s in surveys])


def _waits(tickets: Iterable[TicketFacts]) -> list[tuple[datetime, datetime | None]]:
    """(opened_at, first_response_at) of each ticket: what the kpi functions count."""
    return [(t.opened_at, t.first_response_at) for t in tickets]


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


# --- for callers ---------------------------------------------------------------------------


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
    period = period_of(zone, now or until or datetime.now(UTC), since, until)
    return await report_for_period(store, period, channel)
