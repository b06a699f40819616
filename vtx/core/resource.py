"""The VideoTranscode resource: its names, a typed model of its spec, and status helpers.

The schema's single source is ``crds/videotranscodes.vtx.dev.yaml``; a unit test keeps this
model and the CRD in step. No field here can hold a credential: anyone who may read the resource
reads its spec, so secrets never go into one (the operator and jobrunners sign their own URLs).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

from vtx.core.ladder import FIELD_ORDERS, InvalidPlan, Rendition, plan_from_list, rendition_to_dict
from vtx.core.ranges import MAX_RANGES
from vtx.core.tracks import UNDETERMINED

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
DeletionPolicy = Literal["Retain", "Delete"]
IngestPhase = Literal["Running", "Succeeded", "Failed"]

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
    """One rendition asked for, by name: a rung of the ladder (``720p``) or ``audio``. The
    operator makes the ones that fit the source; an unknown name fails the resource."""

    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "spec.renditions[]") -> RenditionSpec:
        return cls(name=_required(d, "name", "string", where))


@dataclass(frozen=True)
class VideoTranscodeSpec:
    """The spec of a VideoTranscode. ``renditions=None`` lets the operator plan the ladder.

    ``video_id`` is kept as a lowercase UUID (the form the CRD accepts) and the sequences as
    tuples, so two specs that say the same thing compare equal. Every video gets MP4 and HLS in
    S3 (playback is served from there); ``storage_ipfs`` adds them to IPFS too.
    """

    video_id: str
    source: SourceRef
    renditions: Sequence[RenditionSpec] | None = None
    storage_ipfs: bool = True
    suspend: bool = False
    deletion_policy: DeletionPolicy = "Retain"
    group_renditions: bool | None = None  # None: the operator chooses (vtx/operator/grouping.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "video_id", _uuid(self.video_id, "spec.videoId"))
        if self.renditions is not None:
            object.__setattr__(self, "renditions", tuple(self.renditions))

    def to_dict(self) -> dict[str, Any]:
        return _without_none(
            {
                "videoId": self.video_id,
                "source": self.source.to_dict(),
                "renditions": (
                    None if self.renditions is None else [r.to_dict() for r in self.renditions]
                ),
                "storage": {"ipfs": self.storage_ipfs},
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
            storage_ipfs=_flag(storage, "ipfs", "spec.storage", True),
            suspend=_flag(d, "suspend", "spec", False),
            deletion_policy=cast(
                DeletionPolicy, _one_of(policy, get_args(DeletionPolicy), "spec.deletionPolicy")
            ),
            group_renditions=_optional(d, "groupRenditions", "boolean", "spec"),
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


def timestamp(when: datetime) -> str:
    """RFC 3339 in UTC, to the second, as Kubernetes writes times."""
    if when.tzinfo is None:
        raise ValueError("the time must be timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# --- status ---------------------------------------------------------------------------------
# The operator owns status and writes all of it; a running rendition's entry shows what its
# jobrunner last reported on Pulsar (phase Running/Uploading, progress, message), not trusted.


class InvalidStatus(ValueError):
    """A status the operator did not write (a malformed or forged one)."""


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

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Condition:
        where = "status.conditions[]"
        status = _required(d, "status", "string", where)
        return cls(
            type=_required(d, "type", "string", where),
            status=cast(ConditionStatus, _one_of(status, get_args(ConditionStatus), where)),
            reason=_optional(d, "reason", "string", where) or "",
            message=_optional(d, "message", "string", where) or "",
            last_transition_time=_optional(d, "lastTransitionTime", "string", where) or "",
            observed_generation=_optional(d, "observedGeneration", "integer", where) or 0,
        )


def set_condition(
    conditions: Sequence[Condition],
    type: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> tuple[Condition, ...]:
    """``conditions`` with the entry of ``type`` replaced in place (or added at the end). Its
    lastTransitionTime moves only when its status changes, as Kubernetes conventions ask."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    previous = next((c for c in conditions if c.type == type), None)
    since = None
    if previous is not None and previous.status == status:
        since = previous.last_transition_time
    stamp = since or timestamp(now)
    new = Condition(type, status, reason, message[:MESSAGE_LIMIT], stamp, generation)
    if previous is None:
        return (*conditions, new)
    return tuple(new if c is previous else c for c in conditions)


def _field_order(value: str) -> str:
    if value not in FIELD_ORDERS:
        raise InvalidStatus(
            f"status.source.fieldOrder is {value[:20]!r}, not one of {FIELD_ORDERS}"
        )
    return value


@dataclass(frozen=True)
class SourceStatus:
    """What the probe read from the source."""

    duration: float
    width: int = 0
    height: int = 0
    fps: float = 0.0
    rotation: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    has_audio: bool = False
    field_order: str = "unknown"  # progressive, tt, bb, tb, bt (interlaced) or unknown

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration": self.duration,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "rotation": self.rotation,
            "videoCodec": self.video_codec,
            "audioCodec": self.audio_codec,
            "hasAudio": self.has_audio,
            "fieldOrder": self.field_order,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SourceStatus:
        w = "status.source"
        return cls(
            duration=float(_required(d, "duration", "number", w)),
            width=_optional(d, "width", "integer", w) or 0,
            height=_optional(d, "height", "integer", w) or 0,
            fps=float(_optional(d, "fps", "number", w) or 0),
            rotation=_optional(d, "rotation", "integer", w) or 0,
            video_codec=_optional(d, "videoCodec", "string", w) or "",
            audio_codec=_optional(d, "audioCodec", "string", w) or "",
            has_audio=_flag(d, "hasAudio", w, False),
            field_order=_field_order(_optional(d, "fieldOrder", "string", w) or "unknown"),
        )


@dataclass(frozen=True)
class RenditionOutputs:
    """Where a finished rendition's outputs are: S3 keys, and IPFS CIDs by file; for the
    rendition that makes them, the S3 keys of the video's images (poster, thumbnail,
    storyboard, storyboard_vtt)."""

    mp4: str
    hls: str
    cids: Mapping[str, str] = field(default_factory=dict)
    images: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mp4": self.mp4, "hls": self.hls}
        d["cids"] = dict(sorted(self.cids.items()))
        if self.images:
            d["images"] = dict(sorted(self.images.items()))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> RenditionOutputs:
        cids = _optional(d, "cids", "object", where) or {}
        images = _optional(d, "images", "object", where) or {}
        return cls(
            mp4=_required(d, "mp4", "string", where),
            hls=_required(d, "hls", "string", where),
            cids={str(k): _check(v, "string", f"{where}.cids.{k}") for k, v in cids.items()},
            images={str(k): _check(v, "string", f"{where}.images.{k}") for k, v in images.items()},
        )


@dataclass(frozen=True)
class RenditionStatus:
    phase: RenditionPhase = "Pending"
    progress: int = 0
    job: str | None = None
    attempts: int = 0  # pods its current Job has started
    redos: int = 0  # times its outputs were made again after they failed verification
    message: str | None = None
    outputs: RenditionOutputs | None = None

    def to_dict(self) -> dict[str, Any]:
        return _without_none(
            {
                "phase": self.phase,
                "progress": self.progress,
                "job": self.job,
                "attempts": self.attempts,
                "redos": self.redos,
                "message": None if self.message is None else self.message[:MESSAGE_LIMIT],
                "outputs": None if self.outputs is None else self.outputs.to_dict(),
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> RenditionStatus:
        phase = _optional(d, "phase", "string", where) or "Pending"
        outputs = _optional(d, "outputs", "object", where)
        return cls(
            phase=cast(RenditionPhase, _one_of(phase, get_args(RenditionPhase), f"{where}.phase")),
            progress=_optional(d, "progress", "integer", where) or 0,
            job=_optional(d, "job", "string", where),
            attempts=_optional(d, "attempts", "integer", where) or 0,
            redos=_optional(d, "redos", "integer", where) or 0,
            message=_optional(d, "message", "string", where) or None,
            outputs=(
                None if not outputs else RenditionOutputs.from_dict(outputs, f"{where}.outputs")
            ),
        )


@dataclass(frozen=True)
class IngestStatus:
    phase: IngestPhase
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "message": self.message[:MESSAGE_LIMIT]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IngestStatus:
        phase = _required(d, "phase", "string", "status.ingest")
        return cls(
            phase=cast(IngestPhase, _one_of(phase, get_args(IngestPhase), "status.ingest.phase")),
            message=_optional(d, "message", "string", "status.ingest") or "",
        )


GroupingReason = Literal[
    "Spec", "OneRendition", "NodesUnknown", "OneNode", "NoRoom", "Spread", "Split"
]


@dataclass(frozen=True)
class Grouping:
    """Whether the renditions share one Job, and why (vtx/operator/grouping.py decides)."""

    grouped: bool
    reason: GroupingReason
    message: str = ""
    # Split (vtx.core.ranges): where the ranges begin, then the segment count. Checked against
    # the probed duration where it is used.
    range_bounds: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "grouped": self.grouped,
            "reason": self.reason,
            "message": self.message[:MESSAGE_LIMIT],
        }
        if self.range_bounds:
            out["rangeBounds"] = list(self.range_bounds)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Grouping:
        w = "status.grouping"
        reason = _required(d, "reason", "string", w)
        bounds = d.get("rangeBounds") or []
        if (
            not isinstance(bounds, list)
            or len(bounds) > MAX_RANGES + 1
            or not all(type(b) is int and b >= 0 for b in bounds)
        ):
            raise InvalidStatus(f"{w}.rangeBounds: up to {MAX_RANGES + 1} segment numbers")
        return cls(
            grouped=_flag(d, "grouped", w, False),
            reason=cast(GroupingReason, _one_of(reason, get_args(GroupingReason), f"{w}.reason")),
            message=(_optional(d, "message", "string", w) or "")[:MESSAGE_LIMIT],
            range_bounds=tuple(bounds),
        )


@dataclass(frozen=True)
class PublishedOutputs:
    master: str  # S3 key of the HLS master playlist
    cid: str | None = None  # root CID of the IPFS directory (None: not stored in IPFS)

    def to_dict(self) -> dict[str, Any]:
        return _without_none({"master": self.master, "cid": self.cid})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PublishedOutputs:
        return cls(
            master=_required(d, "master", "string", "status.outputs"),
            cid=_optional(d, "cid", "string", "status.outputs"),
        )


# Status names of a planned rendition's fields (camelCase, as the CRD spells them).
_PLAN_FIELDS = {
    "name": "name",
    "kind": "kind",
    "width": "width",
    "height": "height",
    "fps": "fps",
    "video_bitrate_k": "videoKbps",
    "maxrate_k": "maxrateKbps",
    "bufsize_k": "bufsizeKbit",
    "audio_bitrate_k": "audioKbps",
    "images": "images",
    "alt_audio": "altAudio",
    "language": "language",
    "title": "title",
}


# Written only when not these: a plan of a video with one audio track reads as before.
_PLAN_DEFAULTS = {"alt_audio": False, "language": UNDETERMINED}


def plan_to_status(plan: Sequence[Rendition]) -> list[dict[str, Any]]:
    return [
        _without_none({
            _PLAN_FIELDS[k]: v for k, v in rendition_to_dict(r).items()
            if k not in _PLAN_DEFAULTS or v != _PLAN_DEFAULTS[k]
        })
        for r in plan
    ]  # fmt: skip


def plan_from_status(items: Any) -> tuple[Rendition, ...]:
    """The plan as the operator wrote it, every value checked (InvalidPlan otherwise)."""
    if not isinstance(items, (list, tuple)):
        raise InvalidPlan("status.plan must be a list")
    back = {v: k for k, v in _PLAN_FIELDS.items()}
    converted = []
    for item in items:
        if not isinstance(item, Mapping):
            raise InvalidPlan("status.plan holds a rendition that is not an object")
        unknown = set(item) - set(back)
        if unknown:
            raise InvalidPlan(f"status.plan: unknown fields {', '.join(sorted(map(str, unknown)))}")
        converted.append({"fps": None, **{back[k]: v for k, v in item.items()}})
    return plan_from_list(converted)


@dataclass(frozen=True)
class VideoTranscodeStatus:
    phase: Phase | None = None
    observed_generation: int | None = None
    progress: int = 0
    renditions_ready: str | None = None
    source: SourceStatus | None = None
    plan: tuple[Rendition, ...] | None = None  # what the operator decided to make
    renditions: Mapping[str, RenditionStatus] = field(default_factory=dict)
    ingest: IngestStatus | None = None
    outputs: PublishedOutputs | None = None
    conditions: tuple[Condition, ...] = ()
    probe_failures: int = 0  # probes in a row that could not read the source for a passing reason
    probe_retry_at: str | None = None  # when to probe again after such a failure
    grouping: Grouping | None = None  # decided with the plan

    def grouped(self, spec: VideoTranscodeSpec) -> bool:
        """Whether the planned renditions share one Job. A status planned before the operator
        chose (no ``grouping``) followed the spec, whose default was one Job per rendition."""
        if self.grouping is not None:
            return self.grouping.grouped
        return bool(spec.group_renditions)

    def condition(self, type: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type), None)

    def rendition(self, name: str) -> RenditionStatus:
        return self.renditions.get(name) or RenditionStatus()

    def to_dict(self) -> dict[str, Any]:
        return _without_none(
            {
                "phase": self.phase,
                "observedGeneration": self.observed_generation,
                "progress": self.progress,
                "renditionsReady": self.renditions_ready,
                "source": None if self.source is None else self.source.to_dict(),
                "plan": None if self.plan is None else plan_to_status(self.plan),
                "renditions": {k: v.to_dict() for k, v in sorted(self.renditions.items())},
                "ingest": None if self.ingest is None else self.ingest.to_dict(),
                "outputs": None if self.outputs is None else self.outputs.to_dict(),
                "conditions": [c.to_dict() for c in self.conditions],
                "probeFailures": self.probe_failures or None,
                "probeRetryAt": self.probe_retry_at,
                "grouping": None if self.grouping is None else self.grouping.to_dict(),
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VideoTranscodeStatus:
        """Read a stored status; InvalidStatus names what is wrong with a malformed one."""
        try:
            return cls._read(d)
        except (ValueError, TypeError) as exc:
            raise InvalidStatus(str(exc)) from None

    @classmethod
    def _read(cls, d: Mapping[str, Any]) -> VideoTranscodeStatus:
        phase = _optional(d, "phase", "string", "status")
        source = _optional(d, "source", "object", "status")
        plan = d.get("plan")
        entries = _optional(d, "renditions", "object", "status") or {}
        ingest = _optional(d, "ingest", "object", "status")
        outputs = _optional(d, "outputs", "object", "status")
        conditions = _optional(d, "conditions", "array", "status") or []
        grouping = _optional(d, "grouping", "object", "status")
        return cls(
            phase=None
            if phase is None
            else cast(Phase, _one_of(phase, get_args(Phase), "status.phase")),
            observed_generation=_optional(d, "observedGeneration", "integer", "status"),
            progress=_optional(d, "progress", "integer", "status") or 0,
            renditions_ready=_optional(d, "renditionsReady", "string", "status"),
            source=None if source is None else SourceStatus.from_dict(source),
            plan=None if plan is None else plan_from_status(plan),
            renditions={
                str(k): RenditionStatus.from_dict(
                    _check(v, "object", f"status.renditions.{k}"), f"status.renditions.{k}"
                )
                for k, v in entries.items()
            },
            ingest=None if ingest is None else IngestStatus.from_dict(ingest),
            outputs=None if not outputs else PublishedOutputs.from_dict(outputs),
            conditions=tuple(
                Condition.from_dict(_check(c, "object", "status.conditions[]")) for c in conditions
            ),
            probe_failures=_optional(d, "probeFailures", "integer", "status") or 0,
            probe_retry_at=_optional(d, "probeRetryAt", "string", "status"),
            grouping=None if grouping is None else Grouping.from_dict(grouping),
        )


# The keys of status the model writes; anything else there (kopf's bookkeeping) is left alone.
STATUS_KEYS = frozenset(
    {
        "phase", "observedGeneration", "progress", "renditionsReady", "source", "plan",
        "renditions", "ingest", "outputs", "conditions", "probeFailures", "probeRetryAt",
        "grouping",
    }
)  # fmt: skip
