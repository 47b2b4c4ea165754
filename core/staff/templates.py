"""`/t`, `/templates`: saved answers.

An admin writes them in the config (``[templates.<name>]``, a text per language with the
acknowledgement's placeholders and ``{agent}``); ``/t <name> N`` fills one in, in the
ticket's language, and sends it exactly as ``/reply N <text>`` would.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.config.shown import printable
from core.domain.ack import back_words, promise_words
from core.domain.templates import (
    addressed_as,
    closest_names,
    fill,
    find_name,
    first_words,
    text_for,
)
from core.staff.handlers import Actor, Reply, handles
from core.staff.language import Command
from core.store.tables import Customer, Ticket

MAX_ECHO = 32  # characters of a mistyped name repeated in a reply
NO_TEMPLATES = ("No saved answers yet: an admin adds them to the config as "
                "[templates.<name>] (see docs/configuration.md).")


@handles("t")
async def t(desk, session: AsyncSession, actor: Actor, command: Command,
            ticket: Ticket) -> Reply:
    templates = desk.settings.templates
    if not templates:
        return Reply(NO_TEMPLATES, ok=False)
    name = find_name(templates, command.arg)
    if name is None:
        return Reply(_unknown(templates, command.arg), ok=False)
    customer = await session.get(Customer, ticket.customer_id)
    language, text = text_for(templates[name], ticket.language,
                              desk.settings.ack.default_language)
    now = desk.clock.now()
    calendar, zone = desk.policy.calendar, desk.policy.zone
    text = fill(text, {
        "name": addressed_as(customer.name, customer.handle),
        "handle": customer.handle or "",
        "ticket": f"#{ticket.id}",
        "promise": promise_words(ticket.due_at, now, zone, language) if ticket.due_at else "",
        "back": "" if calendar.is_open(now) else
        back_words(calendar.next_opening(now), now, zone, language),
        "agent": actor.name,
    })
    reply = await desk.answer(session, actor, ticket, text)
    if reply.ok:  # what went out, for the console (a staff group sees it on the card)
        reply.text = f"{reply.text}\nSaved answer {name} ({language}): {text}"
    return reply


@handles("templates")
async def templates(desk, session: AsyncSession, actor: Actor, command: Command) -> Reply:
    saved = desk.settings.templates
    if not saved:
        return Reply(NO_TEMPLATES)
    lines = ["Saved answers (/t <name> N, or /t <name> replying to a card):"]
    for name, texts in sorted(saved.items(), key=lambda item: item[0].casefold()):
        shown = " · ".join(f"{language}: {first_words(text)}" for language, text in
                           texts.items())
        lines.append(f"{name} — {shown}")
    return Reply("\n".join(lines))


def _unknown(templates: dict, name: str) -> str:
    echoed = printable(name)
    echoed = echoed if len(echoed) <= MAX_ECHO else echoed[:MAX_ECHO] + "…"
    close = closest_names(templates, name)
    if close:
        return (f"No saved answer {echoed}. Did you mean {' or '.join(close)}? "
                f"/templates lists them.")
    return f"No saved answer {echoed}. /templates lists them."
