"""A fourth, test-only channel, written the way docs/architecture.md says a channel is
added: a description, a settings model, a typed reply target, an adapter, and an
emulator (here an in-process fake platform). Nothing in core/ knows about it; it is found
through a ``sameday.channels`` entry point that the test installs."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from core.config.channels import ChannelDescription, ChannelSettings, lazy
from core.config.settings import Duration, Settings
from core.delivery.contract import (
    AdapterContext,
    ChannelAdapter,
    ChannelHealth,
    Cursor,
)
from core.domain.records import Delivered, Inbound, Outbound

NAME = "echo"


class EchoSettings(ChannelSettings):
    """``[channels.echo]``"""

    token_env: str = "SAMEDAY_ECHO_TOKEN"
    room: str = ""
    poll_wait: Duration = timedelta(seconds=1)

    @model_validator(mode="after")
    def _room_when_enabled(self) -> EchoSettings:
        if self.enabled and not self.room:
            raise ValueError("room is required when echo is enabled")
        return self


class EchoTarget(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    room: str
    reply_to: str


@dataclass
class EchoPlatform:
    """The 'platform': customers post messages, the bot's sends are recorded."""

    posted: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def post(self, user: str, text: str, room: str = "lobby") -> str:
        message_id = f"e{next(self.ids)}"
        self.posted.append({"id": message_id, "user": user, "room": room, "text": text,
                            "at": datetime.now(UTC).isoformat()})
        return message_id

    def updates(self, offset: int) -> list[dict[str, Any]]:
        return self.posted[offset:]


PLATFORM = EchoPlatform()


class EchoAdapter(ChannelAdapter):
    name = NAME

    def __init__(self, settings: Settings):
        self.config = settings.channels.echo
        self.platform = PLATFORM
        self.context: AdapterContext | None = None
        self.task: asyncio.Task | None = None
        self.last_ok: datetime | None = None

    async def start(self, context: AdapterContext) -> None:
        self.context = context
        offset = int(await context.load_cursor(NAME, "offset") or 0)
        self.task = asyncio.create_task(self._poll(offset))

    async def _poll(self, offset: int) -> None:
        for _ in range(100_000):  # bounded: a test never runs this long
            updates = self.platform.updates(offset)
            if updates:
                offset += len(updates)
                await self.context.ingest([self._inbound(u) for u in updates],
                                          Cursor(NAME, "offset", str(offset)))
            self.last_ok = datetime.now(UTC)
            await asyncio.sleep(0.05)

    def _inbound(self, update: dict[str, Any]) -> Inbound:
        target = EchoTarget(room=update["room"], reply_to=update["id"])
        return Inbound(channel=NAME, external_id=update["id"],
                       thread_key=f"room:{update['room']}:{update['user']}",
                       author_id=update["user"], author_handle=f"~{update['user']}",
                       text=update["text"], sent_at=datetime.fromisoformat(update["at"]),
                       reply_target=target.model_dump(), raw=update)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        return [("per_room", str(outbound.target.get("room")))]

    async def send(self, outbound: Outbound) -> Delivered:
        target = self.reply_target(outbound)  # EchoTarget, from the description
        self.platform.sent.append({"room": target.room, "reply_to": target.reply_to,
                                   "text": outbound.text, "kind": outbound.kind})
        return Delivered(external_id=f"sent{len(self.platform.sent)}")

    def health(self) -> ChannelHealth:
        return ChannelHealth(connected=self.task is not None and not self.task.done(),
                             last_poll_ok=self.last_ok, poll_errors=0)


CHANNEL = ChannelDescription(
    name=NAME, label="Echo", settings=EchoSettings, adapter=EchoAdapter,
    limits={"per_room": "5/1s"}, text_limit=100, poll_setting="poll_wait",
    reply_target=EchoTarget, emulator=lazy("tests.fourth_channel:EchoPlatform"))
