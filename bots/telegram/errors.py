"""What Telegram's errors mean for a send: retried, when, or given up."""

from __future__ import annotations

from datetime import timedelta

from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from core.delivery.contract import DeliveryError


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
        return DeliveryError(f"network error: {error.message}")
    return DeliveryError(f"telegram error: {error}")
