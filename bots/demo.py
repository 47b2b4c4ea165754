"""`sameday demo`: the whole product on one machine, with no tokens and no network.

It starts the four platform emulators on 127.0.0.1, the real daemon with the real
adapters on the embedded SQLite default, a traffic generator that writes to the company
on X, VK, Telegram and MAX with a business-day profile, and simulated staff who answer
part of the queue in the Telegram staff group -- by replying to the ticket cards, or with
a saved answer (``/t delivery N``) -- and close what they answered. Closed Telegram and VK
tickets get the satisfaction survey with buttons, and simulated customers press them; the
MAX adapter has no survey buttons, so MAX customers in a dialog get the question with
"reply with a number" and type their score. A whole business day runs in about a minute
on a virtual clock that the core, the emulators' message dates, the escalation sweep and
the survey's delay share. It ends with the same-day report (with the survey and each
staff member's figures) and a chart.

The command is registered through the ``sameday.commands`` entry point, so the core's CLI
does not import the adapters.
"""

from __future__ import annotations

import asyncio
import csv
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import typer
from rich.console import Console

from core.app.logs import setup_logging
from core.clock import VirtualClock
from core.config.load import load_settings
from core.config.settings import DEFAULT_SURVEY_TEXTS
from core.domain.calendar import BusinessCalendar
from core.domain.records import OutboxKind, OutboxState, TicketStatus
from core.domain.survey import BUTTONS
from core.store.engine import is_transient
from core.store.tables import Escalation, Outbox, Survey, Ticket

if TYPE_CHECKING:
    from rich.table import Table

    from bots.max.emulator import MaxEmulator
    from bots.telegram.emulator import TelegramEmulator
    from bots.twitter.emulator import XEmulator
    from bots.vk.emulator import VKEmulator
    from core.app.daemon import Daemon

STAFF_GROUP = -1001000000001
MAX_GROUP = -70801090403050  # the company's MAX group chat, where customers mention the bot
STAFF = [("anna", 1001, "admin"), ("boris", 1002, "agent"), ("lead", 1003, "admin")]
DAY_START, DAY_END = 8, 20  # the local hours the demo compresses into --duration
# Share of a day's messages per local hour: quiet nights, a morning and an evening peak.
HOURLY = [1, 1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 8, 8, 9, 9, 8, 7, 6, 5, 4, 3, 2, 1]
QUESTIONS = {
    "ru": ["Где мой заказ? Обещали доставить вчера.", "Не могу оплатить картой, ошибка 402.",
           "Пришёл не тот размер, как вернуть?", "Когда будет в наличии чёрная модель?",
           "Курьер не приехал, что делать?", "Списали деньги дважды!",
           "Приложение не работает после обновления.", "Как изменить адрес доставки?"],
    "en": ["Where is my order? It was due yesterday.", "My card payment fails with error 402.",
           "Wrong size arrived, how do I return it?", "The app crashes since the update.",
           "I was charged twice!", "Can I change the delivery address?"],
}
ANSWERS = ["Проверили: заказ у курьера, привезёт сегодня до 19:00.",
           "Вернули лишнее списание, деньги придут в течение 3 дней.",
           "Оформили возврат, курьер заберёт товар завтра.",
           "Thanks for waiting! Your parcel is out for delivery today."]
TEMPLATE = "delivery"  # the saved answer staff send with /t (in the demo's config)
SAVED_SHARE = 0.3  # of the answers
# How customers rate, when they do (70% of them): mostly content, some not.
SCORE_WEIGHTS = (1, 1, 2, 4, 6)
TOKENS = {"SAMEDAY_TELEGRAM_TOKEN": "100000:demo-telegram", "SAMEDAY_VK_TOKEN": "demo-vk",
          "SAMEDAY_MAX_TOKEN": "demo-max",
          **{f"SAMEDAY_X_{n}": f"demo-x-{n.lower()}" for n in (
              "BEARER_TOKEN", "CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
              "ACCESS_TOKEN_SECRET")}}

err = Console(stderr=True)


def demo(duration: float = typer.Option(60.0, "--duration", help="Real seconds for the day."),
         speed: float = typer.Option(0.0, "--speed", help="Virtual seconds per real second "
                                     "(default: the business day fits --duration)."),
         seed: int = typer.Option(7, "--seed", help="Random seed of the traffic and staff."),
         history: Path = typer.Option(None, "--history", help="Replay customer texts from "
                                      "this CSV (the TWCS columns) instead of samples."),
         workdir: Path = typer.Option(Path("sameday-demo"), "--workdir",
                                      help="Where the database, config and chart go.")
         ) -> None:
    """The whole product on local emulators: a business day in about a minute.

    Starts the X, VK, Telegram and MAX emulators, the daemon with the real adapters on
    SQLite, customer traffic and simulated staff, with a live view; ends with the same-day
    report and a chart. No tokens, no network. Ctrl-C ends it early with the report so far.
    """
    if duration <= 0:
        err.print("--duration must be positive")
        raise typer.Exit(2)
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.update(TOKENS)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    texts = _history_texts(history) if history else None
    setup_logging("warning", secrets=list(TOKENS.values()))
    code = asyncio.run(Demo(duration, speed, seed, texts, workdir).run())
    raise typer.Exit(code)


@dataclass
class Tally:
    received: int = 0
    acknowledged: int = 0
    answered: int = 0
    overdue: int = 0
    escalations: int = 0
    surveys_asked: int = 0
    rated: int = 0
    average: float | None = None
    by_channel: dict[str, int] = field(default_factory=dict)


class Demo:
    def __init__(self, duration: float, speed: float, seed: int, texts: list[str] | None,
                 workdir: Path):
        self.duration = duration
        self.rng = random.Random(seed)
        self.texts = texts
        self.workdir = workdir
        self.zone = ZoneInfo("Europe/Moscow")
        day = _next_business_day(date.today())
        self.start = datetime(day.year, day.month, day.day, DAY_START, tzinfo=self.zone)
        self.end = self.start + timedelta(hours=DAY_END - DAY_START)
        self.speed = speed or (self.end - self.start).total_seconds() / duration
        self.clock = VirtualClock(self.start.astimezone(UTC), speed=self.speed)
        self.answer_at: dict[int, tuple[datetime, int]] = {}  # ticket -> (when, card id)
        self.close_at: dict[int, datetime] = {}  # answered tickets staff close later
        # A survey question (channel, chat, message id) -> (when it is rated, the score);
        # a score of 0: this customer does not rate (or did already).
        self.rate_at: dict[tuple[str, int, int], tuple[datetime, int]] = {}
        self.next_customer = 1

    async def run(self) -> int:
        # The adapters (platform SDKs), emulators and daemon are imported when the demo
        # runs: every `sameday` command, `run` too, loads this module to register `demo`.
        from bots.max.adapter import MaxAdapter
        from bots.max.emulator import MaxEmulator
        from bots.telegram.adapter import TelegramAdapter
        from bots.telegram.emulator import TelegramEmulator
        from bots.twitter.adapter import TwitterAdapter
        from bots.twitter.emulator import XEmulator
        from bots.vk.adapter import VKAdapter
        from bots.vk.emulator import VKEmulator
        from core.app.daemon import Daemon

        # The day runs `speed` times faster than real time, but Telegram's 20 messages a
        # minute per group counts real minutes: the demo's staff group is unlimited.
        # MAX's limits (2 messages a second into one chat) count real seconds, as the
        # outbox's buckets do: its emulator enforces them.
        async with TelegramEmulator(enforce_limits=False) as tg, VKEmulator() as vk, \
                XEmulator() as x, MaxEmulator() as mx:
            for emulator in (tg, vk, x, mx):
                emulator.message_time = lambda: self.clock.now().timestamp()
            config = self.workdir / "config.toml"
            config.write_text(_config(self.workdir, tg.url, vk.url, x.url, mx.url))
            settings = load_settings(config)
            daemon = Daemon(config, settings, clock=self.clock, factories={
                "telegram": TelegramAdapter, "vk": VKAdapter, "max": MaxAdapter,
                "twitter": lambda s: TwitterAdapter(s, poll_interval=0.5)})
            running = asyncio.create_task(daemon.run())
            while daemon.escalator is None and not running.done():
                await asyncio.sleep(0.05)
            try:
                await self._day(daemon, tg, vk, x, mx, running)
            finally:
                daemon.stop()
                code = await running
            await self._report(daemon)
            return code

    async def _day(self, daemon: Daemon, tg: TelegramEmulator, vk: VKEmulator,
                   x: XEmulator, mx: MaxEmulator, running: asyncio.Task) -> None:
        """Traffic and staff until the virtual day ends (or Ctrl-C stops the daemon)."""
        from rich.live import Live  # only the demo's live view uses it

        step = 0.1  # real seconds between ticks
        tally = Tally()
        with Live(self._view(tally), refresh_per_second=4, console=Console()) as live:
            last = self.clock.now()
            while self.clock.now() < self.end.astimezone(UTC) and not running.done():
                await asyncio.sleep(step)
                now = self.clock.now()
                self._customers_write(last, now, tg, vk, x, mx)
                self._staff_answer(now, tg)
                self._staff_close(now, tg)
                self._customers_rate(now, tg, vk, mx)
                last = now
                tally = await self._tally_or(daemon, tally)
                live.update(self._view(tally))
            await asyncio.sleep(1.0)  # let the last acknowledgements go out
            live.update(self._view(await self._tally_or(daemon, tally)))

    def _customers_write(self, since: datetime, now: datetime, tg: TelegramEmulator,
                         vk: VKEmulator, x: XEmulator, mx: MaxEmulator) -> None:
        """Poisson arrivals with the hour-of-day profile: ~120 messages a business day
        (Telegram, VK and MAX two parts in seven each, X one)."""
        from bots.twitter.emulator import BOT_USER as X_BOT  # loaded by run() already

        hours = (now - since).total_seconds() / 3600
        rate = 120 * HOURLY[now.astimezone(self.zone).hour] / sum(HOURLY[DAY_START:DAY_END])
        count = _poisson(self.rng, rate * hours)
        for _ in range(count):
            channel = self.rng.choice(("telegram", "telegram", "vk", "vk", "max", "max",
                                       "twitter"))
            language = "ru" if channel != "twitter" or self.rng.random() < 0.5 else "en"
            text = self.rng.choice(self.texts or QUESTIONS[language])
            user = self.next_customer
            self.next_customer += 1
            if channel == "telegram":
                tg.inject_message(chat_id=500_000 + user, user_id=500_000 + user, text=text,
                                  first_name=f"Клиент {user}", username=f"client{user}")
            elif channel == "vk":
                if self.rng.random() < 0.3:
                    vk.inject_wall_reply(from_id=700_000 + user, post_id=10, text=text)
                else:
                    vk.inject_message(from_id=700_000 + user, text=text)
            elif channel == "max":
                name = (f"Клиент {user}", "")
                if self.rng.random() < 0.2:  # in a group chat, mentioning the bot
                    mx.inject_message(800_000 + user, text, chat_id=MAX_GROUP,
                                      chat_type="chat", name=name, mention_bot=True)
                else:
                    mx.inject_message(800_000 + user, text, name=name)
            else:
                x.inject_mention(str(900_000 + user), f"client{user}",
                                 f"@{X_BOT['username']} {text}")

    def _staff_answer(self, now: datetime, tg: TelegramEmulator) -> None:
        """Staff answer about 70% of tickets, after 20 minutes to 4 hours, by replying to
        the ticket's card in the staff group (the real path through the adapter)."""
        for card in tg.sent_to(STAFF_GROUP):
            ticket = _card_ticket(card["text"])
            if ticket is None or ticket in self.answer_at:
                continue
            delay = timedelta(minutes=self.rng.uniform(20, 240))
            keep = self.rng.random() < 0.7
            self.answer_at[ticket] = (now + delay if keep else datetime.max.replace(
                tzinfo=UTC), card["message_id"])
        for ticket, (when, card_id) in list(self.answer_at.items()):
            if when <= now:
                name, user_id, _ = self.rng.choice(STAFF)
                if self.rng.random() < SAVED_SHARE:  # a saved answer: /t delivery 12
                    tg.inject_message(chat_id=STAFF_GROUP, user_id=user_id, first_name=name,
                                      chat_type="supergroup", text=f"/t {TEMPLATE} {ticket}")
                else:  # Numbered: X refuses a second tweet with the same text.
                    tg.inject_message(chat_id=STAFF_GROUP, user_id=user_id, first_name=name,
                                      chat_type="supergroup", reply_to_message_id=card_id,
                                      text=f"{self.rng.choice(ANSWERS)} (#{ticket})")
                self.answer_at[ticket] = (datetime.max.replace(tzinfo=UTC), card_id)
                self.close_at[ticket] = now + timedelta(minutes=self.rng.uniform(5, 45))

    def _staff_close(self, now: datetime, tg: TelegramEmulator) -> None:
        """What staff answered they close a little later (the survey follows the close)."""
        for ticket, when in list(self.close_at.items()):
            if when <= now:
                name, user_id, _ = self.rng.choice(STAFF)
                tg.inject_message(chat_id=STAFF_GROUP, user_id=user_id, first_name=name,
                                  chat_type="supergroup", text=f"/close {ticket}")
                del self.close_at[ticket]

    def _customers_rate(self, now: datetime, tg: TelegramEmulator, vk: VKEmulator,
                        mx: MaxEmulator) -> None:
        """Seven customers in ten rate the answer, 2-30 minutes after the survey arrives:
        on Telegram and VK they press a button (the real press: a callback_query, a
        message_event); on MAX, whose question has no buttons, they type the score in
        the dialog as the question asks (a typed answer, read by the core's survey)."""
        questions = [("telegram", m["chat"]["id"], m["message_id"]) for m in tg.sent
                     if "survey:" in str(m.get("reply_markup"))]
        questions += [("vk", m["peer_id"], m["id"]) for m in vk.sent if m.get("keyboard")]
        questions += [("max", m["user_id"], m["mid"]) for m in mx.sent
                      if m.get("chat_type") == "dialog" and _asks_for_a_number(m.get("text"))]
        for question in questions:
            if question not in self.rate_at:
                score = self.rng.choices(range(1, 6), SCORE_WEIGHTS)[0] \
                    if self.rng.random() < 0.7 else 0
                self.rate_at[question] = (now + timedelta(minutes=self.rng.uniform(2, 30)),
                                          score)
        for (channel, chat, message_id), (when, score) in list(self.rate_at.items()):
            if score and when <= now:
                if channel == "telegram":
                    tg.press(chat_id=chat, message_id=message_id, user_id=chat,
                             label=BUTTONS[score - 1])
                elif channel == "vk":
                    vk.press(peer_id=chat, message_id=message_id, label=BUTTONS[score - 1])
                else:
                    known = mx.users[chat]  # the same customer, under the same name
                    mx.inject_message(chat, str(score),
                                      name=(known["first_name"], known["last_name"]))
                self.rate_at[(channel, chat, message_id)] = (when, 0)

    async def _tally_or(self, daemon: Daemon, last: Tally) -> Tally:
        """The figures now, or the last ones while the database is busy (a loaded
        machine can hold SQLite's write lock past the busy timeout): the view waits, the
        demo goes on."""
        try:
            return await self._tally(daemon)
        except Exception as error:
            if not is_transient(error):
                raise
            return last

    async def _tally(self, daemon: Daemon) -> Tally:
        now = self.clock.now()
        async with daemon.store.session() as session:
            def count(*where):
                return session.scalar(sa.select(sa.func.count()).select_from(Ticket)
                                      .where(*where))

            tally = Tally(
                received=await count(),
                acknowledged=await session.scalar(
                    sa.select(sa.func.count()).select_from(Outbox).where(
                        Outbox.kind == OutboxKind.ACK, Outbox.state == OutboxState.SENT)),
                answered=await count(Ticket.first_response_at.is_not(None)),
                overdue=await count(Ticket.status == TicketStatus.OPEN, Ticket.due_at < now),
                escalations=await session.scalar(sa.select(sa.func.count())
                                                 .select_from(Escalation)),
                surveys_asked=await session.scalar(
                    sa.select(sa.func.count()).select_from(Outbox).where(
                        Outbox.kind == "survey", Outbox.idempotency_key.like("survey:%"),
                        Outbox.state == OutboxState.SENT)),
                rated=await session.scalar(sa.select(sa.func.count()).select_from(Survey)
                                           .where(Survey.score.is_not(None))),
                average=await session.scalar(sa.select(sa.func.avg(Survey.score))))
            rows = await session.execute(sa.select(Ticket.channel, sa.func.count())
                                         .group_by(Ticket.channel))
            tally.by_channel = dict(rows.all())
        return tally

    def _view(self, tally: Tally) -> Table:
        from rich.table import Table  # only the demo's live view uses it

        local = self.clock.now().astimezone(self.zone)
        table = Table(title=f"sameday demo · {local:%a %d %b %H:%M} Moscow (virtual, "
                            f"x{self.speed:.0f})")
        for column in ("tickets", "acknowledged", "answered", "overdue", "escalations",
                       "surveyed", "rated", "avg", "telegram", "vk", "max", "x"):
            table.add_column(column, justify="right")
        table.add_row(*(str(v) for v in (
            tally.received, tally.acknowledged, tally.answered, tally.overdue,
            tally.escalations, tally.surveys_asked, tally.rated,
            "—" if tally.average is None else f"{tally.average:.1f}",
            tally.by_channel.get("telegram", 0), tally.by_channel.get("vk", 0),
            tally.by_channel.get("max", 0), tally.by_channel.get("twitter", 0))))
        return table

    async def _report(self, daemon: Daemon) -> None:
        console = Console()
        try:
            from core.reporting.render import print_report  # the report module
            from core.reporting.report import build_report

            report = await build_report(daemon.store, daemon.settings,
                                        since=self.start, until=self.end)
            print_report(report, console, by_agent=True)
        except ImportError:
            pass
        try:
            from core.reporting.chart import write_chart

            path = self.workdir / "same-day.png"
            await write_chart(daemon.store, daemon.settings, path, since=self.start,
                              until=self.end)
            console.print(f"Chart: {path.resolve()}")
        except ImportError:
            pass


def _asks_for_a_number(text: str | None) -> bool:
    """A survey question as a platform without buttons gets it: with the hint to reply
    with a number (the demo's config keeps the built-in texts)."""
    return bool(text) and any(texts["reply_hint"] in text
                              for texts in DEFAULT_SURVEY_TEXTS.values())


def _card_ticket(text: str) -> int | None:
    if not text.startswith("<b>#"):
        return None
    number = text[4:text.find("</b>")]
    return int(number) if number.isdigit() else None


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means of one tick.
    limit, product, count = pow(2.718281828459045, -mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def _next_business_day(day: date) -> date:
    from core.config.settings import CalendarSettings

    calendar = BusinessCalendar(CalendarSettings())
    while not calendar.is_business_day(day):
        day += timedelta(days=1)
    return day


def _history_texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)
                 if row.get("inbound", "").strip().lower() == "true" and row.get("text")]
    if not texts:
        err.print(f"{path}: no customer rows (inbound = True) with text")
        raise typer.Exit(2)
    return texts


def _config(workdir: Path, telegram: str, vk: str, x: str, max_url: str) -> str:
    from bots.twitter.emulator import BOT_USER as X_BOT  # loaded by run() already

    members = "\n".join(f'[[staff.members]]\nname = "{n}"\ntelegram_id = {i}\nrole = "{r}"\n'
                        for n, i, r in STAFF)
    return f"""# Written by `sameday demo`: the emulators' addresses change every run.
[database]
url = "sqlite+aiosqlite:///{(workdir / 'demo.db').resolve()}"
sqlite_synchronous = "normal"

[daemon]
health_port = 0
log_level = "warning"

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

[channels.max]
enabled = true
base_url = "{max_url}"
poll_timeout = "1s"

[staff]
chat = "telegram"
telegram_chat_id = {STAFF_GROUP}

[outbox.limits.telegram]
per_group = "1000/1m"   # the demo compresses a day into a minute; see bots/demo.py

{members}
[ack]
channel_languages = {{ vk = "ru", telegram = "ru", max = "ru" }}

# /t {TEMPLATE} N: the saved answer the demo's staff use for some tickets.
[templates.{TEMPLATE}]
ru = "{{name}}, проверили: заказ по обращению {{ticket}} у курьера, привезём сегодня. {{agent}}"
en = "{{name}}, we checked: the order of ticket {{ticket}} is out for delivery today. {{agent}}"

# After a close, customers rate the answer: on Telegram and VK with buttons, on MAX by
# typing a number (X posts and MAX group chats are public: no survey there).
[survey]
when = "after_close"
delay = "5m"

[[escalation]]
name = "reminder"
after = "2h"
clock = "business"
mention = ["boris"]

[[escalation]]
name = "warning"
before_due = "1h"
raise_priority = "high"

[[escalation]]
name = "breach"
at_due = true
mention = ["lead"]
"""

