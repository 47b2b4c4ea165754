"""The `sameday` command."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from core.config import ConfigError, Settings, load_settings

app = typer.Typer(help="sameday: a self-hosted support inbox that answers the same day.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

ConfigOption = typer.Option(Path("config.toml"), "--config", "-c",
                            help="The config file (TOML).", show_default=True)


def _settings_or_exit(path: Path, *, check_secrets: bool = True) -> Settings:
    try:
        return load_settings(path, check_secrets=check_secrets)
    except ConfigError as error:
        err.print(f"[bold red]{len(error.problems)} problem(s) in the config:[/]")
        for problem in error.problems:
            err.print(f"  - {problem}", markup=False, highlight=False)
        raise typer.Exit(2) from None


@app.command()
def run(config: Path = ConfigOption,
        log_format: str = typer.Option(None, "--log-format",
                                       help="text or json (default: daemon.log_format)")) -> None:
    """Run the daemon: receive on every enabled channel, acknowledge, dispatch, escalate."""
    from core.daemon import Daemon
    from core.logs import configured_secrets, setup_logging

    settings = _settings_or_exit(config)
    if log_format not in (None, "text", "json"):
        err.print(f"--log-format {log_format!r}: allowed: text, json")
        raise typer.Exit(2)
    setup_logging(settings.daemon.log_level, log_format or settings.daemon.log_format,
                  configured_secrets(settings))
    code = asyncio.run(Daemon(config, settings).run())
    raise typer.Exit(code)


@app.command("check-config")
def check_config(file: Path = typer.Argument(..., help="The config file to check."),
                 no_secrets: bool = typer.Option(False, "--no-secrets",
                                                 help="Do not require the token variables.")
                 ) -> None:
    """Check a config file and explain it; exit 2 with one line per problem."""
    settings = _settings_or_exit(file, check_secrets=not no_secrets)
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

    The same commands as in the Telegram staff group: /queue, /reply, /take ...
    With staff.chat = "console" it is the staff chat too: new tickets, follow-ups
    and delivery confirmations are printed as they arrive.
    Answers to customers are delivered by the running daemon (sameday run).
    Leave with quit, Ctrl-D or Ctrl-C.
    """
    from core.console import open_console

    settings = _settings_or_exit(config, check_secrets=False)
    if as_ not in settings.staff.names():
        names = ", ".join(sorted(settings.staff.names())) or "none (add [[staff.members]])"
        err.print(f"--as {as_}: not a staff member in {config}; staff: {names}",
                  markup=False, highlight=False)
        raise typer.Exit(2)
    try:
        asyncio.run(open_console(config, settings, as_, console=out))
    except KeyboardInterrupt:
        out.print()


@db_app.command("upgrade")
def db_upgrade(config: Path = ConfigOption) -> None:
    """Apply pending schema migrations to the configured database."""
    from core.store import current_revision, upgrade

    settings = _settings_or_exit(config, check_secrets=False)
    upgrade(settings.database)
    out.print(f"database at revision {current_revision(settings.database)}")


if __name__ == "__main__":
    app()
