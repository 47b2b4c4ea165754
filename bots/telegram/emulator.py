"""A loopback Telegram Bot API server: the subset python-telegram-bot uses for sameday.

Methods: getMe, getChat, deleteWebhook, getUpdates (held open up to ``timeout``, honouring
``offset`` the way Telegram does: an offset confirms every earlier update), sendMessage,
editMessageText, editMessageReplyMarkup, answerCallbackQuery, createForumTopic,
setMyCommands, the media methods, sendMediaGroup, copyMessage(s), sendLocation,
sendContact, editMessageCaption, deleteMessage (``deletions``), getFile (files added with
``add_file``, their bytes at
``/file/bot<token>/<file_path>``). Errors come in Bot API form (``{"ok": false,
"error_code": 429, "parameters": {"retry_after": N}}``, 403 for a user who blocked the
bot).

Rate limits are Telegram's published ones: 30 messages/s per bot, 1/s per chat, 20/min
per group. A send over a limit is answered with 429 and counted in ``violations``, so
benchmarks and tests can check that the dispatcher never exceeds them.

One getUpdates at a time per bot: a getUpdates that arrives while another is still open
is a violation ("one getUpdates at a time", also counted in ``overlapping_polls``), and
the older long poll is answered 409 as Telegram does. A poll whose client went away ends
with its connection (``handler_cancellation`` in ``bots.common.emulator``), so a replica
that was stopped or killed leaves no open poll behind.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from bots.common.emulator import Emulator, Fault, SlidingWindow

BOT_USER = {"id": 7000000001, "is_bot": True, "first_name": "Sameday", "username": "sameday_bot",
            "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False}
MAX_TEXT = 4096
MAX_FILE = 20 * 1024 * 1024  # what getFile lets a bot download
# Who Telegram names as the sender of a message written as a chat
# (tests/fixtures/real/telegram/anonymous_admin_sender_chat_forward_origin.json).
ANONYMOUS_ADMIN = {"id": 1087968824, "is_bot": True, "first_name": "Group",
                   "username": "GroupAnonymousBot"}
CHANNEL_BOT = {"id": 136817688, "is_bot": True, "first_name": "Channel",
               "username": "Channel_Bot"}
# Update types sent while a bot never named allowed_updates (Bot API, getUpdates): all
# but chat_member, message_reaction and message_reaction_count, which must be asked for.
DEFAULT_UPDATES = ("message", "edited_message", "channel_post", "edited_channel_post",
                   "business_connection", "business_message", "edited_business_message",
                   "deleted_business_messages", "inline_query", "chosen_inline_result",
                   "callback_query", "shipping_query", "pre_checkout_query",
                   "purchased_paid_media", "poll", "poll_answer", "my_chat_member",
                   "chat_join_request", "chat_boost", "removed_chat_boost")
MEDIA_METHODS = {"sendPhoto": "photo", "sendVoice": "voice", "sendVideo": "video",
                 "sendAudio": "audio", "sendDocument": "document",
                 "sendAnimation": "animation", "sendVideoNote": "video_note",
                 "sendSticker": "sticker"}
NAMED = ("audio", "document", "video", "animation")  # kinds whose files keep their names
ONE_POLL = "one getUpdates at a time"
# What the Bot API server answers the long poll a newer getUpdates replaced: the
# server keeps one held long poll per bot, and a getUpdates about to be held (no update
# ready, timeout > 0) first fails the held one with this 409 (tdlib/telegram-bot-api,
# telegram-bot-api/Client.cpp: Client::do_get_updates calls abort_long_poll, which
# answers long_poll_query_ via fail_query_conflict). A newer call answered at once
# (updates ready, or timeout=0) leaves the held one waiting. Not emulated: the server
# delays a 409 by 3 s when it sent one less than 3 s before.
CONFLICT = ("Conflict: terminated by other getUpdates request; make sure that only one "
            "bot instance is running")
# What copyMessage carries over from the original.
COPIED = ("text", "entities", "caption", "caption_entities", "photo", "voice", "video",
          "audio", "document", "animation", "video_note", "sticker", "location", "venue",
          "contact", "media_group_id")


@dataclass(eq=False)
class OpenPoll:
    """A getUpdates the emulator has not answered yet."""

    held: bool = False  # waiting for updates (a long poll)
    replaced: bool = False  # a newer long poll took its place: answered 409


class TelegramEmulator(Emulator):
    name = "telegram"

    def __init__(self, *, enforce_limits: bool = True, token: str | None = None):
        super().__init__()
        self.token = token  # None accepts any token
        self.enforce_limits = enforce_limits
        self.updates: list[dict[str, Any]] = []
        self.confirmed = 0  # every update_id below this was confirmed by an offset
        self.offsets: list[int] = []  # the offsets getUpdates was called with
        self.open_polls: list[OpenPoll] = []
        self.overlapping_polls = 0  # getUpdates calls that came while another was open
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.chats: dict[int, dict[str, Any]] = {}
        self.blocked: set[int] = set()
        self.failing: dict[int, int] = {}  # chat id -> sends to it still answered with 500
        self.forums: set[int] = set()
        self.topics: dict[int, list[dict[str, Any]]] = {}
        self.edits: list[dict[str, Any]] = []
        # Messages the bot deleted (deleteMessage): {"chat_id", "message_id", "message"}.
        self.deletions: list[dict[str, Any]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.commands: list[Any] = []
        self.uploads: list[dict[str, Any]] = []  # files the bot uploaded: kind, name, bytes
        self._uploads = 0
        self.per_bot = SlidingWindow(30, 1.0)
        self.per_chat = SlidingWindow(1, 1.0)
        self.per_group = SlidingWindow(20, 60.0)
        self.allowed_updates: list[str] = list(DEFAULT_UPDATES)
        self.business: dict[str, dict[str, Any]] = {}  # connection id -> BusinessConnection
        self._next_update = 1
        self._next_message: dict[int, int] = {}
        self._new_update = asyncio.Condition()
        # Customers' files getFile knows: file_id -> (file_unique_id, file_path, bytes).
        self.files_by_id: dict[str, tuple[str, str, bytes]] = {}
        self.app.add_routes([web.route("*", "/bot{token}/{method}", self._api),
                             web.get("/file/bot{token}/{file_path:.+}", self._file_download)])

    # --- what tests and the demo inject --------------------------------------------------

    def chat(self, chat_id: int, chat_type: str = "private", title: str | None = None,
             **user: Any) -> dict[str, Any]:
        chat = self.chats.get(chat_id)
        if chat is None:
            chat = {"id": chat_id, "type": chat_type}
            if chat_type == "private":
                chat.update({k: v for k, v in user.items() if k in ("first_name", "username")})
            else:
                chat["title"] = title or f"Group {chat_id}"
            if chat_id in self.forums:
                chat["is_forum"] = True
            self.chats[chat_id] = chat
        return chat

    def make_forum(self, chat_id: int, title: str = "Staff") -> None:
        self.forums.add(chat_id)
        self.chat(chat_id, "supergroup", title)["is_forum"] = True

    def inject_message(self, *, chat_id: int, user_id: int, text: str | None = None,
                       first_name: str = "Customer", username: str | None = None,
                       chat_type: str = "private", reply_to_message_id: int | None = None,
                       message_thread_id: int | None = None,
                       entities: list[dict[str, Any]] | None = None,
                       date: int | None = None, as_chat: dict[str, Any] | None = None,
                       business_connection_id: str | None = None,
                       **content: Any) -> dict[str, Any]:
        """A message from a user, as the next update; returns the message. ``content``:
        more message fields as the Bot API names them (photo, caption, voice, ...).
        ``as_chat``: written as that chat (a channel, or the group itself: an anonymous
        admin; sign it with ``author_signature`` in ``content``).
        ``business_connection_id``: written in a chat of that connection's business
        account (a ``business_message``; ``chat_id`` is the customer's private chat with
        the account, ``user_id`` the writer: that customer, or the account's owner)."""
        user = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        chat = self.chat(chat_id, chat_type, **user)
        where = _where(chat_id, business_connection_id)
        message: dict[str, Any] = {
            "message_id": self._message_id(where), "from": user, "chat": chat,
            "date": date or int(self.message_time()),
        }
        if as_chat is not None:
            message["sender_chat"] = as_chat
            message["from"] = ANONYMOUS_ADMIN if as_chat["id"] == chat_id else CHANNEL_BOT
        if business_connection_id is not None:
            message["business_connection_id"] = business_connection_id
        if text is not None:
            message["text"] = text
            mentions = [{"type": "mention", "offset": offset, "length": length}
                        for offset, length, word in _words_in_utf16(text)
                        if word.startswith("@")]
            if entities or mentions:
                message["entities"] = entities or mentions
        if reply_to_message_id is not None:
            replied = self.messages.get((where, reply_to_message_id))
            message["reply_to_message"] = replied or {
                "message_id": reply_to_message_id, "chat": chat, "date": message["date"]}
        if message_thread_id is not None:
            message["message_thread_id"] = message_thread_id
            message["is_topic_message"] = True
        message.update(content)
        self.messages[(where, message["message_id"])] = message
        self.inject_update({"business_message" if business_connection_id else "message":
                            message})
        return message

    def inject_album(self, *, chat_id: int, user_id: int, items: list[dict[str, Any]],
                     caption: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """An album: one update per item (``items``: {"photo": [...]}, {"video": {...}}),
        sharing a media_group_id, the caption on the first, as Telegram sends it
        (tests/fixtures/real/telegram/album_item_photo_media_group.json)."""
        group = str(13000000000000000 + self._next_update)
        return [self.inject_message(chat_id=chat_id, user_id=user_id, media_group_id=group,
                                    **item, **({"caption": caption}
                                               if caption and index == 0 else {}),
                                    **fields)
                for index, item in enumerate(items)]

    def connect_business(self, *, owner_id: int, first_name: str = "Owner",
                         username: str | None = None, can_reply: bool = True,
                         enabled: bool = True) -> str:
        """The owner of a Telegram Business account connects the bot (or changes its
        rights, or turns it off): a business_connection update with the fields of the
        Bot API's BusinessConnection and BusinessBotRights (Bot API 9.0; no public
        recording exists); returns the connection's id."""
        connection_id = next((cid for cid, c in self.business.items()
                              if c["user"]["id"] == owner_id), f"bc{len(self.business) + 1}")
        owner = {"id": owner_id, "is_bot": False, "first_name": first_name}
        if username:
            owner["username"] = username
        connection = {"id": connection_id, "user": owner, "user_chat_id": owner_id,
                      "date": int(self.message_time()), "is_enabled": enabled,
                      "rights": {"can_reply": True} if can_reply else {}}
        self.business[connection_id] = connection
        self.inject_update({"business_connection": connection})
        return connection_id

    def add_file(self, content: bytes, file_path: str) -> dict[str, Any]:
        """A customer's file kept by "Telegram", for a message's photo size, voice or
        document (``file_path`` as Telegram makes them: "photos/file_3.jpg",
        "voice/file_4.oga"); returns its file_id, file_unique_id and file_size."""
        number = len(self.files_by_id) + 1
        file_id, unique_id = f"AgACAgIAAxkBAAI{number:04d}", f"AQAD{number:04d}"
        self.files_by_id[file_id] = (unique_id, file_path, content)
        return {"file_id": file_id, "file_unique_id": unique_id, "file_size": len(content)}

    def inject_edit(self, *, chat_id: int, message_id: int, text: str,
                    business_connection_id: str | None = None) -> dict[str, Any]:
        """The customer edits a message: an edited_message update with the whole message
        as it now is and its edit_date (as in tests/fixtures/real/telegram/
        docs_edited_message.json); in a business chat, an edited_business_message."""
        where = _where(chat_id, business_connection_id)
        message = dict(self.messages[(where, message_id)], text=text,
                       edit_date=int(self.message_time()))
        self.messages[(where, message_id)] = message
        self.inject_update({"edited_business_message" if business_connection_id
                            else "edited_message": message})
        return message

    def inject_callback(self, *, user_id: int, chat_id: int, message_id: int, data: str,
                        first_name: str = "Staff") -> dict[str, Any]:
        """A press on an inline button under one of the bot's messages."""
        query = {"id": str(len(self.callback_answers) + 1000 + self._next_update),
                 "from": {"id": user_id, "is_bot": False, "first_name": first_name},
                 "chat_instance": str(chat_id), "data": data,
                 "message": self.messages[(chat_id, message_id)]}
        self.inject_update({"callback_query": query})
        return query

    def press(self, *, chat_id: int, message_id: int, user_id: int, label: str,
              first_name: str = "Customer") -> dict[str, Any]:
        """``user_id`` presses the inline button labelled ``label`` under the bot's message:
        the callback_query carries that button's own callback_data (a press on a button
        the message does not have is a test's mistake)."""
        markup = self.messages[(chat_id, message_id)].get("reply_markup") or {}
        data = next(button["callback_data"] for row in markup.get("inline_keyboard", [])
                    for button in row if button["text"] == label)
        return self.inject_callback(user_id=user_id, chat_id=chat_id, message_id=message_id,
                                    data=data, first_name=first_name)

    def inject_update(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Any update body (may be deliberately malformed); the update_id is assigned."""
        update = {"update_id": self._next_update, **payload}
        self._next_update += 1
        self.updates.append(update)
        asyncio.get_event_loop().create_task(self._notify())
        return update

    def inject_payload(self, body: dict[str, Any]) -> dict[str, Any]:
        """A customer message, or {"update": {...}}: any update body, as it is."""
        if "update" in body:
            return self.inject_update(body["update"])
        return self.inject_message(**body)

    def block(self, chat_id: int) -> None:
        self.blocked.add(chat_id)

    def fail_chat(self, chat_id: int, count: int) -> None:
        """The next `count` sends to this chat fail with 500 (a temporary error)."""
        self.failing[chat_id] = count

    def sent_to(self, chat_id: int) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["chat"]["id"] == chat_id]

    def pending_updates(self) -> list[dict[str, Any]]:
        return [u for u in self.updates if u["update_id"] >= self.confirmed]

    # --- the Bot API -----------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if self.token is not None and request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        faulted = await self.apply_fault(method, request)
        if faulted is not None:
            return faulted
        handler = getattr(self, f"_m_{method}", None)
        if handler is None and method in MEDIA_METHODS:
            handler = partial(self._send_media, MEDIA_METHODS[method])
        if handler is None:
            return _error(404, "Not Found: method not found")
        params = await self.params(request)
        try:
            return self.answer(request, await handler(params))
        except (KeyError, ValueError, TypeError) as error:
            return _error(400, f"Bad Request: {error}")

    def platform_fault(self, method: str, fault: Fault) -> web.Response | None:
        if fault.kind == "429":
            return _error(429, f"Too Many Requests: retry after {int(fault.seconds or 1)}",
                          retry_after=int(fault.seconds or 1))
        if fault.kind == "missing_fields" and method == "getUpdates":
            # A real (queued) update that lacks required fields; answered normally.
            self.inject_update({"message": {"text": "no chat, no sender"}})
            return None
        if fault.kind == "403":
            return _error(403, "Forbidden: bot was blocked by the user")
        return None

    async def _m_getFile(self, params: dict[str, Any]) -> web.Response:
        """A File (https://core.telegram.org/bots/api#getfile): its bytes are then at
        /file/bot<token>/<file_path>; over 20 MB Telegram refuses bots."""
        found = self.files_by_id.get(str(params["file_id"]))
        if found is None:
            return _error(400, "Bad Request: invalid file_id")
        unique_id, file_path, content = found
        if len(content) > MAX_FILE:
            return _error(400, "Bad Request: file is too big")
        return _ok({"file_id": str(params["file_id"]), "file_unique_id": unique_id,
                    "file_size": len(content), "file_path": file_path})

    async def _file_download(self, request: web.Request) -> web.Response:
        if self.token is not None and request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        path = request.match_info["file_path"]
        for _, file_path, content in self.files_by_id.values():
            if file_path == path:
                return web.Response(body=content, content_type="application/octet-stream")
        return _error(404, "Not Found")

    async def _m_getMe(self, params: dict[str, Any]) -> web.Response:
        return _ok(BOT_USER)

    async def _m_getChat(self, params: dict[str, Any]) -> web.Response:
        chat_id = int(params["chat_id"])
        chat = dict(self.chat(chat_id, "private" if chat_id > 0 else "supergroup"))
        chat["accent_color_id"] = 0
        chat["max_reaction_count"] = 11
        return _ok(chat)

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> web.Response:
        return _ok(True)

    async def _m_setMyCommands(self, params: dict[str, Any]) -> web.Response:
        self.commands = _json(params.get("commands", "[]"))
        return _ok(True)

    async def _m_getUpdates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        limit = min(int(params.get("limit") or 100), 100)
        timeout = float(params.get("timeout") or 0)
        self.offsets.append(offset)
        if self.open_polls:
            self.overlapping_polls += 1
            self.violation(ONE_POLL, offset=offset, open=len(self.open_polls))
        if params.get("allowed_updates") is not None:  # kept until a call names others
            self.allowed_updates = list(_json(params["allowed_updates"])) or list(
                DEFAULT_UPDATES)
        if offset > self.confirmed:
            self.confirmed = offset  # Telegram forgets confirmed updates for good
        poll = OpenPoll()
        self.open_polls.append(poll)
        try:  # open until answered, or until its client goes away (cancelled here)
            return await self._long_poll(poll, offset, limit, time.monotonic() + timeout)
        finally:
            self.open_polls.remove(poll)

    async def _long_poll(self, poll: OpenPoll, offset: int, limit: int,
                         deadline: float) -> web.Response:
        while True:
            if poll.replaced:
                return _error(409, CONFLICT)
            ready = [u for u in self.updates if u["update_id"] >= max(offset, self.confirmed)
                     and _kind(u) in self.allowed_updates]
            if ready or time.monotonic() >= deadline:
                return _ok(ready[:limit])
            if not poll.held:
                poll.held = True
                await self._replace_held_polls(poll)
                continue  # an update may have come meanwhile
            async with self._new_update:
                try:
                    await asyncio.wait_for(self._new_update.wait(),
                                           deadline - time.monotonic())
                except TimeoutError:
                    pass

    async def _m_sendMessage(self, params: dict[str, Any]) -> web.Response:
        text = str(params.get("text", ""))
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            return _error(400, "Bad Request: message is too long")
        message = self._bot_message(params)
        if isinstance(message, web.Response):
            return message
        message["text"] = text
        return self._posted(message)

    async def _send_media(self, kind: str, params: dict[str, Any],
                          media_group_id: str | None = None) -> web.Response:
        """sendPhoto, sendVoice, ...: a file id, a URL, or an uploaded file (multipart;
        a field named after the kind, or "attach://<field>")."""
        value = params.get(kind)
        if isinstance(value, str) and value.startswith("attach://"):
            value = params.get(value.removeprefix("attach://"))
        if isinstance(value, web.FileField):
            content = value.file.read()
            self._uploads += 1
            item: dict[str, Any] = {"file_id": f"upload-{self._uploads}",
                                    "file_unique_id": f"u{self._uploads}",
                                    "file_size": len(content)}
            if value.filename and kind in NAMED:
                item["file_name"] = value.filename
            if value.content_type and value.content_type != "application/octet-stream" \
                    and kind != "photo":
                item["mime_type"] = value.content_type
            self.uploads.append({"kind": kind, "name": value.filename, "content": content})
        elif isinstance(value, str) and value:
            item = {"file_id": value, "file_unique_id": value[-16:]}
        else:
            return _error(400, f"Bad Request: there is no {kind} in the request")
        message = self._bot_message(params)
        if isinstance(message, web.Response):
            return message
        # The fields the Bot API always returns for the kind (sizes, durations).
        if kind in ("photo", "video", "animation", "video_note"):
            item |= {"width": 800, "height": 600} if kind != "video_note" else {"length": 240}
        if kind in ("voice", "audio", "video", "animation", "video_note"):
            item["duration"] = int(params.get("duration") or 1)
        if kind == "sticker":
            item |= {"width": 512, "height": 512, "is_animated": False, "is_video": False,
                     "type": "regular"}
        message[kind] = [item] if kind == "photo" else item
        if media_group_id:
            message["media_group_id"] = media_group_id
        if params.get("caption"):
            message["caption"] = str(params["caption"])
        return self._posted(message)

    async def _m_sendLocation(self, params: dict[str, Any]) -> web.Response:
        message = self._bot_message(params)
        if isinstance(message, web.Response):
            return message
        message["location"] = {"latitude": float(params["latitude"]),
                               "longitude": float(params["longitude"])}
        return self._posted(message)

    async def _m_sendContact(self, params: dict[str, Any]) -> web.Response:
        message = self._bot_message(params)
        if isinstance(message, web.Response):
            return message
        message["contact"] = {"phone_number": str(params["phone_number"]),
                              "first_name": str(params["first_name"])}
        return self._posted(message)

    async def _m_copyMessages(self, params: dict[str, Any]) -> web.Response:
        """Several messages copied at once, an album kept an album (a new
        media_group_id shared by the copies); answers their MessageIds."""
        ids = [int(i) for i in _json(params["message_ids"])]
        source = int(params["from_chat_id"])
        originals = [self.messages.get((source, i)) for i in ids]
        if not ids or None in originals:
            return _error(400, "Bad Request: message to copy not found")
        group = f"copy{self._next_update}{ids[0]}"
        copied = []
        for message_id, original in zip(ids, originals, strict=True):
            message = self._bot_message(params)
            if isinstance(message, web.Response):
                return message
            message |= {key: value for key, value in original.items() if key in COPIED}
            if "media_group_id" in original:
                message["media_group_id"] = group
            message["copied_from"] = {"chat_id": source, "message_id": message_id}
            self._posted(message)
            copied.append({"message_id": message["message_id"]})
        return _ok(copied)

    async def _m_sendMediaGroup(self, params: dict[str, Any]) -> web.Response:
        """An album of 2-10 photos/videos (InputMedia, files as attach://<field>);
        answers the messages, sharing a media_group_id."""
        items = _json(params.get("media"))
        if not isinstance(items, list) or not 2 <= len(items) <= 10:
            return _error(400, "Bad Request: wrong number of media in the album")
        group = f"album{self._next_update}{len(self.sent)}"
        posted = []
        for item in items:
            kind = item["type"]
            fields = {kind: item["media"], "caption": item.get("caption"),
                      "chat_id": params["chat_id"],
                      "message_thread_id": params.get("message_thread_id"),
                      "reply_parameters": params.get("reply_parameters")}
            if isinstance(item["media"], str) and item["media"].startswith("attach://"):
                fields[kind] = params.get(item["media"].removeprefix("attach://"))
            answer = await self._send_media(kind, fields, media_group_id=group)
            body = json.loads(answer.body)
            if not body["ok"]:
                return answer
            posted.append(body["result"])
        return _ok(posted)

    async def _m_copyMessage(self, params: dict[str, Any]) -> web.Response:
        """The original's content (not its sender) as a new message of the bot; answers
        a MessageId, as Telegram does."""
        source = (int(params["from_chat_id"]), int(params["message_id"]))
        original = self.messages.get(source)
        if original is None:
            return _error(400, "Bad Request: message to copy not found")
        message = self._bot_message(params)
        if isinstance(message, web.Response):
            return message
        message |= {key: value for key, value in original.items() if key in COPIED}
        message["copied_from"] = {"chat_id": source[0], "message_id": source[1]}
        self._posted(message)
        return _ok({"message_id": message["message_id"]})

    def _bot_message(self, params: dict[str, Any]) -> dict[str, Any] | web.Response:
        """A new message of the bot in params' chat (thread, reply), or the error Telegram
        would answer (blocked, failing chat, over a limit, reply target missing)."""
        chat_id = int(params["chat_id"])
        if chat_id in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        if self.failing.get(chat_id):
            self.failing[chat_id] -= 1
            return _error(500, "Internal Server Error")
        limited = self._over_limit(chat_id)
        if limited is not None:
            return limited
        chat = self.chat(chat_id, "private" if chat_id > 0 else "supergroup")
        business = params.get("business_connection_id")
        where = _where(chat_id, business)
        message: dict[str, Any] = {"message_id": self._message_id(where), "from": BOT_USER,
                                   "chat": chat, "date": int(self.message_time())}
        if business:
            connection = self.business.get(str(business))
            if connection is None or not connection["is_enabled"]:
                return _error(400, "Bad Request: BUSINESS_CONNECTION_INVALID")
            if not connection["rights"].get("can_reply"):
                return _error(403, "Forbidden: BOT_BUSINESS_MISSING")
            # Sent as the account, by the bot (Bot API: Message.sender_business_bot).
            message |= {"from": connection["user"], "sender_business_bot": BOT_USER,
                        "business_connection_id": business}
        reply = _json(params.get("reply_parameters")) or {}
        reply_to = reply.get("message_id") or params.get("reply_to_message_id")
        if reply_to:
            original = self.messages.get((where, int(reply_to)))
            if original is None and not reply.get("allow_sending_without_reply"):
                return _error(400, "Bad Request: message to be replied not found")
            if original is not None:
                message["reply_to_message"] = original
        if params.get("message_thread_id"):
            message["message_thread_id"] = int(params["message_thread_id"])
            message["is_topic_message"] = True
        for key in ("parse_mode", "reply_markup"):
            if params.get(key):
                message[key] = _json(params[key]) if key == "reply_markup" else params[key]
        return message

    def _posted(self, message: dict[str, Any]) -> web.Response:
        where = _where(message["chat"]["id"], message.get("business_connection_id"))
        self.messages[(where, message["message_id"])] = message
        self.record_sent(message)
        return _ok(_public(message))

    async def _m_editMessageText(self, params: dict[str, Any]) -> web.Response:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        message = self.messages.get((chat_id, message_id))
        if message is None:
            return _error(400, "Bad Request: message to edit not found")
        text = str(params.get("text", ""))
        markup = _json(params.get("reply_markup"))
        if text == message.get("text") and markup == message.get("reply_markup"):
            return _error(400, "Bad Request: message is not modified")
        message["text"] = text
        message["reply_markup"] = markup
        self.edits.append({"chat_id": chat_id, "message_id": message_id, "text": text,
                           "reply_markup": markup, "parse_mode": params.get("parse_mode")})
        return _ok(_public(message))

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> web.Response:
        """Only the buttons change (an empty or absent reply_markup removes them)."""
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        message = self.messages.get((chat_id, message_id))
        if message is None:
            return _error(400, "Bad Request: message to edit not found")
        markup = _json(params.get("reply_markup")) or None
        if markup == message.get("reply_markup"):
            return _error(400, "Bad Request: message is not modified")
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        self.edits.append({"chat_id": chat_id, "message_id": message_id,
                           "text": message.get("text"), "reply_markup": markup})
        return _ok(_public(message))

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> web.Response:
        self.callback_answers.append(dict(params))
        return _ok(True)

    async def _m_editMessageCaption(self, params: dict[str, Any]) -> web.Response:
        """A media message's caption changes (Bot API editMessageCaption)."""
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        message = self.messages.get((chat_id, message_id))
        if message is None:
            return _error(400, "Bad Request: message to edit not found")
        if not any(kind in message for kind in MEDIA_METHODS.values()):
            return _error(400, "Bad Request: there is no caption in the message to edit")
        caption = str(params.get("caption") or "")
        if caption == message.get("caption", ""):
            return _error(400, "Bad Request: message is not modified")
        message["caption"] = caption
        self.edits.append({"chat_id": chat_id, "message_id": message_id, "caption": caption})
        return _ok(_public(message))

    async def _m_deleteMessage(self, params: dict[str, Any]) -> web.Response:
        """The bot deletes one of its messages (Bot API deleteMessage: True, or 400
        "message to delete not found")."""
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        message = self.messages.pop((chat_id, message_id), None)
        if message is None:
            return _error(400, "Bad Request: message to delete not found")
        self.deletions.append({"chat_id": chat_id, "message_id": message_id,
                               "message": message})
        return _ok(True)

    async def _m_createForumTopic(self, params: dict[str, Any]) -> web.Response:
        chat_id = int(params["chat_id"])
        if chat_id not in self.forums:
            return _error(400, "Bad Request: the chat is not a forum")
        topics = self.topics.setdefault(chat_id, [])
        topic = {"message_thread_id": 100 + len(topics), "name": params["name"],
                 "icon_color": 7322096}
        topics.append(topic)
        return _ok(topic)

    # --- internals -------------------------------------------------------------------------

    async def _replace_held_polls(self, newest: OpenPoll) -> None:
        """The newest long poll takes the place of the held ones, which answer 409."""
        replaced = False
        for poll in self.open_polls:
            if poll is not newest and poll.held and not poll.replaced:
                poll.replaced = replaced = True
        if replaced:
            await self._notify()

    def stats(self) -> dict[str, Any]:
        return super().stats() | {"polls_open": len(self.open_polls),
                                  "overlapping_polls": self.overlapping_polls}

    def _over_limit(self, chat_id: int) -> web.Response | None:
        """Check Telegram's limits; over one: a violation, answered with 429."""
        now = time.monotonic()
        group = chat_id < 0
        checks = [("per_bot", self.per_bot, "bot", 1),
                  ("per_group" if group else "per_chat",
                   self.per_group if group else self.per_chat, chat_id, 60 if group else 1)]
        for limit_name, window, key, retry in checks:
            if window.hit(key, now):
                self.violation(limit_name, chat_id=chat_id)
                if self.enforce_limits:
                    return _error(429, f"Too Many Requests: retry after {retry}",
                                  retry_after=retry)
        return None

    def _message_id(self, chat_id: int) -> int:
        self._next_message[chat_id] = self._next_message.get(chat_id, 0) + 1
        return self._next_message[chat_id]

    async def _notify(self) -> None:
        async with self._new_update:
            self._new_update.notify_all()


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(code: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=code)


def _json(value: Any) -> Any:
    """python-telegram-bot form-encodes objects as JSON strings."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        return json.loads(value)
    return value


def _public(message: dict[str, Any]) -> dict[str, Any]:
    """The message as the Bot API returns it (without emulator bookkeeping keys)."""
    return {k: v for k, v in message.items() if k != "parse_mode"}


def _words_in_utf16(text: str) -> list[tuple[int, int, str]]:
    """Each word with its offset and length in UTF-16 code units, as the Bot API counts
    entities (an emoji outside the BMP counts two)."""
    out, position = [], 0
    for word in text.split():
        position = text.index(word, position)
        out.append((_utf16(text[:position]), _utf16(word), word))
        position += len(word)
    return out


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2  # chaos sends lone ones


def _kind(update: dict[str, Any]) -> str:
    return next((key for key in update if key != "update_id"), "")


def _where(chat_id: int, business_connection_id: str | None) -> Any:
    """The key of a chat's messages: a business account's chat with a customer has its
    own message ids, apart from the customer's chat with the bot."""
    return (business_connection_id, chat_id) if business_connection_id else chat_id
