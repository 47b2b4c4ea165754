"""Logging setup: human-readable by default, one JSON object a line on request.

Tokens never reach the log: every record passes a filter that masks the values of the
environment variables the config names as secrets. Nor do customers' texts: records at
info and above carry ids only; texts and payloads go to the ``sameday.texts`` logger at
debug level, silent unless ``[daemon] log_texts`` is on.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from core.config.channels import installed_channels
from core.config.settings import TEXTS_LOGGER, Settings


class SecretFilter(logging.Filter):
    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                record.msg, record.args = self.mask(message), None
            if record.exc_info and not record.exc_text:
                # A traceback may quote a URL or an error message holding a token.
                record.exc_text = self.mask(logging.Formatter().formatException(
                    record.exc_info))
        return True

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class LibraryErrorFilter(logging.Filter):
    """A platform library's errors it handles itself (python-telegram-bot retries network
    errors, logging each at ERROR with a traceback) as one WARNING line each: hundreds of
    tracebacks in a network outage would drown the daemon's own errors. At debug level
    they stay as they are."""

    def __init__(self, libraries: set[str]):
        super().__init__()
        self.libraries = tuple(libraries)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith(self.libraries) \
                and logging.getLogger().level > logging.DEBUG:
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
                record.args = None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configured_secrets(settings: Settings) -> list[str]:
    return [value for _name, channel in settings.channels for value in channel.secret_values()]


def setup_logging(level: str = "info", fmt: str = "text",
                  secrets: list[str] | None = None, texts: bool = False) -> None:
    """Log to stderr at `level`. Customers' texts and payloads go only to the
    TEXTS_LOGGER logger at debug level, written only when `texts` ([daemon] log_texts)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    # Platform libraries log request URLs and headers (tokens among them) at debug level:
    # each channel names its loggers; aiosqlite logs every statement.
    noisy = {"aiosqlite", *(name for channel in installed_channels().values()
                            for name in channel.loggers)}
    handler.addFilter(LibraryErrorFilter(noisy))
    handler.addFilter(SecretFilter(secrets or []))  # last: it masks the final message
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in noisy:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.getLogger(TEXTS_LOGGER).setLevel(logging.DEBUG if texts else logging.CRITICAL + 1)
    # "skipped: maximum number of running instances" is how a coalesced sweep looks.
    logging.getLogger("apscheduler").setLevel(max(logging.ERROR, root.level))
