"""Shared fixtures: settings, a migrated store on SQLite or the real local PostgreSQL."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from core.clock import VirtualClock
from core.config.load import settings_from_dict
from core.config.settings import DatabaseSettings, Settings
from core.intake.inbox import Inbox
from core.store.engine import Store, upgrade

# Loopback traffic (emulators, PostgreSQL) must never go through a proxy.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

PG_ADMIN_URL = os.environ.get("SAMEDAY_TEST_PG", "postgresql://root@127.0.0.1:5432/postgres")
START = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Moscow


def make_settings(**sections) -> Settings:
    return settings_from_dict(sections, check_secrets=False)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'sameday.db'}"


class PostgresDatabase:
    """A throw-away database on the local PostgreSQL server."""

    def __init__(self):
        self.name = f"sameday_test_{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> str:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.name}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        return f"{base}/{self.name}"

    def __exit__(self, *exc) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture
def postgres_url():
    with PostgresDatabase() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'sameday.db'}"
    else:
        with PostgresDatabase() as url:
            yield url


@pytest.fixture
async def store(database_url):
    settings = DatabaseSettings(url=database_url)
    upgrade(settings)
    store = Store(settings)
    yield store
    await store.close()


@pytest.fixture
async def sqlite_store(sqlite_url):
    """A store on SQLite only, for flows that do not depend on the database."""
    settings = DatabaseSettings(url=sqlite_url)
    upgrade(settings)
    store = Store(settings)
    yield store
    await store.close()


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def inbox(store, settings, clock) -> Inbox:
    return Inbox(store, settings, clock)
