"""The `sameday` command."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from core.app.options import ConfigOption, database_unreadable, err, out, settings_or_exit
from core.config.settings import Settings

if TYPE_CHECKING:
    from core.reporting.period import Period
    from core.reporting.report import Report

app = typer.Typer(help="sameday: a self-hosted support inbox that answers the same day.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database commands: migrations, backup, restore.",
                    no_args_is_help=True)
app.add_typer(db_app, name="db")

@app.command()
def run(config: Path = ConfigOption,
        log_format: str = typer.Option(None, "--log-format",
                                       help="text or json (default: daemon.log_format)")) -> None:
    """Run the daemon: receive on every enabled channel, acknowledge, dispatch, escalate."""
    from core.app.daemon import Daemon
    from core.app.logs import configured_secrets, setup_logging

    settings = settings_or_exit(config)
    if log_format not in (None, "text", "json"):
        err.print(f"--log-format {log_format!r}: allowed: text, json")
        raise typer.Exit(2)
    setup_logging(settings.daemon.log_level, log_format or settings.daemon.log_format,
                  configured_secrets(settings), texts=settings.daemon.log_texts)
    code = asyncio.run(Daemon(config, settings).run())
    raise typer.Exit(code)


@app.command("check-config")
def check_config(file: Path = typer.Argument(..., help="The config file to check."),
                 no_secrets: bool = typer.Option(False, "--no-secrets",
                                                 help="Do not require the token variables.")
                 ) -> None:
    """Check a config file and explain it; exit 2 with one line per problem."""
    settings = settings_or_exit(file, check_secrets=not no_secrets)
    channels = ", ".join(settings.channels.enabled()) or "none"
    out.print(f"[green]{file}: OK[/] (channels: {channels}; database: "
              f"{settings.database.url.split('://')[0]}; "
              f"staff: {len(settings.staff.members)}; escalation rules: "
              f"{len(settings.escalation)})")
    for rule in settings.escalation:
        out.print(f"  rule {rule.name!r}: {rule.describe()}", markup=False, highlight=False)


@app.command()
def console(config: Path = ConfigOption,
            as_: str = typer.Option(..., "--as", metavar="NAME",
                                    help="Your staff name (staff.members in the config).")
            ) -> None:
    """Staff commands in a terminal, over the daemon's database.

    The same commands as in a staff group: /queue, /reply, /take ...
    With staff.chat = "console" it is the staff chat too: new tickets, follow-ups
    and card updates are printed as they arrive.
    Answers to customers are delivered by the running daemon (sameday run).
    Leave with quit, Ctrl-D or Ctrl-C.
    """
    from core.staff.console import open_console

    settings = settings_or_exit(config, check_secrets=False)
    if as_ not in settings.staff.names():
        names = ", ".join(sorted(settings.staff.names())) or "none (add [[staff.members]])"
        err.print(f"--as {as_}: not a staff member in {config}; staff: {names}",
                  markup=False, highlight=False)
        raise typer.Exit(2)
    try:
        asyncio.run(open_console(config, settings, as_, console=out))
    except KeyboardInterrupt:
        out.print()


@app.command()
def report(config: Path = ConfigOption,
           since: str = typer.Option(None, "--since", metavar="WHEN",
                                     help="Start: a date (2026-11-24) or ISO time, local to "
                                          "calendar.timezone. Default: today 00:00."),
           until: str = typer.Option(None, "--until", metavar="WHEN",
                                     help="End (exclusive); a date means the end of that day. "
                                          "Default: the end of today."),
           channel: str = typer.Option(None, "--channel",
                                       help="Only this channel (an installed one, e.g. vk)."),
           format_: str = typer.Option("table", "--format",
                                       help="table (readable), csv (name,channel,value) or "
                                            "json."),
           chart: Path = typer.Option(None, "--chart", metavar="FILE.png",
                                      help="Also draw the period as a PNG chart."),
           by: str = typer.Option("channel", "--by",
                                  help="channel (the figures per channel) or agent: also "
                                       "each staff member's tickets answered, first "
                                       "response, same-day rate, promises kept and CSAT."),
           ) -> None:
    """The same-day report: how many customers got an answer the same day, and why not.

    Headline: the share of tickets opened in the period that staff answered
    on the same local calendar day. Behind it: messages received, tickets
    opened and acknowledged, acknowledgement and first-response times
    (p50/p90), promises kept, escalations per rule, the backlog by age,
    dead letters and the satisfaction survey (CSAT per channel, response
    rate); --by agent adds each staff member's figures. Reads the daemon's
    database; changes nothing.
    """
    from zoneinfo import ZoneInfo

    from core.clock import SystemClock
    from core.config.channels import channel_names
    from core.reporting.period import make_period
    from core.reporting.render import print_report, report_csv, report_json

    settings = settings_or_exit(config, check_secrets=False)
    problems = []
    if channel is not None and channel not in channel_names():
        problems.append(f"--channel {channel}: allowed: {', '.join(channel_names())}")
    if format_ not in ("table", "csv", "json"):
        problems.append(f"--format {format_}: allowed: table, csv, json")
    if by not in ("channel", "agent"):
        problems.append(f"--by {by}: allowed: channel, agent")
    if chart is not None and chart.suffix.lower() != ".png":
        problems.append(f"--chart {chart}: the file name must end in .png")
    try:
        period = make_period(since, until, ZoneInfo(settings.calendar.timezone),
                             SystemClock().now())
    except ValueError as error:
        problems.append(str(error))
    for problem in problems:
        err.print(problem, markup=False, highlight=False)
    if problems:
        raise typer.Exit(2)
    figures = asyncio.run(_report(settings, period, channel))
    by_agent = by == "agent"
    if format_ == "csv":
        typer.echo(report_csv(figures, by_agent), nl=False)
    elif format_ == "json":
        typer.echo(report_json(figures, by_agent))
    else:
        print_report(figures, out, by_agent)
    if chart is not None:
        from core.reporting.chart import render_chart

        render_chart(figures, chart)
        # Keep csv/json on stdout clean for pipes; a table reader wants to see it there.
        (out if format_ == "table" else err).print(f"chart written to {chart}",
                                                   markup=False, highlight=False)


async def _report(settings: Settings, period: Period, channel: str | None) -> Report:
    import sqlalchemy as sa

    from core.reporting.report import report_for_period
    from core.store.engine import Store

    store = Store(settings.database)
    try:
        return await report_for_period(store, period, channel)
    except sa.exc.DBAPIError as error:
        raise database_unreadable(settings, error) from None
    finally:
        await store.close()


@app.command()
def replay(file: Path = typer.Argument(..., help="A TWCS CSV or a JSONL history."),
           config: Path = ConfigOption,
           database: str = typer.Option(None, "--database", metavar="URL",
                                        help="Keep the replay in this database (default: a "
                                             "temporary SQLite file, deleted afterwards)."),
           staff_name: str = typer.Option(None, "--staff-name",
                                          help="Who answers (default: the first admin)."),
           until: str = typer.Option(None, "--until", metavar="TIME",
                                     help="Run escalations up to this ISO time or date "
                                          "(local time; default: the end of the last day)."),
           format_: str = typer.Option("table", "--format", help="table or json.")) -> None:
    """Replay a history through the real core on a virtual clock and report what the
    config would have done: acknowledgements, promises, escalations, same-day rate."""
    import json
    from datetime import UTC, date, datetime, time, timedelta
    from zoneinfo import ZoneInfo

    from core.replay.figures import print_report
    from core.replay.history import ReplayError
    from core.replay.runner import replay_history

    settings = settings_or_exit(config, check_secrets=False)
    if format_ not in ("table", "json"):
        err.print(f"--format {format_}: allowed: table, json", markup=False, highlight=False)
        raise typer.Exit(2)
    end = None
    if until:
        zone = ZoneInfo(settings.calendar.timezone)
        try:
            moment = datetime.fromisoformat(until)
        except ValueError:
            err.print(f"--until {until}: allowed: an ISO date or time like 2017-12-05 or "
                      f"2017-12-05T18:00", markup=False, highlight=False)
            raise typer.Exit(2) from None
        if len(until) <= 10:  # a date: up to the end of that local day
            moment = datetime.combine(date.fromisoformat(until) + timedelta(days=1), time(),
                                      zone)
        end = (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)
    try:
        # The file is streamed: read once into a scratch index, replayed from there.
        report = asyncio.run(replay_history(file, settings, database_url=database,
                                            staff_name=staff_name, until=end))
    except ReplayError as error:
        err.print(str(error), markup=False, highlight=False)
        raise typer.Exit(2) from None
    if format_ == "json":
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print_report(report, out)


@db_app.command("upgrade")
def db_upgrade(config: Path = ConfigOption) -> None:
    """Apply pending schema migrations to the configured database."""
    from core.store.engine import current_revision, upgrade

    settings = settings_or_exit(config, check_secrets=False)
    upgrade(settings.database)
    out.print(f"database at revision {current_revision(settings.database)}")


@db_app.command("migrate-from-sqlite")
def db_migrate_from_sqlite(
        source: str = typer.Argument(..., help="The shop's SQLite database, e.g. "
                                               "sqlite+aiosqlite:///var/lib/sameday/sameday.db"),
        config: Path = ConfigOption) -> None:
    """Copy a SQLite database (tickets, messages, customers, cursors, outbox, events,
    escalations, ...) into the EMPTY PostgreSQL database of the config's [database] url,
    and compare the row counts. A running daemon may keep using the SQLite file: the
    copy is its state at one moment (stop it first to lose nothing written after)."""
    from core.store.transfer import TransferError, migrate_from_sqlite

    settings = settings_or_exit(config, check_secrets=False)
    try:
        copied = migrate_from_sqlite(source, settings.database)
    except TransferError as error:
        err.print(f"migrate-from-sqlite refused: {error}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    for table in copied:
        out.print(f"{table.table:<12} {table.rows:>10,} rows", markup=False, highlight=False)
    out.print(f"copied {sum(t.rows for t in copied):,} rows; the row counts match",
              markup=False, highlight=False)


@db_app.command("backup")
def db_backup(file: Path = typer.Argument(..., help="The backup file to write (new)."),
              config: Path = ConfigOption) -> None:
    """Copy the SQLite database to FILE (0600), consistent while the daemon runs.

    For PostgreSQL use pg_dump --format=custom (the command says how)."""
    from core.store.backup import BackupError, backup

    settings = settings_or_exit(config, check_secrets=False)
    try:
        result = backup(settings.database, file)
    except BackupError as error:
        err.print(f"backup refused: {error}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    out.print(f"backup written to {result.path} ({result.pages} pages, revision "
              f"{result.revision}, integrity_check ok)", markup=False, highlight=False)


@db_app.command("restore")
def db_restore(file: Path = typer.Argument(..., help="A backup made by `sameday db backup`."),
               config: Path = ConfigOption,
               force: bool = typer.Option(False, "--force",
                                          help="Restore even though the database seems in "
                                               "use (a lock or a recent heartbeat).")) -> None:
    """Replace a stopped daemon's SQLite database with FILE, keeping the old one as
    <database>.before-restore. FILE must be a sameday database passing integrity_check."""
    from core.store.backup import BackupError, restore

    settings = settings_or_exit(config, check_secrets=False)
    try:
        result = restore(settings.database, file, force=force)
    except BackupError as error:
        err.print(f"restore refused: {error}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    kept = f"; the previous database is kept as {result.kept}" if result.kept else ""
    later = "" if result.revision == result.head else \
        "; the daemon applies the newer migrations when it starts (or: sameday db upgrade)"
    out.print(f"restored {file} into {result.path} (revision {result.revision}){kept}{later}",
              markup=False, highlight=False)


def _register_quarantine_commands() -> None:
    from core.app.quarantine import quarantine_app

    app.add_typer(quarantine_app, name="quarantine")


def _register_media_commands() -> None:
    from core.app.media import media_app

    app.add_typer(media_app, name="media")


def _register_privacy_commands() -> None:
    from core.app.privacy import export, forget

    app.command("forget")(forget)
    app.command("export")(export)


def _register_retention_commands() -> None:
    from core.app.retention import retention_app

    app.add_typer(retention_app, name="retention")


def _register_plugin_commands() -> None:
    """Commands that live beside the adapters (the demo drives the emulators) come in
    through entry points, so the core never imports them."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="sameday.commands"):
        app.command(entry.name)(entry.load())


_register_quarantine_commands()
_register_media_commands()
_register_retention_commands()
_register_privacy_commands()
_register_plugin_commands()

if __name__ == "__main__":
    app()
