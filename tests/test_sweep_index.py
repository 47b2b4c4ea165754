"""The sweep's two questions -- the next planned escalation, the tickets due now -- are
answered through an index of the waiting tickets that have one (ix_ticket_next_due),
not by reading every waiting ticket (most have no escalation left)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from core.config.settings import DatabaseSettings
from core.escalation.sweep import _NEXT_DUE
from core.store.engine import sync_url, upgrade
from core.store.tables import TICKET_DUE, Ticket

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
DUE_NOW = (sa.select(Ticket.id).where(sa.text(TICKET_DUE), Ticket.next_escalation_at <= NOW)
           .order_by(Ticket.next_escalation_at).limit(200))


def fill(connection: sa.Connection, tickets: int) -> None:
    """Many waiting tickets, one in a hundred with an escalation still planned."""
    connection.exec_driver_sql(
        "INSERT INTO customer (id, channel, external_user_id, tags, created_at, flood_count)"
        " VALUES (1, 'vk', '1', '[]', '2026-11-30 08:00:00', 0)")
    connection.execute(sa.insert(Ticket), [
        {"channel": "vk", "thread_key": f"t{n}", "customer_id": 1, "status": "open",
         "priority": "normal", "cycle": 1, "opened_at": NOW, "last_customer_at": NOW,
         "due_at": NOW, "escalation_level": 0, "language": "ru", "reply_target": {},
         "next_escalation_at": NOW if n % 100 == 0 else None} for n in range(tickets)])


def plan(connection: sa.Connection, statement: sa.Select) -> str:
    compiled = statement.compile(dialect=connection.dialect)
    prefix = "EXPLAIN QUERY PLAN " if connection.dialect.name == "sqlite" else "EXPLAIN "
    if compiled.positiontup:
        params = tuple(compiled.construct_params()[k] for k in compiled.positiontup)
    else:
        params = compiled.construct_params()
    processors = compiled._bind_processors
    if isinstance(params, tuple):
        params = tuple(processors[k](v) if k in processors else v
                       for k, v in zip(compiled.positiontup, params, strict=True))
    else:
        params = {k: processors[k](v) if k in processors else v for k, v in params.items()}
    rows = connection.exec_driver_sql(prefix + str(compiled), params).all()
    return "\n".join(str(row[-1]) for row in rows)


def test_postgresql_reads_only_the_tickets_with_an_escalation_planned(postgres_url):
    upgrade(DatabaseSettings(url=postgres_url))
    engine = sa.create_engine(sync_url(postgres_url))
    with engine.begin() as connection:
        fill(connection, 5_000)
        connection.exec_driver_sql("ANALYZE ticket")
        # The minimum: the partial index's first entry (through ix_ticket_sweep it read
        # every waiting ticket). The due tickets: a range of either index.
        found = plan(connection, _NEXT_DUE)
        assert "ix_ticket_next_due" in found, found
        found = plan(connection, DUE_NOW)
        assert "Index" in found and "Seq Scan" not in found, found
        assert connection.execute(_NEXT_DUE).scalar() == NOW
        assert len(connection.execute(DUE_NOW).all()) == 50
    engine.dispose()


def test_sqlite_searches_an_index_instead_of_scanning_the_tickets(sqlite_url):
    upgrade(DatabaseSettings(url=sqlite_url))
    engine = sa.create_engine(sync_url(sqlite_url))
    with engine.begin() as connection:
        fill(connection, 2_000)
        for statement in (_NEXT_DUE, DUE_NOW):
            found = plan(connection, statement)
            assert "SEARCH ticket USING" in found and "SCAN ticket" not in found, found
        assert connection.execute(_NEXT_DUE).scalar() == NOW
        assert len(connection.execute(DUE_NOW).all()) == 20
    engine.dispose()
