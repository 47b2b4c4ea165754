"""Saved answers (``[templates]`` in the config): pure functions over their texts.

Which saved answer a name means (case does not count), the names closest to a mistyped
one, the text in the ticket's language, its placeholders filled in, and its first words
for a list.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
CLOSEST = 3  # names offered for a mistyped one


def find_name(templates: Mapping[str, object], name: str) -> str | None:
    """The configured name ``name`` means: /t lowercases what staff type."""
    wanted = name.casefold()
    return next((known for known in templates if known.casefold() == wanted), None)


def closest_names(templates: Mapping[str, object], name: str) -> list[str]:
    """The configured names most like ``name``, best first (none if nothing is close)."""
    by_folded = {known.casefold(): known for known in templates}
    close = difflib.get_close_matches(name.casefold(), list(by_folded), n=CLOSEST, cutoff=0.5)
    return [by_folded[folded] for folded in close]


def text_for(texts: Mapping[str, str], language: str | None,
             default_language: str) -> tuple[str, str]:
    """(language, text): the ticket's language, else the default one, else any text the
    saved answer has (the config requires at least one)."""
    for candidate in (language, default_language):
        if candidate and candidate in texts:
            return candidate, texts[candidate]
    return next(iter(texts.items()))


def fill(text: str, values: Mapping[str, str]) -> str:
    """The placeholders replaced by their values (the config allows known ones only). An
    empty value leaves no double space or leading comma ("{name}, sorry" without a
    name), as in acknowledgements."""
    filled = _PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), text)
    if any(not values.get(name) for name in _PLACEHOLDER.findall(text)):
        filled = re.sub(r"[ \t]{2,}", " ", filled).strip().lstrip(",;: ")
    return filled.strip()


def first_words(text: str, words: int = 8) -> str:
    """The beginning of a text on one line: what /templates shows of each."""
    parts = text.split()
    shown = " ".join(parts[:words])
    return shown + ("…" if len(parts) > words else "")


def addressed_as(name: str | None, handle: str | None) -> str:
    """What to call a customer: their name, else their @handle without the "@" (a
    platform id such as VK's "id700001" is no name), as acknowledgements do."""
    if name:
        return name
    return handle.lstrip("@") if handle and handle.startswith("@") else ""
