"""Throw-away PostgreSQL databases for the benchmarks, dropped when done."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_ADMIN = "postgresql://root@127.0.0.1:5432/postgres"


@contextmanager
def throwaway_postgres(admin_url: str = DEFAULT_ADMIN) -> Iterator[str]:
    """A new, empty database on the server of ``admin_url``; its sameday URL."""
    import psycopg

    name = f"sameday_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
