"""A VK customer's answer beyond text: a file, an edit, a withdrawal (conversations).

Files go through the messages upload server, as dev.vk.com documents it
(dev.vk.com/ru/api/upload/photo-in-message, .../upload/document-in-message):

- a photo: ``photos.getMessagesUploadServer(peer_id)`` -> ``upload_url``; the file POSTed
  there as ``photo`` -> {"server", "photo", "hash"}; ``photos.saveMessagesPhoto`` with
  them -> [{"id", "owner_id", "access_key"}] -> attachment ``photo{owner}_{id}_{key}``;
- a document, or a voice message (``type=audio_message``, OGG/Opus), and a video (a
  community token cannot upload videos, so it goes as a document):
  ``docs.getMessagesUploadServer(type, peer_id)``; the file POSTed as ``file`` ->
  {"file"}; ``docs.save(file, title)`` -> {"type", <type>: {"id", "owner_id"}} ->
  attachment ``doc{owner}_{id}``;
- then ``messages.send`` with ``attachment=`` and the same ``random_id`` as any answer:
  a retry after a lost answer cannot double the message (it may upload the file again,
  which VK keeps unused).

The message id of a file answer is kept with its attachment (``{id}/{attachment}``),
because ``messages.edit`` drops attachments it is not given again.

Edits are ``messages.edit`` (VK allows 24 hours), withdrawals ``messages.delete`` with
``delete_for_all=1`` (24 hours too); after that VK refuses, and staff are told why.
Answers under posts, photos and the like (comments) are not changed by sameday, nor can
they carry files.
"""

from __future__ import annotations

import asyncio
from typing import Any

import requests
from vk_api.exceptions import ApiError

from core.delivery.contract import DeliveryError
from core.delivery.files import extension
from core.delivery.outfiles import FileRule, FileRules, OutgoingFile

MB = 1024 * 1024
# VK's limits for messages (dev.vk.com: photos up to 50 MB in JPG, PNG or GIF; documents
# up to 200 MB); voice messages are OGG/Opus.
VK_FILES = FileRules((
    FileRule("photo", ("image/jpeg", "image/png", "image/gif"), 50 * MB, "JPG, PNG or GIF"),
    FileRule("video", ("video/",), 200 * MB, "sent as a file"),
    FileRule("voice", ("audio/ogg", "audio/opus", "application/ogg"), 200 * MB, "OGG"),
    FileRule("document", (), 200 * MB),
))
# VK's refusals to change a message, given up at once (dev.vk.com/ru/reference/errors).
REFUSALS = {
    909: "VK lets a community edit its message for 24 hours only",
    920: "VK does not let this kind of message be edited",
    924: "VK lets a community delete a message for everyone for 24 hours only",
    925: "the community is not an admin of this conversation",
}


async def upload(adapter: Any, peer_id: int, file: OutgoingFile) -> str:
    """The file on VK, as a message attachment ("photo-1_457239017_ab12", "doc-1_5")."""
    if file.by_reference:
        raise DeliveryError(f"the bytes of this {file.kind} were not kept", permanent=True)
    name = file.name or f"{file.kind}{extension(file.content_type) or '.bin'}"
    if file.kind == "photo":
        server = await call(adapter, "photos.getMessagesUploadServer", {"peer_id": peer_id})
        uploaded = await _post(adapter, _url(server), "photo", name, file)
        if not uploaded.get("photo") or uploaded.get("photo") == "[]":
            raise DeliveryError("VK's upload server did not take the photo", permanent=True)
        saved = await call(adapter, "photos.saveMessagesPhoto", {
            "photo": uploaded["photo"], "server": uploaded.get("server"),
            "hash": uploaded.get("hash")})
        item = saved[0] if isinstance(saved, list) and saved else None
        return _attachment("photo", item)
    doc_type = "audio_message" if file.kind == "voice" else "doc"
    server = await call(adapter, "docs.getMessagesUploadServer",
                        {"type": doc_type, "peer_id": peer_id})
    uploaded = await _post(adapter, _url(server), "file", name, file)
    if not uploaded.get("file"):
        raise DeliveryError(f"VK's upload server did not take the file: "
                            f"{uploaded.get('error') or uploaded!r:.200}", permanent=True)
    saved = await call(adapter, "docs.save", {"file": uploaded["file"], "title": name})
    item = saved.get(saved.get("type")) if isinstance(saved, dict) else None
    return _attachment("doc", item)


def _url(server: Any) -> str:
    url = server.get("upload_url") if isinstance(server, dict) else None
    if not url:
        raise DeliveryError(f"VK gave no upload server: {server!r:.200}")
    return str(url)


def _attachment(prefix: str, item: Any) -> str:
    try:
        text = f"{prefix}{int(item['owner_id'])}_{int(item['id'])}"
    except (KeyError, TypeError, ValueError):
        raise DeliveryError(f"VK saved the file without an id: {item!r:.200}") from None
    return f"{text}_{item['access_key']}" if item.get("access_key") else text


async def _post(adapter: Any, url: str, field: str, name: str,
                file: OutgoingFile) -> dict[str, Any]:
    """POST the file to VK's upload server (multipart), in a thread: vk_api's session is
    blocking. A refusal of the file is permanent; a failing server is retried."""
    def post() -> requests.Response:
        return adapter.vk.http.post(url, files={field: (name, file.content,
                                                        file.content_type)})
    try:
        response = await asyncio.to_thread(post)
    except requests.RequestException as error:
        raise DeliveryError(f"network error uploading to VK ({type(error).__name__})"
                            ) from None
    if response.status_code >= 500:
        raise DeliveryError(f"VK's upload server answered HTTP {response.status_code}")
    if response.status_code != 200:
        raise DeliveryError(f"VK's upload server refused the file (HTTP "
                            f"{response.status_code})", permanent=True)
    try:
        answer = response.json()
    except ValueError:
        raise DeliveryError("VK's upload server gave an unreadable answer") from None
    if not isinstance(answer, dict):
        raise DeliveryError("VK's upload server gave an unreadable answer")
    if answer.get("error"):
        raise DeliveryError(f"VK's upload server refused the file: {answer['error']!s:.200}",
                            permanent=True)
    return answer


async def call(adapter: Any, method: str, values: dict[str, Any]) -> Any:
    """``adapter._call``, with VK's refusals to change a message given up at once."""
    try:
        return await adapter._call(method, values)
    except DeliveryError as error:
        cause = error.__cause__
        if isinstance(cause, ApiError) and cause.code in REFUSALS:
            raise DeliveryError(f"{REFUSALS[cause.code]} (VK error {cause.code})",
                                permanent=True) from cause
        raise


def sent_as(external_id: str) -> tuple[int, str | None]:
    """A sent answer's message id, and its attachment when it carried a file."""
    message_id, _, attachment = str(external_id or "").partition("/")
    try:
        return int(message_id), attachment or None
    except ValueError:
        raise DeliveryError(f"the answer's VK message is unknown ({external_id!r})",
                            permanent=True) from None


async def edit(adapter: Any, peer_id: int, answer: dict[str, Any], text: str) -> str:
    message_id, attachment = sent_as(answer.get("external_id"))
    values: dict[str, Any] = {"peer_id": peer_id, "message_id": message_id, "message": text,
                              "keep_forward_messages": 1}
    if attachment:
        values["attachment"] = attachment
    await call(adapter, "messages.edit", values)
    return str(answer.get("external_id"))


async def delete(adapter: Any, peer_id: int, answer: dict[str, Any]) -> str:
    message_id, _ = sent_as(answer.get("external_id"))
    await call(adapter, "messages.delete", {"peer_id": peer_id, "message_ids": message_id,
                                            "delete_for_all": 1})
    return str(answer.get("external_id"))
