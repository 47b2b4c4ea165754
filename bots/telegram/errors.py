"""What Telegram's errors mean for a send: retried, when, or given up."""

from __future__ import annotations

from datetime import timedelta

import httpx
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from core.delivery.contract import DeliveryError

# The request went out and its answer did not come back (a read timeout, a connection
# dropped mid-answer): Telegram may have delivered the message. A connection that could
# not be made, or a full pool, means it was never sent.
ANSWER_LOST = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


def delivery_error(error: TelegramError) -> DeliveryError:
    if isinstance(error, RetryAfter):
        wait = error.retry_after
        seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
        return DeliveryError(f"rate limited by Telegram ({seconds:.0f}s)", retry_after=seconds)
    if isinstance(error, Forbidden):
        return DeliveryError(f"undeliverable: {error.message}", permanent=True)
    if isinstance(error, BadRequest):
        return DeliveryError(f"rejected by Telegram: {error.message}", permanent=True)
    if isinstance(error, NetworkError):  # includes timeouts and 5xx
        return DeliveryError(f"network error: {error.message}",
                             unknown=isinstance(error.__cause__, ANSWER_LOST))
    return DeliveryError(f"telegram error: {error}")
