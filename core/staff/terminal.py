"""Staff messages and command replies as terminal output (rich), for `sameday console`.

``Text`` objects (never markup), so a customer's "[red]" stays literal; ticket numbers in
bold so the eye finds them.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.panel import Panel
from rich.text import Text

from core.domain.records import Outbound, OutboxKind
from core.staff.cards import Button, StaffMessage
from core.staff.commands import Reply

TICKET_NUMBER = r"#\d+"
TONE_BORDERS = {"ok": "green", "warning": "red", "info": "yellow"}


def staff_text(plain: str, style: str = "") -> Text:
    text = Text(plain, style=style)
    text.highlight_regex(TICKET_NUMBER, "bold")
    return text


def render_reply(reply: Reply) -> Text:
    return staff_text(reply.text, "" if reply.ok else "red")


def button_commands(buttons: tuple[Button, ...]) -> str:
    """The card's buttons as the commands that do the same."""
    return " · ".join(button.command for button in buttons)


def render_staff_row(outbound: Outbound) -> RenderableType:
    """What a staff group would show for an outbox row of the staff channel."""
    message = StaffMessage.from_row(outbound.target, outbound.text)
    if outbound.kind == OutboxKind.CARD_EDIT and message.card is not None:
        return card_update_line(message)
    if outbound.kind == OutboxKind.STAFF_CARD:
        reply = f"/reply {outbound.ticket_id} <text>" if outbound.ticket_id else ""
        subtitle = " · ".join(p for p in (button_commands(message.buttons), reply) if p)
        return Panel(staff_text(message.text()), title="new ticket", title_align="left",
                     subtitle=subtitle or None, subtitle_align="left", border_style="cyan")
    return Panel(staff_text(message.text()), border_style=TONE_BORDERS.get(message.tone,
                                                                           "yellow"),
                 expand=False)


def card_update_line(message: StaffMessage) -> Text:
    """An edited card as one line: its state and what changed ("taken by anna").

    A terminal cannot edit an earlier panel, and reprinting the whole card for every
    /take would bury the conversation."""
    card = message.card
    why = f" ({card.note})" if card.note else ""
    return staff_text(f"#{card.ticket_id} updated: {card.state}{why}", "dim")
