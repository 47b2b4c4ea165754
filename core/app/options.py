"""What every `sameday` command shares: the --config option, the consoles, and loading
the config or exiting with one line per problem."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from core.config.load import ConfigError, load_settings
from core.config.settings import Settings

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

ConfigOption = typer.Option(Path("config.toml"), "--config", "-c",
                            help="The config file (TOML).", show_default=True)


def settings_or_exit(path: Path, *, check_secrets: bool = True) -> Settings:
    try:
        return load_settings(path, check_secrets=check_secrets)
    except ConfigError as error:
        err.print(f"[bold red]{len(error.problems)} problem(s) in the config:[/]")
        for problem in error.problems:
            err.print(f"  - {problem}", markup=False, highlight=False)
        raise typer.Exit(2) from None


def database_unreadable(settings: Settings, error: Exception) -> typer.Exit:
    """Say why the database could not be read (often: never migrated); the exit to raise."""
    err.print(f"cannot read the database {settings.database.url.split('://')[0]}: "
              f"{getattr(error, 'orig', error)}; run `sameday db upgrade` first if it is new",
              markup=False, highlight=False)
    return typer.Exit(1)
