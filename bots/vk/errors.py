"""What VK's API errors mean for a send: retried, when, or given up (with a reason a
person can act on). Codes from https://dev.vk.com/ru/reference/errors."""

from __future__ import annotations

from core.delivery.contract import DeliveryError

# What each VK error means for a send: (reason for a person, permanent, retry after seconds).
API_ERRORS: dict[int, tuple[str, bool, float | None]] = {
    1: ("VK reported an unknown error", False, None),
    5: ("the community token is invalid or revoked: create a new one", True, None),
    6: ("too many requests per second to VK", False, 1.0),
    7: ("the community token lacks the right for this (messages or wall)", True, None),
    9: ("VK flood control: too many similar messages", False, 60.0),
    10: ("VK internal server error", False, None),
    14: ("VK asks for a captcha (too many messages)", False, 60.0),
    15: ("VK denied access (the community may not write there)", True, None),
    29: ("the daily limit of this VK method is reached", False, 3600.0),
    100: ("VK refused the request parameters", True, None),
    212: ("comments on this post are closed", True, None),
    213: ("comments on this post are closed", True, None),
    222: ("VK does not allow links in this comment", True, None),
    223: ("too many replies in this comment thread", True, None),
    900: ("the user has blocked the community", True, None),
    901: ("the user has not allowed messages from the community", True, None),
    902: ("the user's privacy settings do not allow messages from the community", True, None),
    914: ("the message is too long for VK", True, None),
    917: ("the community has no access to this conversation", True, None),
}


def api_delivery_error(code: int, message: str) -> DeliveryError:
    """The DeliveryError for a VK API error code (unknown codes are retried)."""
    reason, permanent, retry_after = API_ERRORS.get(code, (f"VK error: {message}", False, None))
    return DeliveryError(f"{reason} (VK error {code})", permanent=permanent,
                         retry_after=retry_after)
