"""The report for people and programs: rich tables, CSV rows, JSON.

Only presentation: every figure comes from ``Report`` (``core.reporting.report``).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import time, timedelta

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from core.config.durations import format_duration
from core.domain.kpi import Rate
from core.reporting.report import Report


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
