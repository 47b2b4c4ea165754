"""The staff command language, shared by every staff chat (a channel's staff group, the
console): ``parse`` turns a line into a ``Command`` (pure; a bad line raises
``UsageError`` with the right form)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import timedelta

from core.config.channels import channel_names
from core.config.durations import DURATION_HELP, parse_duration
from core.config.shown import printable
from core.domain.records import Priority

MAX_SNOOZE = timedelta(days=365)
MAX_ECHO = 32  # characters of a mistyped command or bot name repeated in a reply


class UsageError(ValueError):
    """A line that is not a valid command; the message says the right form."""


@dataclass(frozen=True)
class Spec:
    usage: str
    help: str
    needs_ticket: bool = False
    rest: str | None = None  # name of the free-text argument after the ticket, if any
    admin: bool = False


SPECS: dict[str, Spec] = {
    "help": Spec("/help", "this list"),
    "queue": Spec("/queue [<channel>|mine|overdue]", "waiting tickets, due first"),
    "show": Spec("/show N", "a ticket with its messages", needs_ticket=True),
    "take": Spec("/take N", "assign a ticket to yourself", needs_ticket=True),
    "assign": Spec("/assign N <agent>", "assign a ticket to a colleague", needs_ticket=True,
                   rest="agent"),
    "reply": Spec("/reply N <text>", "answer the customer on their channel",
                  needs_ticket=True, rest="text"),
    "note": Spec("/note N <text>", "an internal note (never sent)", needs_ticket=True,
                 rest="text"),
    "close": Spec("/close N", "close a ticket", needs_ticket=True),
    "reopen": Spec("/reopen N", "reopen a closed ticket", needs_ticket=True),
    "snooze": Spec("/snooze N <duration>", "put aside, e.g. /snooze 12 2h", needs_ticket=True,
                   rest="duration"),
    "priority": Spec("/priority N low|normal|high|urgent", "set the priority",
                     needs_ticket=True, rest="priority"),
    "stats": Spec("/stats", "today: received, acknowledged, answered, same-day rate"),
    "sla": Spec("/sla", "tickets closest to breaking their promise"),
    "whoami": Spec("/whoami", "who the bot thinks you are"),
    "reload": Spec("/reload", "re-read the config file (admins)", admin=True),
    "edit": Spec("/edit N <text>", "change your last answer where the platform allows",
                 needs_ticket=True, rest="text"),
    "delete": Spec("/delete N", "withdraw the last answer where the platform allows",
                   needs_ticket=True),
    "t": Spec("/t <name> N", "answer with a saved answer (replying to a card: /t <name>)",
              needs_ticket=True),
    "templates": Spec("/templates", "the saved answers"),
    "history": Spec("/history N", "the customer's earlier tickets", needs_ticket=True),
    "customer": Spec("/customer N", "who the customer is: names, tags, notes, tickets",
                     needs_ticket=True),
    "find": Spec("/find <text>", "tickets whose messages match", rest="text"),
    "merge": Spec("/merge A B", "move ticket B into A and close B", needs_ticket=True,
                  rest="ticket"),
    "link": Spec("/link A B", "the customers of A and B are one person", needs_ticket=True,
                 rest="ticket"),
    "block": Spec("/block N [reason]", "no more acknowledgements, cards or escalations for "
                  "this customer", needs_ticket=True),
    "unblock": Spec("/unblock N", "undo /block", needs_ticket=True),
    "blocked": Spec("/blocked", "blocked customers"),
    "forget": Spec("/forget N [yes]", "delete what is held about the customer of #N (asks "
                   "to confirm)", needs_ticket=True, admin=True),
}
QUEUE_OWN_FILTERS = ("mine", "overdue")


def queue_filters() -> tuple[str, ...]:
    """/queue narrows to a channel (any installed one), to mine, or to overdue."""
    return (*channel_names(), *QUEUE_OWN_FILTERS)


@dataclass(frozen=True)
class Command:
    name: str
    ticket: int | None = None
    arg: str = ""


def parse(line: str, bot_username: str | None = None) -> Command:
    """Parse "/reply 12 text", "/reply@bot #12 text" and the like."""
    # NUL cannot be stored by PostgreSQL and means nothing in a chat line.
    line = (line or "").replace("\x00", "").strip()
    if not line.startswith("/"):
        raise UsageError("Commands start with /. Send /help for the list.")
    head, rest = _split_word(line[1:])
    name, _, addressee = head.partition("@")
    name = name.lower()
    if addressee and bot_username and addressee.lower() != bot_username.lower():
        raise UsageError(f"That command is for @{_echo(addressee)}.")
    spec = SPECS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(SPECS), n=1, cutoff=0.5)
        hint = f" Did you mean /{close[0]}?" if close else ""
        raise UsageError(f"Unknown command /{_echo(name)}.{hint} Send /help for the list.")
    if not spec.needs_ticket:
        if name == "queue" and rest and rest.lower() not in queue_filters():
            raise UsageError(f"Usage: /queue [{'|'.join(queue_filters())}]")
        if spec.rest and not rest.strip():
            raise UsageError(f"Usage: {spec.usage}")
        return Command(name, arg=rest.lower() if name == "queue" else rest.strip())
    if name == "t":  # the saved answer's name comes first: /t late 12
        template, rest = _split_word(rest)
        if not template or template.startswith("#") or template.isdigit():
            raise UsageError(f"Usage: {spec.usage} (/templates lists the names)")
    number, arg = _split_word(rest)
    ticket = _ticket_number(number)
    if ticket is None:
        raise UsageError(f"Usage: {spec.usage} (N is the ticket number, like 12 or #12)")
    arg = arg.strip()
    if spec.rest and not arg:
        raise UsageError(f"Usage: {spec.usage}")
    if name == "priority" and arg.lower() not in {p.value for p in Priority}:
        raise UsageError(f"Usage: {spec.usage}")
    if name == "snooze":
        try:
            if not timedelta() < parse_duration(arg) <= MAX_SNOOZE:
                raise ValueError
        except (ValueError, OverflowError):
            raise UsageError(f"Usage: {spec.usage}; the duration is {DURATION_HELP}, "
                             f"at most {MAX_SNOOZE.days} days") from None
    if name == "assign":
        arg = arg.lstrip("@").lower()
    if name in ("merge", "link"):
        other = _ticket_number(arg)
        if other is None or other == ticket:
            raise UsageError(f"Usage: {spec.usage} (two different ticket numbers)")
        arg = str(other)
    if name == "t":
        arg = template.lower()
    return Command(name, ticket, arg.lower() if name == "priority" else arg)


def _echo(word: str) -> str:
    """A word of the staff's line as a reply repeats it: one short line (a 100 kB
    "command" must not come back whole, nor a control character reach a terminal)."""
    word = printable(word)
    return word if len(word) <= MAX_ECHO else word[:MAX_ECHO] + "…"


def _split_word(text: str) -> tuple[str, str]:
    """The first word and the rest; any whitespace separates (a reply may start on the
    next line)."""
    parts = re.split(r"\s+", text.strip(), maxsplit=1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


def _ticket_number(text: str) -> int | None:
    # ASCII digits only: int() would read "٤" (Arabic-Indic four) as 4.
    match = re.fullmatch(r"#?([0-9]{1,9})", text.strip())
    return int(match.group(1)) if match else None
