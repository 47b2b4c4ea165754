"""A loopback VK API server: the subset vk_api uses for sameday's community bot.

API methods (``POST /method/{name}``, form parameters ``access_token``, ``v``, ...):
``groups.getLongPollServer``, ``groups.getLongPollSettings``, ``users.get``,
``groups.getById``, ``messages.send`` (with an inline ``keyboard``: a press on a callback
button is a ``message_event``, ``press``), ``messages.sendMessageEventAnswer`` and the
``createComment`` of walls, photos, videos, market items and board topics. Like VK, the
sending methods deduplicate: ``random_id`` per peer and ``guid`` per commented object
return the first message's id and record nothing new, which is what makes a retried send
safe. Events follow the community's Long
Poll API version (``long_poll_version``): from 5.103 a message_new's object is
{"message", "client_info"}, before it the message itself (tests/fixtures/real/vk/
message_new_old_format_pre5103.json); in group chats a community bot sees ``id: 0``
(tests/fixtures/real/vk/message_new_group_chat_id0_mention.json).
Errors come in VK form with HTTP 200: ``{"error": {"error_code": 6, "error_msg": ...}}``.

The Bots Long Poll server lives at ``{url}/lp``: ``?act=a_check&key=..&ts=..&wait=N`` is
held until an event newer than ``ts`` exists or ``wait`` seconds pass. Events are kept
(never dropped on read), so a client coming back with an older ``ts`` gets them again,
as on VK. Faults on the method name ``"a_check"``: ``failed1`` (history lost, continue
from the returned ts), ``failed2`` (key expired), ``failed3`` (key and ts lost), plus the
base kinds and ``missing_fields`` (VK delivers an update whose object lacks fields).
Faults on API methods: ``"6"``, ``"9"``, ``"10"``, ``"901"`` (or ``"error"`` with
``code=N``) answer with that VK error; ``"429"`` is VK's error 6; ``lost_response`` does
the call and then drops the connection (the client cannot know it succeeded).

Rate limit: 20 API calls per second per token (VK's limit for community tokens); a call
over it is answered with error 6 and recorded in ``violations``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from bots.common.emulator import Emulator, Fault, SlidingWindow

ERROR_MESSAGES = {
    3: "Unknown method passed",
    5: "User authorization failed: invalid access_token",
    6: "Too many requests per second",
    9: "Flood control",
    10: "Internal server error",
    100: "One of the parameters specified was missing or invalid",
    901: "Can't send messages for users without permission",
    911: "Keyboard format is invalid",
}
MAX_WAIT = 90  # VK caps the long poll wait at 90 seconds

Handler = Callable[[dict[str, Any]], Awaitable[web.Response]]


class VKEmulator(Emulator):
    name = "vk"

    def __init__(self, *, group_id: int = 1, token: str | None = None):
        super().__init__()
        self.group_id = group_id
        self.token = token  # None accepts any token
        self.events: list[dict[str, Any]] = []  # event number n is events[n - 1]
        self.blocked: set[int] = set()
        self.per_token = SlidingWindow(20, 1.0)
        self.keys: set[str] = set()
        self._next_message = 1
        self._next_comment = 1
        self._next_key = 1
        self._conversation: dict[int, int] = {}  # peer_id -> last conversation_message_id
        self._by_random_id: dict[tuple[int, int], int] = {}
        self._by_guid: dict[tuple[int, int, str], int] = {}
        self._changed = asyncio.Event()
        self._methods: dict[str, Handler] = {
            "groups.getLongPollServer": self._m_get_long_poll_server,
            "messages.send": self._m_messages_send,
            "wall.createComment": self._m_wall_create_comment,
            "photos.createComment": partial(self._m_create_comment, "photo_id"),
            "video.createComment": partial(self._m_create_comment, "video_id"),
            "market.createComment": partial(self._m_create_comment, "item_id"),
            "board.createComment": partial(self._m_create_comment, "topic_id"),
            "users.get": self._m_users_get,
            "messages.sendMessageEventAnswer": self._m_send_message_event_answer,
            "groups.getLongPollSettings": self._m_long_poll_settings,
            "groups.getById": self._m_groups_get_by_id,
            # Files in messages, and changing sent messages (bots/vk/uploads.py).
            "photos.getMessagesUploadServer": self._m_photo_upload_server,
            "photos.saveMessagesPhoto": self._m_save_messages_photo,
            "docs.getMessagesUploadServer": self._m_doc_upload_server,
            "docs.save": self._m_docs_save,
            "messages.edit": self._m_messages_edit,
            "messages.delete": self._m_messages_delete,
        }
        # Files staff sent: uploaded (token -> file), then saved ("photo-1_5" -> file).
        self.uploaded: dict[str, dict[str, Any]] = {}
        self.saved_files: dict[str, dict[str, Any]] = {}
        self.message_edits: list[dict[str, Any]] = []
        self.message_deletions: list[dict[str, Any]] = []
        self._next_file = 457239017
        # Who people and communities are (users.get / groups.getById); unknown people
        # get a made-up name, as every real VK account has one.
        self.profiles: dict[int, dict[str, Any]] = {}
        # Callback presses not answered yet (event_id -> user, peer), and the answers.
        self.pending_presses: dict[str, tuple[int, int]] = {}
        self.event_answers: list[dict[str, Any]] = []
        # The community's Long Poll settings (Manage community > API usage).
        self.long_poll_version = "5.199"
        self.events_off: set[str] = set()
        self.name_requests = 0
        self.app.add_routes([web.route("*", "/method/{name}", self._api),
                             web.get("/lp", self._long_poll),
                             web.post("/upload/{kind}/{peer}", self._upload)])

    async def stop(self) -> None:
        # Release the held long polls first: otherwise the server waits for each of them
        # during shutdown.
        self._changed.set()
        await super().stop()

    # --- what tests and the demo inject --------------------------------------------------

    @property
    def ts(self) -> int:
        """The long poll position: the number of events so far."""
        return len(self.events)

    def inject_message(self, from_id: int, text: str, peer_id: int | None = None,
                       attachments: list[dict[str, Any]] | None = None,
                       name: tuple[str, str] | None = None, **fields: Any) -> dict[str, Any]:
        """A customer writes to the community (a message_new event); ``attachments`` as
        VK lists them, ``fields`` more message fields (geo, fwd_messages, reply_message)."""
        peer_id = from_id if peer_id is None else peer_id
        if name is not None:
            self.profiles[from_id] = {"id": from_id, "first_name": name[0],
                                      "last_name": name[1]}
        self._conversation[peer_id] = self._conversation.get(peer_id, 0) + 1
        message = {
            # A community bot sees id 0 for messages in group chats.
            "id": 0 if peer_id >= CHAT_PEERS else self._message_id(),
            "date": int(self.message_time()), "peer_id": peer_id,
            "from_id": from_id, "text": text, "out": 0,
            "conversation_message_id": self._conversation[peer_id],
            "fwd_messages": [], "attachments": attachments or [], "important": False,
            "is_hidden": False, **fields,
        }
        if self.old_format:
            return self.inject_event("message_new", message)
        client_info = {"button_actions": ["text"], "keyboard": True, "inline_keyboard": True,
                       "carousel": True, "lang_id": 0}
        return self.inject_event("message_new", {"message": message, "client_info": client_info})

    def inject_comment(self, event_type: str, from_id: int, object_id: int, text: str,
                       owner_id: int | None = None,
                       attachments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Someone comments under the community's photo, video, market item or board
        topic: ``event_type`` photo_comment_new, video_comment_new, market_comment_new
        or board_post_new, its object named as in tests/fixtures/real/vk/<event>.json."""
        owner_field, id_field = COMMENT_FIELDS[event_type]
        comment: dict[str, Any] = {
            "id": self._next_comment, "from_id": from_id, "date": int(self.message_time()),
            "text": text, owner_field: -self.group_id if owner_id is None else owner_id,
            id_field: object_id}
        if attachments:
            comment["attachments"] = attachments
        self._next_comment += 1
        return self.inject_event(event_type, comment)

    def inject_wall_reply(self, from_id: int, post_id: int, text: str,
                          owner_id: int | None = None,
                          reply_to_comment: int | None = None) -> dict[str, Any]:
        """Someone comments on a post on the community's wall (a wall_reply_new event)."""
        owner_id = -self.group_id if owner_id is None else owner_id
        comment: dict[str, Any] = {
            "id": self._next_comment, "from_id": from_id, "date": int(self.message_time()),
            "text": text, "post_owner_id": owner_id, "post_id": post_id,
            "owner_id": owner_id, "parents_stack": [],
        }
        self._next_comment += 1
        if reply_to_comment is not None:
            comment["reply_to_comment"] = reply_to_comment
            comment["parents_stack"] = [reply_to_comment]
        return self.inject_event("wall_reply_new", comment)

    def inject_edit(self, message: dict[str, Any], text: str) -> dict[str, Any]:
        """The customer edits a message: a message_edit event whose object is the message
        itself with the new text and its update_time (VK Callback/Long Poll API 5.103+)."""
        edited = dict(message, text=text, update_time=int(self.message_time()))
        return self.inject_event("message_edit", edited)

    @property
    def old_format(self) -> bool:
        return _version(self.long_poll_version) < (5, 103)

    def inject_event(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Append any event to the stream and wake the waiting long polls."""
        event = {"type": event_type, "object": obj, "group_id": self.group_id}
        if not self.old_format:  # event_id and v came with 5.103
            event |= {"event_id": hashlib.sha1(f"{self.ts + 1}:{event_type}".encode()
                                               ).hexdigest(),
                      "v": self.long_poll_version}
        self.events.append(event)
        self._changed.set()
        self._changed = asyncio.Event()
        return event

    def inject_payload(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        kind = body.pop("kind", "message")
        if kind == "message":
            return self.inject_message(int(body["from_id"]), str(body["text"]),
                                       body.get("peer_id"))
        if kind == "wall_reply":
            return self.inject_wall_reply(int(body["from_id"]), int(body["post_id"]),
                                          str(body["text"]), body.get("owner_id"),
                                          body.get("reply_to_comment"))
        if kind == "comment":  # under a photo, video, market item or board topic
            return self.inject_comment(str(body["type"]), int(body["from_id"]),
                                       int(body["object_id"]), str(body["text"]),
                                       body.get("owner_id"))
        if kind == "event":  # any event, as it is (may be deliberately malformed)
            return self.inject_event(str(body["type"]), body["object"])
        raise web.HTTPBadRequest(
            text=f"unknown kind {kind!r}; allowed: message, wall_reply, comment, event")

    def press(self, *, peer_id: int, message_id: int, label: str,
              user_id: int | None = None) -> dict[str, Any]:
        """``user_id`` (the peer itself by default) presses the callback button labelled
        ``label`` under the community's message: a message_event with that button's
        payload, shaped like tests/fixtures/real/vk/message_event_callback_button.json."""
        sent = next(m for m in self.sent if m.get("id") == message_id
                    and m.get("peer_id") == peer_id)
        keyboard = json.loads(sent["keyboard"])
        action = next(button["action"] for row in keyboard["buttons"] for button in row
                      if button["action"]["label"] == label)
        if action["type"] != "callback":
            raise ValueError(f"{label!r} is not a callback button")
        event_id = hashlib.sha1(f"press:{len(self.events)}".encode()).hexdigest()[:12]
        self.pending_presses[event_id] = (user_id or peer_id, peer_id)
        return self.inject_event("message_event", {
            "conversation_message_id": message_id, "user_id": user_id or peer_id,
            "peer_id": peer_id, "event_id": event_id,
            "payload": json.loads(action["payload"]) if action.get("payload") else {}})

    def block(self, peer_id: int) -> None:
        """This user has not allowed messages from the community: sends get error 901."""
        self.blocked.add(peer_id)

    def sent_to(self, peer_id: int) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("peer_id") == peer_id]

    def comments_on(self, owner_id: int, post_id: int,
                    method: str = "wall.createComment") -> list[dict[str, Any]]:
        """What the community commented under an object (``post_id``: its id)."""
        return [c for c in self.sent if c["method"] == method
                and (c["owner_id"], c["post_id"]) == (owner_id, post_id)]

    # --- API methods ---------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        params = await self.params(request)
        token = params.get("access_token", "")
        if self.per_token.hit(token):
            self.violation("20 calls/s per token", method=name)
            return _error(6, params)
        faulty = await self.apply_fault(name, request)
        if faulty is not None:
            return faulty
        if not token or (self.token is not None and token != self.token):
            return _error(5, params)
        handler = self._methods.get(name)
        if handler is None:
            return _error(3, params)
        return self.answer(request, await handler(params))

    async def _m_long_poll_settings(self, params: dict[str, Any]) -> web.Response:
        """As VK answers (dev.vk.com/ru/method/groups.getLongPollSettings: "is_enabled",
        "api_version", "events" as 0/1 per event type)."""
        events = ("message_new", "message_reply", "message_edit", "message_event",
                  "wall_reply_new", "photo_comment_new", "video_comment_new",
                  "market_comment_new", "board_post_new")
        return _ok({"is_enabled": True, "api_version": self.long_poll_version,
                    "events": {e: int(e not in self.events_off) for e in events}})

    async def _m_users_get(self, params: dict[str, Any]) -> web.Response:
        """As VK answers (dev.vk.com/ru/method/users.get: [{"id": 210700286,
        "first_name": "Lindsey", "last_name": "Stirling", "can_access_closed": true,
        "is_closed": false}])."""
        self.name_requests += 1
        ids = [int(i) for i in str(params.get("user_ids", "")).split(",") if i.strip()]
        return _ok([self.profiles.get(i) or {
            "id": i, "first_name": "Пользователь", "last_name": str(i),
            "can_access_closed": True, "is_closed": False} for i in ids])

    async def _m_groups_get_by_id(self, params: dict[str, Any]) -> web.Response:
        """API 5.194+: {"groups": [...], "profiles": []}."""
        self.name_requests += 1
        ids = [int(i) for i in str(params.get("group_ids", "")).split(",") if i.strip()]
        return _ok({"groups": [{"id": i, "name": f"Сообщество {i}", "screen_name": f"club{i}",
                                "type": "group"} for i in ids], "profiles": []})

    def platform_fault(self, method: str, fault: Fault) -> web.Response | None:
        if method == "a_check":
            return self._long_poll_fault(fault)
        if fault.kind == "missing_fields":
            return web.json_response({"ok": True})  # neither "response" nor "error"
        code = 6 if fault.kind == "429" else fault.extra.get("code", fault.kind)
        if str(code).isdigit():
            return _error(int(code), {"method": method})
        return None

    async def _m_get_long_poll_server(self, params: dict[str, Any]) -> web.Response:
        if _int(params.get("group_id")) != self.group_id:
            return _error(100, params)
        key = f"key{self._next_key}"
        self._next_key += 1
        self.keys.add(key)
        return _ok({"key": key, "server": f"{self.url}/lp", "ts": str(self.ts)})

    async def _m_messages_send(self, params: dict[str, Any]) -> web.Response:
        peer_id, random_id = _int(params.get("peer_id")), _int(params.get("random_id"))
        message = params.get("message")
        if peer_id is None or random_id is None or not (message or params.get("attachment")):
            return _error(100, params)
        if peer_id in self.blocked:
            return _error(901, params)
        files = self._attached(str(params.get("attachment") or ""))
        if files is None:
            return _error(100, params)
        if random_id and (peer_id, random_id) in self._by_random_id:
            return _ok(self._by_random_id[(peer_id, random_id)])  # a retry: no new message
        message_id = self._message_id()
        if random_id:
            self._by_random_id[(peer_id, random_id)] = message_id
        sent = {"method": "messages.send", "peer_id": peer_id, "message": message,
                "random_id": random_id, "id": message_id}
        if files:  # what the customer received: the attachment and the files' bytes
            sent |= {"attachment": params["attachment"], "files": files}
        if params.get("keyboard"):
            keyboard = json.loads(params["keyboard"])
            if not _valid_keyboard(keyboard):
                return _error(911, params)
            sent["keyboard"] = params["keyboard"]
        self.record_sent(sent)
        return _ok(message_id)

    async def _m_send_message_event_answer(self, params: dict[str, Any]) -> web.Response:
        """The answer to a callback press (dev.vk.com/ru/method/messages.sendMessageEventAnswer:
        event_id, user_id, peer_id, event_data as JSON, e.g. {"type": "show_snackbar",
        "text": "..."} of at most 90 characters); answers 1."""
        event_id = str(params.get("event_id", ""))
        who = (_int(params.get("user_id")), _int(params.get("peer_id")))
        if self.pending_presses.get(event_id) != who:
            return _error(100, params)
        data = json.loads(params.get("event_data") or "null")
        if data is not None and (data.get("type") != "show_snackbar"
                                 or not 0 < len(data.get("text", "")) <= 90):
            return _error(100, params)
        del self.pending_presses[event_id]
        self.event_answers.append({"event_id": event_id, "user_id": who[0],
                                   "peer_id": who[1], "event_data": data})
        return _ok(1)

    async def _m_wall_create_comment(self, params: dict[str, Any]) -> web.Response:
        owner_id, post_id = _int(params.get("owner_id")), _int(params.get("post_id"))
        message, guid = params.get("message"), params.get("guid")
        if owner_id is None or post_id is None or not message:
            return _error(100, params)
        if guid and (owner_id, post_id, guid) in self._by_guid:
            return _ok({"comment_id": self._by_guid[(owner_id, post_id, guid)]})
        comment_id = self._next_comment
        self._next_comment += 1
        if guid:
            self._by_guid[(owner_id, post_id, guid)] = comment_id
        self.record_sent({"method": "wall.createComment", "owner_id": owner_id,
                          "post_id": post_id, "reply_to_comment": _int(params.get(
                              "reply_to_comment")), "message": message, "guid": guid,
                          "comment_id": comment_id})
        return _ok({"comment_id": comment_id})

    async def _m_create_comment(self, id_param: str, params: dict[str, Any]
                                ) -> web.Response:
        """photos/video/market.createComment (owner_id) and board.createComment
        (group_id): they answer the new comment's id itself, not {"comment_id": N}."""
        owner_id = _int(params.get("owner_id"))
        if owner_id is None and _int(params.get("group_id")) is not None:
            owner_id = -_int(params.get("group_id"))
        object_id, message = _int(params.get(id_param)), params.get("message")
        guid = params.get("guid")
        if owner_id is None or object_id is None or not message:
            return _error(100, params)
        if guid and (owner_id, object_id, guid) in self._by_guid:
            return _ok(self._by_guid[(owner_id, object_id, guid)])
        comment_id = self._next_comment
        self._next_comment += 1
        if guid:
            self._by_guid[(owner_id, object_id, guid)] = comment_id
        method = {"photo_id": "photos", "video_id": "video", "item_id": "market",
                  "topic_id": "board"}[id_param] + ".createComment"
        self.record_sent({"method": method, "owner_id": owner_id, "post_id": object_id,
                          "reply_to_comment": _int(params.get("reply_to_comment")),
                          "from_group": params.get("from_group"), "message": message,
                          "guid": guid, "comment_id": comment_id})
        return _ok(comment_id)

    # --- files in messages, changing sent messages ---------------------------------------
    # Shapes as dev.vk.com documents them (api/upload/photo-in-message,
    # api/upload/document-in-message, method/messages.edit, method/messages.delete).

    async def _m_photo_upload_server(self, params: dict[str, Any]) -> web.Response:
        peer_id = _int(params.get("peer_id")) or 0
        return _ok({"album_id": -3, "upload_url": f"{self.url}/upload/photo/{peer_id}",
                    "user_id": 0, "group_id": self.group_id})

    async def _m_doc_upload_server(self, params: dict[str, Any]) -> web.Response:
        kind = params.get("type") or "doc"
        if kind not in ("doc", "audio_message", "graffiti"):
            return _error(100, params)
        peer_id = _int(params.get("peer_id")) or 0
        return _ok({"upload_url": f"{self.url}/upload/{kind}/{peer_id}"})

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        """The upload server: a photo in the field ``photo`` (answers server, photo, hash;
        "[]" as the photo when it is no image), a document in ``file`` (answers file).
        Fault method name: "upload"."""
        faulty = await self.apply_fault("upload", request)
        if faulty is not None:
            return faulty
        kind = request.match_info["kind"]
        form = await request.post()
        field = form.get("photo" if kind == "photo" else "file")
        if not isinstance(field, web.FileField):
            return web.json_response({"error": "ERR_UPLOAD_FILE_NOT_UPLOADED: no file"})
        content = field.file.read()
        token = hashlib.sha1(content + str(len(self.uploaded)).encode()).hexdigest()[:16]
        self.uploaded[token] = {"kind": kind, "content": content, "name": field.filename,
                                "content_type": field.content_type}
        if kind == "photo":
            is_image = content.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF8"))
            return self.answer(request, web.json_response({
                "server": 843221, "hash": hashlib.md5(content).hexdigest(),
                "photo": json.dumps([{"photo": token, "sizes": []}]) if is_image else "[]"}))
        return self.answer(request, web.json_response({"file": token}))

    async def _m_save_messages_photo(self, params: dict[str, Any]) -> web.Response:
        try:
            token = json.loads(params.get("photo") or "[]")[0]["photo"]
        except (ValueError, IndexError, KeyError, TypeError):
            return _error(100, params)
        upload = self.uploaded.get(token)
        if upload is None or upload["kind"] != "photo":
            return _error(100, params)
        photo = self._saved("photo", upload, {"album_id": -3, "text": "", "sizes": [],
                                              "date": int(self.message_time())})
        return _ok([photo])

    async def _m_docs_save(self, params: dict[str, Any]) -> web.Response:
        upload = self.uploaded.get(str(params.get("file") or ""))
        if upload is None or upload["kind"] == "photo":
            return _error(100, params)
        title = str(params.get("title") or upload["name"] or "file")
        if upload["kind"] == "audio_message":
            item = self._saved("doc", upload, {"duration": 1, "waveform": [],
                                               "link_ogg": "", "link_mp3": ""})
            return _ok({"type": "audio_message", "audio_message": item})
        item = self._saved("doc", upload, {"title": title, "size": len(upload["content"]),
                                           "ext": title.rpartition(".")[2], "type": 8,
                                           "date": int(self.message_time())})
        return _ok({"type": "doc", "doc": item})

    def _saved(self, prefix: str, upload: dict[str, Any], more: dict[str, Any]
               ) -> dict[str, Any]:
        self._next_file += 1
        item = {"id": self._next_file, "owner_id": -self.group_id,
                "access_key": hashlib.sha1(str(self._next_file).encode()).hexdigest()[:18],
                **more}
        self.saved_files[f"{prefix}{-self.group_id}_{self._next_file}"] = {
            **upload, "attachment_kind": "audio_message"
            if upload["kind"] == "audio_message" else prefix}
        return item

    def _attached(self, attachment: str) -> list[dict[str, Any]] | None:
        """The files a messages.send ``attachment`` names ("photo-1_5_key,doc-1_6");
        None when one is unknown."""
        files = []
        for item in filter(None, (part.strip() for part in attachment.split(","))):
            prefix_owner_id = "_".join(item.split("_")[:2])
            found = self.saved_files.get(prefix_owner_id)
            if found is None:
                return None
            files.append({"attachment": item, "kind": found["attachment_kind"],
                          "name": found["name"], "content": found["content"]})
        return files

    def _message(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The community's message a call names (peer_id + message_id)."""
        peer_id, message_id = _int(params.get("peer_id")), _int(params.get("message_id"))
        return next((m for m in self.sent if m.get("method") == "messages.send"
                     and m.get("peer_id") == peer_id and m.get("id") == message_id), None)

    async def _m_messages_edit(self, params: dict[str, Any]) -> web.Response:
        """Answers 1; the message's text (and attachments: those not given again are
        dropped) change."""
        message = self._message(params)
        if message is None or message.get("deleted"):
            return _error(100, params)
        files = self._attached(str(params.get("attachment") or ""))
        if files is None or not (params.get("message") or files):
            return _error(100, params)
        message["message"] = str(params.get("message") or "")
        message["files"] = files
        message["attachment"] = params.get("attachment")
        self.message_edits.append({"peer_id": message["peer_id"], "id": message["id"],
                                   "message": message["message"],
                                   "attachment": params.get("attachment")})
        return _ok(1)

    async def _m_messages_delete(self, params: dict[str, Any]) -> web.Response:
        """``message_ids`` (one here) with ``delete_for_all=1``: answers {"<id>": 1}."""
        params = {**params, "message_id": params.get("message_ids")}
        message = self._message(params)
        if message is None:
            return _error(100, params)
        message["deleted"] = True
        self.message_deletions.append({"peer_id": message["peer_id"], "id": message["id"],
                                       "for_all": str(params.get("delete_for_all")) == "1"})
        return _ok({str(message["id"]): 1})

    # --- Bots Long Poll --------------------------------------------------------------------

    async def _long_poll(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        faulty = await self.apply_fault("a_check", request)
        if faulty is not None:
            return faulty
        if params.get("act") != "a_check":
            return web.json_response({"failed": 4, "error": "unknown act"})
        if params.get("key") not in self.keys:
            return web.json_response({"failed": 2})
        ts = _int(params.get("ts"))
        if ts is None or ts < 0 or ts > self.ts:
            return web.json_response({"failed": 1, "ts": str(self.ts)})
        wait = min(_seconds(params.get("wait")), MAX_WAIT)
        if ts == self.ts and wait > 0:
            try:
                await asyncio.wait_for(self._changed.wait(), wait)
            except TimeoutError:
                pass
        return web.json_response({"ts": str(self.ts), "updates": self.events[ts:]})

    def _long_poll_fault(self, fault: Fault) -> web.Response | None:
        if fault.kind == "failed1":
            return web.json_response({"failed": 1, "ts": str(self.ts)})
        if fault.kind in ("failed2", "failed3"):
            self.keys.clear()  # every key handed out so far is now invalid
            return web.json_response({"failed": int(fault.kind[-1])})
        if fault.kind == "missing_fields":
            # A message_new whose message lacks peer_id, from_id and text; the answer
            # then carries it like any other event.
            self.inject_event("message_new", {"message": {"id": self._message_id()}})
        return None

    def _message_id(self) -> int:
        # One id sequence for the community's mailbox, incoming and outgoing, as on VK.
        message_id = self._next_message
        self._next_message += 1
        return message_id


CHAT_PEERS = 2_000_000_000  # peer ids of group chats start here
COMMENT_FIELDS = {"photo_comment_new": ("photo_owner_id", "photo_id"),
                  "video_comment_new": ("video_owner_id", "video_id"),
                  "market_comment_new": ("market_owner_id", "item_id"),
                  "board_post_new": ("topic_owner_id", "topic_id")}


def _valid_keyboard(keyboard: Any) -> bool:
    """VK's limits of an inline keyboard (dev.vk.com/ru/api/bots/development/keyboard): at
    most 6 rows of at most 5 buttons, 10 in all; a callback button's payload is a JSON
    text of at most 255 characters."""
    rows = keyboard.get("buttons") if isinstance(keyboard, dict) else None
    if not isinstance(rows, list) or len(rows) > 6 or any(len(row) > 5 for row in rows) \
            or sum(len(row) for row in rows) > 10:
        return False
    return all(len(button["action"].get("payload") or "") <= 255 for row in rows
               for button in row)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _ok(response: Any) -> web.Response:
    return web.json_response({"response": response})


def _error(code: int, params: dict[str, Any]) -> web.Response:
    shown = [{"key": k, "value": str(v)} for k, v in params.items() if k != "access_token"]
    return web.json_response({"error": {
        "error_code": code, "error_msg": ERROR_MESSAGES.get(code, f"Error {code}"),
        "request_params": shown}})


def _seconds(value: Any) -> float:
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return 0.0


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
