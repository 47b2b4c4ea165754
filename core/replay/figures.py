"""The figures of a replay, read from its database afterwards, and their tables.

The same-day rate, promises and local days are those of ``core.domain.kpi``, so a replay
counts a ticket as the report and ``/stats`` would.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from core.domain.kpi import (
    Rate,
    first_response_seconds,
    local_days_between,
    median,
    promise_kept,
    same_day_rate,
)
from core.domain.records import OutboxKind
from core.replay.history import ANSWER, INBOUND, Rows
from core.store.engine import Store
from core.store.tables import Escalation, Event, Outbox, Ticket


@dataclass
class ReplayRun:
    """What happened while replaying (counted by ``Replayer``); the figures come from the
    database afterwards."""

    ingested: int = 0
    duplicates: int = 0
    answered: int = 0
    answer_skips: Counter = field(default_factory=Counter)
    sweeps: int = 0
    stalled_sweeps: int = 0
    until: datetime | None = None


PAGE = 5_000  # tickets or escalations read at a time: the figures' memory stays flat


async def figures(store: Store, history: Rows, run: ReplayRun, zone: ZoneInfo
                  ) -> dict[str, Any]:
    """The report as plain data (what `--format json` prints), read from the database a
    page at a time."""
    tickets = _TicketTally(zone, run.until)
    escalations = _EscalationTally(zone)
    async with store.session() as session:
        async for page in _pages(session, sa.select(
                Ticket.id, Ticket.opened_at, Ticket.first_response_at, _FIRST_PROMISE)):
            tickets.add(page)
        async for page in _pages(session, sa.select(
                Escalation.id, Escalation.ticket_id, Escalation.rule, Escalation.fired_at)):
            escalations.add(page)
        acks = await session.scalar(sa.select(sa.func.count()).select_from(Outbox)
                                    .where(Outbox.kind == OutboxKind.ACK))
        escalated = await session.scalar(sa.select(
            sa.func.count(sa.distinct(Escalation.ticket_id))))
    return {
        "source": {"file": history.source, "format": history.format,
                   "timezone": zone.key, "until": run.until.isoformat() if run.until else None},
        "messages": _message_figures(history, run),
        "tickets": tickets.ticket_figures(acks),
        "answers": tickets.answer_figures(),
        "escalations": escalations.figures(escalated),
        "run": {"sweeps": run.sweeps, "stalled_sweeps": run.stalled_sweeps},
    }


# The ticket's first promise: the due time its "opened" event recorded (the latest such
# event, should there be several).
_FIRST_PROMISE = (sa.select(Event.data).where(Event.ticket_id == Ticket.id,
                                              Event.kind == "opened")
                  .order_by(Event.id.desc()).limit(1).scalar_subquery())


async def _pages(session: AsyncSession, query: sa.Select) -> AsyncIterator[list]:
    """The rows of `query` (whose first column is the table's id) in id order, a page
    at a time."""
    key, last = query.selected_columns[0], None
    while True:
        bounded = query if last is None else query.where(key > last)
        page = (await session.execute(bounded.order_by(key).limit(PAGE))).all()
        if not page:
            return
        yield page
        last = page[-1][0]


def _message_figures(history: Rows, run: ReplayRun) -> dict[str, Any]:
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


class _TicketTally:
    """The ticket and answer figures, gathered a page of tickets at a time: the same
    kpi functions over the same (opened_at, first_response_at, first promise) facts."""

    def __init__(self, zone: ZoneInfo, end: datetime | None):
        self.zone, self.end = zone, end
        self.opened = self.answered = self.same_day = 0
        self.kept = self.broken = self.unanswered_overdue = 0
        self.days: Counter = Counter()  # local days from opening to the first promise
        self.waits = array("d")  # first-response seconds of the answered tickets

    def add(self, page: list) -> None:
        waits = [(opened_at, first_response_at) for _, opened_at, first_response_at, _ in page]
        for _, opened_at, first_response_at, opened in page:
            due = datetime.fromisoformat(opened["due_at"]) if opened and \
                opened.get("due_at") else None
            if due is not None:
                self.days[local_days_between(opened_at, due, self.zone)] += 1
            verdict = promise_kept(due, first_response_at, self.end)
            self.kept += verdict is True
            self.broken += verdict is False
            self.unanswered_overdue += verdict is False and first_response_at is None
        same_day = same_day_rate(waits, self.zone)
        self.same_day += same_day.part
        self.opened += same_day.whole
        self.answered += sum(1 for _, first_response_at in waits
                             if first_response_at is not None)
        self.waits.extend(first_response_seconds(waits))

    def ticket_figures(self, acks: int) -> dict[str, Any]:
        days = self.days
        return {"opened": self.opened, "acknowledgements": acks,
                "promises": sum(days.values()),
                "promised_for": {_day_label(n): days[n] for n in sorted(days)}}

    def answer_figures(self) -> dict[str, Any]:
        """Same-day rate, promises kept and first response times, over the first cycle."""
        same_day = Rate(self.same_day, self.opened)
        promises = Rate(self.kept, self.kept + self.broken)
        return {
            "answered": self.answered,
            "same_day": same_day.part,
            "same_day_rate": same_day.value,
            "promises_kept": promises.part,
            "promises_broken": self.broken,
            "promises_judged": promises.whole,
            "promises_kept_rate": promises.value,
            "unanswered_overdue": self.unanswered_overdue,
            "median_first_response_seconds": median(self.waits.tolist()),
        }


def _day_label(days: int) -> str:
    return {0: "same day", 1: "next day"}.get(days, f"{days} days later" if days > 1
                                               else "earlier day")


class _EscalationTally:
    """Escalations per rule (most first; ties in the order rules first fired) and per
    local hour, a page at a time."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        self.total = 0
        self.by_rule: Counter = Counter()
        self.by_hour: Counter = Counter()

    def add(self, page: list) -> None:
        self.total += len(page)
        self.by_rule.update(rule for _, _, rule, _ in page)
        self.by_hour.update(at.astimezone(self.zone).hour for _, _, _, at in page)

    def figures(self, tickets: int) -> dict[str, Any]:
        by_hour = self.by_hour
        return {"total": self.total, "tickets": tickets,
                "by_rule": dict(self.by_rule.most_common()),
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
    console.print(f"{run['sweeps']} sweeps in {run['seconds']} s ({run['mode']}); database: "
                  f"{run['database']}; answers by {run['staff']}", highlight=False)
    if run.get("refused_chunks"):
        console.print(f"[yellow]note: {run['refused_chunks']} chunk(s) failed as one "
                      f"transaction and were replayed event by event (see the log)[/]")
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
