"""Events on Pulsar: the two topics, their JSON messages, and consumer helpers.

Every message is a JSON object with ``schema`` (version), ``type``, ``id`` (the event id, which
consumers de-duplicate by: delivery is at least once) and ``time``. Parsing ignores fields it
does not know, so producers can add fields without breaking older consumers, and rejects a
message that lacks what it needs with :class:`MalformedEvent`.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from vtx.core.ranges import MAX_RANGES as MAX_PARTS

SCHEMA_VERSION = 1
TRANSCODE_QUEUE = "video-transcode-queue"
STATUS_UPDATES = "video-status-updates"


class MalformedEvent(ValueError):
    """A message that is not a vtx event, or lacks a field it needs."""


def topic_url(tenant: str, namespace: str, name: str) -> str:
    return f"persistent://{tenant}/{namespace}/{name}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class TranscodeRequested:
    """An upload is complete: its VideoTranscode must exist (topic video-transcode-queue)."""

    video_id: str
    bucket: str
    key: str
    size: int
    content_type: str | None = None
    renditions: list[dict[str, Any]] | None = None
    # The Kubernetes namespace of the video's VideoTranscode (where the API creates it).
    namespace: str | None = None
    id: str = field(default_factory=_new_id)
    time: str = field(default_factory=_now)
    type: Literal["transcode.requested"] = "transcode.requested"


@dataclass(frozen=True)
class StatusUpdate:
    """Progress of a video or one of its renditions (topic video-status-updates)."""

    video_id: str
    phase: str
    progress: float = 0.0
    rendition: str | None = None
    message: str | None = None
    # Bytes of the rendition's outputs stored so far (S3 and IPFS) in this attempt: the sign
    # of life of a pod that is uploading, whose progress barely moves.
    stored_bytes: int | None = None
    # A split video's range (vtx.core.ranges): this report is of range ``part`` of ``parts``;
    # the rendition's progress is the ranges' together.
    part: int | None = None
    parts: int | None = None
    id: str = field(default_factory=_new_id)
    time: str = field(default_factory=_now)
    type: Literal["status.update"] = "status.update"


Event = TranscodeRequested | StatusUpdate
EVENT_TYPES: dict[str, type[TranscodeRequested] | type[StatusUpdate]] = {
    "transcode.requested": TranscodeRequested,
    "status.update": StatusUpdate,
}


def to_payload(event: Event) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, **{k: v for k, v in asdict(event).items() if v is not None}}


def encode(event: Event) -> bytes:
    return json.dumps(to_payload(event), separators=(",", ":")).encode()


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "video_id": (str,),
    "bucket": (str,),
    "key": (str,),
    "size": (int,),
    "content_type": (str,),
    "renditions": (list,),
    "id": (str,),
    "time": (str,),
    "phase": (str,),
    "progress": (int, float),
    "rendition": (str,),
    "message": (str,),
    "stored_bytes": (int,),
    "part": (int,),
    "parts": (int,),
    "namespace": (str,),
}
_REQUIRED = {
    "transcode.requested": ("video_id", "bucket", "key", "size", "id"),
    "status.update": ("video_id", "phase", "id"),
}


def decode(data: bytes | str | Mapping[str, Any]) -> Event:
    """Parse one message; unknown fields are ignored, missing or mistyped ones rejected."""
    if isinstance(data, Mapping):
        obj: Any = data
    else:
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedEvent(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedEvent("not a JSON object")
    schema = obj.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise MalformedEvent("missing or invalid 'schema' version")
    kind = obj.get("type")
    if kind not in EVENT_TYPES:
        raise MalformedEvent(f"unknown event type {kind!r}")
    cls = EVENT_TYPES[kind]
    for name in _REQUIRED[kind]:
        if obj.get(name) is None:
            raise MalformedEvent(f"{kind} event lacks {name!r}")
    known = {f for f in cls.__dataclass_fields__ if f != "type"}
    values = {k: v for k, v in obj.items() if k in known and v is not None}
    for name, value in values.items():
        allowed = _FIELD_TYPES[name]
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise MalformedEvent(f"{kind} event field {name!r} has the wrong type")
    if kind == "status.update" and ("part" in values or "parts" in values):
        part, parts = values.get("part"), values.get("parts")
        if part is None or parts is None or not 0 <= part < parts <= MAX_PARTS:
            raise MalformedEvent(f"{kind} event: part {part} of {parts} is no range")
    return cls(**values)


class SeenEvents:
    """The ids of the last ``capacity`` events handled, to drop redeliveries."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def first_time(self, event_id: str) -> bool:
        """True the first time an id is seen; False for a redelivery."""
        if self.seen(event_id):
            return False
        self.add(event_id)
        return True

    def seen(self, event_id: str) -> bool:
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return True
        return False

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
