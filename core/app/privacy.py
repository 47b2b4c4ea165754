"""`sameday forget CUSTOMER` and `sameday export CUSTOMER --out FILE.zip`: a person's
deletion and access requests (docs/privacy.md).

CUSTOMER is ``channel:user_id``, a handle (``@kate``; one that several customers have is
refused, listing them) or a ticket number (``#12``). ``forget`` deletes what is held about
them and keeps their tickets as anonymous rows (core.staff.personal); a running daemon
sends the staff notices it queues. ``export`` writes a zip: customer.json, tickets.json,
messages.json (raw payloads decoded), events.json, surveys.json, mentions.json,
media.json (attachments held only as platform links or ids) and media/ (the bytes of
files held).
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import json
import os
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import typer

from core.app.options import ConfigOption, database_unreadable, err, out, settings_or_exit
from core.clock import SystemClock
from core.config.settings import Settings
from core.domain.policy import Policy
from core.staff import personal
from core.store.engine import Store

CustomerArgument = typer.Argument(..., metavar="CUSTOMER", help=personal.CUSTOMER_HELP + ".")


def forget(customer: str = CustomerArgument, config: Path = ConfigOption,
           by: str = typer.Option(None, "--by", metavar="NAME",
                                  help="Who asked for it, for the audit trail (default: "
                                       "your login name)."),
           dry_run: bool = typer.Option(False, "--dry-run",
                                        help="Only say what would be deleted.")) -> None:
    """Delete what is held about a customer; their tickets stay as anonymous rows so
    reports do not change. Safe to run again."""
    settings = settings_or_exit(config, check_secrets=False)
    actor = (by or _login()).strip()[:100] or "unknown"
    message, code = asyncio.run(_forget(settings, customer, actor, dry_run))
    (out if code == 0 else err).print(message, markup=False, highlight=False)
    raise typer.Exit(code)


def export(customer: str = CustomerArgument, out_file: Path = typer.Option(
        ..., "--out", metavar="FILE.zip", help="The zip to write (must not exist)."),
           config: Path = ConfigOption) -> None:
    """Write everything held about a customer to a zip (a subject access request)."""
    settings = settings_or_exit(config, check_secrets=False)
    if out_file.exists():
        err.print(f"{out_file} exists: name a new file", markup=False, highlight=False)
        raise typer.Exit(2)
    message, code = asyncio.run(_export(settings, customer, out_file))
    (out if code == 0 else err).print(message, markup=False, highlight=False)
    raise typer.Exit(code)


async def _forget(settings: Settings, spec: str, actor: str, dry_run: bool
                  ) -> tuple[str, int]:
    store = Store(settings.database)
    try:
        async with store.session() as session, session.begin():
            try:
                customer = await personal.find_customer(session, spec, for_update=True)
            except personal.CustomerError as error:
                return f"forget: {error}", 2
            if customer is None:
                return (f"nothing is held about {spec}: never seen, or already forgotten"), 0
            if personal.is_forgotten(customer):
                return f"{spec}: this customer was already forgotten; nothing to delete", 0
            if dry_run:
                held = await personal.held(session, customer)
                return (f"would delete for {spec}: name, handle and id, "
                        f"{held.summary() or 'no messages'}; tickets kept anonymous: "
                        f"{_numbers(held.tickets)}; closed first: "
                        f"{_numbers(held.open_tickets)}"), 0
            done = await personal.forget(session, Policy(settings), customer, actor,
                                         SystemClock().now(), via="cli")
        return (f"forgotten: {done.held.summary() or 'name and id'} deleted; tickets kept "
                f"anonymous: {_numbers(done.held.tickets)}; closed: "
                f"{_numbers(done.closed)}; recorded as asked by {actor}"), 0
    except sa.exc.DBAPIError as error:
        raise database_unreadable(settings, error) from None
    finally:
        await store.close()


async def _export(settings: Settings, spec: str, path: Path) -> tuple[str, int]:
    store = Store(settings.database)
    try:
        async with store.session() as session:
            try:
                customer = await personal.find_customer(session, spec)
            except personal.CustomerError as error:
                return f"export: {error}", 2
            if customer is None:
                return f"nothing is held about {spec}: never seen, or forgotten", 1
            held = await personal.gather(session, customer)
    except sa.exc.DBAPIError as error:
        raise database_unreadable(settings, error) from None
    finally:
        await store.close()
    write_zip(held, path)
    return (f"{path}: {len(held.tickets)} tickets, {len(held.messages)} messages, "
            f"{len(held.events)} events, {len(held.files)} files"), 0


def write_zip(held: personal.Export, path: Path) -> None:
    """The archive, readable by its owner only (it is personal data)."""
    documents = {"customer.json": held.customer, "tickets.json": held.tickets,
                 "messages.json": held.messages, "events.json": held.events,
                 "surveys.json": held.surveys, "mentions.json": held.mentions,
                 "media.json": held.media}
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as raw, zipfile.ZipFile(
                raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, document in documents.items():
                archive.writestr(name, json.dumps(document, ensure_ascii=False, indent=2,
                                                  default=_json))
            for name, content in held.files:
                archive.writestr(name, content)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def _numbers(ids: list[int]) -> str:
    return ", ".join(f"#{t}" for t in ids) or "none"


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
