"""Every input gets a clear error: generated junk in config.toml (`sameday check-config`),
at the console (`sameday console`) and in the staff command language never ends in a
traceback, and each problem is one readable line naming the file, the key or the command."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rich.console import Console

from core.clock import VirtualClock
from core.config.load import ConfigError, load_settings
from core.config.settings import DatabaseSettings
from core.config.shown import printable
from core.intake.inbox import Inbox
from core.staff.commands import Actor, StaffDesk
from core.staff.console import QUIT_WORDS, run_console, visible_controls
from core.staff.language import SPECS, UsageError, parse
from core.store.engine import Store, upgrade
from tests.conftest import START, make_settings
from tests.helpers import inbound

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
EXAMPLE["daemon"]["sweep_interval"] = "1s"  # not in the example, but bounded like the rest
SAMEDAY = Path(sys.executable).parent / "sameday"
FUZZ = hypothesis_settings(max_examples=150, deadline=None, derandomize=True,
                           suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow])


# --- writing a config with one value replaced ------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | date):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        # JSON escapes every C0 control; TOML also forbids a raw DEL in a basic string.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if value is DEEP:
        return "[" * DEPTH + "]" * DEPTH
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_text(config: dict[str, Any]) -> str:
    """A config as TOML: a [table] per section, [[array]] per rule, the rest inline."""
    lines = []
    for name, section in config.items():
        if isinstance(section, dict):
            lines.append(f"[{name}]")
            lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in section.items()]
        else:
            for item in section:
                lines.append(f"[[{name}]]")
                lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def replaced(path: tuple, value: Any) -> dict[str, Any]:
    config = json.loads(json.dumps(EXAMPLE, default=str))  # a deep copy (dates as text)
    config["calendar"]["closed_dates"] = [date.fromisoformat(d)
                                          for d in config["calendar"]["closed_dates"]]
    target = config
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return config


def key_path(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def problem_lines(config_file: Path) -> list[str] | None:
    """The problems of a config file, one string each; None when it is accepted."""
    try:
        load_settings(config_file, check_secrets=False)
    except ConfigError as error:
        lines = [str(problem) for problem in error.problems]
        assert str(error) == "\n".join(lines)
        return lines
    return None


def assert_readable(lines: list[str], source: Path, path: tuple) -> None:
    """One short printable line per problem, each naming the file; one of them names the
    replaced key (or, for a file too deep to parse, the table it is in)."""
    assert lines
    for line in lines:
        assert "Traceback" not in line
        assert line.isprintable(), repr(line[:200])  # no newline, no terminal escape
        assert len(line) < 1000, line[:200]
        assert line.startswith(f"{source}: "), line[:200]
    named = [line.removeprefix(f"{source}: ") for line in lines]
    wanted = re.sub(r"\[\d+\]", "", key_path(path))
    keys = [re.sub(r"\[\d+\]", "", n.split(" ")[0].rstrip(":")) for n in named]
    assert any(key and (wanted.startswith(key) or key.startswith(wanted + "."))
               for key in keys), (wanted, lines)


# --- the junk ---------------------------------------------------------------------------------


class Deep(list):
    """Arrays nested thousands deep; shown short (a failing example is printed)."""

    def __repr__(self) -> str:
        return f"<arrays nested {DEPTH} deep>"


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return Deep([value])


DEPTH = 5000
DEEP = nested(DEPTH)
HUGE_TEXT = "𝔘" * 50_000 + "x" * 50_000  # 100 k characters, astral ones among them
ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)  # every plane, controls too
ASTRAL = st.text(st.characters(min_codepoint=0x10000), min_size=1, max_size=10)
CONTROL = st.text(st.characters(max_codepoint=0x1F) | st.sampled_from("\x7f\x85\x9b\u2028"),
                  min_size=1, max_size=10)
WRONG_FOR_ANY_SCALAR = st.sampled_from([DEEP, {"a": 1}, [1, 2], HUGE_TEXT, float("nan"),
                                        float("inf"), float("-inf"), 1e300, 10**30, -(10**30)])
NOT_A_DURATION = st.one_of(
    WRONG_FOR_ANY_SCALAR,
    st.sampled_from(["99999999999999999999d", "-5m", "", "36500d", "367d", "5 minutes",
                     "1h30", "h", "١h", True, False, -5, -0.5, "9" * 5000 + "s"]),
    ANY_TEXT, ASTRAL, CONTROL).filter(
    lambda v: not (isinstance(v, str) and re.fullmatch(r"\s*([0-9]{1,3}\s*[dhms]\s*)+", v)))
NOT_A_POSITIVE_DURATION = NOT_A_DURATION | st.sampled_from(["0s", "0m0s", 0, -0.0, 0.0])
VALID_RATE = r"\s*[0-9]{1,4}\s*/\s*[0-9]{0,2}\s*[dhms]\s*"
NOT_A_RATE = st.one_of(
    WRONG_FOR_ANY_SCALAR,
    st.sampled_from(["99999999999999999999/1s", "0/1s", "1/0s", "1/99999d", "1/32d",
                     "1000001/1s", "-1/1s", "30 per second", "30/", "/1s", "", 5, True,
                     -0.0, "٣٠/1s"]),
    ANY_TEXT, CONTROL).filter(
    lambda v: not (isinstance(v, str) and re.fullmatch(VALID_RATE, v)))
NOT_AN_INT = st.one_of(WRONG_FOR_ANY_SCALAR,
                       st.sampled_from([True, False, "8", "eight", 0.5, "", 2**63]),
                       ANY_TEXT, ASTRAL)
NOT_A_BOOL = st.one_of(WRONG_FOR_ANY_SCALAR,
                       st.sampled_from([1, 0, -0.0, "true", "yes", "", [True]]), ANY_TEXT)
NOT_A_TIME = st.one_of(WRONG_FOR_ANY_SCALAR,
                       st.sampled_from(["25:00", "17:60", "5pm", "", "-1:00", True, -1]),
                       ASTRAL, CONTROL)
NOT_A_CHOICE = st.one_of(WRONG_FOR_ANY_SCALAR, st.sampled_from([True, 1, "", "INFO "]),
                         ANY_TEXT, ASTRAL, CONTROL)
NOT_A_STRING = st.sampled_from([DEEP, {"a": "b"}, True, 10**30, float("nan"), [["x"]]])

# (key path in config.example.toml, junk that must be refused there)
TYPED_KEYS = [
    *[(path, NOT_A_POSITIVE_DURATION) for path in [
        ("daemon", "sweep_interval"), ("outbox", "lease"), ("outbox", "retry_base"),
        ("outbox", "retry_max"), ("promise", 0, "within")]],
    *[(path, NOT_A_DURATION) for path in [
        ("daemon", "shutdown_grace"), ("inbox", "reopen_within"), ("ack", "quiet_window"),
        ("channels", "telegram", "poll_timeout"), ("channels", "vk", "long_poll_wait"),
        ("escalation", 0, "after"), ("escalation", 1, "before_due")]],
    *[(("outbox", "limits", channel, bucket), NOT_A_RATE) for channel, bucket in [
        ("telegram", "per_bot"), ("telegram", "per_chat"), ("telegram", "per_group"),
        ("vk", "per_token"), ("twitter", "per_user")]],
    *[(path, NOT_AN_INT) for path in [
        ("database", "sqlite_busy_timeout_ms"), ("daemon", "health_port"),
        ("channels", "vk", "group_id"), ("staff", "telegram_chat_id"),
        ("staff", "members", 1, "telegram_id"), ("staff", "max_reply_chars"),
        ("outbox", "max_attempts"), ("outbox", "concurrency")]],
    *[(path, NOT_A_BOOL) for path in [
        ("channels", "telegram", "enabled"), ("ack", "enabled"),
        ("escalation", 0, "business_hours_only"), ("escalation", 2, "at_due")]],
    *[(("calendar", key), NOT_A_TIME) for key in ("same_day_cutoff", "next_day_due_by")],
    *[(path, NOT_A_CHOICE) for path in [
        ("daemon", "log_level"), ("daemon", "log_format"), ("database", "sqlite_synchronous"),
        ("calendar", "timezone"), ("ack", "language"), ("escalation", 0, "clock"),
        ("staff", "members", 0, "role"), ("promise", 0, "kind")]],
    *[(path, NOT_A_STRING) for path in [
        ("database", "url"), ("staff", "members", 0, "name"), ("escalation", 0, "name"),
        ("channels", "telegram", "token_env"), ("ack", "texts", "ru", "default"),
        ("channels", "twitter", "base_url")]],
]
# Free text: junk may be accepted (a company may write anything), but never crash.
FREE_KEYS = [("ack", "ignore_keywords", 0), ("promise", 1, "keywords", 0),
             ("customers", "tags", "twitter:12345", 0), ("escalation", 0, "mention", 0),
             ("ack", "texts", "en", "twitter"), ("calendar", "hours", "mon", 0),
             ("calendar", "closed_dates", 0), ("channels", "twitter", "user_id")]
ANY_JUNK = st.one_of(NOT_A_DURATION, NOT_A_RATE, NOT_AN_INT, NOT_A_BOOL, NOT_A_STRING)


@FUZZ
@given(case=st.sampled_from(TYPED_KEYS).flatmap(
    lambda case: st.tuples(st.just(case[0]), case[1])))
def test_junk_in_a_typed_key_is_one_line_naming_file_and_key(tmp_path_factory, case):
    path, junk = case
    config_file = tmp_path_factory.mktemp("cfg") / "config.toml"
    config_file.write_text(toml_text(replaced(path, junk)), encoding="utf-8")
    lines = problem_lines(config_file)
    assert lines is not None, f"{key_path(path)} = {junk!r:.200} was accepted"
    assert_readable(lines, config_file, path)


@FUZZ
@given(path=st.sampled_from(FREE_KEYS), junk=ANY_JUNK | ANY_TEXT | ASTRAL | CONTROL)
def test_junk_in_a_free_text_key_is_accepted_or_one_clear_line(tmp_path_factory, path, junk):
    config_file = tmp_path_factory.mktemp("cfg") / "config.toml"
    config_file.write_text(toml_text(replaced(path, junk)), encoding="utf-8")
    lines = problem_lines(config_file)
    if lines is not None:
        assert_readable(lines, config_file, path)


@FUZZ
@given(section=st.sampled_from(["daemon", "outbox", "calendar", "staff", "channels"]),
       key=ANY_TEXT | ASTRAL | CONTROL | st.just("x" * 100_000))
def test_an_unknown_key_of_any_spelling_is_one_line(tmp_path_factory, section, key):
    config = replaced((section, "log_level_typo"), 1)
    config[section].pop("log_level_typo")
    config[section][key] = "x"
    config_file = tmp_path_factory.mktemp("cfg") / "config.toml"
    config_file.write_text(toml_text(config), encoding="utf-8")
    lines = problem_lines(config_file)
    assert lines is not None
    assert_readable(lines, config_file, (section,))


# --- bounds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [("daemon", "sweep_interval"), ("outbox", "lease"),
                                  ("outbox", "retry_base"), ("outbox", "retry_max")])
@pytest.mark.parametrize("value", ["0s", 0, -1, "36500d", 100 * 365 * 86400])
def test_daemon_intervals_are_positive_and_bounded(tmp_path, path, value):
    config_file = tmp_path / "config.toml"
    config_file.write_text(toml_text(replaced(path, value)), encoding="utf-8")
    [line] = problem_lines(config_file)
    assert line.startswith(f"{config_file}: {key_path(path)} = ")
    assert re.search(r"must be longer than 0s|must not be negative|too long; at most \d", line)


def test_each_daemon_interval_bound_is_named(tmp_path):
    bounds = {("daemon", "sweep_interval"): "1h", ("outbox", "lease"): "1d",
              ("outbox", "retry_base"): "1h", ("outbox", "retry_max"): "7d",
              ("daemon", "shutdown_grace"): "1h", ("inbox", "reopen_within"): "366d"}
    for path, most in bounds.items():
        config_file = tmp_path / "config.toml"
        config_file.write_text(toml_text(replaced(path, "400d")), encoding="utf-8")
        [line] = problem_lines(config_file)
        assert line.endswith(f"too long; at most {most}"), line
        config_file.write_text(toml_text(replaced(path, most)), encoding="utf-8")
        if path != ("outbox", "retry_base"):  # 1h > the example's retry_max is refused
            assert problem_lines(config_file) is None, path


def test_retry_base_may_not_exceed_retry_max(tmp_path):
    config_file = tmp_path / "config.toml"
    config_file.write_text(toml_text(replaced(("outbox", "retry_base"), "20m")))
    [line] = problem_lines(config_file)
    assert line == (f"{config_file}: outbox: retry_base (20m) must not be longer than "
                    f"retry_max (10m)")


@pytest.mark.parametrize("rate", ["0/1s", "1/0s", "1000001/1s", "1/32d",
                                  "99999999999999999999/1s", "1/99999999999999999999d"])
def test_rates_are_positive_and_bounded(tmp_path, rate):
    config_file = tmp_path / "config.toml"
    path = ("outbox", "limits", "telegram", "per_chat")
    config_file.write_text(toml_text(replaced(path, rate)))
    [line] = problem_lines(config_file)
    assert line.startswith(f"{config_file}: outbox.limits.telegram.per_chat = {rate!r}")
    assert "positive" in line or "too large; allowed: at most 1000000 messages per at most " \
                                 "31d" in line or "too long" in line


def test_generous_rates_and_durations_within_the_bounds_are_accepted(tmp_path):
    config = replaced(("outbox", "limits", "twitter", "per_user"), "500/31d")
    config["outbox"]["limits"]["telegram"]["per_bot"] = "1000000/1s"
    config["inbox"]["reopen_within"] = "366d"
    config["escalation"][0]["after"] = "30d"
    config_file = tmp_path / "config.toml"
    config_file.write_text(toml_text(config))
    assert problem_lines(config_file) is None


@pytest.mark.parametrize(("hours", "overlap"), [
    (["09:00-13:00", "12:00-18:00"], "09:00-13:00 and 12:00-18:00 overlap"),
    (["14:00-18:00", "09:00-14:30"], "09:00-14:30 and 14:00-18:00 overlap"),
    (["09:00-18:00", "09:00-18:00"], "09:00-18:00 and 09:00-18:00 overlap"),
    (["20:00-24:00", "21:00-22:00"], "20:00-24:00 and 21:00-22:00 overlap"),
])
def test_overlapping_business_hours_of_a_day_are_refused(tmp_path, hours, overlap):
    config_file = tmp_path / "config.toml"
    config_file.write_text(toml_text(replaced(("calendar", "hours", "wed"), hours)))
    [line] = problem_lines(config_file)
    assert line.startswith(f"{config_file}: calendar.hours.wed: {overlap}; allowed:"), line


def test_touching_business_hours_are_fine(tmp_path):
    config_file = tmp_path / "config.toml"
    config_file.write_text(toml_text(replaced(("calendar", "hours", "wed"),
                                              ["09:00-13:00", "13:00-18:00", "20:00-24:00"])))
    assert problem_lines(config_file) is None


def test_a_file_nested_too_deeply_names_the_key_and_line(tmp_path):
    config_file = tmp_path / "config.toml"
    config_file.write_text(toml_text(replaced(("outbox", "lease"), DEEP)))
    [line] = problem_lines(config_file)
    assert re.fullmatch(rf"{re.escape(str(config_file))}: outbox\.lease: not valid TOML: "
                        r"arrays or tables nested too deeply \(at line \d+\).*", line), line


# --- the real command, for representative files --------------------------------------------------


CLI_CASES = {  # (key path, junk, the key path the problem names)
    "deep": (("calendar", "hours", "mon"), DEEP, "calendar.hours"),
    "huge-string": (("calendar", "timezone"), HUGE_TEXT, "calendar.timezone"),
    "huge-int": (("outbox", "max_attempts"), 10**30, "outbox.max_attempts"),
    "infinite": (("outbox", "lease"), float("inf"), "outbox.lease"),
    "bool-for-int": (("daemon", "health_port"), True, "daemon.health_port"),
    "table-for-string": (("database", "url"), {"a": "b"}, "database.url"),
    "century": (("daemon", "sweep_interval"), "36500d", "daemon.sweep_interval"),
    "control-key": (("daemon", "\x1b[2J\nlog_level"), "info", 'daemon."\\u001b[2J\\nlog_level"'),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_check_config_command_exits_2_with_one_line_per_problem(tmp_path, case):
    path, junk, key = CLI_CASES[case]
    config_file = tmp_path / "config.toml"
    config_file.write_text(toml_text(replaced(path, junk)), encoding="utf-8")
    done = subprocess.run([str(SAMEDAY), "check-config", str(config_file), "--no-secrets"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[:2000]
    assert "Traceback" not in output and "\x1b" not in output
    header, *lines = done.stderr.splitlines()
    assert header == f"{len(lines)} problem(s) in the config:"
    for line in lines:
        assert line.startswith(f"  - {config_file}: ") and len(line) < 1000, line[:300]
    assert any(line.startswith(f"  - {config_file}: {key}") for line in lines), lines


# --- the console --------------------------------------------------------------------------------


STAFF = {"chat": "console", "members": [{"name": "anna", "telegram_id": 1, "role": "admin"}]}
HUGE_LINES = ["x" * 100_000, "/note 1 " + "я" * 100_000, "/reply 1 " + "🙂" * 100_000,
              "/" + "\U0010ffff" * 100_000, "\x1b]52;c;ZXZpbA==\x07" * 5000]
LINE = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=200),
    st.text(st.characters(min_codepoint=0x10000), max_size=50),
    st.text(st.characters(max_codepoint=0x9F), max_size=50),
    # what input() gives for bytes that are not UTF-8
    st.binary(max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.builds("{} {}".format, st.sampled_from([*SPECS, "/show 1", "/note 1", "/reply 1",
                                               "/queue", "/snooze 1"]),
              st.text(st.characters(codec="utf-8"), max_size=60)),
    st.sampled_from(HUGE_LINES),
)
C0_C1 = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.fixture
async def console_desk(tmp_path):
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'console.db'}")
    upgrade(settings)
    store = Store(settings)
    staff_settings = make_settings(staff=STAFF)
    clock = VirtualClock(START)
    await Inbox(store, staff_settings, clock).ingest([inbound(
        "m1", handle="@kate", text="where is my order?\x1b[2J\x1b]52;c;ZXZpbA==\x07\x9b31m")])
    yield StaffDesk(store, staff_settings, clock)
    await store.close()


async def scripted(lines: list[str]) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def run_lines(desk: StaffDesk, lines: list[str]) -> tuple[str, list]:
    replies = []
    execute = desk.execute

    async def recording(*args, **kwargs):
        reply = await execute(*args, **kwargs)
        replies.append(reply)
        return reply

    desk.execute = recording
    console = Console(file=io.StringIO(), width=100, soft_wrap=True)
    try:
        await run_console(desk, desk.actor_named("anna"), scripted(lines), console,
                          idle_poll=0.05)
    finally:
        del desk.execute
    return console.file.getvalue(), replies


@hypothesis_settings(max_examples=80, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow],
                     phases=[Phase.explicit, Phase.generate])  # shrinking the DB is slow
@given(line=LINE)
async def test_any_console_line_gets_a_reply_and_nothing_escapes(console_desk, line):
    text, replies = await run_lines(console_desk, [line])
    if not line.strip() or line.strip().lower() in QUIT_WORDS:
        assert replies == []
        return
    [reply] = replies
    assert reply.text.strip()
    first_line = visible_controls(reply.text).splitlines()[0][:40]
    assert first_line in text  # printed after the echoed line
    assert not C0_C1.search(text), repr(C0_C1.search(text))  # nothing drives the terminal
    text.encode("utf-8")  # printable by a UTF-8 terminal: no lone surrogates


async def test_a_customer_cannot_drive_the_staff_terminal(console_desk):
    text, [show] = await run_lines(console_desk, ["/show 1"])
    assert "\x1b[2J" in show.text  # the data keeps the customer's text as it was...
    assert "where is my order?␛[2J␛]52;c;ZXZpbA==" in text  # ...the terminal sees it
    assert not C0_C1.search(text)


# --- the staff command language ------------------------------------------------------------------


COMMAND_WORD = st.text(st.characters(codec="utf-8", exclude_characters="@"), max_size=300) \
    .map(lambda word: re.split(r"\s+", word)[0]) \
    .filter(lambda word: word and word.lower() not in SPECS)


@hypothesis_settings(max_examples=200, deadline=None, derandomize=True)
@given(word=COMMAND_WORD | st.sampled_from(["x" * 100_000, "𝔘" * 100_000, "repyl", "QUEUEE"]),
       rest=st.text(max_size=30))
def test_an_unknown_command_is_named_in_one_short_line(word, rest):
    with pytest.raises(UsageError) as error:
        parse(f"/{word} {rest}", "sameday_bot")
    message = str(error.value)
    assert message.isprintable() and len(message) < 200, repr(message)
    echoed = printable(word.lower())
    echoed = echoed if len(echoed) <= 32 else echoed[:32] + "…"
    assert message.startswith(f"Unknown command /{echoed}.")  # as typed, escaped if need be
    assert message.endswith("Send /help for the list.")


@hypothesis_settings(max_examples=200, deadline=None, derandomize=True)
@given(name=st.sampled_from([n for n, spec in SPECS.items() if spec.needs_ticket]),
       junk=st.text(st.characters(codec="utf-8"), max_size=40))
def test_a_malformed_known_command_says_its_usage(name, junk):
    line = f"/{name} x{junk}"  # never a ticket number
    with pytest.raises(UsageError) as error:
        parse(line, "sameday_bot")
    message = str(error.value)
    assert message.startswith(f"Usage: /{name} ") and "\n" not in message


@hypothesis_settings(max_examples=60, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow],
                     phases=[Phase.explicit, Phase.generate])
@given(line=st.text(st.characters(codec="utf-8"), max_size=120) | st.sampled_from(HUGE_LINES))
async def test_the_desk_answers_any_line_with_one_reply(console_desk, line):
    reply = await console_desk.execute(Actor("anna", "admin"), line, "sameday_bot")
    assert reply.text.strip()
    if not reply.ok:  # an error is one line an agent can act on
        assert len(reply.text.splitlines()) == 1 and len(reply.text) < 300, reply.text[:300]
