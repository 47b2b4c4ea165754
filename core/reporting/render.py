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
from core.domain.survey import Csat
from core.reporting.report import Report


def report_csv(report: Report, by_agent: bool = False) -> str:
    """The figures as CSV (name,channel,value), one row per figure; empty value = none;
    ``by_agent`` adds each staff member's figures (agent.<name>.<figure>)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "channel", "value"])
    for name, channel, value in report.figures(by_agent):
        writer.writerow([name, channel, "" if value is None else value])
    return buffer.getvalue()


def report_json(report: Report, by_agent: bool = False) -> str:
    return json.dumps(report.to_dict(by_agent), indent=2, ensure_ascii=False)


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


def print_report(report: Report, console: Console, by_agent: bool = False) -> None:
    """The report as rich tables: the headline first, big, then the figures behind it;
    ``by_agent`` adds a table of each staff member's figures."""
    console.print(_headline_panel(report))
    console.print(_summary_table(report))
    console.print(_channel_table(report))
    if report.csat.asked:
        console.print(_satisfaction_table(report))
    if by_agent:
        console.print(_agent_table(report))
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
        *([("purged by retention (texts · raw · media · copies)",
            " · ".join(str(n) for n in report.purged.values()))]
          if any(report.purged.values()) else []),
        *([("satisfaction (rated 4-5 · average · answered)", _csat_cell(report.csat))]
          if report.csat.asked else []),
    ]:
        table.add_row(label, value)
    return table


def _csat_cell(csat: Csat) -> str:
    """"80% · 4.4 · 5 of 8"; "—" where nothing was answered."""
    if not csat.responses:
        return f"— · — · 0 of {csat.asked}"
    return (f"{csat.satisfied.fraction:.0%} · {csat.average:.1f} · {csat.responses} of "
            f"{csat.asked}")


def _satisfaction_table(report: Report) -> Table:
    table = Table(title="Satisfaction survey (questions delivered in the period)",
                  title_justify="left")
    for name in ("channel", "asked", "answered", "average", "rated 4-5", "1", "2", "3", "4",
                 "5"):
        table.add_column(name, justify="left" if name == "channel" else "right")
    rows = list(report.csat_by_channel.items())
    if len(rows) != 1:
        rows.append(("all", report.csat))
    for channel, csat in rows:
        spread = csat.distribution()
        table.add_row(channel, str(csat.asked), _percent_of(csat.response_rate),
                      "—" if csat.average is None else f"{csat.average:.1f}",
                      _percent_of(csat.satisfied), *(str(spread[s]) for s in range(1, 6)))
    return table


def _percent_of(rate: Rate) -> str:
    return "—" if rate.value is None else f"{rate.value:.0%} ({rate.part})"


def _agent_table(report: Report) -> Table:
    table = Table(title="By staff member (whose ticket: the first answer's author)",
                  title_justify="left")
    for name in ("staff", "tickets answered", "first response p50", "p90",
                 "answered the same day", "promises kept", "CSAT: 4-5 · avg · answered"):
        table.add_column(name, justify="left" if name == "staff" else "right")
    for name, agent in report.agents.items():
        table.add_row(name, str(agent.tickets_answered),
                      human_duration(agent.first_response.p50),
                      human_duration(agent.first_response.p90), _percent(agent.same_day),
                      _percent(agent.promises),
                      _csat_cell(agent.csat) if agent.csat.asked else "—")
    if not report.agents:
        table.add_row("—", "0", "—", "—", "—", "—", "—")
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
