"""Blocking calls from the event loop: one helper for every library that blocks
(vk_api's requests, the terminal's ``input``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def in_daemon_thread(function: Callable[..., T], *args: Any, name: str = "blocking") -> T:
    """Run a blocking call in a daemon thread and await its result.

    Like asyncio.to_thread, except that a call left blocked (a long poll, ``input`` after
    Ctrl-C) when the caller is cancelled holds up neither the event loop's shutdown (which
    joins the default executor's threads) nor the interpreter's exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return  # the caller was cancelled: the result is abandoned
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = function(*args), None
        except BaseException as exc:  # handed to the awaiting coroutine (EOFError too)
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future
