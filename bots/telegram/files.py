"""A Telegram customer's file fetched again by its file id (``sameday media get``).

Telegram gives bots file ids, not URLs: ``getFile`` answers a ``file_path`` valid for an
hour, and the bytes are at ``{base_file_url}<token>/<file_path>`` (a URL with the bot's
token in it: never logged nor shown). Bots may fetch files up to 20 MB
(https://core.telegram.org/bots/api#getfile), the same ``MAX_DOWNLOAD`` as other media.

Each fetch has a connection of its own, closed when done: the command that uses it makes
the adapter but never starts it, so nothing else would close the adapter's bot.
"""

from __future__ import annotations

import mimetypes

from telegram import Bot
from telegram.error import TelegramError
from telegram.request import HTTPXRequest

from bots.telegram.settings import TelegramSettings
from core.delivery.files import DOWNLOAD_TIMEOUT, MAX_DOWNLOAD, FetchError, too_big
from core.domain.records import Attachment

OCTET_STREAM = "application/octet-stream"


async def fetch_file(config: TelegramSettings,
                     attachment: Attachment) -> tuple[bytes, str] | None:
    """The attachment's bytes and content type; None when it has no file id (a location,
    a contact, a forwarded text); raises FetchError with the reason."""
    if not attachment.file_id:
        return None
    if attachment.size and attachment.size > MAX_DOWNLOAD:
        raise too_big(attachment.size)
    request = HTTPXRequest(connection_pool_size=1, read_timeout=DOWNLOAD_TIMEOUT)
    bot = Bot(config.secret("token_env"), base_url=config.base_url,
              base_file_url=config.base_file_url, request=request)
    try:
        return await _fetch(bot, attachment)
    finally:
        await request.shutdown()


async def _fetch(bot: Bot, attachment: Attachment) -> tuple[bytes, str]:
    try:
        file = await bot.get_file(str(attachment.file_id))
        if file.file_size and file.file_size > MAX_DOWNLOAD:
            raise too_big(file.file_size)
        if not file.file_path:
            raise FetchError("download failed: Telegram gave no file_path")
        content = bytes(await file.download_as_bytearray())
    except TelegramError as error:
        reason = _masked(bot, error.message)
        if "too big" in reason.lower():
            raise FetchError(f"too big: Telegram lets bots fetch files up to "
                             f"{MAX_DOWNLOAD // 1024 // 1024} MB ({reason})") from None
        raise FetchError(f"download failed: {type(error).__name__}: {reason}") from None
    if len(content) > MAX_DOWNLOAD:
        raise too_big(len(content))
    return content, _content_type(attachment, str(file.file_path))


def _content_type(attachment: Attachment, file_path: str) -> str:
    """The type the message declared, else the one the file's name suggests."""
    if attachment.mime_type:
        return attachment.mime_type.lower()
    guessed, _ = mimetypes.guess_type(file_path.rsplit("/", 1)[-1])
    return guessed or OCTET_STREAM


def _masked(bot: Bot, text: str) -> str:
    return text.replace(bot.token, "<token>") if bot.token else text
