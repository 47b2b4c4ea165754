"""`sameday quarantine list|show|retry`: what could not be read or stored, for an admin.

``retry`` reads a held payload again with the channel's adapter of this version (after an
upgrade that can read it) and stores it through the inbox like any message: the customer
gets the acknowledgement and staff the card. A payload still unreadable stays held with
the new error. A running daemon sends what the retry queued.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import sqlalchemy as sa
import typer
from rich.table import Table

from core.app.options import ConfigOption, err, out, settings_or_exit
from core.clock import SystemClock
from core.config.settings import Settings
from core.delivery.contract import adapter_factories
from core.domain.payload import decode
from core.intake import quarantine
from core.intake.inbox import Inbox
from core.store.engine import Store
from core.store.tables import Quarantine

quarantine_app = typer.Typer(help="Payloads that could not be read or stored.",
                             no_args_is_help=True)


@quarantine_app.command("list")
def list_(config: Path = ConfigOption,
          all_: bool = typer.Option(False, "--all", help="Released ones too.")) -> None:
    """One line per quarantined payload: id, channel, platform id, when, error."""
    rows = asyncio.run(_rows(settings_or_exit(config, check_secrets=False), all_))
    if not rows:
        out.print("nothing quarantined" if not all_ else "the quarantine is empty")
        return
    table = Table("id", "channel", "platform id", "quarantined", "state", "error")
    for row in rows:
        table.add_row(f"Q{row.id}", row.channel, row.external_id or "-",
                      row.quarantined_at.strftime("%Y-%m-%d %H:%M:%S"), row.state,
                      row.error[:120])
    out.print(table)


@quarantine_app.command()
def show(quarantine_id: int = typer.Argument(..., metavar="ID"),
         config: Path = ConfigOption) -> None:
    """The whole payload as the platform sent it, and the error."""
    row = asyncio.run(_row(settings_or_exit(config, check_secrets=False), quarantine_id))
    out.print(f"Q{row.id} · {row.channel} · {row.external_id or 'no platform id'} · "
              f"{row.state} · quarantined {row.quarantined_at.isoformat()}",
              markup=False, highlight=False)
    out.print(f"error: {row.error}", markup=False, highlight=False)
    # Readable text (Cyrillic as it is), and what no terminal can print -- a lone
    # surrogate, often the very reason for the quarantine -- as its escape.
    pretty = json.dumps(decode(row.payload), indent=2, ensure_ascii=False)
    out.print(pretty.encode("utf-8", "backslashreplace").decode("utf-8"), markup=False,
              highlight=False)


@quarantine_app.command()
def retry(ids: list[int] = typer.Argument(None, metavar="ID...",
                                          help="Which ones (default: every held one)."),
          config: Path = ConfigOption) -> None:
    """Read held payloads again and store them; exit 1 if any is still unreadable or
    not held."""
    settings = settings_or_exit(config, check_secrets=True)
    outcomes = asyncio.run(_retry(settings, ids or None))
    for quarantine_id, outcome in outcomes:
        out.print(f"Q{quarantine_id}: {outcome}", markup=False, highlight=False)
    if not outcomes:
        out.print("nothing quarantined to retry")
    if any(outcome.startswith(("still", "not held")) for _, outcome in outcomes):
        raise typer.Exit(1)


async def _rows(settings: Settings, all_: bool) -> list[Quarantine]:
    store = Store(settings.database)
    try:
        return await _held(store, None, all_)
    finally:
        await store.close()


async def _held(store: Store, ids: list[int] | None, all_: bool = False) -> list[Quarantine]:
    query = sa.select(Quarantine).order_by(Quarantine.id)
    if not all_:
        query = query.where(Quarantine.state == quarantine.HELD)
    if ids is not None:
        query = query.where(Quarantine.id.in_(ids))
    async with store.session() as session:
        return list(await session.scalars(query))


async def _row(settings: Settings, quarantine_id: int) -> Quarantine:
    store = Store(settings.database)
    try:
        async with store.session() as session:
            row = await session.get(Quarantine, quarantine_id)
    finally:
        await store.close()
    if row is None:
        err.print(f"no quarantined payload Q{quarantine_id}; `sameday quarantine list` "
                  f"shows them", markup=False, highlight=False)
        raise typer.Exit(2)
    return row


async def _retry(settings: Settings, ids: list[int] | None) -> list[tuple[int, str]]:
    store = Store(settings.database)
    clock = SystemClock()
    inbox = Inbox(store, settings, clock)
    adapters = {}
    outcomes = []
    try:
        rows = await _held(store, ids)
        outcomes += [(missing, "not held (unknown, or released already)")
                     for missing in sorted(set(ids or ()) - {row.id for row in rows})]
        for row in rows:
            payload = decode(row.payload)
            try:
                inbound = quarantine.inbound_of(payload)
                if inbound is None:
                    if row.channel not in adapters:
                        adapters[row.channel] = adapter_factories()[row.channel](settings)
                    inbound = adapters[row.channel].read_payload(payload)
                result = await inbox.ingest_or_raise([inbound]) if inbound else None
            except Exception as error:
                reason = quarantine.describe(error)
                await quarantine.still_held(store, row.id, reason)
                outcomes.append((row.id, f"still unreadable: {reason}"))
                continue
            await quarantine.release(store, row.id, clock.now())
            outcomes.append((row.id, _stored(result)))
    finally:
        await store.close()
    return sorted(outcomes)


def _stored(result) -> str:  # noqa: ANN001 - an IngestResult or None
    if result is None:
        return "released (not a customer message)"
    if result.opened:
        return f"stored: opened ticket #{result.opened[0]}"
    if result.appended:
        return f"stored: added to ticket #{result.appended[0]}"
    return "released (already stored)"
