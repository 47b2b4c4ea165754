"""`sameday run` as a real process: starts, reloads on SIGHUP, exits 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


def write_config(path: Path, db: Path, level: str = "info") -> None:
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n'
                    f'[daemon]\nhealth_port = 0\nlog_level = "{level}"\n'
                    '[staff]\nchat = "console"\n')


class Running:
    """A `sameday run` subprocess whose log lines are collected by a reader thread."""

    def __init__(self, config: Path, preexec=None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "core.app.cli", "run", "-c", str(config)],
            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=preexec)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged; got:\n{''.join(self.lines)}")


@pytest.fixture
def daemon(tmp_path):
    config = tmp_path / "config.toml"
    write_config(config, tmp_path / "d.db")
    running = Running(config)
    yield running, config
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_zero(daemon, sig):
    running, _ = daemon
    running.wait_for("sameday is running")
    running.process.send_signal(sig)
    assert running.process.wait(timeout=30) == 0
    running.wait_for("stopped")


def test_sighup_with_broken_config_keeps_running(daemon, tmp_path):
    running, config = daemon
    running.wait_for("sameday is running")
    good = config.read_text()
    config.write_text(good.replace('log_level = "info"', 'log_level = "loud"'))
    running.process.send_signal(signal.SIGHUP)
    running.wait_for("config reload refused")
    assert "'loud'" in running.wait_for("daemon.log_level")
    assert running.process.poll() is None  # still alive
    config.write_text(good)
    running.process.send_signal(signal.SIGHUP)
    running.wait_for("config reloaded")
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=30) == 0


def test_a_database_unavailable_at_start_is_waited_for_then_used(tmp_path):
    """A full disk (or a database still starting) at start: the daemon waits for it
    instead of exiting, and starts when it can write. The disk is "full" by the process's
    file size limit (RLIMIT_FSIZE = 0: every write fails), lifted after a few tries."""
    import resource

    config = tmp_path / "config.toml"
    write_config(config, tmp_path / "d.db")
    running = Running(config, preexec=lambda: resource.setrlimit(
        resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY)))
    try:
        line = running.wait_for("the database is unavailable at start")
        assert "Traceback" not in "".join(running.lines)
        assert running.process.poll() is None  # waiting, not exited
        resource.prlimit(running.process.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        running.wait_for("sameday is running", timeout=60)
        assert "retrying in" in line
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=30) == 0
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def test_broken_config_at_start_exits_2_without_traceback(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[daemon]\nlog_level = "loud"\n')
    done = subprocess.run([sys.executable, "-m", "core.app.cli", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "daemon.log_level" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def restore_logging():
    import logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved[0], saved[1]


def test_json_logs_never_contain_a_token(capsys, restore_logging):
    import json
    import logging

    from core.app.logs import setup_logging

    setup_logging("info", "json", secrets=["123456:SECRET-token"])
    logging.getLogger("sameday.test").warning("calling https://api/bot123456:SECRET-token/x")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["level"] == "warning" and "SECRET" not in line
    assert entry["message"] == "calling https://api/bot***/x"


def test_a_library_error_it_handled_is_one_warning_line(capsys):
    """Issue 12: python-telegram-bot logs each network error it retries at ERROR with a
    traceback; at info level that is one warning line, and our own errors keep theirs."""
    import logging

    from core.app.logs import setup_logging

    setup_logging("info", "text", secrets=["123456:SECRET-token"])
    try:
        try:
            raise ConnectionError("network down for 123456:SECRET-token")
        except ConnectionError:
            logging.getLogger("telegram.ext.Updater").exception("Network error in polling")
            logging.getLogger("core.app.daemon").exception("our own failure")
        err = capsys.readouterr().err.splitlines()
    finally:
        logging.getLogger().handlers[:] = []
    library = [line for line in err if "telegram.ext.Updater" in line]
    assert len(library) == 1 and "WARNING" in library[0]
    assert "ConnectionError: network down for ***" in library[0]
    assert any("ERROR" in line and "our own failure" in line for line in err)
    assert any(line.startswith("Traceback") for line in err)  # ours keeps its traceback
    assert all("SECRET-token" not in line for line in err)
