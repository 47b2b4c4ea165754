"""Platform payloads kept as the platform sent them: as JSON text any database stores,
and packed (compressed, size-capped) beside each stored message."""

from __future__ import annotations

import json
import zlib
from typing import Any

MAX_PACKED = 256 * 1024  # bytes of JSON kept per message; a bigger payload keeps a note


def encode(payload: Any) -> str:
    """JSON with every non-ASCII character escaped: lone surrogates and NUL survive as
    escapes in any database. It never fails: what JSON cannot hold (keys that are not
    text, cycles, absurd nesting) is kept as its repr."""
    try:
        return json.dumps(payload, ensure_ascii=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        return json.dumps({"unencodable": repr(payload)[:100_000]}, ensure_ascii=True)


def decode(text: str) -> Any:
    return json.loads(text)


def pack(payload: Any) -> bytes | None:
    """The payload compressed for the message row; None when there is none. One larger
    than MAX_PACKED is replaced by a note of its size (a message is never refused for
    the size of what came with it)."""
    if payload is None:
        return None
    text = encode(payload)
    if len(text) > MAX_PACKED:
        text = encode({"truncated": True, "size": len(text), "start": text[:4096]})
    return zlib.compress(text.encode("ascii"), 6)


def unpack(packed: bytes | None) -> Any:
    return None if packed is None else decode(zlib.decompress(packed).decode("ascii"))
