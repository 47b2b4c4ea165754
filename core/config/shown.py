"""Values as a config problem shows them: one short, printable line, whatever the value.

A problem line must stay one line an admin can read: a value may be 100 kB long, nested
thousands of levels deep, or hold control characters (a newline, a terminal escape) in a
quoted TOML key or string.
"""

from __future__ import annotations

import reprlib
from typing import Any

MAX_SHOWN = 80  # characters of a value shown in a message

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = _repr.maxother = _repr.maxlong = MAX_SHOWN
for _name in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset"):
    setattr(_repr, _name, 6)


def shown(value: Any) -> str:
    """A short ``repr`` of a config value (strings quoted, long ones cut with their
    length named; deep lists cut at a few levels); never raises."""
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        return f"{value[:MAX_SHOWN // 2]!r}... ({len(value)} characters)"
    try:
        text = _repr.repr(value)
    except Exception:  # a value whose repr fails or recurses: name its type only
        text = f"<{type(value).__name__}>"
    return printable(text)


def printable(text: str) -> str:
    """``text`` with every character that is not printable on one line (newlines, other
    control characters, line separators, lone surrogates) written as an escape."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
