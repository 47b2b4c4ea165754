"""`sameday console`: scripted sessions against a real store, the staff-chat sink, the CLI."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
import sqlalchemy as sa
from rich.console import Console
from typer.testing import CliRunner

from core.app.cli import app
from core.delivery.contract import STAFF_CHANNEL, ChannelAdapter
from core.delivery.dispatcher import Dispatcher
from core.domain.records import (
    Delivered,
    Direction,
    Outbound,
    OutboxKind,
    OutboxState,
    TicketStatus,
)
from core.intake.inbox import Inbox
from core.staff import console as console_module
from core.staff.board import StaffNotices
from core.staff.commands import Reply, StaffDesk
from core.staff.console import Completer, ConsoleStaffChannel, as_command, run_console
from core.staff.terminal import render_reply
from core.store.tables import Message, Outbox, Ticket
from tests.conftest import make_settings
from tests.helpers import inbound, rows

STAFF = {"members": [{"name": "anna", "telegram_id": 1, "role": "admin"},
                     {"name": "boris", "telegram_id": 2}]}


def staff_settings(chat: str):
    return make_settings(staff={**STAFF, "chat": chat})


async def scripted(lines: Iterable[str]) -> AsyncIterator[str]:
    for line in lines:
        yield line


def captured() -> Console:
    return Console(file=io.StringIO(), width=100, soft_wrap=True)


def output(console: Console) -> str:
    return console.file.getvalue()


async def desk_with_ticket(store, clock, chat: str) -> StaffDesk:
    settings = staff_settings(chat)
    await Inbox(store, settings, clock).ingest([inbound("m1", handle="@kate",
                                                        text="where is my order?")])
    return StaffDesk(store, settings, clock)


class FakeTelegram(ChannelAdapter):
    """The daemon's Telegram adapter, as far as delivering a customer answer goes."""

    name = "telegram"

    async def start(self, context) -> None:
        """Nothing to receive."""

    async def stop(self) -> None:
        """Nothing to stop."""

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        return []

    async def send(self, outbound: Outbound) -> Delivered:
        return Delivered(external_id=f"tg:{outbound.outbox_id}")


async def wait_for_text(console: Console, text: str, timeout: float = 10) -> None:
    async def poll() -> None:
        while text not in output(console):
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


# --- a scripted session --------------------------------------------------------------------


async def test_scripted_session_prints_replies_and_changes_the_database(store, clock):
    desk = await desk_with_ticket(store, clock, chat="telegram")
    console = captured()
    lines = ["/help", "queue", "/reply 1 hello", "/show 1", "bogus", "quit", "/close 1"]
    await run_console(desk, desk.actor_named("anna"), scripted(lines), console)
    text = output(console)

    assert "sameday(anna)> /help" in text  # scripted lines are echoed like a transcript
    assert "/reply N <text> — answer the customer on their channel" in text
    assert "/reload — re-read the config file (admins)" in text
    assert "<b>" not in text and "&lt;" not in text  # HTML stripped and unescaped
    assert "#1 Telegram · @kate · ⏰" in text  # "queue" without the slash
    assert "Queued to @kate on Telegram (#1); the card shows when it is delivered." in text
    assert "💬" in text and "anna: hello" in text and "👤" in text  # /show: both messages
    assert "Unknown command /bogus" in text

    [ticket] = await rows(store, sa.select(Ticket))
    assert ticket.status == TicketStatus.ANSWERED  # the line after "quit" was not run
    assert ticket.assignee == "anna" and ticket.first_response_at == clock.now()
    [answer] = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.REPLY))
    assert (answer.channel, answer.text, answer.state) == ("telegram", "hello",
                                                           OutboxState.PENDING)
    [message] = await rows(store, sa.select(Message).where(Message.direction == Direction.OUT))
    assert message.author == "anna"
    # staff.chat = "telegram": the card waits for the Telegram group, the console took nothing.
    staff_rows = await rows(store, sa.select(Outbox).where(Outbox.channel == STAFF_CHANNEL))
    assert staff_rows and all(row.state == OutboxState.PENDING for row in staff_rows)
    assert "new ticket" not in text


async def test_errors_are_red_and_ticket_numbers_bold():
    error = render_reply(Reply("There is no ticket #7.", ok=False))
    assert error.style == "red"
    ok = render_reply(Reply("#12 closed & <b>done</b>"))
    assert ok.plain == "#12 closed & <b>done</b>"  # plain text, shown as it is
    assert [(s.start, s.end, s.style) for s in ok.spans] == [(0, 3, "bold")]


async def test_customer_text_is_not_taken_for_rich_markup(store, clock):
    settings = staff_settings("console")
    await Inbox(store, settings, clock).ingest([inbound("m1", text="[red]hi[/red] [link]")])
    console = captured()
    desk = StaffDesk(store, settings, clock)
    await run_console(desk, desk.actor_named("anna"), scripted(["/show 1"]), console)
    assert "[red]hi[/red] [link]" in output(console)


def test_a_line_without_slash_is_a_command():
    assert as_command("queue mine") == "/queue mine"
    assert as_command("  /take 3 ") == "/take 3"
    assert as_command("   ") is None


# --- the staff chat sink ---------------------------------------------------------------------


async def test_console_staff_chat_prints_new_card_and_card_updates(store, clock):
    desk = await desk_with_ticket(store, clock, chat="console")
    console = captured()
    await run_console(desk, desk.actor_named("anna"), scripted(["/take 1", "quit"]), console)
    text = output(console)

    assert "new ticket" in text and "#1 · Telegram · @kate" in text
    assert "where is my order?" in text
    assert "/take 1 · /close 1 · /snooze 1 1h · /reply 1 <text>" in text  # the buttons
    assert text.index("where is my order?") < text.index("sameday(anna)> /take 1")
    assert "#1 is yours, anna." in text
    assert "#1 updated: 👤 anna (taken by anna)" in text
    [card] = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.STAFF_CARD))
    assert card.state == OutboxState.SENT and card.external_id == f"console:{card.id}"
    [edit] = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.CARD_EDIT))
    assert edit.state == OutboxState.SENT and edit.target["edit"] == card.external_id


async def test_console_staff_chat_shows_delivery_confirmation_and_follow_up(store, clock):
    desk = await desk_with_ticket(store, clock, chat="console")
    settings = desk.settings
    daemon = Dispatcher(store, clock, settings.outbox, {"telegram": FakeTelegram()},
                        listener=StaffNotices(lambda: desk.policy))
    console = captured()

    async def session() -> AsyncIterator[str]:
        yield "/reply 1 it ships today"
        await daemon.dispatch_once()  # the running daemon delivers the answer
        await wait_for_text(console, "(answered by anna · delivered")
        await Inbox(store, settings, clock).ingest([inbound("m2", handle="@kate",
                                                            text="thanks!")])
        await wait_for_text(console, "writes again")

    await run_console(desk, desk.actor_named("anna"), session(), console, idle_poll=0.05)
    text = output(console)
    # One change in the staff chat per answer: the card, edited when it was delivered.
    assert "#1 updated: ✅ answered · anna (answered by anna · delivered 10:00)" in text
    assert "#1 @kate writes again:" in text and "thanks!" in text
    [notice] = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.NOTICE))
    assert notice.state == OutboxState.SENT and "writes again" in notice.text
    [edit] = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.CARD_EDIT))
    assert edit.state == OutboxState.SENT


async def test_console_ignores_staff_rows_when_the_staff_chat_is_telegram(store, clock):
    desk = await desk_with_ticket(store, clock, chat="telegram")
    console = captured()

    async def session() -> AsyncIterator[str]:
        yield "/whoami"
        await asyncio.sleep(0.2)  # several polls of a sink, if there were one

    await run_console(desk, desk.actor_named("boris"), session(), console, idle_poll=0.02)
    assert "You are boris (agent)." in output(console)
    [card] = await rows(store, sa.select(Outbox).where(Outbox.kind == OutboxKind.STAFF_CARD))
    assert card.state == OutboxState.PENDING and card.external_id is None


async def test_console_adapter_delivers_with_a_console_id():
    shown = []
    adapter = ConsoleStaffChannel(shown.append)
    outbound = Outbound(outbox_id=5, channel=STAFF_CHANNEL, kind=OutboxKind.NOTICE,
                        target={}, text="⚠ #2: the answer could not be delivered",
                        idempotency_key="dead:4", ticket_id=2)
    assert adapter.rate_keys(outbound) == []
    assert await adapter.send(outbound) == Delivered(external_id="console:5")
    assert len(shown) == 1


# --- /reload -------------------------------------------------------------------------------


def write_config(path: Path, db: Path, *, boris_role: str = "agent") -> None:
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n'
                    '[staff]\nchat = "console"\n'
                    '[[staff.members]]\nname = "anna"\nrole = "admin"\n'
                    f'[[staff.members]]\nname = "boris"\nrole = "{boris_role}"\n',
                    encoding="utf-8")


async def test_reload_applies_a_good_config_and_keeps_the_old_one_on_error(store, clock,
                                                                          tmp_path):
    config = tmp_path / "config.toml"
    write_config(config, tmp_path / "x.db")
    desk = StaffDesk(store, staff_settings("telegram"), clock)
    console = captured()

    async def session() -> AsyncIterator[str]:
        yield "/reload"
        config.write_text("[staff]\nchat = 5\n", encoding="utf-8")
        yield "/reload"

    await run_console(desk, desk.actor_named("anna"), session(), console, config_path=config,
                      staff_sink=False)
    text = output(console)
    assert f"Config reloaded from {config}." in text
    assert "staff.chat changes take effect when the console is started again" in text
    assert "Config not reloaded, the old config stays in force; 1 problem(s):" in text
    assert "staff.chat" in text.split("Config not reloaded")[1]
    assert desk.settings.staff.chat == "console"  # the first, good reload


async def test_reload_is_for_admins_only(store, clock, tmp_path):
    desk = StaffDesk(store, staff_settings("telegram"), clock)
    console = captured()
    await run_console(desk, desk.actor_named("boris"), scripted(["reload"]), console,
                      config_path=tmp_path / "missing.toml")
    assert "/reload is for admins only." in output(console)


# --- completion ------------------------------------------------------------------------------


def test_completion_of_commands_filters_and_staff_names():
    desk = StaffDesk.__new__(StaffDesk)
    desk.settings = staff_settings("console")
    completer = Completer(desk)
    assert completer.candidates("/re", "/re") == ["/reply", "/reopen", "/reload"]
    assert completer.candidates("qu", "qu") == ["queue"]
    assert completer.candidates("/queue o", "o") == ["overdue"]
    assert completer.candidates("/assign 4 b", "b") == ["boris"]
    assert completer.candidates("/close 4 ", "") == []


# --- the command line ------------------------------------------------------------------------


runner = CliRunner()


def test_cli_refuses_a_name_that_is_not_staff(tmp_path):
    config = tmp_path / "config.toml"
    write_config(config, tmp_path / "sameday.db")
    result = runner.invoke(app, ["console", "-c", str(config), "--as", "nobody"])
    assert result.exit_code == 2
    assert "--as nobody: not a staff member" in result.output
    assert "staff: anna, boris" in result.output


def test_cli_help_says_what_it_does():
    result = runner.invoke(app, ["console", "--help"])
    assert result.exit_code == 0
    assert "Staff commands in a terminal" in result.output and "--as" in result.output


def test_cli_session_migrates_the_database_and_runs_commands(tmp_path, monkeypatch):
    monkeypatch.setattr(console_module, "HISTORY_FILE", tmp_path / "history")
    config = tmp_path / "config.toml"
    write_config(config, tmp_path / "sameday.db")
    result = runner.invoke(app, ["console", "-c", str(config), "--as", "anna"],
                           input="whoami\nqueue\n")  # ends with end of input (Ctrl-D)
    assert result.exit_code == 0, result.output
    assert "sameday console as anna (admin); cards and notices appear here" in result.output
    assert "You are anna (admin)." in result.output and "Nothing waiting." in result.output
    assert (tmp_path / "sameday.db").exists()


@pytest.mark.parametrize("line", ["quit", "exit", "/quit"])
async def test_quit_words_end_the_session(store, clock, line):
    desk = StaffDesk(store, staff_settings("telegram"), clock)
    console = captured()
    await run_console(desk, desk.actor_named("anna"), scripted([line, "/whoami"]), console)
    assert "You are" not in output(console)



def test_lines_the_terminal_could_not_decode_do_not_end_the_session():
    """Issue 12: invalid UTF-8 typed at the console arrives as surrogate escapes, which
    cannot be printed; the line is read with U+FFFD instead."""
    typed = b"/note 1 \xd0\xb7\xff".decode("utf-8", "surrogateescape")
    line = as_command(typed)
    assert line == "/note 1 з\ufffd"
    line.encode("utf-8")  # printable and storable


async def test_console_shows_a_customers_photo_voice_document_and_location(store, clock):
    """What a customer sent besides text is listed in the console with its links: on
    the card as it arrives, and by /show."""
    import dataclasses

    from core.domain.records import Attachment

    settings = staff_settings("console")
    message = dataclasses.replace(inbound("m1", handle="@kate", text="it broke"),
                                  attachments=(
        Attachment("photo", url="https://sun9-1.userapi.com/crack.jpg", size=48213),
        Attachment("voice", duration=7, url="https://psv4.userapi.com/a.ogg"),
        Attachment("document", file_name="receipt.pdf", size=51200,
                   url="https://vk.com/doc77_7"),
        Attachment("location", latitude=55.7558, longitude=37.6173)))
    await Inbox(store, settings, clock).ingest([message])
    desk = StaffDesk(store, settings, clock)
    console = captured()
    await run_console(desk, desk.actor_named("anna"), scripted(["/show 1", "quit"]), console)
    text = output(console)
    card, shown = text.split("sameday(anna)> /show 1")
    for part in (card, shown):
        assert "https://sun9-1.userapi.com/crack.jpg" in part
        assert "0:07 · https://psv4.userapi.com/a.ogg" in part
        assert "receipt.pdf · 50 kB · https://vk.com/doc77_7" in part
        assert "55.7558" in part and "37.6173" in part
