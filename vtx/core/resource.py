"""The VideoTranscode resource: names, a typed model of its spec, and status helpers.

The CRD itself is ``crds/videotranscodes.vtx.dev.yaml``; a unit test keeps the two in step.
No field here holds a credential: secrets never go into a resource.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

GROUP = "vtx.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "VideoTranscode"
PLURAL = "videotranscodes"
NAME_PREFIX = "v-"
MESSAGE_LIMIT = 1024

Phase = Literal[
    "Pending", "Probing", "Queued", "Transcoding", "Publishing", "Ready", "Failed", "Suspended"
]
RenditionPhase = Literal[
    "Pending", "Queued", "Running", "Uploading", "Succeeded", "Failed", "Suspended"
]
ConditionType = Literal["Ready", "Probed", "JobsCreated", "Degraded"]


def resource_name(video_id: str | uuid.UUID) -> str:
    """``v-<uuid>``: deterministic, so creating the resource twice is harmless."""
    return f"{NAME_PREFIX}{uuid.UUID(str(video_id))}"


def video_id_from_name(name: str) -> str:
    if not name.startswith(NAME_PREFIX):
        raise ValueError(f"{name!r} is not a VideoTranscode name (v-<uuid>)")
    try:
        return str(uuid.UUID(name.removeprefix(NAME_PREFIX)))
    except ValueError:
        raise ValueError(f"{name!r} is not a VideoTranscode name (v-<uuid>)") from None


def _field(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{where}.{key} must be {getattr(kind, '__name__', kind)}")
    if not isinstance(value, kind):
        raise ValueError(f"{where}.{key} must be {getattr(kind, '__name__', kind)}")
    return value


@dataclass(frozen=True)
class SourceRef:
    key: str
    size: int
    bucket: str | None = None
    content_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "size": self.size}
        if self.bucket:
            d["bucket"] = self.bucket
        if self.content_type:
            d["contentType"] = self.content_type
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SourceRef:
        key = _field(d, "key", str, "spec.source")
        size = _field(d, "size", int, "spec.source")
        if key is None or size is None:
            raise ValueError("spec.source needs key and size")
        return cls(
            key=key,
            size=size,
            bucket=_field(d, "bucket", str, "spec.source"),
            content_type=_field(d, "contentType", str, "spec.source"),
        )


@dataclass(frozen=True)
class RenditionSpec:
    name: str
    kind: Literal["video", "audio"] = "video"
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_bitrate: str | None = None
    maxrate: str | None = None
    bufsize: str | None = None
    audio_bitrate: str | None = None

    _KEYS = (
        ("name", "name", str), ("kind", "kind", str), ("width", "width", int),
        ("height", "height", int), ("fps", "fps", (int, float)),
        ("video_bitrate", "videoBitrate", str), ("maxrate", "maxrate", str),
        ("bufsize", "bufsize", str), ("audio_bitrate", "audioBitrate", str),
    )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            camel: getattr(self, attr)
            for attr, camel, _ in self._KEYS
            if getattr(self, attr) is not None
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "spec.renditions[]") -> RenditionSpec:
        values = {attr: _field(d, camel, kind, where) for attr, camel, kind in cls._KEYS}
        if not values["name"]:
            raise ValueError(f"{where}.name is required")
        if values["kind"] is None:
            values["kind"] = "video"
        if values["kind"] not in ("video", "audio"):
            raise ValueError(f"{where}.kind must be video or audio")
        return cls(**values)


@dataclass(frozen=True)
class VideoTranscodeSpec:
    video_id: str
    source: SourceRef
    renditions: Sequence[RenditionSpec] | None = None
    formats: Sequence[str] = ("mp4", "hls")
    storage_s3: bool = True
    storage_ipfs: bool = True
    suspend: bool = False
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    group_renditions: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "videoId": str(uuid.UUID(self.video_id)),
            "source": self.source.to_dict(),
            "formats": list(self.formats),
            "storage": {"s3": self.storage_s3, "ipfs": self.storage_ipfs},
            "suspend": self.suspend,
            "deletionPolicy": self.deletion_policy,
            "groupRenditions": self.group_renditions,
        }
        if self.renditions is not None:
            d["renditions"] = [r.to_dict() for r in self.renditions]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VideoTranscodeSpec:
        video_id = _field(d, "videoId", str, "spec")
        source = _field(d, "source", dict, "spec")
        if video_id is None or source is None:
            raise ValueError("spec needs videoId and source")
        renditions = _field(d, "renditions", list, "spec")
        storage = _field(d, "storage", dict, "spec") or {}
        policy = _field(d, "deletionPolicy", str, "spec") or "Retain"
        if policy not in ("Retain", "Delete"):
            raise ValueError("spec.deletionPolicy must be Retain or Delete")
        return cls(
            video_id=video_id,
            source=SourceRef.from_dict(source),
            renditions=(
                None
                if renditions is None
                else [
                    RenditionSpec.from_dict(r, f"spec.renditions[{i}]")
                    for i, r in enumerate(renditions)
                ]
            ),
            formats=tuple(_field(d, "formats", list, "spec") or ("mp4", "hls")),
            storage_s3=bool(storage.get("s3", True)),
            storage_ipfs=bool(storage.get("ipfs", True)),
            suspend=bool(_field(d, "suspend", bool, "spec")),
            deletion_policy=policy,  # type: ignore[arg-type]
            group_renditions=bool(_field(d, "groupRenditions", bool, "spec")),
        )


def build_resource(
    spec: VideoTranscodeSpec, namespace: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The whole VideoTranscode object for ``spec``."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": resource_name(spec.video_id),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "vtx",
                "vtx.dev/video-id": str(uuid.UUID(spec.video_id)),
                **(labels or {}),
            },
        },
        "spec": spec.to_dict(),
    }


@dataclass(frozen=True)
class Condition:
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message[:MESSAGE_LIMIT],
            "lastTransitionTime": self.last_transition_time,
            "observedGeneration": self.observed_generation,
        }


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Conditions with the one of ``type`` replaced; its transition time moves only when its
    status changes."""
    previous = next((c for c in conditions if c.get("type") == type), None)
    changed_at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if previous is not None and previous.get("status") == status:
        changed_at = str(previous.get("lastTransitionTime") or changed_at)
    new = Condition(type, status, reason, message, changed_at, generation).to_dict()
    return [dict(c) for c in conditions if c.get("type") != type] + [new]


def rendition_status_patch(name: str, **fields: Any) -> dict[str, Any]:
    """A JSON merge patch of one rendition's status entry (keyed by name, so writers of
    different renditions never overwrite each other)."""
    if "message" in fields and fields["message"] is not None:
        fields["message"] = str(fields["message"])[:MESSAGE_LIMIT]
    return {"status": {"renditions": {name: fields}}}


def renditions_ready(status: Mapping[str, Any]) -> str:
    """``ready/total`` for the printer column."""
    entries = status.get("renditions") or {}
    ready = sum(1 for e in entries.values() if e.get("phase") == "Succeeded")
    return f"{ready}/{len(entries)}"
