"""The VideoTranscode resource: its names, a typed model of its spec, and status helpers.

The schema's single source is ``crds/videotranscodes.vtx.dev.yaml``; a unit test keeps this
model and the CRD in step. No field here can hold a credential: anyone who may read the resource
reads its spec, so secrets never go into one (the operator and jobrunners sign their own URLs).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

GROUP = "vtx.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "VideoTranscode"
PLURAL = "videotranscodes"
NAME_PREFIX = "v-"
MESSAGE_LIMIT = 1024  # the CRD's maxLength of every status message

Phase = Literal[
    "Pending", "Probing", "Queued", "Transcoding", "Publishing", "Ready", "Failed", "Suspended"
]
RenditionPhase = Literal[
    "Pending", "Queued", "Running", "Uploading", "Succeeded", "Failed", "Suspended"
]
ConditionType = Literal["Ready", "Probed", "JobsCreated", "Degraded"]
ConditionStatus = Literal["True", "False", "Unknown"]
RenditionKind = Literal["video", "audio"]
Format = Literal["mp4", "hls"]
DeletionPolicy = Literal["Retain", "Delete"]

DEFAULT_FORMATS: tuple[Format, ...] = ("mp4", "hls")
# The fields of one entry of status.renditions; a misspelt one would be pruned without a word.
RENDITION_STATUS_FIELDS = frozenset({"phase", "progress", "job", "attempts", "message", "outputs"})

# JSON type names (as the CRD and the API server's messages spell them) → Python types.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (Mapping,),
    "array": (list, tuple),
}


def _uuid(value: str | uuid.UUID, path: str) -> str:
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{path} must be a UUID, not {value!r}") from None


def resource_name(video_id: str | uuid.UUID) -> str:
    """``v-<uuid>``: derived from the video, so creating the resource twice is harmless."""
    return NAME_PREFIX + _uuid(video_id, "video id")


def video_id_from_name(name: str) -> str:
    """The video id in a name made by :func:`resource_name`; ValueError for any other name."""
    rest = name.removeprefix(NAME_PREFIX)
    try:
        ours = name.startswith(NAME_PREFIX) and str(uuid.UUID(rest)) == rest
    except ValueError:
        ours = False
    if not ours:
        raise ValueError(f"{name!r} is not a VideoTranscode name (v-<lowercase uuid>)")
    return rest


def _check(value: Any, json_type: str, path: str) -> Any:
    # bool is an int to Python but not to JSON: `width: true` is no width.
    if not isinstance(value, _JSON_TYPES[json_type]) or (
        isinstance(value, bool) and json_type != "boolean"
    ):
        raise ValueError(f"{path} must be {json_type}, not {type(value).__name__}")
    return value


def _optional(d: Mapping[str, Any], key: str, json_type: str, where: str) -> Any:
    value = d.get(key)
    return None if value is None else _check(value, json_type, f"{where}.{key}")


def _required(d: Mapping[str, Any], key: str, json_type: str, where: str) -> Any:
    if d.get(key) is None:
        raise ValueError(f"{where}.{key} is required")
    return _optional(d, key, json_type, where)


def _one_of(value: str, allowed: tuple[str, ...], path: str) -> str:
    if value not in allowed:
        raise ValueError(f"{path} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _flag(d: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = _optional(d, key, "boolean", where)
    return default if value is None else bool(value)


def _without_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class SourceRef:
    """Where the uploaded original is: a bucket and key, never a URL."""

    key: str
    size: int
    bucket: str | None = None
    content_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _without_none(
            {
                "bucket": self.bucket,
                "key": self.key,
                "size": self.size,
                "contentType": self.content_type,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "spec.source") -> SourceRef:
        return cls(
            key=_required(d, "key", "string", where),
            size=_required(d, "size", "integer", where),
            bucket=_optional(d, "bucket", "string", where),
            content_type=_optional(d, "contentType", "string", where),
        )


@dataclass(frozen=True)
class RenditionSpec:
    """One rendition asked for; bitrates as FFmpeg takes them (``2800k``)."""

    name: str
    kind: RenditionKind = "video"
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_bitrate: str | None = None
    maxrate: str | None = None
    bufsize: str | None = None
    audio_bitrate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _without_none(
            {
                "name": self.name,
                "kind": self.kind,
                "width": self.width,
                "height": self.height,
                "fps": self.fps,
                "videoBitrate": self.video_bitrate,
                "maxrate": self.maxrate,
                "bufsize": self.bufsize,
                "audioBitrate": self.audio_bitrate,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "spec.renditions[]") -> RenditionSpec:
        kind = _optional(d, "kind", "string", where) or "video"
        fps = _optional(d, "fps", "number", where)
        return cls(
            name=_required(d, "name", "string", where),
            kind=cast(RenditionKind, _one_of(kind, get_args(RenditionKind), f"{where}.kind")),
            width=_optional(d, "width", "integer", where),
            height=_optional(d, "height", "integer", where),
            fps=None if fps is None else float(fps),
            video_bitrate=_optional(d, "videoBitrate", "string", where),
            maxrate=_optional(d, "maxrate", "string", where),
            bufsize=_optional(d, "bufsize", "string", where),
            audio_bitrate=_optional(d, "audioBitrate", "string", where),
        )


@dataclass(frozen=True)
class VideoTranscodeSpec:
    """The spec of a VideoTranscode. ``renditions=None`` lets the operator plan the ladder.

    ``video_id`` is kept as a lowercase UUID (the form the CRD accepts) and the sequences as
    tuples, so two specs that say the same thing compare equal.
    """

    video_id: str
    source: SourceRef
    renditions: Sequence[RenditionSpec] | None = None
    # str rather than Format: formats arrive from queue events as plain strings; checked below.
    formats: Sequence[str] = DEFAULT_FORMATS
    storage_s3: bool = True
    storage_ipfs: bool = True
    suspend: bool = False
    deletion_policy: DeletionPolicy = "Retain"
    group_renditions: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "video_id", _uuid(self.video_id, "spec.videoId"))
        if self.renditions is not None:
            object.__setattr__(self, "renditions", tuple(self.renditions))
        if not self.formats:
            raise ValueError("spec.formats must name at least one format")
        for i, f in enumerate(self.formats):
            _one_of(f, get_args(Format), f"spec.formats[{i}]")
        object.__setattr__(self, "formats", tuple(self.formats))

    def to_dict(self) -> dict[str, Any]:
        return _without_none(
            {
                "videoId": self.video_id,
                "source": self.source.to_dict(),
                "renditions": (
                    None if self.renditions is None else [r.to_dict() for r in self.renditions]
                ),
                "formats": list(self.formats),
                "storage": {"s3": self.storage_s3, "ipfs": self.storage_ipfs},
                "suspend": self.suspend,
                "deletionPolicy": self.deletion_policy,
                "groupRenditions": self.group_renditions,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VideoTranscodeSpec:
        """Read a spec (as stored, or as sent); unknown keys are ignored, so an older operator
        reads a newer resource."""
        renditions = _optional(d, "renditions", "array", "spec")
        formats = _optional(d, "formats", "array", "spec")
        storage = _optional(d, "storage", "object", "spec") or {}
        policy = _optional(d, "deletionPolicy", "string", "spec") or "Retain"
        return cls(
            video_id=_required(d, "videoId", "string", "spec"),
            source=SourceRef.from_dict(_required(d, "source", "object", "spec")),
            renditions=(
                None
                if renditions is None
                else tuple(
                    RenditionSpec.from_dict(
                        _check(r, "object", f"spec.renditions[{i}]"), f"spec.renditions[{i}]"
                    )
                    for i, r in enumerate(renditions)
                )
            ),
            formats=(
                DEFAULT_FORMATS
                if formats is None
                else tuple(_check(f, "string", f"spec.formats[{i}]") for i, f in enumerate(formats))
            ),
            storage_s3=_flag(storage, "s3", "spec.storage", True),
            storage_ipfs=_flag(storage, "ipfs", "spec.storage", True),
            suspend=_flag(d, "suspend", "spec", False),
            deletion_policy=cast(
                DeletionPolicy, _one_of(policy, get_args(DeletionPolicy), "spec.deletionPolicy")
            ),
            group_renditions=_flag(d, "groupRenditions", "spec", False),
        )


def build_resource(
    spec: VideoTranscodeSpec, namespace: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The whole VideoTranscode object for ``spec``, named after its video."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": resource_name(spec.video_id),
            "namespace": namespace,
            "labels": {
                **(labels or {}),
                # After the caller's labels: selectors by video id must not be misled.
                "app.kubernetes.io/managed-by": "vtx",
                "vtx.dev/video-id": spec.video_id,
            },
        },
        "spec": spec.to_dict(),
    }


@dataclass(frozen=True)
class Condition:
    """One entry of ``status.conditions``; ``to_dict`` truncates the message to fit the CRD."""

    type: str
    status: ConditionStatus
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
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """``conditions`` with the entry of ``type`` replaced in place (or added at the end). Its
    lastTransitionTime moves only when its status changes, as Kubernetes conventions ask."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    previous = next((c for c in conditions if c.get("type") == type), None)
    since = None
    if previous is not None and previous.get("status") == status:
        since = previous.get("lastTransitionTime")
    stamp = str(since or now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    new = Condition(type, status, reason, message, stamp, generation).to_dict()
    if previous is None:
        return [*(dict(c) for c in conditions), new]
    return [
        new if c is previous else dict(c)
        for c in conditions
        if c is previous or c.get("type") != type
    ]


def rendition_status_patch(name: str, **fields: Any) -> dict[str, Any]:
    """A JSON merge patch body for one rendition's entry of ``status.renditions``.

    The entry is keyed by name, so writers of different renditions never overwrite each other;
    a field given as None is removed (merge-patch semantics). Send it to the status subresource.
    """
    unknown = set(fields) - RENDITION_STATUS_FIELDS
    if unknown:
        raise TypeError(f"not a rendition status field: {', '.join(sorted(unknown))}")
    if isinstance(fields.get("message"), str):
        fields["message"] = fields["message"][:MESSAGE_LIMIT]
    return {"status": {"renditions": {name: fields}}}


def renditions_ready(status: Mapping[str, Any]) -> str:
    """``ready/total`` renditions, for the Renditions printer column."""
    entries: Mapping[str, Any] = status.get("renditions") or {}
    ready = sum(1 for e in entries.values() if e.get("phase") == "Succeeded")
    return f"{ready}/{len(entries)}"
