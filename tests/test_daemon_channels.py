"""`sameday run` as a real process with all three adapters against their emulators."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import sqlalchemy as sa

from bots.telegram.emulator import TelegramEmulator
from bots.twitter.emulator import BOT_USER as X_BOT
from bots.twitter.emulator import XEmulator
from bots.vk.emulator import VKEmulator
from core.store.engine import sync_url
from core.store.tables import Message, Ticket
from tests.adapter_harness import eventually

STAFF_GROUP = -1009000
TOKENS = {"SAMEDAY_TELEGRAM_TOKEN": "123:daemon-test", "SAMEDAY_VK_TOKEN": "vk-daemon-test",
          **{f"SAMEDAY_X_{n}": f"x-{n.lower()}" for n in (
              "BEARER_TOKEN", "CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
              "ACCESS_TOKEN_SECRET")}}


def config_text(db: Path, telegram: str, vk: str, x: str) -> str:
    return f"""
[database]
url = "sqlite+aiosqlite:///{db}"
[daemon]
health_port = 0
[channels.telegram]
enabled = true
base_url = "{telegram}/bot"
poll_timeout = "1s"
[channels.vk]
enabled = true
group_id = 1
base_url = "{vk}"
long_poll_wait = "1s"
[channels.twitter]
enabled = true
user_id = "{X_BOT['id']}"
base_url = "{x}"
poll_interval = "5s"
[staff]
chat = "telegram"
telegram_chat_id = {STAFF_GROUP}
"""


def count(db: Path, table) -> int:
    engine = sa.create_engine(sync_url(f"sqlite+aiosqlite:///{db}"))
    try:
        with engine.connect() as connection:
            return connection.scalar(sa.select(sa.func.count()).select_from(table))
    except sa.exc.OperationalError:
        return 0  # the daemon has not created the schema yet
    finally:
        engine.dispose()


async def test_daemon_receives_and_answers_on_all_three_channels(tmp_path):
    async with TelegramEmulator() as tg, VKEmulator() as vk, XEmulator() as x:
        db = tmp_path / "daemon.db"
        config = tmp_path / "config.toml"
        config.write_text(config_text(db, tg.url, vk.url, x.url))
        log_lines: list[str] = []
        process = subprocess.Popen(
            [sys.executable, "-m", "core.app.cli", "run", "-c", str(config)],
            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
            env={**os.environ, **TOKENS, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=lambda: log_lines.extend(process.stderr), daemon=True).start()
        try:
            await eventually(lambda: any("sameday is running" in line for line in log_lines),
                             timeout=30, what="the daemon to start")
            tg.inject_message(chat_id=11, user_id=11, text="telegram question")
            vk.inject_message(from_id=22, text="вопрос во ВКонтакте")
            mention = x.inject_mention(author_id="33", username="kate",
                                       text=f"@{X_BOT['username']} where is my order?")
            await eventually(lambda: count(db, Message) == 3, timeout=30,
                             what="three stored messages")
            assert count(db, Ticket) == 3
            await eventually(lambda: len(tg.sent_to(11)) == 1 and len(vk.sent) == 1
                             and len(x.sent) == 1, timeout=30, what="three acknowledgements")
            assert x.sent[0]["in_reply_to_tweet_id"] == mention["id"]
            await eventually(lambda: len(tg.sent_to(STAFF_GROUP)) == 3, timeout=30,
                             what="three staff cards")
        finally:
            process.send_signal(signal.SIGTERM)
            # Waited for in a thread: the emulators share this event loop and must answer.
            code = await asyncio.to_thread(process.wait, 60)
        assert code == 0, "".join(log_lines)
        assert not any("Traceback" in line for line in log_lines), "".join(log_lines)
        assert not any("123:daemon-test" in line for line in log_lines)  # no token in logs
