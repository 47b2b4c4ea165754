"""Small builders shared by the tests."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from core.domain.records import Inbound
from core.store.engine import Store
from tests.conftest import START


def inbound(external_id: str, *, channel: str = "telegram", author: str = "u1",
            thread: str | None = None, text: str = "hello", at: datetime | None = None,
            handle: str | None = None) -> Inbound:
    return Inbound(channel=channel, external_id=external_id,
                   thread_key=thread or f"chat:{author}", author_id=author, text=text,
                   sent_at=at or START - timedelta(seconds=1), author_handle=handle,
                   reply_target={"chat_id": author})


async def count(store: Store, table) -> int:
    async with store.session() as session:
        return await session.scalar(sa.select(sa.func.count()).select_from(table))


async def rows(store: Store, statement):
    async with store.session() as session:
        return list(await session.scalars(statement))


async def update(store: Store, statement) -> None:
    async with store.session() as session, session.begin():
        await session.execute(statement)


def check_attachment(attachment, kind: str, fields: dict) -> None:
    """An Attachment of `kind` whose fields are as given (a type: any value of it)."""
    assert attachment.kind == kind
    for field, want in fields.items():
        value = getattr(attachment, field)
        assert isinstance(value, want) if isinstance(want, type) else value == want, \
            (field, value)
