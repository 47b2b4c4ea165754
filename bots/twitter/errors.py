"""What X's answers to a post mean for the outbox: retried, when, or given up."""

from __future__ import annotations

import time

import aiohttp
import tweepy

from core.delivery.contract import DeliveryError

RATE_LIMIT_FALLBACK = 60.0  # when a 429 carries no x-rate-limit-reset


def delivery_error(error: Exception) -> DeliveryError:
    """A tweepy/aiohttp failure of create_tweet as a DeliveryError the dispatcher handles."""
    if isinstance(error, tweepy.TooManyRequests):
        wait = seconds_until(error.reset_time)
        return DeliveryError(f"X rate limit for posts reached; retry in {wait:.0f}s",
                             retry_after=wait)
    if is_duplicate_content(error):
        return DeliveryError(f"X refused the reply as a duplicate: {_api_message(error)}",
                             permanent=True, unknown=True)
    if isinstance(error, tweepy.Forbidden | tweepy.BadRequest | tweepy.NotFound):
        # Deleted or invisible tweet, duplicate text, too long: a retry cannot succeed.
        return DeliveryError(f"X refused the reply ({_status(error)}): {_api_message(error)}",
                             permanent=True)
    if isinstance(error, tweepy.Unauthorized):
        # Wrong or revoked keys: retried, so answers survive until the admin fixes them.
        return DeliveryError("X rejected the credentials (401): check the SAMEDAY_X_* "
                             "tokens and the app's read+write permission")
    if isinstance(error, tweepy.TwitterServerError):
        return DeliveryError(f"X server error ({_status(error)}): {_api_message(error)}")
    if isinstance(error, tweepy.HTTPException):
        return DeliveryError(f"X refused the reply ({_status(error)}): {_api_message(error)}",
                             permanent=True)
    if isinstance(error, aiohttp.ClientError | TimeoutError):
        # Not connected: never sent. An answer, even an unreadable one: X said what it
        # did. Anything else (a timeout, a dropped answer): X may have posted it.
        answered = aiohttp.ClientConnectorError | aiohttp.ClientResponseError
        return DeliveryError(f"network error talking to X: {type(error).__name__}: {error}",
                             unknown=not isinstance(error, answered))
    if isinstance(error, ValueError):  # a 2xx body that is not JSON
        return DeliveryError(f"X answered with an unreadable body: {error}")
    return DeliveryError(f"unexpected error posting to X: {error!r}")


def is_duplicate_content(error: Exception) -> bool:
    """X's 403 for a text it already has from this account: often our own earlier post
    whose answer was lost."""
    return isinstance(error, tweepy.Forbidden) and "duplicate" in _api_message(error).lower()


def _status(error: tweepy.HTTPException) -> int:
    return getattr(error.response, "status", 0)


def _api_message(error: tweepy.HTTPException) -> str:
    return "; ".join(str(m) for m in error.api_messages) or str(error)



def seconds_until(reset_epoch: float | None, *, now: float | None = None) -> float:
    """Seconds until X's x-rate-limit-reset (epoch seconds), at least 1 s."""
    if reset_epoch is None:
        return RATE_LIMIT_FALLBACK
    now = time.time() if now is None else now
    return max(1.0, float(reset_epoch) - now)
