"""The figures of a replay, read from its database afterwards, and their tables.

The same-day rate, promises and local days are those of ``core.domain.kpi``, so a replay
counts a ticket as the report and ``/stats`` would.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from core.domain.kpi import (
    Rate,
    first_response_seconds,
    local_days_between,
    median,
    promise_kept,
    same_day_rate,
)
from core.domain.records import OutboxKind
from core.replay.history import ANSWER, INBOUND, History
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
            days[local_days_between(opened_at, due, zone)] += 1
    return {"opened": len(tickets), "acknowledgements": acks, "promises": sum(days.values()),
            "promised_for": {_day_label(n): days[n] for n in sorted(days)}}


def _day_label(days: int) -> str:
    return {0: "same day", 1: "next day"}.get(days, f"{days} days later" if days > 1
                                               else "earlier day")


def _answer_figures(tickets: list, first_due: dict[int, datetime], end: datetime | None,
                    zone: ZoneInfo) -> dict[str, Any]:
    """Same-day rate, promises kept and first response times, over the first cycle."""
    waits = [(opened_at, first_response_at) for _, opened_at, first_response_at in tickets]
    same_day = same_day_rate(waits, zone)
    verdicts = [(promise_kept(first_due.get(tid), f, end), f is None) for tid, _, f in tickets]
    kept = sum(1 for verdict, _ in verdicts if verdict is True)
    broken = sum(1 for verdict, _ in verdicts if verdict is False)
    promises = Rate(kept, kept + broken)
    return {
        "answered": sum(1 for _, first_response_at in waits if first_response_at is not None),
        "same_day": same_day.part,
        "same_day_rate": same_day.value,
        "promises_kept": promises.part,
        "promises_broken": broken,
        "promises_judged": promises.whole,
        "promises_kept_rate": promises.value,
        "unanswered_overdue": sum(1 for verdict, unanswered in verdicts
                                  if verdict is False and unanswered),
        "median_first_response_seconds": median(first_response_seconds(waits)),
    }


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
