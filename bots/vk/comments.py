"""Comments under the community's posts, photos, videos, market items and board topics.

Each is a Bots Long Poll event whose object is the comment (id, from_id, date, text,
attachments) plus the commented object's owner and id under names of its own; each is
answered in the same place with that object's ``createComment`` method, as the community
and as a reply to the customer's comment where VK has replies (a board topic has none).
Event shapes: tests/fixtures/real/vk/{wall_reply_new,photo_comment_new,video_comment_new,
market_comment_new,board_post_new}.json. Methods: dev.vk.com/ru/method/wall.createComment,
photos.createComment, video.createComment, market.createComment, board.createComment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Place:
    """A kind of commentable object: how its events name it and how to answer there."""

    kind: str  # VKTarget.type
    owner_field: str  # the event's field with the object's owner
    id_field: str  # the event's field with the object's id
    method: str  # the API method that answers
    id_param: str  # that method's parameter for the object's id
    replies: bool  # the method takes reply_to_comment


WALL = Place("wall", "post_owner_id", "post_id", "wall.createComment", "post_id", True)
PLACES = {
    "wall_reply_new": WALL,
    "photo_comment_new": Place("photo", "photo_owner_id", "photo_id",
                               "photos.createComment", "photo_id", True),
    "video_comment_new": Place("video", "video_owner_id", "video_id",
                               "video.createComment", "video_id", True),
    "market_comment_new": Place("market", "market_owner_id", "item_id",
                                "market.createComment", "item_id", True),
    "board_post_new": Place("board", "topic_owner_id", "topic_id",
                            "board.createComment", "topic_id", False),
}
# A customer's correction of a comment: the same object, edited.
EDITS = {"wall_reply_edit": "wall_reply_new", "photo_comment_edit": "photo_comment_new",
         "video_comment_edit": "video_comment_new",
         "market_comment_edit": "market_comment_new", "board_post_edit": "board_post_new"}
BY_KIND = {place.kind: place for place in PLACES.values()}


def answer_values(place: Place, owner_id: int, object_id: int, group_id: int, text: str,
                  guid: str, reply_to_comment: int | None) -> dict[str, Any]:
    """The createComment parameters: posted as the community, deduplicated by ``guid``."""
    values: dict[str, Any] = {place.id_param: object_id, "message": text, "guid": guid}
    if place.kind == "board":
        values["group_id"] = -owner_id  # a topic's owner is the community (negative)
    else:
        values["owner_id"] = owner_id
    # wall.createComment takes the community's id; the others a flag.
    values["from_group"] = group_id if place is WALL else 1
    if reply_to_comment and place.replies:
        values["reply_to_comment"] = reply_to_comment
    return values
