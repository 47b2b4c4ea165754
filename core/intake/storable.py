"""A customer's message as every database can store it.

A message must not become a poison batch that is fetched and refused for ever:
PostgreSQL text cannot hold NUL, no database driver can encode a lone surrogate
("\\ud800" is legal in JSON), and a platform may send a number or null where text
belongs.
"""

from __future__ import annotations

import dataclasses

from core.domain.records import Attachment, Inbound
from core.domain.text import valid_unicode


def storable(inbound: Inbound) -> Inbound:
    """The message with its texts (and its attachments' texts) storable."""
    cleaned = {name: storable_text(value) for name in ("text", "author_handle", "author_name")
               if (value := getattr(inbound, name)) is not None}
    cleaned["text"] = cleaned.get("text", "")
    attachments = tuple(_storable_attachment(a) for a in inbound.attachments)
    if all(cleaned[name] is getattr(inbound, name) for name in cleaned) and all(
            new is old for new, old in zip(attachments, inbound.attachments, strict=True)):
        return inbound
    return dataclasses.replace(inbound, **cleaned, attachments=attachments)


def _storable_attachment(attachment: Attachment) -> Attachment:
    texts = {name: storable_text(value) for name, value in attachment.to_json().items()
             if isinstance(value, str)}
    if all(texts[name] is getattr(attachment, name) for name in texts):
        return attachment
    return dataclasses.replace(attachment, **texts)


def storable_text(value: object) -> str:
    """The text as any database stores it: a string, without NUL, lone surrogates
    replaced by U+FFFD. A text that needs nothing is returned as it is."""
    text = valid_unicode(value if isinstance(value, str) else str(value))
    return text.replace("\x00", "") if "\x00" in text else text
