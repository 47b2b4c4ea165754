"""Platform text limits as pure functions (used by adapters and acknowledgements)."""

from __future__ import annotations


def split_text(text: str, limit: int) -> list[str]:
    """Split a long text into parts of at most `limit` characters, at line or word
    boundaries where there is one."""
    parts = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit + 1)
        if cut <= limit // 2:
            cut = text.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return parts + ([text] if text else [])
