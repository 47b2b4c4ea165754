"""Text as pure functions: splitting to a platform's limit, and text every encoder accepts."""

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


def valid_unicode(text: str) -> str:
    """Text every encoder accepts. Python strings may carry surrogates no database or
    terminal can write: bytes a terminal could not decode (surrogate escapes) are read as
    UTF-8 where they can be, and lone surrogates ("\\ud800" from JSON) become U+FFFD; a
    valid pair becomes its character. Valid text is returned as it is."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
