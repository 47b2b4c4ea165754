"""Config validation: each kind of mistake gives one readable line naming the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.app.cli import app
from core.config.load import ConfigError, load_settings, settings_from_dict

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"
SECRET_VARS = ["SAMEDAY_TELEGRAM_TOKEN", "SAMEDAY_VK_TOKEN", "SAMEDAY_X_BEARER_TOKEN",
               "SAMEDAY_X_CONSUMER_KEY", "SAMEDAY_X_CONSUMER_SECRET",
               "SAMEDAY_X_ACCESS_TOKEN", "SAMEDAY_X_ACCESS_TOKEN_SECRET"]


@pytest.fixture
def tokens(monkeypatch):
    for name in SECRET_VARS:
        monkeypatch.setenv(name, "test-token-value")


def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(raw, source="my.toml", check_secrets=False)
    return [str(p) for p in caught.value.problems]


MISTAKES = [
    # Issue 12: huge, infinite and zero durations are one clear line, not a traceback.
    ({"outbox": {"lease": "99999999999999999999d"}}, "outbox.lease", "too long; at most"),
    ({"outbox": {"lease": float("inf")}}, "outbox.lease", "not a finite number of seconds"),
    ({"outbox": {"lease": 1e300}}, "outbox.lease", "not a finite number of seconds"),
    ({"outbox": {"lease": "0s"}}, "outbox.lease", "must be longer than 0s"),
    ({"daemon": {"sweep_interval": "0s"}}, "daemon.sweep_interval", "must be longer than 0s"),
    ({"daemon": {"health_port": True}}, "daemon.health_port", "valid integer"),
    ({"staff": {"members": [{"name": "anna", "telegram_id": 5},
                            {"name": "boris", "telegram_id": 5}]}},
     "staff.members[1].telegram_id", "already the Telegram id of anna"),
    # (config, key path, a word of the explanation)
    ({"databse": {}}, "databse", "did you mean 'database'"),
    ({"daemon": {"log_levle": "info"}}, "daemon.log_levle", "did you mean 'log_level'"),
    ({"database": {"url": "mysql://db/x"}}, "database.url", "postgresql+psycopg://"),
    ({"daemon": {"log_level": "loud"}}, "daemon.log_level", "'debug', 'info'"),
    ({"daemon": {"health_port": 70000}}, "daemon.health_port", "65535"),
    ({"daemon": {"health_port": "eighty"}}, "daemon.health_port", "integer"),
    ({"calendar": {"timezone": "Europe/Mosow"}}, "calendar.timezone", "Europe/Moscow"),
    ({"calendar": {"hours": {"mon": ["25:00-18:00"]}}}, "calendar.hours.mon[0]",
     "out of range"),
    ({"calendar": {"hours": {"mon": ["18:00-09:00"]}}}, "calendar.hours.mon[0]",
     "ends before it starts"),
    ({"calendar": {"hours": {"mond": ["09:00-18:00"]}}}, "calendar.hours", "allowed: mon"),
    ({"calendar": {"same_day_cutoff": "5pm"}}, "calendar.same_day_cutoff", '"17:00"'),
    ({"calendar": {"country": "XX"}}, "calendar.country", "ISO 3166"),
    ({"calendar": {"closed_dates": ["31.12.2026"]}}, "calendar.closed_dates[0]", "date"),
    ({"inbox": {"reopen_within": "2 hrs"}}, "inbox.reopen_within", '"1h30m"'),
    ({"escalation": [{"name": "x"}]}, "escalation[0]", "exactly one trigger"),
    ({"escalation": [{"name": "x", "after": "1h", "at_due": True}]}, "escalation[0]",
     "exactly one trigger"),
    ({"escalation": [{"name": "x", "at_due": True, "mention": ["bob"]}]},
     "escalation[0].mention[0]", "no such staff member"),
    ({"escalation": [{"name": "x", "at_due": True}, {"name": "x", "before_due": "1h"}]},
     "escalation[1].name", "unique"),
    ({"escalation": [{"name": "x", "at_due": True, "raise_priority": "max"}]},
     "escalation[0].raise_priority", "'urgent'"),
    ({"staff": {"members": [{"name": "a", "telegram_id": "abc"}]}},
     "staff.members[0].telegram_id", "integer"),
    ({"staff": {"members": [{"name": "a"}, {"name": "a"}]}}, "staff", "unique"),
    ({"channels": {"vk": {"enabled": True}}}, "channels.vk", "group_id is required"),
    ({"channels": {"twitter": {"poll_interval": "1s"}}}, "channels.twitter.poll_interval",
     "billed"),
    ({"channels": {"telegram": {"enabled": True}}}, "staff.telegram_chat_id", "staff group"),
    ({"ack": {"texts": {"ru": {"default": "hi {nam}"}}}}, "ack.texts", "{name}"),
    ({"promise": [{"name": "p", "kind": "business_time"}]}, "promise[0]", "within"),
    ({"customers": {"tags": {"vip-list": ["vip"]}}}, "customers.tags", "<channel>:<user id>"),
]


@pytest.mark.parametrize(("raw", "key", "hint"), MISTAKES,
                         ids=[m[1] + ":" + m[2][:12] for m in MISTAKES])
def test_each_mistake_names_file_key_and_what_is_allowed(raw, key, hint):
    found = problems(raw)
    assert len(found) == 1, found
    line = found[0]
    assert line.startswith(f"my.toml: {key}"), line
    assert hint in line, line


def test_every_problem_is_reported_at_once():
    found = problems({"daemon": {"log_level": "loud", "health_port": -1},
                      "calendar": {"timezone": "Mars/Base"}})
    assert len(found) == 3


def test_bad_value_is_shown():
    [line] = problems({"daemon": {"log_level": "loud"}})
    assert "'loud'" in line


def test_missing_token_names_the_environment_variable(monkeypatch):
    monkeypatch.delenv("SAMEDAY_VK_TOKEN", raising=False)
    with pytest.raises(ConfigError) as caught:
        settings_from_dict({"channels": {"vk": {"enabled": True, "group_id": 1}}})
    [problem] = caught.value.problems
    assert problem.key == "channels.vk.token_env" and problem.value == "SAMEDAY_VK_TOKEN"


def test_toml_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[daemon]\nlog_level = "info\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message and "line 2" in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml")


def test_example_config_is_valid(tokens):
    settings = load_settings(EXAMPLE)
    assert set(settings.channels.enabled()) == {"telegram", "vk", "twitter"}
    assert settings.escalation and settings.staff.members


def test_secret_is_read_from_the_environment_not_the_file(tokens, monkeypatch):
    monkeypatch.setenv("SAMEDAY_TELEGRAM_TOKEN", "123:abc")
    settings = load_settings(EXAMPLE)
    assert settings.channels.telegram.secret("token_env") == "123:abc"
    assert "123:abc" not in EXAMPLE.read_text()


def test_check_config_command_explains_rules(tokens):
    result = CliRunner().invoke(app, ["check-config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "after 2h of business time without an answer" in result.output
    assert "mention @lead" in result.output


def test_check_config_command_reports_problems_without_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[daemon]\nlog_level = "loud"\n[calendar]\ntimezone = "Nowhere"\n')
    result = CliRunner().invoke(app, ["check-config", str(path)])
    assert result.exit_code == 2
    assert "daemon.log_level" in result.output and "calendar.timezone" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [[], ["run"], ["check-config"], ["db"], ["db", "upgrade"]])
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and len(result.output) > 100



def test_a_token_pasted_into_an_env_key_is_refused_without_repeating_it():
    """Issue 12: check-config must not print a secret it read from a *_env key."""
    token = "123456:AAE-secret-bot-token"
    found = problems({"channels": {"telegram": {"token_env": token}}})
    assert len(found) == 1 and "channels.telegram" in found[0]
    assert "must name an environment variable" in found[0]
    assert token not in found[0] and "secret" not in found[0]
