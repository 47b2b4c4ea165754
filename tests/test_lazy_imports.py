"""A lighter daemon (issue 16): what only some commands use is imported by those commands.

Each import check runs in a fresh interpreter (this process has imported everything), and
lists what it must not have loaded, so a new module-level import of a heavy library into
the daemon's path fails here instead of silently costing every deployment memory.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from core.config.settings import DatabaseSettings
from core.store.engine import alembic_config, upgrade
from core.store.revision import head_revision, schema_is_current

ROOT = Path(__file__).parent.parent

# Commands' libraries and modules that `sameday run` never uses while running.
NOT_FOR_THE_DAEMON = [
    "matplotlib",  # the report's chart
    "core.reporting",  # sameday report
    "core.replay",  # sameday replay
    "core.staff.console", "core.staff.terminal",  # sameday console
    "bots.telegram.emulator", "bots.vk.emulator", "bots.twitter.emulator",  # sameday demo
    "alembic", "mako",  # loaded only when a migration is to be applied
]
# Besides, what `import core.app.cli` (every command's start, `run` too; it registers the
# demo through its entry point) must not load: the SDKs and the download client come
# with the channels the config enables, the health endpoint's server when it is on.
NOT_FOR_EVERY_COMMAND = NOT_FOR_THE_DAEMON + [
    "telegram", "tweepy", "vk_api", "requests", "httpx", "pygments", "aiohttp",
    "prometheus_client", "core.app.health",
    "bots.telegram.adapter", "bots.vk.adapter", "bots.twitter.adapter",
]


def loaded_after(code: str) -> list[str]:
    """The modules (by name, with their submodules) that running `code` loaded."""
    probe = (f"{code}\nimport json, sys\n"
             "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def offending(loaded: list[str], forbidden: list[str]) -> list[str]:
    return sorted({name for name in loaded for top in forbidden
                   if name == top or name.startswith(top + ".")})


def test_the_cli_loads_no_command_s_libraries():
    """`sameday run` starts by importing the CLI, which registers every command (the
    demo's too, through its entry point): registering must not import what they run."""
    loaded = loaded_after("import core.app.cli")
    assert "core.app.cli" in loaded and "typer" in loaded  # the probe did run
    assert offending(loaded, NOT_FOR_EVERY_COMMAND) == []


def test_the_daemon_and_the_adapters_load_no_command_s_libraries():
    """The daemon's modules and every installed channel's adapter (with its SDK)."""
    loaded = loaded_after(
        "import core.app.cli, core.app.daemon\n"
        "from core.config.channels import installed_channels\n"
        "adapters = [d.adapter() for d in installed_channels().values()]\n"
        "assert adapters")
    assert "core.app.daemon" in loaded and "bots.telegram.adapter" in loaded
    assert offending(loaded, NOT_FOR_THE_DAEMON) == []


def test_the_health_endpoint_needs_no_web_framework():
    """/healthz and /metrics are served by the standard library (core.app.endpoint):
    aiohttp's server alone weighed 11 MiB in the idle daemon."""
    loaded = loaded_after("import core.app.health")
    assert "core.app.health" in loaded and "http.server" in loaded
    assert offending(loaded, ["aiohttp"]) == []


# --- the start without alembic ----------------------------------------------------------------


DAEMON_PROBE = """
import asyncio, json, sys
from pathlib import Path
from core.app.daemon import Daemon
from core.config.load import load_settings

async def main():
    config = Path(sys.argv[1])
    daemon = Daemon(config, load_settings(config, check_secrets=False))
    running = asyncio.create_task(daemon.run())
    for _ in range(600):  # up to 30 s
        if daemon.escalator is not None or running.done():
            break
        await asyncio.sleep(0.05)
    started = daemon.escalator is not None
    alembic = "alembic" in sys.modules
    daemon.stop()
    code = await asyncio.wait_for(running, 30)
    print(json.dumps({"started": started, "alembic": alembic, "code": code}))

asyncio.run(main())
"""


def start_and_stop(tmp_path: Path, db: Path) -> dict:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n'
                      '[daemon]\nhealth_port = 0\nlog_level = "warning"\n'
                      '[staff]\nchat = "console"\n')
    done = subprocess.run([sys.executable, "-c", DAEMON_PROBE, str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_a_daemon_on_a_current_database_does_not_load_alembic(tmp_path):
    db = tmp_path / "current.db"
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{db}")
    upgrade(settings)
    os.chmod(db, 0o644)  # copied in by hand, say: the start still makes it private
    result = start_and_stop(tmp_path, db)
    assert result == {"started": True, "alembic": False, "code": 0}
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600


def test_a_daemon_on_a_new_or_older_database_migrates_it(tmp_path):
    new = tmp_path / "new.db"
    assert start_and_stop(tmp_path, new) == {"started": True, "alembic": True, "code": 0}
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{new}")
    assert schema_is_current(settings)
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o600

    older = tmp_path / "older.db"
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{older}")
    upgrade(settings, "0013")
    assert start_and_stop(tmp_path, older) == {"started": True, "alembic": True, "code": 0}
    assert schema_is_current(settings)


# --- core.store.revision ------------------------------------------------------------------


def test_the_head_is_the_one_alembic_finds():
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config(DatabaseSettings())).get_heads()
    assert heads == [head_revision()]


def test_schema_is_current_only_at_the_head(tmp_path):
    db = tmp_path / "s.db"
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{db}")
    assert not schema_is_current(settings)
    assert not db.exists()  # asking does not create the file
    db.touch()
    assert not schema_is_current(settings)  # no version table
    upgrade(settings, "0013")
    assert not schema_is_current(settings)
    upgrade(settings)
    assert schema_is_current(settings)
    assert not schema_is_current(DatabaseSettings(url="sqlite+aiosqlite:///:memory:"))


def test_schema_is_current_on_postgresql(postgres_url):
    settings = DatabaseSettings(url=postgres_url)
    assert not schema_is_current(settings)
    upgrade(settings)
    assert schema_is_current(settings)


def test_a_doubtful_history_has_no_head(tmp_path):
    """Two heads (a merge not yet written), or a file that cannot be read: no head, so
    the daemon lets alembic decide."""
    def write(name: str, revision: str, down: str | None) -> None:
        (tmp_path / name).write_text(f"revision = {revision!r}\ndown_revision = {down!r}\n")

    write("a.py", "a", None)
    write("b.py", "b", "a")
    assert head_revision(tmp_path) == "b"
    write("c.py", "c", "a")
    assert head_revision(tmp_path) is None
    (tmp_path / "c.py").unlink()
    (tmp_path / "d.py").write_text("revision = (\n")
    assert head_revision(tmp_path) is None


@pytest.mark.parametrize("down", ["('a', 'b')", "['a', 'b']"])
def test_a_merge_revision_revises_both(tmp_path, down):
    (tmp_path / "a.py").write_text("revision = 'a'\ndown_revision = None\n")
    (tmp_path / "b.py").write_text("revision = 'b'\ndown_revision = None\n")
    (tmp_path / "m.py").write_text(f"revision = 'm'\ndown_revision = {down}\n")
    assert head_revision(tmp_path) == "m"
