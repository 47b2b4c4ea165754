"""Staff commands kept in modules of their own (templates, lookup, merging, blocking,
files, survey), registered by name with ``@handles``; ``StaffDesk.execute`` runs them like
its own methods: in one transaction, with the ticket locked when the command names one.

A handler is ``async def handler(desk, session, actor, command[, ticket]) -> Reply``;
``desk`` is the ``StaffDesk`` (its ``settings``, ``policy``, ``clock`` and helpers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[..., Awaitable["Reply"]]
HANDLERS: dict[str, Handler] = {}


def handles(name: str) -> Callable[[Handler], Handler]:
    """Register the handler of the command ``name`` (declared in core.staff.language)."""
    def register(handler: Handler) -> Handler:
        HANDLERS[name] = handler
        return handler
    return register


@dataclass(frozen=True)
class Actor:
    """Who is typing: a configured staff member, or someone who is not staff."""

    name: str | None  # the staff member's name; None: not staff
    role: str | None = None  # "agent" | "admin"
    origin: dict[str, Any] = field(default_factory=dict)  # where to confirm (chat, message)

    @property
    def is_staff(self) -> bool:
        return self.name is not None


@dataclass
class Reply:
    text: str  # plain text; the staff chat renders it (escaped, ticket numbers marked)
    ok: bool = True
    ticket_id: int | None = None
    reload: bool = False  # the staff chat should reload the config and say how it went
    # Nothing to post in a busy staff group: the change shows on the ticket's card.
    quiet: bool = False
