"""`/forget N [yes]` (admins): forget the customer of ticket #N (core.staff.personal).

``/forget N`` changes nothing: it says what would be deleted and asks for
``/forget N yes``, which deletes it in the command's transaction. The answer after the
deletion names no one: the staff chat may keep it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.config.channels import channel_label
from core.staff import personal
from core.staff.board import customer_name
from core.staff.handlers import Actor, Reply, handles
from core.staff.language import SPECS, Command
from core.store.tables import Customer, Ticket

CONFIRM = "yes"


@handles("forget")
async def forget(desk, session: AsyncSession, actor: Actor, command: Command,
                 ticket: Ticket) -> Reply:
    """/forget N: what would be deleted; /forget N yes: delete it."""
    if command.arg.lower() not in ("", CONFIRM):
        return Reply(f"Usage: {SPECS['forget'].usage}", ok=False)
    customer = await session.get(Customer, ticket.customer_id, with_for_update=True)
    if personal.is_forgotten(customer):
        return Reply(f"The customer of #{ticket.id} was already forgotten: nothing of them "
                     f"is left to delete.")
    if command.arg.lower() != CONFIRM:
        held = await personal.held(session, customer)
        tickets = ", ".join(f"#{t}" for t in held.tickets)
        opened = (f" Still open, closed first: {', '.join(f'#{t}' for t in held.open_tickets)}."
                  if held.open_tickets else "")
        return Reply(
            f"/forget {ticket.id} deletes everything held about {customer_name(customer)} "
            f"({channel_label(customer.channel)}): their name, handle and id, "
            f"{held.summary() or 'no messages'}. Their tickets ({tickets}) stay as anonymous "
            f"rows for the reports.{opened} This cannot be undone. To do it: "
            f"/forget {ticket.id} yes")
    done = await personal.forget(session, desk.policy, customer, actor.name,
                                 desk.clock.now(), via="staff")
    closed = (f" Closed: {', '.join(f'#{t}' for t in done.closed)}." if done.closed else "")
    return Reply(f"The customer of #{ticket.id} is forgotten: "
                 f"{done.held.summary() or 'nothing but their name and id'} deleted; "
                 f"{_tickets(done.held.tickets)} kept as anonymous rows.{closed} The audit "
                 f"trail records that {actor.name} did it.")


def _tickets(ids: list[int]) -> str:
    return ", ".join(f"#{t}" for t in ids) if ids else "no tickets"
