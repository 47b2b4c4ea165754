"""`sameday retention run [--dry-run]`: the daily retention purge (``[retention]``), by hand.

The daemon runs the same purge once a day; running it here as well is safe (a row is
purged and counted once). ``--dry-run`` counts what is due and changes nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
import typer

from core.app.options import ConfigOption, database_unreadable, out, settings_or_exit
from core.clock import SystemClock
from core.config.settings import Settings
from core.retention.purge import PurgeRun, Retention, describe_keep
from core.store.engine import Store

retention_app = typer.Typer(help="How long customers' texts, payloads and media are kept.",
                            no_args_is_help=True)


@retention_app.command("run")
def run(config: Path = ConfigOption,
        dry_run: bool = typer.Option(False, "--dry-run",
                                     help="Count what is due; change nothing.")) -> None:
    """Purge what [retention] no longer keeps, and print the counts by kind."""
    settings = settings_or_exit(config, check_secrets=False)
    result = asyncio.run(_run(settings, dry_run))
    kept = settings.retention
    out.print(f"kept after a ticket closes: texts {describe_keep(kept.messages)}, raw "
              f"payloads {describe_keep(kept.raw)}, media {describe_keep(kept.media)}",
              markup=False, highlight=False)
    verb = "would purge" if dry_run else "purged"
    for kind, count in result.counts.items():
        out.print(f"{verb} {kind}: {count}", markup=False, highlight=False)
    details = ", ".join(f"{name} {n}" for name, n in result.steps.items() if n)
    if details:
        out.print(f"  ({details})", markup=False, highlight=False)
    if not result.complete:
        out.print("more is due than one run purges; run it again", markup=False,
                  highlight=False)


async def _run(settings: Settings, dry_run: bool) -> PurgeRun:
    store = Store(settings.database)
    try:
        return await Retention(store, SystemClock()).run(settings.retention, dry_run=dry_run)
    except sa.exc.DBAPIError as error:
        raise database_unreadable(settings, error) from None
    finally:
        await store.close()
