"""A fourth channel added without touching core/: installed through a real
``sameday.channels`` entry point (a dist-info on sys.path), validated in the config, run
by the daemon end to end, listed by health, /queue and the report."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.app.daemon import Daemon
from core.config.channels import installed_channels, refresh_channels
from core.config.load import ConfigError, load_settings, settings_from_dict
from core.reporting.period import make_period
from core.reporting.report import report_for_period
from core.store.tables import Outbox, Ticket
from tests import fourth_channel
from tests.adapter_harness import eventually
from tests.test_health import free_port, get, samples


@pytest.fixture
def echo_installed(tmp_path, monkeypatch):
    """Install the echo channel the way a plugin package would: its dist-info names the
    entry point, and the registry finds it."""
    dist = tmp_path / "site" / "sameday_echo-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sameday-echo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[sameday.channels]\necho = tests.fourth_channel:CHANNEL\n")
    monkeypatch.syspath_prepend(str(dist.parent))
    refresh_channels()
    fourth_channel.PLATFORM.posted.clear()
    fourth_channel.PLATFORM.sent.clear()
    yield fourth_channel.PLATFORM
    sys.path.remove(str(dist.parent)) if str(dist.parent) in sys.path else None
    refresh_channels()


def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as error:
        settings_from_dict(raw, source="c.toml", check_secrets=False)
    return [str(p) for p in error.value.problems]


def test_an_uninstalled_channel_is_an_unknown_key():
    assert "echo" not in installed_channels()
    found = problems({"channels": {"echo": {"enabled": True}}})
    assert len(found) == 1 and found[0].startswith("c.toml: channels.echo: unknown key; allowed:")
    assert "unknown channel" in problems({"promise": [{"name": "p", "channels": ["echo"]}]})[0]


def test_the_installed_channel_validates_its_own_section(echo_installed):
    assert set(installed_channels()) == {"telegram", "vk", "twitter", "max", "echo"}
    assert problems({"channels": {"echo": {"enabled": True}}}) == [
        "c.toml: channels.echo: room is required when echo is enabled"]
    assert problems({"channels": {"echo": {"rooom": "x"}}}) == [
        "c.toml: channels.echo.rooom = 'x': unknown key; did you mean 'room'?"]
    bad_rate = problems({"outbox": {"limits": {"echo": {"per_room": "lots"}}}})
    assert bad_rate[0].startswith("c.toml: outbox.limits.echo.per_room = 'lots'")
    settings = settings_from_dict({
        "channels": {"echo": {"enabled": True, "room": "lobby"}},
        "promise": [{"name": "echo-fast", "channels": ["echo"], "kind": "business_time",
                     "within": "1h"}],
        "ack": {"channel_languages": {"echo": "en"}}}, check_secrets=False)
    assert settings.channels.echo.room == "lobby"
    assert settings.outbox.limits.of("echo")["per_room"].count == 5  # the channel's default
    assert settings.staff.chat == "console"  # echo cannot carry the staff chat


async def test_the_fourth_channel_runs_end_to_end(echo_installed, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMEDAY_ECHO_TOKEN", "echo-secret-token")
    config = tmp_path / "config.toml"
    config.write_text(f"""
[database]
url = "sqlite+aiosqlite:///{tmp_path / 'echo.db'}"
[daemon]
health_port = {free_port()}
[channels.echo]
enabled = true
room = "lobby"
[ack]
language = "en"
[staff]
chat = "console"
[[staff.members]]
name = "anna"
role = "admin"
""")
    daemon = Daemon(config, load_settings(config))
    task = asyncio.create_task(daemon.run())
    platform = echo_installed
    try:
        await eventually(lambda: daemon.health is not None and daemon.health.port, 20,
                         "the daemon to start")
        platform.post("kim", "my parcel arrived broken, what now?")
        await eventually(lambda: any(s["kind"] == "ack" for s in platform.sent), 15,
                         "the acknowledgement on the echo platform")
        ack = next(s for s in platform.sent if s["kind"] == "ack")
        assert ack["reply_to"] == "e1" and ack["room"] == "lobby"
        assert "we will answer" in ack["text"] and len(ack["text"]) <= 100  # its text limit

        actor = daemon.desk.actor_named("anna")
        queue = await daemon.desk.execute(actor, "/queue echo")
        assert "#1" in queue.text and "Echo" in queue.text
        reply = await daemon.desk.execute(actor, "/reply 1 Sorry! A new one is on its way.")
        assert reply.ok, reply.text
        await eventually(lambda: any(s["kind"] == "reply" for s in platform.sent), 15,
                         "the staff answer on the echo platform")
        answer = next(s for s in platform.sent if s["kind"] == "reply")
        assert answer == {"room": "lobby", "reply_to": "e1", "kind": "reply",
                          "text": "Sorry! A new one is on its way."}

        status, _, body = await get(f"http://127.0.0.1:{daemon.health.port}/healthz")
        assert status == 200 and body["channels"]["echo"]["connected"] is True, body
        metrics = samples((await get(f"http://127.0.0.1:{daemon.health.port}/metrics"))[1])
        assert metrics[("sameday_tickets_answered_total", "echo")] == 1

        zone = ZoneInfo(daemon.settings.calendar.timezone)
        period = make_period(None, None, zone, datetime.now(UTC) + timedelta(seconds=1))
        report = await report_for_period(daemon.store, period)
        assert report.same_day_by_channel["echo"].part == 1
        assert report.same_day_by_channel["echo"].whole == 1
        async with daemon.store.session() as session:
            ticket = await session.get(Ticket, 1)
            assert ticket.channel == "echo" and ticket.first_response_at is not None
            assert (await session.get(Outbox, 1)).target["room"] == "lobby"
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 20)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
