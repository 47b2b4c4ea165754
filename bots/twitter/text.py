"""X's 280-character rule as pure functions: how long a text is, and how to shorten it.

X does not count characters: it counts *weighted* length (twitter-text v3 config). Most
Latin, Cyrillic, Greek and general punctuation code points weigh 1; everything else
(CJK, most symbols, emoji) weighs 2; every URL weighs 23 whatever its length (t.co
wraps it); an emoji sequence (👍🏽, 👨‍👩‍👧, 🇷🇺) weighs 2 as a whole. The text is
NFC-normalized first, as X does.

Simplified against the reference twitter-text library (say so where it matters):
- URLs: only ``http://``, ``https://`` and ``www.`` links are recognized; bare domains
  like ``example.com`` (which X also links) count by their characters. Over-counting is
  the safe side for a length check only when they are short; a long bare domain is rare.
- Emoji: sequences are found with a small structural scanner (emoji base code point,
  then variation selectors, skin tones, keycaps, tags, and ZWJ-joined parts; regional
  indicator pairs as flags) instead of the full Unicode emoji data. Single emoji weigh 2
  either way; the scanner matters for sequences, which it handles.

Pure functions in core: the X adapter fits answers with them, and acknowledgements are
fitted before they are queued.
"""

from __future__ import annotations

import re
import unicodedata

MAX_WEIGHTED_LENGTH = 280
URL_WEIGHT = 23
EMOJI_WEIGHT = 2
ELLIPSIS = "…"

# twitter-text v3: code points in these ranges weigh 1 (scale 100, weight 100);
# every other code point weighs 2 (the default weight 200).
_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_FIRST_HEAVY = chr(_LIGHT_RANGES[0][1] + 1)

# A link ends at whitespace; trailing punctuation belongs to the sentence, not the URL.
_URL = re.compile(r"(?:https?://|www\.)[^\s]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?'\")]}>"

_ZWJ = 0x200D
_KEYCAP = 0x20E3
_VARIATION_SELECTORS = (0xFE0E, 0xFE0F)
# Code points that start an emoji (a coarse cover of the Unicode emoji blocks).
_EMOJI_BASE_RANGES = (
    (0x2190, 0x21FF), (0x2300, 0x23FF), (0x25A0, 0x27BF), (0x2900, 0x297F),
    (0x2B00, 0x2BFF), (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3299),
    (0x1F000, 0x1FAFF),
)
_REGIONAL_INDICATORS = (0x1F1E6, 0x1F1FF)
_SKIN_TONES = (0x1F3FB, 0x1F3FF)
_TAGS = (0xE0020, 0xE007F)


def _within(cp: int, lo_hi: tuple[int, int]) -> bool:
    return lo_hi[0] <= cp <= lo_hi[1]


def char_weight(char: str) -> int:
    """The weight of one code point outside URLs and emoji sequences."""
    cp = ord(char)
    return 1 if any(lo <= cp <= hi for lo, hi in _LIGHT_RANGES) else 2


def _is_emoji_base(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _EMOJI_BASE_RANGES)


def _is_modifier(cp: int) -> bool:
    return (cp in _VARIATION_SELECTORS or cp == _KEYCAP or _within(cp, _SKIN_TONES)
            or _within(cp, _TAGS))


def _emoji_end(text: str, start: int) -> int:
    """The end of the emoji sequence starting at ``start``, or ``start`` if none does."""
    n = len(text)
    cp = ord(text[start])
    nxt = ord(text[start + 1]) if start + 1 < n else -1
    if _within(cp, _REGIONAL_INDICATORS):
        # Two regional indicators make one flag; a lone one is still one emoji.
        return start + 2 if _within(nxt, _REGIONAL_INDICATORS) else start + 1
    if cp < 4352:
        # ASCII-range characters (digits, #, *, ©, ®) are emoji only with VS16 or keycap.
        if nxt not in (0xFE0F, _KEYCAP):
            return start
    elif not _is_emoji_base(cp):
        return start
    end = start + 1
    while end < n:
        cp = ord(text[end])
        if _is_modifier(cp):
            end += 1
        elif cp == _ZWJ and end + 1 < n and _is_emoji_base(ord(text[end + 1])):
            end += 2
        else:
            break
    return end


def _url_spans(text: str) -> dict[int, int]:
    """start -> end of each URL in ``text``."""
    spans = {}
    for match in _URL.finditer(text):
        url = match.group().rstrip(_URL_TRAILING)
        if len(url) > len("www.") and not url.lower().endswith("://"):
            spans[match.start()] = match.start() + len(url)
    return spans


def weighted_length(text: str) -> int:
    """The length X counts against the 280 limit (twitter-text v3, simplified as above)."""
    text = unicodedata.normalize("NFC", text)
    urls = _url_spans(text)
    if not text or max(text) < _FIRST_HEAVY:
        # Latin and Cyrillic (most texts): every character weighs 1 and none starts an
        # emoji (the code points that make one of them an emoji are heavier).
        return len(text) + sum(URL_WEIGHT - (end - start) for start, end in urls.items())
    length = 0
    i = 0
    while i < len(text):
        if i in urls:
            length += URL_WEIGHT
            i = urls[i]
            continue
        end = _emoji_end(text, i)
        if end > i:
            length += EMOJI_WEIGHT
            i = end
            continue
        length += char_weight(text[i])
        i += 1
    return length


def fits(text: str, limit: int = MAX_WEIGHTED_LENGTH) -> bool:
    return weighted_length(text) <= limit


def _word_ends(text: str) -> list[int]:
    """Indexes where a word ends: a non-space character followed by whitespace."""
    return [i for i in range(1, len(text)) if text[i].isspace() and not text[i - 1].isspace()]


def fit_tweet(text: str, limit: int = MAX_WEIGHTED_LENGTH) -> str:
    """``text`` if it fits; else its longest word-boundary prefix that fits with "…".

    A word is never cut, except when even the first word alone does not fit: then that
    word is cut (never inside an emoji sequence) so that something is still sent.
    """
    if fits(text, limit):
        return text
    if limit < weighted_length(ELLIPSIS):
        raise ValueError(f"limit {limit} is too small for the ellipsis")
    ends = [0, *_word_ends(text)]
    last = _last_fitting(text, ends, limit)
    return text[:ends[last]] + ELLIPSIS if last else _cut_word(text, limit)


def _last_fitting(text: str, cuts: list[int], limit: int) -> int:
    """The index of the last cut whose prefix fits with "…" (``cuts[0]`` is 0 and fits).

    The weighted length of a prefix never shrinks as the prefix grows, so a binary
    search is enough (a long text costs O(n log n), not O(n^2)).
    """
    lo, hi = 0, len(cuts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[:cuts[mid]] + ELLIPSIS, limit):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _cut_word(text: str, limit: int) -> str:
    """The longest prefix that fits with "…", cut between characters, not inside emoji."""
    boundaries = _cluster_boundaries(text)
    return text[:boundaries[_last_fitting(text, boundaries, limit)]] + ELLIPSIS


def _cluster_boundaries(text: str) -> list[int]:
    """Positions between characters where a cut does not split an emoji sequence."""
    boundaries = [0]
    i = 0
    while i < len(text):
        end = _emoji_end(text, i)
        i = end if end > i else i + 1
        # Combining marks (accents) belong to the character before them.
        while i < len(text) and unicodedata.combining(text[i]):
            i += 1
        boundaries.append(i)
    return boundaries
