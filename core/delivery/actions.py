"""What the dispatcher asks an adapter to do with a row: send it, or, for a staff answer
already sent, change or withdraw it.

A staff answer that carries a file is a ``reply`` row whose ``target["file"]`` names the
file (core.delivery.outfiles); its bytes are read here, just before the send, so claims
never carry them. ``/edit`` and ``/delete`` queue rows of their own kinds (``EDIT``,
``DELETE``) with the answer's address, sent through the same outbox: rate limits,
retries, unknown outcomes and dead letters apply as to any answer.
"""

from __future__ import annotations

from typing import Any

from core.delivery.contract import ChannelAdapter, DeliveryError
from core.delivery.outfiles import load
from core.domain.records import Delivered, Outbound

EDIT = "edit"  # change a sent answer's text (a caption for a file)
DELETE = "delete"  # withdraw a sent answer
ANSWER_CHANGES = (EDIT, DELETE)


async def perform(adapter: ChannelAdapter, store: Any, outbound: Outbound) -> Delivered:
    """Do what the row asks; raises DeliveryError like ``ChannelAdapter.send``."""
    if outbound.kind == EDIT:
        return await adapter.edit(outbound)
    if outbound.kind == DELETE:
        return await adapter.delete(outbound)
    ref = outbound.target.get("file") if isinstance(outbound.target, dict) else None
    if not isinstance(ref, dict):
        return await adapter.send(outbound)
    file = await load(store, ref)
    if file is None:
        raise DeliveryError("the file of this answer is no longer kept", permanent=True)
    return await adapter.send_file(outbound, file)
