"""`sameday console`: the staff command line in a terminal, over the same database.

For teams without a staff group on a chat platform, and for trying sameday locally. Every
line goes through ``StaffDesk.execute`` -- the same commands, rules and transactions as in
a staff group; only the rendering differs (core.staff.terminal: rich panels and colours).

With ``staff.chat = "console"`` the console *is* the staff chat: it runs a dispatcher for
the "staff" outbox channel whose adapter prints cards, follow-ups and delivery notices.
With a channel's staff group it leaves those rows to the daemon's adapter.
Customer answers queued by /reply are always delivered by the running daemon: the console
never talks to a platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.text import Text

from core.blocking import in_daemon_thread
from core.clock import Clock, SystemClock
from core.config.channels import channel_label
from core.config.load import ConfigError, load_settings
from core.config.settings import Settings
from core.delivery.contract import STAFF_CHANNEL, AdapterContext, ChannelAdapter
from core.delivery.dispatcher import Dispatcher
from core.domain.records import Delivered, Outbound
from core.domain.text import valid_unicode
from core.staff import file_answers
from core.staff.board import StaffNotices
from core.staff.commands import Actor, StaffDesk
from core.staff.handlers import Reply
from core.staff.language import SPECS, queue_filters
from core.staff.terminal import render_reply, render_staff_row
from core.store.engine import Store

try:  # readline gives history and completion; Windows and some builds lack it
    import readline
except ImportError:  # pragma: no cover - depends on the Python build
    readline = None  # type: ignore[assignment]

HISTORY_FILE = Path.home() / ".sameday_history"
HISTORY_LENGTH = 1000
QUIT_WORDS = {"quit", "exit", "/quit", "/exit"}
CONSOLE_HELP = ("In the console: the leading / is optional, /reply N <text> answers, "
                "/reply N --file PATH [text] sends a file with the answer, "
                "Tab completes, quit or Ctrl-D leaves.")


def prompt_for(actor: Actor) -> str:
    return f"sameday({actor.name})> "


# --- what reaches the terminal -------------------------------------------------------------

# C0 controls but tab and newline, DEL, and C1 controls (0x9b is a CSI on some terminals).
_CONTROLS = {code: 0x2400 + code for code in range(0x20) if code not in (0x09, 0x0A)}
_CONTROLS |= {0x7F: 0x2421, **{code: 0xFFFD for code in range(0x80, 0xA0)}}


def visible_controls(text: str) -> str:
    """``text`` with each control character replaced by one visible character (ESC by
    "␛"), so that a customer's message cannot drive the staff's terminal (move the cursor,
    clear the screen, set the clipboard with OSC 52); rich passes them through as they
    are. One character for one keeps the styles' offsets right."""
    return text.translate(_CONTROLS)


def terminal_safe(renderable: RenderableType) -> RenderableType:
    """A reply or a staff row with its texts made safe by ``visible_controls`` (and
    writable: no lone surrogates)."""
    if isinstance(renderable, Text):
        clean = visible_controls(valid_unicode(renderable.plain))
        if clean == renderable.plain:
            return renderable
        if len(clean) != len(renderable.plain):  # surrogates decoded: the spans would move
            return Text(clean, style=renderable.style)
        safe = renderable.copy()
        safe.plain = clean
        return safe
    if isinstance(renderable, Panel):
        safe_panel = copy.copy(renderable)
        safe_panel.renderable = terminal_safe(renderable.renderable)
        for name in ("title", "subtitle"):
            value = getattr(renderable, name)
            if isinstance(value, str):
                setattr(safe_panel, name, visible_controls(value))
            elif isinstance(value, Text):
                setattr(safe_panel, name, terminal_safe(value))
        return safe_panel
    return renderable


# --- the staff chat sink -----------------------------------------------------------------


class ConsoleStaffChannel(ChannelAdapter):
    """A channel adapter for the "staff" outbox rows that prints them.

    Printing cannot fail or be rate limited, so ``rate_keys`` is empty and every row is
    delivered at once; the external id lets card edits and /reply confirmations find
    the card like they do in Telegram."""

    name = "console"

    def __init__(self, show: Callable[[RenderableType], None]):
        self.show = show

    async def start(self, context: AdapterContext) -> None:
        """Nothing to receive: the console's input is the staff's command line."""

    async def stop(self) -> None:
        """Nothing to stop."""

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        return []

    async def send(self, outbound: Outbound) -> Delivered:
        self.show(render_staff_row(outbound))
        return Delivered(external_id=f"console:{outbound.outbox_id}")


@dataclass
class StaffSink:
    """A dispatcher for the staff channel only, running next to the input loop."""

    dispatcher: Dispatcher
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None

    @classmethod
    def create(cls, desk: StaffDesk, show: Callable[[RenderableType], None], *,
               idle_poll: float = 1.0) -> StaffSink:
        adapters: dict[str, Any] = {STAFF_CHANNEL: ConsoleStaffChannel(show)}
        return cls(Dispatcher(desk.store, desk.clock, desk.settings.outbox, adapters,
                              idle_poll=idle_poll, listener=StaffNotices(lambda: desk.policy)))

    def start(self) -> None:
        self.task = asyncio.create_task(self.dispatcher.run(self.stopping),
                                        name="console-staff-sink")

    async def drain(self) -> None:
        """Show what is due now (after a command: its card edit, right below its reply)."""
        await self.dispatcher.dispatch_once()

    async def stop(self) -> None:
        self.stopping.set()
        if self.task is not None:
            await self.task


# --- the terminal ------------------------------------------------------------------------


class PromptLine:
    """Keeps the input line readable when a card arrives while someone is typing.

    The prompt is being shown by ``input`` in another thread; printing over it would
    leave the half-typed line stranded above the card. So: clear the line, print, and
    draw the prompt and what was typed so far again."""

    def __init__(self, console: Console, prompt: str):
        self.console = console
        self.prompt = prompt
        self.active = False

    def show(self, renderable: RenderableType) -> None:
        renderable = terminal_safe(renderable)
        if not (self.active and self.console.is_terminal):
            self.console.print(renderable)
            return
        self.console.file.write("\r\x1b[K")
        self.console.print(renderable)
        typed = readline.get_line_buffer() if readline is not None else ""
        self.console.file.write(self.prompt + typed)
        self.console.file.flush()


async def read_line(prompt: str) -> str:
    """``input(prompt)`` without blocking the event loop (a daemon thread: after Ctrl-C
    the thread is still waiting in ``input`` and must not hold the exit until Enter)."""
    return await in_daemon_thread(input, prompt, name="console-input") or ""


async def terminal_lines(prompt: PromptLine) -> AsyncIterator[str]:
    """Lines typed at the prompt until Ctrl-D."""
    while True:
        prompt.active = True
        try:
            line = await read_line(prompt.prompt)
        except EOFError:
            prompt.console.print()
            return
        finally:
            prompt.active = False
        yield line


class Completer:
    """Tab completion: command names first, then /queue filters and staff names."""

    def __init__(self, desk: StaffDesk):
        self.desk = desk
        self.matches: list[str] = []

    def candidates(self, buffer: str, word: str) -> list[str]:
        words = buffer.split()
        if len(words) == 0 or (len(words) == 1 and not buffer.endswith(" ")):
            slash = word.startswith("/")
            names = [("/" if slash else "") + name for name in SPECS]
            return [name for name in names if name.startswith(word)]
        command = words[0].lstrip("/").lower()
        if command == "queue":
            options = list(queue_filters())
        elif command == "assign" and len(words) >= 2:
            options = sorted(self.desk.settings.staff.names())
        else:
            options = []
        return [option for option in options if option.startswith(word)]

    def __call__(self, word: str, state: int) -> str | None:
        if state == 0:
            buffer = readline.get_line_buffer() if readline is not None else word
            self.matches = [m + " " for m in self.candidates(buffer, word)]
        return self.matches[state] if state < len(self.matches) else None


@contextlib.contextmanager
def line_editing(desk: StaffDesk, history: Path | None = None) -> Iterator[None]:
    """readline history (kept between sessions) and completion, when readline exists."""
    history = history or HISTORY_FILE
    if readline is None:
        yield
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_history_length(HISTORY_LENGTH)
    readline.set_completer(Completer(desk))
    readline.set_completer_delims(" \t\n")
    # libedit (macOS) spells the binding differently.
    binding = "bind ^I rl_complete" if "libedit" in (readline.__doc__ or "") else \
        "tab: complete"
    readline.parse_and_bind(binding)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            readline.write_history_file(history)


@contextlib.contextmanager
def terminal_restored(console: Console) -> Iterator[None]:
    """Put the terminal back as it was, even when Ctrl-C leaves ``input`` mid-line.

    readline switches echo off while it edits; a process that exits during that would
    leave the shell without echo."""
    try:
        import termios

        fd = console.file.fileno()
        saved = termios.tcgetattr(fd)
    except Exception:  # not a terminal, or no termios (Windows): nothing to restore
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


# --- the session -------------------------------------------------------------------------


def as_command(line: str) -> str | None:
    """A typed line as a command ("queue" -> "/queue"); None for an empty line. Bytes the
    terminal could not decode (invalid UTF-8) become U+FFFD instead of ending the session."""
    line = valid_unicode(line).strip()
    if not line:
        return None
    return line if line.startswith("/") else "/" + line


class Session:
    """One staff member at the console: runs lines, prints replies, handles /reload."""

    def __init__(self, desk: StaffDesk, actor: Actor, console: Console,
                 config_path: Path | None, sink: StaffSink | None):
        self.desk = desk
        self.actor = actor
        self.console = console
        self.config_path = config_path
        self.sink = sink

    async def run_line(self, line: str) -> None:
        command = as_command(line)
        if command is None:
            return
        reply = await self._with_file(command) if file_answers.wants_file(command) else \
            await self.desk.execute(self.actor, command)
        self.console.print(terminal_safe(render_reply(reply)))
        if reply.ok and command.split()[0].lower() == "/help":
            self.console.print(Text(CONSOLE_HELP, style="dim"))
        if reply.reload:
            self.reload()
        if self.sink is not None:
            await self.sink.drain()

    async def _with_file(self, line: str) -> Reply:
        """``/reply N --file PATH [text]``: the file read here, the answer as usual."""
        parsed = file_answers.file_line(line)
        if isinstance(parsed, Reply):
            return parsed
        command, path = parsed
        file = await file_answers.read_file(path)
        if isinstance(file, Reply):
            return file
        return await self.desk.execute(self.actor, command, file=file)

    def reload(self) -> None:
        """Re-read the config like the daemon's SIGHUP: a broken file changes nothing."""
        if self.config_path is None:
            self.console.print(Text("No config file to reload in this session.", style="red"))
            return
        try:
            settings = load_settings(self.config_path, check_secrets=False)
        except ConfigError as error:
            self.console.print(Text(f"Config not reloaded, the old config stays in force; "
                                    f"{len(error.problems)} problem(s):", style="red"))
            for problem in error.problems:
                self.console.print(Text(f"  - {problem}", style="red"))
            return
        self.report_restart_only(settings)
        self.desk.reconfigure(settings)
        if self.sink is not None:
            self.sink.dispatcher.settings = settings.outbox
        self.actor = self.desk.actor_named(self.actor.name or "")
        self.console.print(Text(f"Config reloaded from {self.config_path}.", style="green"))
        if not self.actor.is_staff:
            self.console.print(Text(f"{self.actor.name} is no longer staff in the new config.",
                                    style="red"))

    def report_restart_only(self, new: Settings) -> None:
        old = self.desk.settings
        if new.database != old.database or new.staff.chat != old.staff.chat:
            self.console.print(Text("database and staff.chat changes take effect when the "
                                    "console is started again.", style="yellow"))


async def run_console(desk: StaffDesk, actor: Actor, lines: AsyncIterator[str] | None = None,
                      console: Console | None = None, *, config_path: Path | None = None,
                      staff_sink: bool = True, idle_poll: float = 1.0) -> None:
    """The read-eval-print loop. ``lines=None`` reads the terminal (with readline);
    tests pass an async iterator of lines and a ``Console(file=StringIO())``.

    With ``staff.chat = "console"`` (and ``staff_sink``) the staff channel's rows are
    printed as they arrive, concurrently with the input."""
    console = console or Console(soft_wrap=True)
    prompt = PromptLine(console, prompt_for(actor))
    sink = None
    if staff_sink and desk.settings.staff.chat == "console":
        sink = StaffSink.create(desk, prompt.show, idle_poll=idle_poll)
    session = Session(desk, actor, console, config_path, sink)
    source = terminal_lines(prompt) if lines is None else _echoed(lines, prompt)
    if sink is not None:
        await sink.drain()  # what arrived while nobody was watching, before the prompt
        sink.start()
    try:
        async for line in source:
            if line.strip().lower() in QUIT_WORDS:
                break
            await session.run_line(line)
    finally:
        if sink is not None:
            await sink.stop()


async def _echoed(lines: AsyncIterator[str], prompt: PromptLine) -> AsyncIterator[str]:
    """Scripted lines, printed after the prompt so the output reads like a session."""
    async for line in lines:
        prompt.console.print(terminal_safe(Text(prompt.prompt + line, style="dim")))
        yield line


async def open_console(config_path: Path, settings: Settings, actor_name: str, *,
                       clock: Clock | None = None, console: Console | None = None) -> None:
    """What ``sameday console`` runs: open (and migrate) the store, then the session."""
    console = console or Console(soft_wrap=True)
    store = Store(settings.database)
    try:
        await store.upgrade()
        desk = StaffDesk(store, settings, clock or SystemClock())
        actor = desk.actor_named(actor_name)
        where = ("cards and notices appear here" if settings.staff.chat == "console"
                 else f"cards and notices go to the {channel_label(settings.staff.chat)} "
                      f"staff group")
        console.print(Text(f"sameday console as {actor.name} ({actor.role}); {where}. "
                           "Type help, quit or Ctrl-D to leave.", style="dim"))
        with line_editing(desk), terminal_restored(console):
            await run_console(desk, actor, console=console, config_path=config_path)
    finally:
        await store.close()
