"""The same-day report as one PNG: how the day went, hour by hour, and per channel.

Drawn with matplotlib's object API on the Agg canvas: no pyplot, no display, no global
state, so it works on a headless server and inside a running process alike.

Top: per local hour, messages that arrived and staff answers (bars), and tickets that
were waiting past their promise at the end of the hour (line) -- the hours where the
queue outran the team stand out. Below: the same-day rate per channel (horizontal bars
with the percentage and "n of m"), the headline figure split where it is made or lost;
and, when satisfaction surveys were asked in the period, the share of answers rated 4-5
per channel with the average score and how many customers answered.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from core.config.channels import channel_label
from core.config.settings import Settings
from core.reporting.report import Report, build_report
from core.store.engine import Store

ARRIVALS, ANSWERS, OVERDUE = "#4C72B0", "#55A868", "#C44E52"
RATE, TOTAL = "#8172B3", "#3B3363"
SATISFIED = "#DD8452"
SIZE_IN, DPI = (10, 7), 120
SIZE_WITH_SURVEY_IN = (10, 9.5)


def render_chart(report: Report, path: str | Path) -> Path:
    """Write the chart of `report` to `path` (PNG) and return the path."""
    surveyed = report.csat.asked > 0
    figure = Figure(figsize=SIZE_WITH_SURVEY_IN if surveyed else SIZE_IN, dpi=DPI)
    FigureCanvasAgg(figure)
    ratios = [3, 2, 2] if surveyed else [3, 2]
    axes = figure.subplots(len(ratios), 1, gridspec_kw={"height_ratios": ratios})
    _hourly(axes[0], report)
    _same_day_by_channel(axes[1], report)
    if surveyed:
        _satisfaction_by_channel(axes[2], report)
    figure.suptitle(_headline(report), fontsize=14, fontweight="bold")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path


async def write_chart(store: Store, settings: Settings, path: str | Path, *,
                      since: datetime | None = None, until: datetime | None = None,
                      channel: str | None = None, now: datetime | None = None) -> Path:
    """Read the period from the store (see ``core.report.build_report``) and draw it."""
    report = await build_report(store, settings, since=since, until=until, channel=channel,
                                now=now)
    return render_chart(report, path)


def _headline(report: Report) -> str:
    rate = report.same_day
    scope = f" · {channel_label(report.channel)}" if report.channel else ""
    if not rate.whole:
        return f"Answered the same day: no tickets opened{scope}"
    return f"Answered the same day: {rate.value:.0%} ({rate.part} of {rate.whole}){scope}"


def _period_words(report: Report) -> str:
    zone = report.period.zone
    since = report.period.since.astimezone(zone)
    last = report.period.until.astimezone(zone) - timedelta(microseconds=1)
    if since.date() == last.date():
        return f"{since:%a %d %b %Y} ({zone.key})"
    return f"{since:%d %b %Y} – {last:%d %b %Y} ({zone.key})"


def _hourly(axes, report: Report) -> None:
    """Arrivals and answers as paired bars per hour; overdue tickets as a line on top."""
    slots = report.hourly
    zone = report.period.zone
    x = list(range(len(slots)))
    width = 0.4
    axes.bar([i - width / 2 for i in x], [s.arrivals for s in slots], width,
             color=ARRIVALS, label="messages received")
    axes.bar([i + width / 2 for i in x], [s.answers for s in slots], width,
             color=ANSWERS, label="staff answers")
    # Counted at the end of each hour, so drawn on the boundary after its bars.
    known = [(i + 0.5, s.overdue) for i, s in zip(x, slots, strict=True)
             if s.overdue is not None]
    if known:
        axes.plot([i for i, _ in known], [n for _, n in known], color=OVERDUE, linewidth=2,
                  marker="o" if len(slots) <= 48 else None, markersize=3,
                  label="open tickets past their promise (hour end)")
    labels, ticks = _hour_ticks([s.start.astimezone(zone) for s in slots])
    axes.set_xticks(ticks, labels)
    axes.set_xlim(-0.7, max(len(slots) - 0.3, 0.7))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(bottom=0, top=max(_top_value(report), 1) * 1.15)
    axes.set_title(f"Per hour · {_period_words(report)}")
    axes.set_xlabel("local hour")
    axes.set_ylabel("messages / tickets")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper left", fontsize=9, frameon=False)


def _top_value(report: Report) -> int:
    values = [v for s in report.hourly for v in (s.arrivals, s.answers, s.overdue or 0)]
    return max(values, default=0)


def _hour_ticks(starts: list) -> tuple[list[str], list[int]]:
    """Hour labels thinned to about 24 ticks; a new day is labelled with its date."""
    step = max(1, round(len(starts) / 24))
    # Keep whole-hour steps that divide the day, so ticks land on the same hours daily.
    step = next(s for s in (1, 2, 3, 4, 6, 12, 24, 48, 72, 168) if s >= step)
    labels, ticks = [], []
    for i, start in enumerate(starts):
        if start.hour % min(step, 24) or (step > 24 and i % step):
            continue
        new_day = i == 0 or start.hour == 0
        multi_day = len(starts) > 25
        labels.append(f"{start:%d.%m}\n{start:%H}" if multi_day and new_day else f"{start:%H}")
        ticks.append(i)
    return labels, ticks


def _same_day_by_channel(axes, report: Report) -> None:
    """One horizontal bar per channel: the share of its tickets answered the same day."""
    axes.set_title("Answered the same day, by channel")
    axes.set_xlim(0, 1)
    axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlabel("tickets opened in the period answered on the same local day")
    rates = report.same_day_by_channel
    if not rates:
        axes.set_yticks([])
        axes.text(0.5, 0.5, "no tickets opened in this period", ha="center", va="center",
                  transform=axes.transAxes, fontsize=12, color="grey")
        return
    names = [channel_label(c) for c in rates]
    shown = list(rates.values())
    colors = [RATE] * len(shown)
    if len(rates) > 1:  # the headline itself on top, darker, then its parts
        names, shown, colors = ["All channels", *names], [report.same_day, *shown], \
            [TOTAL, *colors]
    y = list(range(len(names)))
    axes.barh(y, [r.value or 0 for r in shown], color=colors, height=0.6)
    for i, rate in zip(y, shown, strict=True):
        text = f"{rate.value:.0%}  ({rate.part} of {rate.whole})"
        inside = (rate.value or 0) > 0.75
        axes.text((rate.value or 0) + (-0.01 if inside else 0.01), i, text, va="center",
                  ha="right" if inside else "left", fontsize=10,
                  color="white" if inside else "black", fontweight="bold")
    axes.set_yticks(y, names)
    axes.invert_yaxis()  # the first channel on top, as in the tables
    axes.grid(axis="x", alpha=0.3)


def _satisfaction_by_channel(axes, report: Report) -> None:
    """One horizontal bar per channel: the share of survey answers rated 4 or 5."""
    axes.set_title("Satisfaction survey: answers rated 4-5, by channel")
    axes.set_xlim(0, 1)
    axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlabel("questions delivered in the period; answers rated 4 or 5 of all answers")
    rows = [(channel_label(c), csat, SATISFIED) for c, csat in report.csat_by_channel.items()]
    if len(rows) > 1:
        rows.insert(0, ("All channels", report.csat, TOTAL))
    y = list(range(len(rows)))
    axes.barh(y, [csat.satisfied.value or 0 for _, csat, _ in rows],
              color=[color for *_, color in rows], height=0.6)
    for i, (_, csat, _) in zip(y, rows, strict=True):
        share = csat.satisfied.value or 0
        text = (f"{share:.0%} · avg {csat.average:.1f}  ({csat.responses} of {csat.asked} "
                f"answered)" if csat.responses else f"no answer yet (0 of {csat.asked})")
        inside = share > 0.6
        axes.text(share + (-0.01 if inside else 0.01), i, text, va="center",
                  ha="right" if inside else "left", fontsize=10,
                  color="white" if inside else "black", fontweight="bold")
    axes.set_yticks(y, [name for name, *_ in rows])
    axes.invert_yaxis()
    axes.grid(axis="x", alpha=0.3)
