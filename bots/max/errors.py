"""What the MAX Bot API's errors mean for a send: retried, when, or given up.

Codes as documented (https://dev.max.ru/docs-api, and the OpenAPI description in
github.com/max-messenger/max-bot-api-client-go ``schema.yaml``): 400 a request MAX refuses
(except ``attachment.not.ready``: an upload still being processed), 401 a wrong token, 403
no right (the user blocked or stopped the bot, no access to the chat), 404 no such
resource, 405 a method not allowed, 429 too many requests, 500/503 MAX's own trouble.
The body is ``{"code": "<key>", "message": "<text>"}``.
"""

from __future__ import annotations

from typing import Any

from core.delivery.contract import DeliveryError

RATE_LIMITED_WAIT = 1.0  # seconds: MAX documents no Retry-After; its limits are per second
NOT_READY_WAIT = 5.0  # an uploaded file MAX is still processing

# HTTP status -> (reason for a person, permanent).
STATUSES: dict[int, tuple[str, bool]] = {
    400: ("MAX refused the request", True),
    # Temporary: answers wait while the admin fixes the token (as X's 401).
    401: ("MAX refused the bot token: check it in [channels.max] token_env", False),
    403: ("MAX does not let the bot write there (blocked, stopped or no access)", True),
    404: ("MAX has no such chat or message", True),
    405: ("MAX does not allow this method", True),
    429: ("too many requests to MAX", False),
    500: ("MAX internal server error", False),
    503: ("MAX is unavailable", False),
}


def api_delivery_error(status: int, body: Any) -> DeliveryError:
    """The DeliveryError for an HTTP status and error body (unknown statuses: retried)."""
    key = body.get("code") if isinstance(body, dict) else None
    text = body.get("message") if isinstance(body, dict) else body
    detail = ": ".join(str(part) for part in (key, text) if part)
    if key == "attachment.not.ready":
        return DeliveryError("MAX is still processing the uploaded file",
                             retry_after=NOT_READY_WAIT)
    reason, permanent = STATUSES.get(status, (f"MAX answered HTTP {status}", False))
    return DeliveryError(f"{reason} (HTTP {status}{': ' + detail[:200] if detail else ''})",
                         permanent=permanent,
                         retry_after=RATE_LIMITED_WAIT if status == 429 else None)
