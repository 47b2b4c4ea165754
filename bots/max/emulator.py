"""A loopback MAX Bot API server: the subset the MAX adapter (the ``maxapi`` client) uses.

Sources:

* [S1] the official OpenAPI description, ``schema.yaml`` 0.0.30 in
  github.com/max-messenger/max-bot-api-client-go (branch v2, commit 8d51dbbb7db4, 2026-05-18);
  its ``servers`` (botapi.max.ru) and query ``access_token`` are out of date, see S2, S3;
* [S2] dev.max.ru/docs-api (GET /updates, POST /messages, POST /uploads, GET /me), read
  through the copies maxo 0.10.0 keeps of its texts;
* [S3] the official clients: max-bot-api-client-go v2 ``const.go`` (header
  ``Authorization``), max-bot-api-client-ts ``client.ts`` (host platform-api2.max.ru);
* recorded real payloads in tests/fixtures/real/max (sources in SOURCES.md there).

Endpoints (JSON bodies, UTF-8; every time is Unix milliseconds):

    GET    /me                          the bot (BotInfo)
    GET    /updates                     ?limit=&timeout=&marker=&types=a,b (long poll)
    POST   /messages                    ?user_id= | ?chat_id=, &disable_link_preview;
                                        NewMessageBody -> {"message": Message}
    PUT    /messages?message_id=        edit: NewMessageBody -> {"success": true}
    DELETE /messages?message_id=        -> {"success": true}
    GET    /messages                    ?chat_id=&count=|message_ids=a,b -> {"messages"}
    GET    /messages/{mid}              -> Message
    POST   /answers?callback_id=        {"message"?, "notification"?} -> {"success": true}
    POST   /uploads?type=image|video|audio|file -> {"url"} (+ "token" for video/audio)
    POST   /_upload/{slot}              the upload server: multipart field ``data``

Auth [S2, S3]: header ``Authorization: <token>``, no "Bearer". A query ``access_token``
gets 403 ``deprecated.token`` (the reply seen live in max-bot-api-client-ts#242); a
missing or wrong token 401 ``verify.token`` (Go client stabs/error.invalid-token.json).
Errors are ``{"code": "<key>", "message": "<text>"}`` [S1].

Long polling [S1, S2]: each update gets the next number of one sequence; the response's
``marker`` points to the next upcoming update, and a call with marker M confirms every
update before M for good. Without a marker the *current* docs apply [S2]: «Если параметр
marker не передан или передано значение null, вы получите только последнее обновление»:
the newest unconfirmed update alone (the older schema promised everything since the last
commit; an adapter must always pass its stored marker). At most 100 updates a batch and
``timeout`` 0..90 s (default 30); ``types`` filters (comma-separated, also accepted as
repeated parameters), and updates of other types that a batch passes over are confirmed
with it. Updates are returned exactly as injected: ``inject_update`` takes a recorded real
update unchanged.

Messages [S1 + recordings]: ``body.mid`` is "mid." + the chat id as 16 hex digits (two's
complement) + ``seq`` as 16 hex digits, and ``seq`` is the millisecond time shifted left
16 bits plus a counter: both hold for every recorded message (P1 "mid.0000000008a53b9b
019c44bd612d33e0", seq 116043270574650336 = 1770679787821 << 16 | 0x33e0; P5's group mid
starts ffffbdb4..., a negative chat id). A dialog's recipient names the chat and the
receiving user (``user_id``: the bot for a customer's message, the customer for the
bot's); a group chat's names the chat only (P5, chat ids negative). ``text`` at most 4000
characters (the schema's ``maxLength: 4000``, counted in code points as JSON Schema does;
maxapi itself refuses 4000 and more); longer is a 400. Audio, file, sticker and contact
must be the only attachment [S1]. A file, video or audio sent without a ``token`` is
refused with the message MAX answered live (love-apples/maxapi PR #21,
max-bot-api-client-ts#289), which names a video whatever the type.

Uploads [S2 POST /uploads]: the URL takes one multipart file in the field ``data``; an
image answers ``{"photos": {"<id>": {"token"}}}``, a file ``{"fileId", "token"}``, video
and audio ``<retval>1</retval>`` (Go client stabs/upload.video.response.xml) with their
token given by /uploads beforehand. A send attaches ``{"type", "payload": {"token"}}``
(images also ``{"photos"}`` or ``{"url"}``); an unknown token is a 400.

Rate limits [S2]: 30 requests/s per bot in all; 2 sends, edits, deletes or callback
answers per second into one dialog or chat. Over a limit: a violation, and with
``enforce_limits`` 429 ``too.many.requests`` (the key is not documented; no
``Retry-After``, which MAX does not document either). Long polling at most 2 requests/s
comes only from MAX's notice of 11 May 2026 as maxapi's GetUpdates docstring quotes it:
counted in ``fast_polls`` always, a violation (and 429) only with ``poll_limit=True``.

A user who blocked the bot: sends to them get 403 ``chat.denied`` "Key:
error.dialog.suspended, args: [<user_id>,]." (a MAX 403 as a third-party MAX connector's
tests mock it; the documented part is only "403: the user blocked or stopped the bot").
Other codes not documented and chosen here: 404 ``not.found`` for an unknown message id,
400 ``proto.payload`` for a malformed body (the key MAX answered live in maxapi PR #21).
A send whose ``link`` names a message the emulator never saw is not refused (MAX's answer
is not documented): it goes without the link, the mid listed in ``unknown_link_mids``.

Faults (method names "me", "updates", "messages" (send), "messages.edit",
"messages.delete", "messages.get", "messages.list", "answers", "uploads", "upload" (the
upload server)): the base kinds, plus "429", "503", "403" (chat.denied),
"attachment.not.ready" (400, as dev.max.ru words it) and "missing_fields": on "updates"
an update lacking a field is queued (``lacking="sender"``, the default: a message without
``sender``; ``lacking="message"``: a message_created without ``message``), elsewhere an
empty ``{}`` is answered.

Control (Python, or ``POST /_control/inject`` with ``kind`` = message, edit, bot_started,
callback, voice_without_message, update): ``inject_message``, ``inject_edit``,
``inject_bot_started``, ``inject_callback``, ``inject_update``,
``inject_voice_without_message``, the ``*_attachment`` helpers (received shapes as [S1]
gives them; the image's as recorded), ``block``, ``sent``, ``sent_to``, ``edits``,
``deletions``, ``callback_answers``, ``uploads``, ``violations``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from bots.common.emulator import Emulator, Fault, SlidingWindow

MAX_TEXT = 4000  # NewMessageBody.text maxLength [S1]
MAX_BATCH = 100  # updates per GET /updates (MAX's notice of 11 May 2026)
MAX_TIMEOUT = 90  # GET /updates timeout, seconds [S1]
DEFAULT_TIMEOUT = 30
MASK64 = (1 << 64) - 1
UPLOAD_TYPES = ("image", "video", "audio", "file")
ALONE = ("audio", "file", "sticker", "contact")  # "MUST be the only attachment" [S1]
FORMATS = ("markdown", "html")
# The video/audio upload server's reply (Go client stabs/upload.video.response.xml).
RETVAL = '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<retval>1</retval>'
# What MAX answered live for a file/video/audio without a token (maxapi PR #21; the same
# for a file sent by url, max-bot-api-client-ts#289): it names a video whatever the type.
MISSING_TOKEN = "Missing `token` in video attachment"
NOT_READY = "Key: errors.process.attachment.file.not.processed"  # dev.max.ru POST /uploads
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06"
       b"\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00"
       b"\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(300)
DIALOG_CHATS_FROM = 145_046_427  # dialog chat ids: a counter (P1's mid holds one: 0x8a53b9b)

Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.Response]]


@dataclass
class Queued:
    """An update and its number in the long poll sequence."""

    number: int
    update: dict[str, Any]


class MaxEmulator(Emulator):
    name = "max"

    def __init__(self, *, token: str | None = None, enforce_limits: bool = True,
                 bot_id: int = 7_000_000_200, bot_username: str = "sameday_bot",
                 bot_name: str = "Sameday", poll_limit: bool = False):
        super().__init__()
        self.token = token  # None accepts any token (still required in the header)
        self.enforce_limits = enforce_limits
        self.poll_limit = poll_limit
        self.fast_polls = 0  # GET /updates calls beyond 2 a second
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_name = bot_name
        self.queue: list[Queued] = []
        self.confirmed = 1  # every update numbered below this was confirmed by a marker
        self.markers: list[int | None] = []  # the markers GET /updates was called with
        self._next_number = 1
        self._changed = asyncio.Event()
        # Messages by mid: customers' (injected) and the bot's; each {"message": Message,
        # "chat_id", "from_bot", "sent": the sent item (the bot's)}.
        self.messages: dict[str, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.dialogs: dict[int, int] = {}  # user id -> dialog chat id
        self._dialog_users: dict[int, int] = {}  # dialog chat id -> user id
        self.group_chats: set[int] = set()
        self.blocked: set[int] = set()
        self.callbacks: dict[str, int] = {}  # callback_id -> chat id (for the 2/s limit)
        self.edits: list[dict[str, Any]] = []
        self.deletions: list[dict[str, Any]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.unknown_link_mids: list[str] = []  # sends linking to a message never seen
        self.voice_without_message: list[int] = []  # users whose voice came without message
        # Uploads: slot -> {"type", "token"?, "used"}; token -> the file.
        self.upload_slots: dict[str, dict[str, Any]] = {}
        self.uploaded: dict[str, dict[str, Any]] = {}
        self.uploads: list[dict[str, Any]] = []  # every file uploaded: type, name, content
        self.per_bot = SlidingWindow(30, 1.0)
        self.per_chat = SlidingWindow(2, 1.0)
        self.polls = SlidingWindow(2, 1.0)
        self._counter = 0
        self._next_dialog = DIALOG_CHATS_FROM
        self._next_id = 4_484_450_835  # photo ids, file ids (P2's photo_id)
        api = self._api
        self.app.add_routes([
            web.get("/me", api("me", self._m_me)),
            web.get("/updates", api("updates", self._m_updates)),
            web.post("/messages", api("messages", self._m_send)),
            web.put("/messages", api("messages.edit", self._m_edit)),
            web.delete("/messages", api("messages.delete", self._m_delete)),
            web.get("/messages", api("messages.list", self._m_list_messages)),
            web.get("/messages/{mid}", api("messages.get", self._m_get_message)),
            web.post("/answers", api("answers", self._m_answer)),
            web.post("/uploads", api("uploads", self._m_upload_url)),
            web.post("/_upload/{slot}", self._upload),
        ])

    async def stop(self) -> None:
        self._changed.set()  # release held long polls, or shutdown waits for each
        await super().stop()

    # --- who is who ------------------------------------------------------------------------

    def bot_user(self) -> dict[str, Any]:
        """The bot as a message's sender (P2's bot sender: no last_name)."""
        return {"user_id": self.bot_id, "first_name": self.bot_name,
                "username": self.bot_username, "is_bot": True,
                "last_activity_time": self._ms(), "name": self.bot_name}

    def user(self, user_id: int, name: tuple[str, str] | None = None) -> dict[str, Any]:
        """A customer as MAX shows them (P1's sender; ``name`` is first and last name)."""
        known = self.users.get(user_id)
        if known is None or name is not None:
            first, last = name or ("Имя", "Фамилия")
            known = {"user_id": user_id, "first_name": first, "last_name": last,
                     "is_bot": False, "last_activity_time": 0,
                     "name": " ".join(part for part in (first, last) if part)}
            self.users[user_id] = known
        # Seen a moment ago, in whole seconds (P1: 1770679783000 for a message at ...787821).
        return dict(known, last_activity_time=self._ms() // 1000 * 1000)

    def dialog_chat(self, user_id: int, chat_id: int | None = None) -> int:
        """The chat id of the bot's dialog with this user."""
        if user_id not in self.dialogs:
            if chat_id is None:
                chat_id = self._next_dialog
                self._next_dialog += 1
            self.dialogs[user_id] = chat_id
            self._dialog_users[chat_id] = user_id
        return self.dialogs[user_id]

    # --- what tests and the demo inject ----------------------------------------------------

    def inject_message(self, user_id: int, text: str | None = None, *,
                       chat_id: int | None = None, chat_type: str = "dialog",
                       name: tuple[str, str] = ("Имя", "Фамилия"),
                       attachments: list[dict[str, Any]] | None = None,
                       reply_to_mid: str | None = None,
                       mention_bot: bool = False) -> dict[str, Any]:
        """A customer writes: a message_created update; returns its Message. A dialog by
        default (shaped like P1), or in a group chat (``chat_type="chat"``, a negative
        ``chat_id``, shaped like P5). ``mention_bot``: the text starts "@<bot username>"
        with a user_mention markup for it; ``reply_to_mid``: a reply to that message."""
        if chat_type == "chat":
            if chat_id is None or chat_id >= 0:
                raise ValueError("a group chat needs its (negative) chat_id")
            self.group_chats.add(chat_id)
            recipient: dict[str, Any] = {"chat_id": chat_id, "chat_type": "chat"}
        elif chat_type == "dialog":
            chat_id = self.dialog_chat(user_id, chat_id)
            recipient = {"chat_id": chat_id, "chat_type": "dialog", "user_id": self.bot_id}
        else:
            raise ValueError(f"chat_type {chat_type!r}: dialog or chat")
        markup = None
        if mention_bot:
            handle = f"@{self.bot_username}"
            text = f"{handle} {text}" if text else handle
            # UserMentionMarkup [S1]: user_link is the "@username" of a user who has one.
            markup = [{"from": 0, "length": len(handle), "type": "user_mention",
                       "user_link": handle}]
        body = self._body(chat_id, text or "", attachments, markup)
        message: dict[str, Any] = {"recipient": recipient, "timestamp": self._ms(),
                                   "body": body, "sender": self.user(user_id, name)}
        if reply_to_mid is not None:
            message["link"] = self._link(reply_to_mid)
        update: dict[str, Any] = {"timestamp": message["timestamp"], "message": message}
        if chat_type == "dialog":
            update["user_locale"] = "ru"  # sent in dialogs only (P1 has it, P5 not)
        update["update_type"] = "message_created"
        self.inject_update(update)
        return message

    def inject_edit(self, mid: str, text: str) -> dict[str, Any]:
        """The customer edits a message: a message_edited update (P6: the message with the
        new text and its original timestamp); returns the edited Message."""
        stored = self.messages[mid]
        message = json.loads(json.dumps(stored["message"]))
        message["body"]["text"] = text
        if isinstance(message.get("sender"), dict):
            message["sender"]["last_activity_time"] = self._ms() // 1000 * 1000
        self.inject_update({"message": message, "timestamp": self._ms(),
                            "update_type": "message_edited"})
        return message

    def inject_bot_started(self, user_id: int, payload: str | None = None, *,
                           name: tuple[str, str] | None = None) -> dict[str, Any]:
        """The user presses Start (a deep link's ``payload``): a bot_started update shaped
        like P7; returns the update."""
        update: dict[str, Any] = {"timestamp": self._ms(),
                                  "chat_id": self.dialog_chat(user_id),
                                  "user": self.user(user_id, name)}
        if payload is not None:
            update["payload"] = payload
        update |= {"user_locale": "ru", "user_id": user_id, "update_type": "bot_started"}
        return self.inject_update(update)

    def inject_callback(self, user_id: int, payload: str, *, mid: str | None = None
                        ) -> dict[str, Any]:
        """The user presses a callback button under the bot's message ``mid`` (by default
        the bot's latest message to them with a keyboard): a message_callback update
        shaped like P2; returns the update (``["callback"]["callback_id"]``)."""
        if mid is None:
            mid = next((m for m, stored in reversed(self.messages.items())
                        if stored["from_bot"] and stored.get("user_id") == user_id
                        and _keyboard(stored["message"])), None)
            if mid is None:
                raise ValueError(f"the bot sent {user_id} no message with a keyboard")
        stored = self.messages[mid]
        callback_id = base64.urlsafe_b64encode(hashlib.sha256(
            f"{mid}:{self._next_number}".encode()).digest() * 3).decode().rstrip("=")
        now = self._ms()
        return self.inject_update({
            "callback": {"timestamp": now, "callback_id": callback_id,
                         "user": self.user(user_id), "payload": payload},
            "message": stored["message"], "timestamp": now, "user_locale": "ru",
            "update_type": "message_callback"})

    def inject_voice_without_message(self, user_id: int) -> dict[str, Any]:
        """A voice message to the bot as MAX delivers it now: a message_created without
        ``message``, naming nobody (P10, love-apples/maxapi#193); returns the update."""
        self.voice_without_message.append(user_id)
        return self.inject_update({"timestamp": self._ms(), "user_locale": "ru",
                                   "update_type": "message_created"})

    def inject_update(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Any update, exactly as given (a recorded real one, or a malformed one), as the
        next in the sequence; the messages and callbacks it carries become known."""
        update = json.loads(json.dumps(raw))  # the caller's later changes do not leak in
        self.queue.append(Queued(self._next_number, update))
        self._next_number += 1
        message = update.get("message")
        chat_id = None
        if isinstance(message, dict):
            sender = message.get("sender") if isinstance(message.get("sender"), dict) else {}
            self._remember(message, from_bot=bool(sender.get("is_bot")))
            chat_id = (message.get("recipient") or {}).get("chat_id")
        callback = update.get("callback")
        if isinstance(callback, dict) and "callback_id" in callback:
            self.callbacks[str(callback["callback_id"])] = chat_id
        user = update.get("user")
        if update.get("update_type") == "bot_started" and isinstance(user, dict) \
                and isinstance(user.get("user_id"), int):
            self.dialog_chat(user.get("user_id"), update.get("chat_id"))
        self._changed.set()
        self._changed = asyncio.Event()
        return update

    def inject_payload(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        if "update" in body:
            return self.inject_update(body["update"])
        kind = body.pop("kind", "message")
        if kind == "message":
            if "name" in body:
                body["name"] = tuple(body["name"])
            return self.inject_message(**body)
        if kind == "edit":
            return self.inject_edit(str(body["mid"]), str(body["text"]))
        if kind == "bot_started":
            return self.inject_bot_started(int(body["user_id"]), body.get("payload"))
        if kind == "callback":
            return self.inject_callback(int(body["user_id"]), str(body["payload"]),
                                        mid=body.get("mid"))
        if kind == "voice_without_message":
            return self.inject_voice_without_message(int(body["user_id"]))
        raise web.HTTPBadRequest(text=f"unknown kind {kind!r}; allowed: message, edit, "
                                      "bot_started, callback, voice_without_message, update")

    # --- attachments a customer sends (received shapes as [S1] gives them) ---------------------

    def image_attachment(self, content: bytes = JPEG, name: str = "photo.jpg",
                         content_type: str = "image/jpeg") -> dict[str, Any]:
        """{"type": "image", "payload": {"photo_id", "token", "url"}} (P2's image)."""
        photo_id = self._id()
        return {"payload": {"photo_id": photo_id, "token": _token(content, photo_id),
                            "url": self._host(f"i{photo_id}", name, content, content_type)},
                "type": "image"}

    def file_attachment(self, content: bytes, filename: str,
                        content_type: str = "application/octet-stream") -> dict[str, Any]:
        file_id = self._id()
        return {"type": "file",
                "payload": {"url": self._host(f"f{file_id}", filename, content, content_type),
                            "token": _token(content, file_id)},
                "filename": filename, "size": len(content)}

    def video_attachment(self, content: bytes, name: str = "video.mp4",
                         content_type: str = "video/mp4", *, width: int = 720,
                         height: int = 1280, duration: int = 5) -> dict[str, Any]:
        video_id = self._id()
        return {"type": "video",
                "payload": {"url": self._host(f"v{video_id}", name, content, content_type),
                            "token": _token(content, video_id)},
                "thumbnail": {"url": self._host(f"t{video_id}", "thumb.jpg", JPEG,
                                                "image/jpeg")},
                "width": width, "height": height, "duration": duration}

    def audio_attachment(self, content: bytes, name: str = "audio.m4a",
                         content_type: str = "audio/mp4",
                         transcription: str | None = None) -> dict[str, Any]:
        audio_id = self._id()
        attachment: dict[str, Any] = {
            "type": "audio",
            "payload": {"url": self._host(f"a{audio_id}", name, content, content_type),
                        "token": _token(content, audio_id)}}
        if transcription is not None:
            attachment["transcription"] = transcription
        return attachment

    def sticker_attachment(self, code: str = "c1453bbb", content: bytes = PNG
                           ) -> dict[str, Any]:
        """A sticker: its picture at the URL (MAX's form: i.oneme.ru/getSmile?smileId=...)."""
        url = self._host(f"s{code}", "sticker.png", content, "image/png")
        return {"type": "sticker", "payload": {"url": url, "code": code},
                "width": 512, "height": 512}

    @staticmethod
    def location_attachment(latitude: float, longitude: float) -> dict[str, Any]:
        return {"type": "location", "latitude": latitude, "longitude": longitude}

    @staticmethod
    def contact_attachment(name: str, phone: str, max_user: dict[str, Any] | None = None
                           ) -> dict[str, Any]:
        """A contact card: its vCard as MAX sends it (maxapi's tests: "BEGIN:VCARD\\r\\n
        VERSION:3.0\\r\\nPRODID:ez-vcard 0.10.3\\r\\nTEL;TYPE=cell:...\\r\\nFN:...")."""
        vcf = (f"BEGIN:VCARD\r\nVERSION:3.0\r\nPRODID:ez-vcard 0.10.3\r\n"
               f"TEL;TYPE=cell:{phone}\r\nFN:{name}\r\nEND:VCARD\r\n")
        return {"type": "contact", "payload": {"vcf_info": vcf, "max_info": max_user}}

    def share_attachment(self, url: str, title: str | None = None,
                         description: str | None = None) -> dict[str, Any]:
        return {"type": "share",
                "payload": {"url": url, "token": _token(url.encode(), self._id())},
                "title": title, "description": description, "image_url": None}

    # --- what the bot did --------------------------------------------------------------------

    def block(self, user_id: int) -> None:
        """The user blocked (or stopped) the bot: sends to them get 403."""
        self.blocked.add(user_id)

    def sent_to(self, user_or_chat_id: int) -> list[dict[str, Any]]:
        return [item for item in self.sent if user_or_chat_id in
                (item.get("user_id"), item.get("chat_id"))]

    @property
    def updates(self) -> list[dict[str, Any]]:
        """Every update injected so far, confirmed or not."""
        return [queued.update for queued in self.queue]

    def pending_updates(self) -> list[dict[str, Any]]:
        return [q.update for q in self.queue if q.number >= self.confirmed]

    def stats(self) -> dict[str, Any]:
        return super().stats() | {"pending_updates": len(self.pending_updates()),
                                  "fast_polls": self.fast_polls,
                                  "next_marker": self._next_number}

    # --- the API ------------------------------------------------------------------------------

    def _api(self, method: str, handler: Handler
             ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        return partial(self._serve, method, handler)

    async def _serve(self, method: str, handler: Handler, request: web.Request
                     ) -> web.StreamResponse:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        if self.per_bot.hit("bot"):
            self.violation("30 requests/s per bot", method=method)
            if self.enforce_limits:
                return _too_many()
        faulty = await self.apply_fault(method, request)
        if faulty is not None:
            return faulty
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                parsed = json.loads(await request.text() or "{}")
            except ValueError:
                return _error(400, "proto.payload", "Invalid JSON in the request body")
            if not isinstance(parsed, dict):
                return _error(400, "proto.payload", "The request body must be an object")
            body = parsed
        try:
            response = await handler(request, body)
        except BadRequest as problem:
            response = _error(400, "proto.payload", str(problem))
        return self.answer(request, response)

    def _refuse(self, request: web.Request) -> web.Response | None:
        if "access_token" in request.query:
            return _error(403, "deprecated.token",
                          "Query parameter access_token is deprecated, use Authorization header")
        token = request.headers.get("Authorization", "")
        if not token or token.lower().startswith("bearer ") or (
                self.token is not None and token != self.token):
            return _error(401, "verify.token", "Invalid access_token")
        return None

    def platform_fault(self, method: str, fault: Fault) -> web.Response | None:
        if fault.kind == "429":
            return _too_many()
        if fault.kind == "503":
            return _error(503, "service.unavailable", "Service temporarily unavailable")
        if fault.kind == "403":
            return _error(403, "chat.denied", "Key: error.dialog.suspended, args: [0,].")
        if fault.kind == "attachment.not.ready":
            return _error(400, "attachment.not.ready", NOT_READY)
        if fault.kind == "missing_fields":
            if method != "updates":
                return web.json_response({})
            if fault.extra.get("lacking", "sender") == "message":
                self.inject_update({"timestamp": self._ms(), "update_type": "message_created"})
            else:
                message = {"recipient": {"chat_id": self.dialog_chat(0), "chat_type": "dialog",
                                         "user_id": self.bot_id}, "timestamp": self._ms(),
                           "body": self._body(self.dialog_chat(0), "no sender", None, None)}
                self.inject_update({"timestamp": self._ms(), "message": message,
                                    "user_locale": "ru", "update_type": "message_created"})
            return None  # answered normally, carrying it
        return None

    async def _m_me(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        """BotInfo (P3's fields, without avatars and commands, which this bot has none of)."""
        return _json({"user_id": self.bot_id, "first_name": self.bot_name,
                      "username": self.bot_username, "is_bot": True,
                      "last_activity_time": self._ms(),
                      "description": "Служба поддержки", "name": self.bot_name})

    async def _m_updates(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        query = request.query
        limit = min(max(_int(query.get("limit"), 100), 1), MAX_BATCH)
        timeout = min(max(_int(query.get("timeout"), DEFAULT_TIMEOUT), 0), MAX_TIMEOUT)
        marker = _int(query.get("marker"), None) if query.get("marker") not in (
            None, "", "null") else None
        types = {t for value in query.getall("types", []) for t in value.split(",") if t}
        self.markers.append(marker)
        if self.polls.hit("updates"):
            self.fast_polls += 1
            if self.poll_limit:
                self.violation("long polling 2 requests/s", method="updates")
                if self.enforce_limits:
                    return _too_many()
        if marker is not None and marker > self.confirmed:
            self.confirmed = marker  # MAX forgets confirmed updates for good
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            changed = self._changed
            batch, next_marker = self._batch(marker, limit, types)
            remaining = deadline - asyncio.get_running_loop().time()
            if batch or remaining <= 0:
                return _json({"updates": batch, "marker": next_marker})
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass

    def _batch(self, marker: int | None, limit: int, types: set[str]
               ) -> tuple[list[dict[str, Any]], int]:
        """The updates a poll returns now and the marker that follows them."""
        start = self.confirmed if marker is None else max(marker, self.confirmed)
        pending = [q for q in self.queue if q.number >= start]
        wanted = [q for q in pending if not types or q.update.get("update_type") in types]
        if marker is None:  # the current docs: only the latest update
            if not wanted:
                return [], self._next_number
            return [wanted[-1].update], wanted[-1].number + 1
        wanted_numbers = {q.number for q in wanted}
        batch: list[dict[str, Any]] = []
        position = marker
        for queued in pending:
            if len(batch) == limit:
                break
            position = queued.number + 1  # passed over: confirmed with the batch
            if queued.number in wanted_numbers:
                batch.append(queued.update)
        return batch, position

    async def _m_send(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        query = request.query
        user_id = _int(query.get("user_id"), None)
        chat_id = _int(query.get("chat_id"), None)
        if chat_id is not None:  # maxapi sends chat_id when given both
            if chat_id not in self._dialog_users and chat_id not in self.group_chats:
                return _error(404, "not.found", f"Chat {chat_id} not found")
            chat_type = "dialog" if chat_id in self._dialog_users else "chat"
            user_id = self._dialog_users.get(chat_id)
        elif user_id is not None:  # a dialog: one is opened for a user never seen
            chat_id, chat_type = self.dialog_chat(user_id), "dialog"
        else:
            raise BadRequest("user_id or chat_id is required")
        new = self._new_body(body)
        if not new["text"] and not new["attachments"]:
            raise BadRequest("Message text or attachments are required")
        if user_id is not None and user_id in self.blocked:
            return _error(403, "chat.denied",
                          f"Key: error.dialog.suspended, args: [{user_id},].")
        limited = self._over_chat_limit(chat_id, "messages")
        if limited is not None:
            return limited
        received, files = self._attach(new["attachments"])
        recipient: dict[str, Any] = {"chat_id": chat_id, "chat_type": chat_type}
        if chat_type == "dialog":
            recipient["user_id"] = user_id
        message: dict[str, Any] = {
            "recipient": recipient, "timestamp": self._ms(),
            "body": self._body(chat_id, new["text"] or "", received, None),
            "sender": self.bot_user()}
        if new["link"] is not None:
            if new["link"]["mid"] in self.messages:
                message["link"] = self._link(new["link"]["mid"], new["link"]["type"])
            else:  # MAX's answer to this is not documented: sent without the link
                self.unknown_link_mids.append(new["link"]["mid"])
        mid = message["body"]["mid"]
        item = {"method": "messages.send",
                "addressed_by": "chat_id" if query.get("chat_id") else "user_id",
                "user_id": user_id, "chat_id": chat_id, "chat_type": chat_type,
                "text": new["text"], "format": new["format"], "notify": new["notify"],
                "disable_link_preview": _flag(query.get("disable_link_preview")),
                "link": new["link"], "attachments": new["attachments"] or [],
                "files": files, "mid": mid, "message": message}
        self._remember(message, from_bot=True, sent=item, user_id=user_id)
        self.record_sent(item)
        return _json({"message": message})

    async def _m_edit(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        """NewMessageBody: ``text`` null keeps the text, "" removes it; ``attachments``
        null keeps them, [] removes them all, a list replaces them [S1]."""
        stored = self._stored(request.query.get("message_id"))
        if isinstance(stored, web.Response):
            return stored
        if not stored["from_bot"]:
            return _error(403, "chat.denied", "The bot can edit only its own messages")
        new = self._new_body(body)
        limited = self._over_chat_limit(stored["chat_id"], "messages.edit")
        if limited is not None:
            return limited
        message_body = stored["message"]["body"]
        sent = stored["sent"] if stored["sent"] is not None else {}  # None: injected raw
        if new["text"] is not None:
            message_body["text"] = new["text"]
            sent["text"] = new["text"]
        if new["attachments"] is not None:
            received, files = self._attach(new["attachments"])
            message_body.pop("attachments", None)
            if received:
                message_body["attachments"] = received
            sent["attachments"], sent["files"] = new["attachments"], files
        sent["edited"] = True
        self.edits.append({"mid": message_body["mid"], "chat_id": stored["chat_id"],
                           "text": message_body["text"],
                           "attachments": message_body.get("attachments", []),
                           "request": body})
        return _json({"success": True})

    async def _m_delete(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        """In a dialog the bot deletes only its own messages; in a group chat others' too
        (as an administrator) [S2]."""
        stored = self._stored(request.query.get("message_id"))
        if isinstance(stored, web.Response):
            return stored
        if not stored["from_bot"] and stored["chat_id"] not in self.group_chats:
            return _error(403, "chat.denied", "The bot can delete only its own messages")
        limited = self._over_chat_limit(stored["chat_id"], "messages.delete")
        if limited is not None:
            return limited
        mid = stored["message"]["body"]["mid"]
        del self.messages[mid]
        if stored.get("sent") is not None:
            stored["sent"]["deleted"] = True
        self.deletions.append({"mid": mid, "chat_id": stored["chat_id"],
                               "message": stored["message"]})
        return _json({"success": True})

    async def _m_list_messages(self, request: web.Request, body: dict[str, Any]
                               ) -> web.Response:
        """A chat's messages, the latest first [S1 getMessages]: ``chat_id`` with ``count``
        (1..100, default 50) and ``from``/``to`` times (to < from), or ``message_ids``."""
        query = request.query
        chat_id = _int(query.get("chat_id"), None)
        ids = {i for value in query.getall("message_ids", []) for i in value.split(",") if i}
        if chat_id is None and not ids:
            raise BadRequest("chat_id or message_ids is required")
        count = min(max(_int(query.get("count"), 50), 1), 100)
        newest, oldest = _int(query.get("from"), None), _int(query.get("to"), None)
        found = []
        for mid, stored in reversed(self.messages.items()):
            when = stored["message"].get("timestamp") or 0
            if (ids and mid not in ids) or (chat_id is not None and stored["chat_id"] != chat_id) \
                    or (newest is not None and when > newest) \
                    or (oldest is not None and when < oldest):
                continue
            found.append(stored["message"])
            if len(found) == count:
                break
        return _json({"messages": found})

    async def _m_get_message(self, request: web.Request, body: dict[str, Any]
                             ) -> web.Response:
        stored = self._stored(request.match_info["mid"])
        return stored if isinstance(stored, web.Response) else _json(stored["message"])

    async def _m_answer(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        """CallbackAnswer [S1]: a new ``message`` for the one with the keyboard and/or a
        one-time ``notification``."""
        callback_id = request.query.get("callback_id", "")
        if not callback_id.strip():
            raise BadRequest("callback_id is required")
        if callback_id not in self.callbacks:
            return _error(404, "not.found", "Callback not found")
        if body.get("message") is None and not body.get("notification"):
            raise BadRequest("message or notification is required")
        limited = self._over_chat_limit(self.callbacks[callback_id], "answers")
        if limited is not None:
            return limited
        self.callback_answers.append({"callback_id": callback_id,
                                      "chat_id": self.callbacks[callback_id],
                                      "notification": body.get("notification"),
                                      "message": body.get("message")})
        return _json({"success": True})

    async def _m_upload_url(self, request: web.Request, body: dict[str, Any]
                            ) -> web.Response:
        kind = request.query.get("type", "")
        if kind not in UPLOAD_TYPES:
            raise BadRequest(f"type: one of {', '.join(UPLOAD_TYPES)}")
        slot = hashlib.sha1(f"slot{len(self.upload_slots)}".encode()).hexdigest()[:20]
        self.upload_slots[slot] = {"type": kind, "used": False}
        answer: dict[str, Any] = {"url": f"{self.url}/_upload/{slot}"}
        if kind in ("video", "audio"):  # "token is present only for video and audio" [S2]
            answer["token"] = self.upload_slots[slot]["token"] = _token(slot.encode(), 0)
        return _json(answer)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        """The upload server: one multipart file in the field ``data`` per URL [S2]."""
        faulty = await self.apply_fault("upload", request)
        if faulty is not None:
            return faulty
        slot = self.upload_slots.get(request.match_info["slot"])
        if slot is None:
            return web.Response(status=404, text="Not Found")
        if slot["used"]:
            return web.Response(status=400, text="Upload URL already used")
        if not request.content_type.startswith("multipart/"):
            # Resumable (Content-Range) uploads exist on MAX but are not emulated.
            return web.Response(status=400, text="multipart/form-data expected")
        form = await request.post()
        data = form.get("data")
        if not isinstance(data, web.FileField):
            return web.Response(status=400, text="no file in the field 'data'")
        content = data.file.read()
        slot["used"] = True
        kind = slot["type"]
        file_id = self._id()
        token = slot.get("token") or _token(content, file_id)
        self.uploaded[token] = {"type": kind, "name": data.filename, "content": content,
                                "content_type": data.content_type, "id": file_id}
        self.uploads.append({"type": kind, "name": data.filename, "content": content,
                             "token": token})
        if kind == "image":
            key = base64.b64encode(hashlib.sha256(content).digest()[:30]).decode()
            return self.answer(request, _json({"photos": {key: {"token": token}}}))
        if kind == "file":
            return self.answer(request, _json({"fileId": file_id, "token": token}))
        return self.answer(request, web.Response(text=RETVAL, content_type="text/xml"))

    # --- internals -----------------------------------------------------------------------------

    def _new_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """A NewMessageBody, checked [S1]; absent fields are null."""
        text, attachments, link = body.get("text"), body.get("attachments"), body.get("link")
        if text is not None and not isinstance(text, str):
            raise BadRequest("text: a string")
        if text is not None and len(text) > MAX_TEXT:
            raise BadRequest(f"text: size must be between 0 and {MAX_TEXT}")
        if attachments is not None and not isinstance(attachments, list):
            raise BadRequest("attachments: a list")
        if link is not None and (not isinstance(link, dict) or link.get("type") not in (
                "reply", "forward") or not link.get("mid")):
            raise BadRequest("link: {type: reply|forward, mid}")
        if body.get("format") not in (None, *FORMATS):
            raise BadRequest("format: markdown or html")
        return {"text": text, "attachments": attachments, "link": link,
                "format": body.get("format"), "notify": body.get("notify", True)}

    def _attach(self, requested: list[dict[str, Any]] | None
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The attachments as the recipient receives them, and the files' bytes."""
        received: list[dict[str, Any]] = []
        files: list[dict[str, Any]] = []
        kinds = [item.get("type") if isinstance(item, dict) else None
                 for item in requested or []]
        media = [kind for kind in kinds if kind != "inline_keyboard"]
        if any(kind in ALONE for kind in media) and len(media) > 1:
            raise BadRequest("audio, file, sticker and contact must be the only attachment")
        for item in requested or []:
            if not isinstance(item, dict):
                raise BadRequest("attachments: objects")
            kind, payload = item.get("type"), item.get("payload")
            if kind in UPLOAD_TYPES:
                attachment, file = self._uploaded_attachment(kind, payload)
                received.append(attachment)
                if file is not None:
                    files.append(file)
            elif kind == "sticker" and isinstance(payload, dict) and payload.get("code"):
                received.append(self.sticker_attachment(str(payload["code"])))
            elif kind == "location" and {"latitude", "longitude"} <= item.keys():
                received.append(self.location_attachment(float(item["latitude"]),
                                                         float(item["longitude"])))
            elif kind == "contact" and isinstance(payload, dict):
                received.append(self.contact_attachment(
                    str(payload.get("name") or ""), str(payload.get("vcf_phone") or "")))
            elif kind == "share" and isinstance(payload, dict) and payload.get("url"):
                received.append(self.share_attachment(str(payload["url"])))
            elif kind == "inline_keyboard" and isinstance(payload, dict) and isinstance(
                    payload.get("buttons"), list):
                # As received (P2): the keyboard gets a callback_id.
                received.append({"callback_id": _token(json.dumps(payload).encode(),
                                                       self._id()),
                                 "payload": payload, "type": "inline_keyboard"})
            else:
                raise BadRequest(f"Unsupported or malformed attachment {kind!r}")
        return received, files

    def _uploaded_attachment(self, kind: str, payload: Any
                             ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if not isinstance(payload, dict):
            raise BadRequest(MISSING_TOKEN)
        token = payload.get("token")
        photos = payload.get("photos")
        if kind == "image" and not token and isinstance(photos, dict) and photos:
            token = next(iter(photos.values())).get("token")
        if kind == "image" and not token and payload.get("url"):  # an image by its URL
            photo_id = self._id()
            return ({"payload": {"photo_id": photo_id, "token": _token(b"", photo_id),
                                 "url": str(payload["url"])}, "type": "image"}, None)
        if not token:
            raise BadRequest(MISSING_TOKEN)
        upload = self.uploaded.get(str(token))
        if upload is None or upload["type"] != kind:
            raise BadRequest(f"Invalid `token` in {kind} attachment")
        url = self._host(f"u{upload['id']}", upload["name"] or kind, upload["content"],
                         upload["content_type"] or "application/octet-stream")
        file = {"type": kind, "name": upload["name"], "content": upload["content"]}
        if kind == "image":
            return ({"payload": {"photo_id": upload["id"], "token": token, "url": url},
                     "type": "image"}, file)
        attachment: dict[str, Any] = {"type": kind, "payload": {"url": url, "token": token}}
        if kind == "file":
            attachment |= {"filename": upload["name"], "size": len(upload["content"])}
        return attachment, file

    def _body(self, chat_id: int, text: str, attachments: list[dict[str, Any]] | None,
              markup: list[dict[str, Any]] | None) -> dict[str, Any]:
        ms = self._ms()
        self._counter += 1
        seq = (ms << 16) | (self._counter & 0xFFFF)
        body: dict[str, Any] = {"mid": f"mid.{chat_id & MASK64:016x}{seq:016x}", "seq": seq,
                                "text": text}
        if attachments:
            body["attachments"] = attachments
        if markup:
            body["markup"] = markup
        return body

    def _link(self, mid: str, link_type: str = "reply") -> dict[str, Any]:
        """LinkedMessage [S1, P5]: the replied message's body and sender."""
        stored = self.messages.get(mid)
        if stored is None:
            raise BadRequest(f"link.mid: message {mid} not found")
        original = stored["message"]
        link: dict[str, Any] = {"type": link_type, "message": dict(original["body"])}
        if original.get("sender") is not None:
            link["sender"] = original["sender"]
        if link_type == "forward":
            link["chat_id"] = stored["chat_id"]
        return link

    def _remember(self, message: dict[str, Any], *, from_bot: bool,
                  sent: dict[str, Any] | None = None, user_id: int | None = None) -> None:
        body = message.get("body")
        if not isinstance(body, dict) or not body.get("mid"):
            return
        recipient = message.get("recipient") or {}
        if user_id is None:  # the dialog's customer: the sender, or the bot's recipient
            user_id = recipient.get("user_id") if from_bot else (
                message.get("sender") or {}).get("user_id")
        chat_id = recipient.get("chat_id")
        if recipient.get("chat_type") == "dialog" and user_id is not None \
                and chat_id is not None:
            self.dialog_chat(user_id, chat_id)
        elif recipient.get("chat_type") == "chat" and chat_id is not None:
            self.group_chats.add(chat_id)
        self.messages[str(body["mid"])] = {"message": message, "from_bot": from_bot,
                                           "chat_id": recipient.get("chat_id"),
                                           "user_id": user_id, "sent": sent}

    def _stored(self, mid: str | None) -> dict[str, Any] | web.Response:
        if not mid:
            raise BadRequest("message_id is required")
        stored = self.messages.get(mid)
        if stored is None:
            return _error(404, "not.found", f"Message {mid} not found")
        return stored

    def _over_chat_limit(self, chat_id: Any, method: str) -> web.Response | None:
        """2 sends, edits, deletes or callback answers per second per dialog or chat."""
        if self.per_chat.hit(chat_id):
            self.violation("2 per second per chat", method=method, chat_id=chat_id)
            if self.enforce_limits:
                return _too_many()
        return None

    def _host(self, prefix: str, name: str, content: bytes, content_type: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "file"
        return self.host_file(f"{prefix}-{safe}", content, content_type)

    def _ms(self) -> int:
        return int(self.message_time() * 1000)

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id


class BadRequest(Exception):
    """A request MAX refuses with 400 proto.payload."""


def _keyboard(message: dict[str, Any]) -> bool:
    return any(a.get("type") == "inline_keyboard"
               for a in (message.get("body") or {}).get("attachments") or [])


def _token(content: bytes, salt: int) -> str:
    """A token in MAX's style (P2's image token: base64 with + and /)."""
    digest = hashlib.sha512(content + str(salt).encode()).digest()
    return base64.b64encode(digest + digest[:24]).decode()


def _json(data: Any, status: int = 200) -> web.Response:
    # UTF-8 as it is, not \\u escapes: the same JSON, as MAX sends it.
    return web.json_response(data, status=status, dumps=partial(json.dumps,
                                                                ensure_ascii=False))


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"code": code, "message": message}, status)


def _too_many() -> web.Response:
    return _error(429, "too.many.requests", "Too many requests")


def _int(value: Any, default: Any) -> Any:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise BadRequest(f"not an integer: {value!r}") from error


def _flag(value: str | None) -> bool | None:
    return None if value is None else value.lower() == "true"
