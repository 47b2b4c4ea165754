"""No configured token ever leaves the process: not in any log line (debug level, with
errors on the way), not in `sameday check-config` or `sameday report`, not on /healthz or
/metrics, and not in what the staff chat is sent. The daemon runs as a real process with
all three channels against their emulators, which check the tokens."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from bots.telegram.emulator import TelegramEmulator
from bots.twitter.emulator import BOT_USER as X_BOT
from bots.twitter.emulator import XEmulator
from bots.vk.emulator import VKEmulator
from tests.adapter_harness import eventually
from tests.test_daemon_channels import STAFF_GROUP
from tests.test_daemon_channels import config_text as daemon_config

ROOT = Path(__file__).resolve().parent.parent
SAMEDAY = Path(sys.executable).parent / "sameday"
TELEGRAM_TOKEN = "918273645:AAHleakCanaryTelegramTokenQ7xZ-9vB"
TOKENS = {
    "SAMEDAY_TELEGRAM_TOKEN": TELEGRAM_TOKEN,
    "SAMEDAY_VK_TOKEN": "vk1.a.leakCanaryVkToken_3hG8sK2pQ",
    "SAMEDAY_X_BEARER_TOKEN": "AAAAAAAAAleakCanaryXBearer%2Fz9",
    "SAMEDAY_X_CONSUMER_KEY": "leakCanaryXConsumerKey71",
    "SAMEDAY_X_CONSUMER_SECRET": "leakCanaryXConsumerSecret42",
    "SAMEDAY_X_ACCESS_TOKEN": "1234567890-leakCanaryXAccess",
    "SAMEDAY_X_ACCESS_TOKEN_SECRET": "leakCanaryXAccessSecret99",
}
# Every value, and the parts of a Telegram token around ':' (the bot id, the secret).
FORBIDDEN = [*TOKENS.values(), *TELEGRAM_TOKEN.split(":"), "leakCanary"]


def assert_no_token(what: str, text: str) -> None:
    for secret in FORBIDDEN:
        assert secret not in text, f"{what} contains {secret!r}:\n{text[-3000:]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config_text(db: Path, port: int, telegram: str, vk: str, x: str) -> str:
    """The three channels of test_daemon_channels, logging at debug, with a staff member
    and quick retries (so fault paths log within the test)."""
    base = daemon_config(db, telegram, vk, x).replace(
        "health_port = 0", f'health_port = {port}\nlog_level = "debug"').replace(
        f'base_url = "{telegram}/bot"',
        f'base_url = "{telegram}/bot"\nbase_file_url = "{telegram}/file/bot"')
    return base + """[[staff.members]]
name = "anna"
telegram_id = 111
role = "admin"
[outbox]
retry_base = "1s"
retry_max = "2s"
max_attempts = 2
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SAMEDAY), *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, **(env or TOKENS)})


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:  # 503 while a channel is down: still a body
        return error.read().decode()


async def test_no_token_in_logs_health_metrics_report_or_check_config(tmp_path):
    tg_token = TOKENS["SAMEDAY_TELEGRAM_TOKEN"]
    async with TelegramEmulator(token=tg_token) as tg, \
            VKEmulator(token=TOKENS["SAMEDAY_VK_TOKEN"]) as vk, XEmulator() as x:
        db, port = tmp_path / "daemon.db", free_port()
        config = tmp_path / "config.toml"
        config.write_text(config_text(db, port, tg.url, vk.url, x.url))
        # Errors on the way, so that error paths log too: a failed send on each channel and
        # failing polls; the retries then deliver.
        tg.faults.add("sendMessage", "500")
        tg.faults.add("getUpdates", "malformed")
        vk.faults.add("messages.send", "500")
        x.faults.add("tweets", "503")
        x.faults.add("mentions", "429", seconds=1)
        log_lines: list[str] = []
        process = subprocess.Popen(
            [str(SAMEDAY), "run", "-c", str(config)], stderr=subprocess.STDOUT,
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, **TOKENS, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=lambda: log_lines.extend(process.stdout), daemon=True).start()
        bodies = {}
        try:
            await eventually(lambda: any("sameday is running" in line for line in log_lines),
                             timeout=60, what="the daemon to start")
            tg.inject_message(chat_id=11, user_id=11, text=f"my token is {tg_token}?")
            tg.inject_message(chat_id=STAFF_GROUP, user_id=111, text="/queue",
                              chat_type="supergroup")
            vk.inject_message(from_id=22, text="вопрос во ВКонтакте")
            x.inject_mention(author_id="33", username="kate",
                             text=f"@{X_BOT['username']} where is my order?")
            await eventually(lambda: len(tg.sent_to(11)) == 1 and len(vk.sent) == 1
                             and len(x.sent) == 1, timeout=60, what="three acknowledgements")
            await eventually(lambda: len(tg.sent_to(STAFF_GROUP)) >= 3, timeout=60,
                             what="the staff cards")
            for path in ("healthz", "metrics"):
                bodies[path] = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/{path}")
        finally:
            process.send_signal(signal.SIGTERM)
            try:  # in a thread: the emulators share this event loop and must answer
                code = await asyncio.to_thread(process.wait, 60)
            except subprocess.TimeoutExpired:
                process.kill()
                code = await asyncio.to_thread(process.wait, 10)
        log = "".join(log_lines)
        assert code == 0, log[-3000:]
        assert "DEBUG" in log, log[-3000:]  # (tracebacks stay at debug level, masked too)
        assert_no_token("the daemon's log", log)
        assert "sameday_messages_received" in bodies["metrics"]
        assert '"status"' in bodies["healthz"]
        for path, body in bodies.items():
            assert_no_token(f"/{path}", body)
        staff_chat = " ".join(str(message.get("text")) for message in tg.sent)
        assert_no_token("the staff chat", staff_chat.replace(f"my token is {tg_token}?", ""))

        report = cli("report", "-c", str(config), "--format", "json")
        assert report.returncode == 0, report.stderr
        assert_no_token("sameday report", report.stdout + report.stderr)
        table = cli("report", "-c", str(config))
        assert_no_token("sameday report", table.stdout + table.stderr)


def test_check_config_never_prints_a_token(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(config_text(tmp_path / "d.db", 0, "http://127.0.0.1:1",
                                  "http://127.0.0.1:1", "http://127.0.0.1:1"))
    done = cli("check-config", str(config))
    assert done.returncode == 0, done.stderr
    assert_no_token("check-config", done.stdout + done.stderr)
    # Unset variables are named, never their (absent) values.
    done = cli("check-config", str(config), env={name: "" for name in TOKENS})
    assert done.returncode == 2 and "SAMEDAY_TELEGRAM_TOKEN" in done.stderr
    assert_no_token("check-config", done.stdout + done.stderr)


@pytest.mark.parametrize(("channel", "key", "env"), [
    ("telegram", "token_env", "SAMEDAY_TELEGRAM_TOKEN"),
    ("vk", "token_env", "SAMEDAY_VK_TOKEN"),
    ("twitter", "bearer_token_env", "SAMEDAY_X_BEARER_TOKEN"),
    ("twitter", "consumer_secret_env", "SAMEDAY_X_CONSUMER_SECRET"),
    ("twitter", "access_token_secret_env", "SAMEDAY_X_ACCESS_TOKEN_SECRET"),
])
def test_a_token_pasted_into_an_env_key_is_not_repeated(tmp_path, channel, key, env):
    config = tmp_path / "config.toml"
    text = config_text(tmp_path / "d.db", 0, "http://127.0.0.1:1", "http://127.0.0.1:1",
                       "http://127.0.0.1:1")
    text = text.replace(f"[channels.{channel}]\n",
                        f'[channels.{channel}]\n{key} = "{TOKENS[env]}"\n')
    config.write_text(text)
    done = cli("check-config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"channels.{channel}.{key}" in done.stderr or f"channels.{channel}: {key}" \
        in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert_no_token("check-config", done.stdout + done.stderr)
    # Commands that need no tokens may take it for a variable's name, but never print it.
    report = cli("report", "-c", str(config))
    assert_no_token("sameday report", report.stdout + report.stderr)
