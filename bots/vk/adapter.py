"""VK adapter (vk_api 11): community messages and wall comments in, answers out.

Receiving uses the Bots Long Poll API through vk_api's ``VkBotLongPoll``, one request at
a time in a worker thread (vk_api is blocking). Nothing lost, nothing doubled: VK keeps
its events and serves everything after the ``ts`` a client asks with, so the adapter
saves ``ts`` in the same transaction as the messages (``context.ingest``) and asks for
the next events only after that commit. After a crash or restart it resumes from the
saved ``ts``; whatever was fetched but not committed is fetched again and deduplicated.

Sending: ``messages.send`` with a ``random_id`` and ``wall.createComment`` with a
``guid``, both derived from the outbox row's idempotency key. VK answers a repeated
``random_id``/``guid`` with the first message's id instead of posting again, so a retry
after a timeout cannot double a message.

vk_api posts to the hard-coded ``https://api.vk.ru``; ``RedirectingSession`` sends those
requests to ``channels.vk.base_url`` instead (the emulator in tests, a proxy if needed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from jconfig import MemoryConfig
from vk_api import VkApi
from vk_api.bot_longpoll import VkBotLongPoll
from vk_api.exceptions import (
    TOO_MANY_RPS_CODE,
    ApiError,
    ApiHttpError,
    Captcha,
    VkApiError,
)

from bots.common.polling import (
    Backoff,
    PollHealth,
    ingest_until_stored,
    read_payloads,
    retry_while_unavailable,
    run_until_stopped,
)
from bots.vk import uploads
from bots.vk.comments import BY_KIND, EDITS, PLACES, Place, answer_values
from bots.vk.errors import api_delivery_error
from bots.vk.media import attachments_of
from bots.vk.settings import VKTarget
from bots.vk.survey import answer_press, press_of, survey_message
from core.blocking import in_daemon_thread
from core.config.settings import Settings
from core.delivery.contract import (
    AdapterContext,
    ChannelAdapter,
    ChannelHealth,
    Cursor,
    DeliveryError,
)
from core.delivery.outfiles import OutgoingFile
from core.domain.records import Delivered, Inbound, Outbound, OutboxKind
from core.domain.text import split_text

log = logging.getLogger(__name__)

CHANNEL = "vk"
MAX_TEXT = 4096  # VK's limit for one message
COMMUNITY_RPS = 20  # VK allows 20 API calls per second with a community token
VK_API_HOSTS = ("https://api.vk.ru", "https://api.vk.com")
REQUEST_TIMEOUT = 20.0  # vk_api sets none: a silent network must not hang a send forever
CONNECT_WAIT = 10.0  # how long start() waits for the first long poll server

T = TypeVar("T")


class LongPollError(Exception):
    """The long poll server gave no usable answer (retried with backoff)."""


class RedirectingSession(requests.Session):
    """A requests session that sends vk_api's API calls to ``base_url``.

    vk_api has no base-URL option and posts to ``https://api.vk.ru/method/...``; this
    rewrites that prefix (and the older api.vk.com) and adds a default timeout.
    """

    def __init__(self, base_url: str, timeout: float = REQUEST_TIMEOUT):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def rewrite(self, url: str) -> str:
        for host in VK_API_HOSTS:
            if url == host or url.startswith((host + "/", host + "?")):
                return self.base_url + url[len(host):]
        return url

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        if isinstance(url, str):
            url = self.rewrite(url)
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


class BotLongPoll(VkBotLongPoll):
    """vk_api's long poll client with a ``fetch`` that returns the raw answer.

    ``VkBotLongPoll.check`` moves ``ts`` forward before the caller has stored anything,
    handles ``failed`` silently (``failed=1`` means VK skipped events) and fails the whole
    batch on one event it cannot parse. ``fetch`` leaves all of that to the adapter.
    """

    __slots__ = ()

    def fetch(self) -> dict[str, Any]:
        values = {"act": "a_check", "key": self.key, "ts": self.ts, "wait": self.wait}
        try:
            response = self.session.get(self.url, params=values, timeout=self.wait + 10)
            response.raise_for_status()
        except requests.HTTPError as error:
            raise LongPollError(f"long poll server answered HTTP "
                                f"{error.response.status_code}") from None
        except requests.RequestException as error:
            # The message would contain the URL, and the URL the long poll key.
            raise LongPollError(f"long poll request failed ({type(error).__name__})") from None
        try:
            answer = response.json()
        except ValueError:
            raise LongPollError("long poll answer is not JSON") from None
        if not isinstance(answer, dict):
            raise LongPollError("long poll answer is not a JSON object")
        return answer


class VKAdapter(ChannelAdapter):
    name = CHANNEL
    # A repeated messages.send (random_id) or wall.createComment (guid) is dropped by VK:
    # a send interrupted by a crash is simply sent again.
    idempotent = True
    # Answers in conversations can be changed, withdrawn and carry files (bots/vk/uploads.py).
    can_edit = True
    can_delete = True
    file_rules = uploads.VK_FILES

    def __init__(self, settings: Settings):
        self.settings = settings
        config = settings.channels.vk
        self.group_id = config.group_id
        self.wait = max(1, round(config.long_poll_wait.total_seconds()))
        self.vk = VkApi(token=config.secret("token_env"), api_version=config.api_version,
                        session=RedirectingSession(config.base_url), config=MemoryConfig)
        # vk_api spaces calls by RPS_DELAY (0.34 s: the 3/s of user tokens); community
        # tokens may make 20/s.
        self.vk.RPS_DELAY = 1 / COMMUNITY_RPS
        # On error 6 vk_api sleeps 0.5 s and retries, recursively and without a bound, in
        # the sending thread. The dispatcher reschedules instead (DeliveryError with
        # retry_after), so that other rows and stop() are not held up.
        self.vk.error_handlers.pop(TOO_MANY_RPS_CODE, None)
        self.longpoll: BotLongPoll | None = None
        self.context: AdapterContext | None = None
        self.stopping = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self.polls = PollHealth()
        self.names: dict[int, str | None] = {}  # author id -> name, from users.get
        self.setup_problem: str | None = None  # from the Long Poll settings (health)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, context: AdapterContext) -> None:
        self.context = context
        # Connect once before returning, so that "running" means "receiving"; if VK is
        # unreachable now, the receive loop keeps trying in the background.
        try:
            await asyncio.wait_for(self._connect(), CONNECT_WAIT)
        except Exception as error:
            self.polls.failed(error)
            log.warning("vk: no long poll server yet (%s); retrying in the background",
                        _describe(error))
        backoff = Backoff(base=0.5, ceiling=30)
        self._runner = asyncio.create_task(
            run_until_stopped("vk", self._poll_once, self.stopping, backoff,
                              on_error=self.polls.failed),
            name="vk-long-poll")

    async def stop(self) -> None:
        # A request blocked in a long poll is abandoned in its thread: nothing it fetched
        # is committed, so it is fetched again after the next start.
        self.stopping.set()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None

    def health(self) -> ChannelHealth:
        """For /healthz and /metrics: a long poll server is known and last answered."""
        return self.polls.report(self.longpoll is not None and not self.stopping.is_set(),
                                 self.setup_problem)

    # --- receiving -----------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Get a long poll server and key, and resume from the saved ts if there is one."""
        longpoll = await in_daemon_thread(BotLongPoll, self.vk, self.group_id, self.wait)
        saved = await self.context.load_cursor(CHANNEL, "ts")
        if saved:
            longpoll.ts = saved
            log.info("vk: receiving for community %s from saved ts %s", self.group_id, saved)
        else:
            # First start: remember where we began, so that what arrives while the daemon
            # is down after this is not skipped.
            await self._save_ts(str(longpoll.ts))
            log.info("vk: receiving for community %s from ts %s", self.group_id, longpoll.ts)
        self.longpoll = longpoll
        await self._check_settings()

    async def _check_settings(self) -> None:
        """The community's Long Poll settings: an API version before 5.103 sends events
        in an older format, and an event type turned off never arrives. Either loses
        messages without an error, so it is said at start and on /healthz."""
        try:
            settings = await self._call("groups.getLongPollSettings",
                                        {"group_id": self.group_id})
        except DeliveryError as error:
            log.warning("vk: could not read the community's Long Poll settings (%s); "
                        "check them by hand: API version 5.103 or later, events %s on",
                        error.reason, ", ".join(EVENTS_READ))
            return
        problems = []
        version = str(settings.get("api_version") or "")
        if version and _version(version) < (5, 103):
            problems.append(
                f"the community's Long Poll API version is {version}, older than "
                f"5.103, whose event format VK no longer documents (its messages are "
                f"still read): choose 5.103 or later in Manage community > API usage > "
                f"Long Poll API")
        events = settings.get("events") or {}
        off = [event for event in EVENTS_READ if not events.get(event)]
        if off:
            problems.append(f"Long Poll events turned off: {', '.join(off)}: turn them on "
                            f"in Manage community > API usage > Long Poll API > Event types")
        if not events.get("message_event") and self.settings.survey.when != "off":
            log.warning("vk: the Long Poll event message_event is off, so presses on the "
                        "satisfaction survey's buttons are not received: turn it on in "
                        "Manage community > API usage > Long Poll API > Event types")
        unread = [event for event in COMMENT_EVENTS if not events.get(event)]
        if unread:  # a community may have no photos, market or board: worth a line only
            log.warning("vk: Long Poll events turned off, so such comments are not "
                        "received: %s", ", ".join(unread))
        self.setup_problem = "; ".join(problems) or None
        if self.setup_problem:
            log.error("vk: %s", self.setup_problem)

    async def _poll_once(self) -> None:
        if self.longpoll is None:
            await self._connect()
        answer = await in_daemon_thread(self.longpoll.fetch)
        self.polls.succeeded()  # any answer, "failed" ones too: VK is reachable
        if "failed" in answer:
            await self._recover(answer)
        else:
            await self._store(answer)

    async def _store(self, answer: dict[str, Any]) -> None:
        """Store the events of one answer with its ts, then poll on from that ts."""
        ts, updates = answer.get("ts"), answer.get("updates")
        if ts is None or not isinstance(updates, list):
            raise LongPollError("long poll answer without ts or updates")
        if not await self._survey_presses(updates):
            return  # stopping: fetched again after the restart
        batch, unreadable = read_payloads(
            self, [u for u in updates if press_of(u) is None], _event_key)
        if not batch and not unreadable and str(ts) == str(self.longpoll.ts):
            return  # the wait ran out with nothing new
        batch = await self._named(batch)
        cursor = Cursor(CHANNEL, "ts", str(ts))
        stored = await ingest_until_stored(
            "vk", lambda: self.context.ingest(batch, cursor, unreadable), self.stopping)
        if stored:
            self.longpoll.ts = str(ts)

    async def _survey_presses(self, updates: list[Any]) -> bool:
        """Store the presses on satisfaction survey buttons (bots/vk/survey.py) before
        the ts moves past them; False if the daemon stopped first."""
        for press in filter(None, map(press_of, updates)):
            try:
                if await retry_while_unavailable(
                        "vk: a survey answer", lambda p=press: answer_press(self, CHANNEL, p),
                        self.stopping) is None:
                    return False
            except Exception:  # one bad press must not stop the channel
                log.exception("vk: a survey press could not be stored; skipped")
        return True

    async def _recover(self, answer: dict[str, Any]) -> None:
        """Act on the long poll's ``failed`` codes as VK documents them."""
        failed = answer.get("failed")
        if failed == 1:
            if answer.get("ts") is None:
                raise LongPollError("long poll answered failed=1 without a ts")
            log.warning("vk: VK's event history is out of date or partly lost (failed=1); "
                        "events between ts %s and %s are skipped", self.longpoll.ts,
                        answer["ts"])
            await self._save_ts(str(answer["ts"]))
        elif failed == 2:
            log.info("vk: the long poll key expired; getting a new one")
            await in_daemon_thread(self.longpoll.update_longpoll_server, False)
        elif failed == 3:
            log.warning("vk: the long poll key and position were lost (failed=3); "
                        "continuing from VK's current position, later events only")
            await in_daemon_thread(self.longpoll.update_longpoll_server, True)
            await self._save_ts(str(self.longpoll.ts))
        else:
            raise LongPollError(f"unknown long poll failure {failed!r}")

    async def _save_ts(self, ts: str) -> None:
        cursor = Cursor(CHANNEL, "ts", ts)
        if await ingest_until_stored("vk", lambda: self.context.ingest([], cursor),
                                     self.stopping) and self.longpoll is not None:
            self.longpoll.ts = ts

    @classmethod
    def survey_private(cls, target: dict[str, Any]) -> bool:
        """A private conversation, not a comment under a post or a group chat: the
        satisfaction survey goes there by default."""
        peer_id = target.get("peer_id")
        return target.get("type") == "message" and isinstance(peer_id, int) \
            and 0 < peer_id < CHAT_PEERS

    def read_payload(self, payload: Any) -> Inbound | None:
        """A long poll event as VK sent it (``Inbound.raw``) read again."""
        return self.to_inbound(payload)

    def to_inbound(self, raw: dict[str, Any]) -> Inbound | None:
        """A customer's message or comment as Inbound, or None (not for the inbox)."""
        kind, obj = raw["type"], raw["object"]
        if kind == "message_new":
            # Before Long Poll API 5.103 the object was the message itself.
            return self._from_message(raw, obj["message"] if "message" in obj else obj)
        if kind == "message_edit":  # its object is the message itself
            return self._from_message(raw, obj, edited=True)
        if kind in PLACES:
            return self._from_comment(raw, obj, PLACES[kind])
        if kind in EDITS:
            return self._from_comment(raw, obj, PLACES[EDITS[kind]], edited=True)
        return self.ignored(f"event:{kind}")

    def _from_message(self, raw: dict[str, Any], message: dict[str, Any],
                      edited: bool = False) -> Inbound | None:
        from_id, peer_id = int(message["from_id"]), int(message["peer_id"])
        if message.get("out") or from_id == -self.group_id:
            return self.ignored("own_message")
        if peer_id >= CHAT_PEERS and not self._addressed(message):
            return self.ignored("group_chatter")  # not mentioning or answering us
        message_id = int(message["id"])
        # In group chats VK gives communities id 0; the conversation id is unique per peer.
        external_id = (f"m{message_id}" if message_id
                       else f"c{peer_id}_{int(message['conversation_message_id'])}")
        return Inbound(
            channel=CHANNEL, external_id=external_id, thread_key=f"peer:{peer_id}",
            author_id=str(from_id), author_handle=_handle(from_id),
            text=_text(message), sent_at=_time(message["date"]),
            attachments=attachments_of(message),
            reply_target=VKTarget(type="message", peer_id=peer_id).model_dump(exclude_none=True),
            raw=raw, edited=edited)

    async def _named(self, batch: list[Inbound]) -> list[Inbound]:
        """The authors' names (VK events carry only ids), asked in one users.get and one
        groups.getById per batch and remembered; a failed lookup leaves the id."""
        wanted = {int(m.author_id) for m in batch} - self.names.keys()
        people = [i for i in wanted if i > 0][:NAMES_PER_CALL]
        communities = [-i for i in wanted if i < 0][:NAMES_PER_CALL]
        try:
            if people:
                for user in await self._call("users.get", {
                        "user_ids": ",".join(map(str, people))}):
                    full = " ".join(filter(None, (user.get("first_name"),
                                                  user.get("last_name"))))
                    self.names[int(user["id"])] = full or None
            if communities:
                answer = await self._call("groups.getById", {
                    "group_ids": ",".join(map(str, communities))})
                groups = answer.get("groups", []) if isinstance(answer, dict) else answer
                for group in groups:
                    self.names[-int(group["id"])] = group.get("name") or None
        except (DeliveryError, KeyError, TypeError, ValueError) as error:
            log.warning("vk: could not read the authors' names (%s); cards show ids", error)
        return [dataclasses.replace(m, author_name=self.names.get(int(m.author_id)))
                if self.names.get(int(m.author_id)) else m for m in batch]

    def _addressed(self, message: dict[str, Any]) -> bool:
        """In a group chat, as in a Telegram group: a mention of the community
        ("[club123|...]", VK's mention markup) or a reply to its message."""
        replied = message.get("reply_message")
        if isinstance(replied, dict) and replied.get("from_id") == -self.group_id:
            return True
        return f"[club{self.group_id}|" in str(message.get("text") or "")

    def _from_comment(self, raw: dict[str, Any], comment: dict[str, Any], place: Place,
                      edited: bool = False) -> Inbound | None:
        """A comment under a post, photo, video, market item or board topic: one thread
        per customer and object, answered in the same place."""
        from_id, comment_id = int(comment["from_id"]), int(comment["id"])
        if from_id == -self.group_id:
            return self.ignored("own_comment")  # our answers among them
        owner_id = int(comment.get(place.owner_field, comment.get("owner_id")))
        object_id = int(comment[place.id_field])
        where = f"{place.kind}:{owner_id}_{object_id}"
        return Inbound(
            channel=CHANNEL, external_id=f"{where}_{comment_id}",
            thread_key=f"{where}:{from_id}", author_id=str(from_id),
            author_handle=_handle(from_id), text=_text(comment), sent_at=_time(comment["date"]),
            attachments=attachments_of(comment),
            reply_target=VKTarget(type=place.kind, owner_id=owner_id, post_id=object_id,
                                  reply_to_comment=comment_id).model_dump(exclude_none=True),
            raw=raw, edited=edited)

    # --- sending -------------------------------------------------------------------------------

    def rate_keys(self, outbound: Outbound) -> list[tuple[str, str]]:
        return [("per_token", "community")]

    def send_cost(self, outbound: Outbound) -> int:
        # A file costs two calls more: the upload server, and saving the upload.
        extra = 2 if outbound.kind == OutboxKind.REPLY and outbound.target.get("file") else 0
        return max(1, len(split_text(outbound.text, MAX_TEXT))) + extra

    async def send_file(self, outbound: Outbound, file: OutgoingFile) -> Delivered:
        """Upload the file, then one messages.send with it (bots/vk/uploads.py)."""
        peer_id = self._conversation(outbound, "carry files (send a link instead)")
        attachment = await uploads.upload(self, peer_id, file)
        first_id: str | None = None
        for index, part in enumerate(split_text(outbound.text, MAX_TEXT) or [""]):
            values = {"peer_id": peer_id, "message": part,
                      "random_id": random_id(part_key(outbound.idempotency_key, index))}
            if index == 0:
                values["attachment"] = attachment
            response = await self._call("messages.send", values)
            try:
                first_id = first_id or str(int(response))
            except (TypeError, ValueError):
                raise DeliveryError(f"VK answered messages.send without an id: "
                                    f"{response!r:.200}") from None
        return Delivered(external_id=f"{first_id}/{attachment}")

    async def edit(self, outbound: Outbound) -> Delivered:
        peer_id = self._conversation(outbound, "be changed by sameday (change it on VK)")
        return Delivered(external_id=await uploads.edit(
            self, peer_id, outbound.target.get("answer") or {}, outbound.text))

    async def delete(self, outbound: Outbound) -> Delivered:
        peer_id = self._conversation(outbound, "be withdrawn by sameday (delete it on VK)")
        return Delivered(external_id=await uploads.delete(
            self, peer_id, outbound.target.get("answer") or {}))

    def _conversation(self, outbound: Outbound, what: str) -> int:
        address = self.reply_target(outbound)
        if address.type != "message" or address.peer_id is None:
            raise DeliveryError(f"this VK answer is a comment under a {address.type}, which "
                                f"cannot {what}", permanent=True)
        return address.peer_id

    async def send(self, outbound: Outbound) -> Delivered:
        address = self.reply_target(outbound)
        first_id: str | None = None
        # A survey's question in a conversation has buttons (bots/vk/survey.py).
        text, keyboard = survey_message(outbound, address.type == "message")
        parts = split_text(text, MAX_TEXT)
        for index, part in enumerate(parts):
            key = part_key(outbound.idempotency_key, index)
            sent_id = await self._send_part(address, part, key,
                                            keyboard if index == len(parts) - 1 else None)
            first_id = first_id or sent_id
        if first_id is None:
            raise DeliveryError("empty text: nothing to send", permanent=True)
        return Delivered(external_id=first_id)

    async def _send_part(self, address: VKTarget, text: str, key: str,
                         keyboard: str | None = None) -> str:
        if address.type == "message":
            method = "messages.send"
            values = {"peer_id": address.peer_id, "message": text, "random_id": random_id(key)}
            if keyboard:
                values["keyboard"] = keyboard
        else:
            place = BY_KIND[address.type]
            method = place.method
            values = answer_values(place, address.owner_id, address.post_id, self.group_id,
                                   text, key, address.reply_to_comment)
        response = await self._call(method, values)
        try:
            # wall.createComment answers {"comment_id": N}; the others the id itself.
            return str(int(response["comment_id"] if isinstance(response, dict)
                           else response))
        except (KeyError, TypeError, ValueError):
            raise DeliveryError(f"VK answered {method} without an id: {response!r:.200}"
                                ) from None

    async def _call(self, method: str, values: dict[str, Any]) -> Any:
        try:
            return await asyncio.to_thread(self.vk.method, method, values)
        except ApiError as error:
            raise api_delivery_error(error.code, error.error.get("error_msg", "")) from error
        except Captcha as error:
            raise DeliveryError("VK asks for a captcha (too many messages); waiting",
                                retry_after=60) from error
        except ApiHttpError as error:
            raise DeliveryError(f"VK answered HTTP {error.response.status_code}") from error
        except (requests.RequestException, VkApiError) as error:
            raise DeliveryError(f"network error talking to VK: {_describe(error)}") from error
        except (KeyError, ValueError) as error:
            # Not JSON (ValueError), or JSON with neither "response" nor "error".
            raise DeliveryError(f"VK gave an unreadable answer ({_describe(error)})") from error


# --- pure helpers ----------------------------------------------------------------------------

CHAT_PEERS = 2_000_000_000  # peer ids of group chats start here
NAMES_PER_CALL = 1000  # users.get and groups.getById take up to 1000 ids
EVENTS_READ = ("message_new", "message_edit", "wall_reply_new")  # needed: a problem if off
COMMENT_EVENTS = tuple(kind for kind in (*PLACES, *EDITS) if kind != "wall_reply_new")


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (0,)


def random_id(key: str) -> int:
    """A stable positive 31-bit random_id for an idempotency key (0 would turn VK's
    deduplication off)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF or 1


def part_key(key: str, index: int) -> str:
    """The idempotency key of one part of a split message (the first keeps the key)."""
    return key if index == 0 else f"{key}#{index + 1}"


def _text(item: dict[str, Any]) -> str:
    """What the customer wrote (attachments and forwards are read apart)."""
    text = item["text"]
    if not isinstance(text, str):
        raise TypeError("text is not a string")
    return text


def _event_key(payload: Any) -> str | None:
    event_id = payload.get("event_id") if isinstance(payload, dict) else None
    return f"event:{event_id}" if isinstance(event_id, str) and event_id else None


def _handle(from_id: int) -> str:
    # vk.com/id123 for people, vk.com/club123 for communities (negative ids).
    return f"id{from_id}" if from_id > 0 else f"club{-from_id}"


def _time(timestamp: Any) -> datetime:
    return datetime.fromtimestamp(int(timestamp), UTC)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:200]}"
