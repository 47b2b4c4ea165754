"""Two `sameday run` replicas on one PostgreSQL database: a config reload on one (SIGHUP,
or /reload in the staff chat) reaches the other, which reloads its own config file."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from core.app.reloads import CHECK_SECONDS
from tests.test_daemon import Running


def write_config(path: Path, database_url: str, sweep: str) -> None:
    path.write_text(f'[database]\nurl = "{database_url}"\n'
                    f'[daemon]\nhealth_port = 0\nlog_level = "info"\nsweep_interval = "{sweep}"\n'
                    '[staff]\nchat = "console"\n')


@pytest.fixture
def replicas(tmp_path, postgres_url):
    """Replica A, then B (not at once: the first start migrates the database)."""
    started = []
    for name in ("a", "b"):
        config = tmp_path / f"{name}.toml"
        write_config(config, postgres_url, "60s")
        replica = Running(config)
        replica.wait_for("sameday is running")
        started.append((replica, config))
    yield started
    for replica, _ in started:
        if replica.process.poll() is None:
            replica.process.kill()
            replica.process.wait()


def test_a_reload_on_one_replica_reaches_the_other(replicas, postgres_url):
    (a, a_config), (b, b_config) = replicas
    # The admin changes the config on both servers and tells one replica.
    for config in (a_config, b_config):
        write_config(config, postgres_url, "30s")
    a.process.send_signal(signal.SIGHUP)
    a.wait_for("config reloaded from")
    b.wait_for("another replica reloaded the config (version 1)", timeout=3 * CHECK_SECONDS)
    b.wait_for(f"config reloaded from {b_config}")
    # A does not follow its own announcement.
    assert not any("another replica reloaded" in line for line in a.lines)
    # A reload that fails (a broken file) is not announced: B is not asked again.
    a_config.write_text("[database\n")
    a.process.send_signal(signal.SIGHUP)
    a.wait_for("config reload refused")
    b_lines = len(b.lines)
    time.sleep(2 * CHECK_SECONDS)
    assert not any("another replica reloaded" in line for line in b.lines[b_lines:])
    for replica in (a, b):
        replica.process.send_signal(signal.SIGTERM)
        assert replica.process.wait(timeout=30) == 0
