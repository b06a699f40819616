"""The ladder planner: from what the probe learned about a source to the renditions to make.

Pure functions. Sizes are planned on the *display* size (sample aspect ratio and rotation
applied), so anamorphic and phone videos keep their shape; a rung's height is the target of the
short side, so a portrait video at the 720p rung is 720 pixels wide.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import Any, Literal

from vtx.core.tracks import UNDETERMINED, Track, language_of, title_of

FIELD_ORDERS = ("progressive", "tt", "bb", "tb", "bt", "unknown")
INTERLACED_ORDERS = ("tt", "bb", "tb", "bt")


class InvalidSource(ValueError):
    """The source cannot be transcoded; the message says why."""


@dataclass(frozen=True)
class Rung:
    """One step of the configured ladder (bitrates in kbit/s)."""

    name: str
    height: int
    video_bitrate_k: int
    maxrate_k: int
    bufsize_k: int
    audio_bitrate_k: int


DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung("480p", 480, 1400, 1498, 2100, 128),
    Rung("720p", 720, 2800, 2996, 4200, 128),
    Rung("1080p", 1080, 5000, 5350, 7500, 192),
)
AUDIO_ONLY_BITRATE_K = 128


@dataclass(frozen=True)
class SourceFacts:
    """What the probe learned about a source."""

    duration: float
    has_video: bool
    has_audio: bool
    width: int | None = None  # coded size, before sample aspect ratio and rotation
    height: int | None = None
    rotation: int = 0  # degrees, as the display matrix or rotate tag says
    sar: Fraction = Fraction(1)
    fps: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    # As the stream says: progressive, tt, bb, tb or bt (interlaced, the first letter the field
    # shown first), unknown when it does not say.
    field_order: str = "unknown"
    # Every audio track, in stream order (the first is 0:a:0), as the probe read it, and the
    # text subtitle tracks (index: among all subtitle streams, FFmpeg's 0:s:N).
    audio_tracks: tuple[Track, ...] = ()
    subtitle_tracks: tuple[Track, ...] = ()

    @property
    def interlaced(self) -> bool:
        return self.field_order in INTERLACED_ORDERS


@dataclass(frozen=True)
class Rendition:
    """One output to make; width/height/fps/video bitrates are 0 or None for audio and
    subtitles (and the audio bitrate too for subtitles)."""

    name: str
    kind: Literal["video", "audio", "subtitles"]
    width: int
    height: int
    fps: float | None
    video_bitrate_k: int
    maxrate_k: int
    bufsize_k: int
    audio_bitrate_k: int
    # This rendition's Job also makes the video's poster, thumbnail and storyboard (the lowest
    # video rendition's, the cheapest to add them to: see vtx.core.images).
    images: bool = False
    # A video rendition whose HLS carries no sound: the source has several audio tracks, and
    # the master offers each as an audio rendition (its MP4 keeps the first track).
    alt_audio: bool = False
    # An audio or subtitle track's language as the source tags it ("und" when untagged) and
    # its name for a player's menu (vtx.core.tracks checks both).
    language: str = UNDETERMINED
    title: str | None = None


# Fields a rendition written by an older vtx may lack; the others are always there.
OPTIONAL_FIELDS = frozenset({"images", "alt_audio", "language", "title"})
# A rendition's name becomes a folder, an object key, a tee target and a playlist line: it comes
# from this grammar and nothing else ("480p", "1080p", "96p" for a tiny source, "audio" for
# sound only, "audio-2" for a video's second audio track, "text-1" for its first subtitle
# stream).
RENDITION_NAME = re.compile(r"^(?:[1-9][0-9]{0,3}p|audio|audio-[1-9][0-9]?|text-[1-9][0-9]?)$")
MAX_AUDIO_TRACKS = 8  # the most a setting may ask for
MAX_SUBTITLE_TRACKS = 8
MAX_PLAN = 24  # renditions in a plan
MAX_DIMENSION = 8192  # pixels, either side of an output frame
MAX_FPS = 240.0
MAX_BITRATE_K = 200_000  # kbit/s, any of a rendition's rates


class InvalidPlan(ValueError):
    """A rendition (from a status, an argument or a queue event) that vtx did not plan."""


def _bounded_int(d: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidPlan(f"{key} must be an integer from {low} to {high}, not {value!r}")
    return value


def rendition_from_dict(d: Any) -> Rendition:
    """A planned rendition read back from storage: every field checked and bounded, so that
    nothing but a name of the grammar and plain numbers reaches FFmpeg, a path or a key."""
    if not isinstance(d, Mapping):
        raise InvalidPlan(f"a rendition must be an object, not {type(d).__name__}")
    unknown = set(d) - set(Rendition.__dataclass_fields__)
    if unknown:
        raise InvalidPlan(f"unknown rendition fields: {', '.join(sorted(map(str, unknown)))}")
    name = d.get("name")
    if not isinstance(name, str) or not RENDITION_NAME.fullmatch(name):
        raise InvalidPlan(f"rendition name {str(name)[:40]!r} is not of the form 720p or audio")
    kind = d.get("kind")
    if kind != kind_of(name):
        raise InvalidPlan(f"rendition {name}: kind {str(kind)[:20]!r} does not fit its name")
    fps = d.get("fps")
    if fps is not None and (
        not isinstance(fps, (int, float))
        or isinstance(fps, bool)
        or not math.isfinite(fps)
        or not 0 < fps <= MAX_FPS
    ):
        raise InvalidPlan(f"rendition {name}: fps must be a number above 0 up to {MAX_FPS:g}")
    images = d.get("images", False)
    if not isinstance(images, bool) or (images and kind != "video"):
        raise InvalidPlan(f"rendition {name}: images must be true or false, and false for audio")
    alt_audio = d.get("alt_audio", False)
    if not isinstance(alt_audio, bool) or (alt_audio and kind != "video"):
        raise InvalidPlan(f"rendition {name}: alt_audio must be true or false, and false for audio")
    language = d.get("language", UNDETERMINED)
    if not isinstance(language, str) or language_of(language) != language:
        shown = str(language)[:20]
        raise InvalidPlan(f"rendition {name}: language {shown!r} is not a language code")
    title = d.get("title")
    if title is not None and (not isinstance(title, str) or title_of(title) != title):
        raise InvalidPlan(f"rendition {name}: title must be a short line of printable text")
    if (language != UNDETERMINED or title is not None) and not is_track(name):
        raise InvalidPlan(f"rendition {name}: only a video's tracks have a language or title")
    low = 2 if kind == "video" else 0
    width = _bounded_int(d, "width", low, MAX_DIMENSION if kind == "video" else 0)
    height = _bounded_int(d, "height", low, MAX_DIMENSION if kind == "video" else 0)
    if width % 2 or height % 2:
        raise InvalidPlan(f"rendition {name}: width and height must be even")
    video_high = MAX_BITRATE_K if kind == "video" else 0
    return Rendition(
        name=name,
        kind=kind,
        width=width,
        height=height,
        fps=None if fps is None else float(fps),
        video_bitrate_k=_bounded_int(d, "video_bitrate_k", low // 2, video_high),
        maxrate_k=_bounded_int(d, "maxrate_k", low // 2, video_high),
        bufsize_k=_bounded_int(d, "bufsize_k", low // 2, video_high),
        audio_bitrate_k=_bounded_int(
            d, "audio_bitrate_k", 0, 0 if kind == "subtitles" else MAX_BITRATE_K
        ),
        images=images,
        alt_audio=alt_audio,
        language=language,
        title=title,
    )


def kind_of(name: str) -> str:
    """What a rendition of this (checked) name holds."""
    if name.startswith("text-"):
        return "subtitles"
    return "audio" if name.startswith("audio") else "video"


def is_track(name: str) -> bool:
    """A rendition of one of a video's audio or subtitle tracks (``audio-N``, ``text-N``)."""
    return name.startswith(("audio-", "text-"))


def audio_track(r: Rendition) -> int:
    """Which of the source's audio tracks a rendition carries (FFmpeg's ``0:a:N``)."""
    return int(r.name.removeprefix("audio-")) - 1 if r.name.startswith("audio-") else 0


def subtitle_track(r: Rendition) -> int:
    """Which of the source's subtitle streams a ``text-N`` rendition carries (``0:s:N-1``)."""
    return int(r.name.removeprefix("text-")) - 1


def is_audio_track(r: Rendition) -> bool:
    """An audio rendition of a video with several audio tracks (``audio-N``)."""
    return r.name.startswith("audio-")


def rendition_to_dict(r: Rendition) -> dict[str, Any]:
    return asdict(r)


def plan_from_list(items: Any) -> tuple[Rendition, ...]:
    """A whole plan read back: a non-empty list of checked renditions with distinct names."""
    if not isinstance(items, (list, tuple)) or not items or len(items) > MAX_PLAN:
        raise InvalidPlan(f"a plan is a list of 1 to {MAX_PLAN} renditions")
    plan = tuple(rendition_from_dict(item) for item in items)
    names = [r.name for r in plan]
    if len(set(names)) != len(names):
        raise InvalidPlan("a plan names each rendition once")
    return plan


def _even(x: float) -> int:
    """The nearest even integer, never below 2."""
    return max(2, 2 * round(x / 2))


def display_size(facts: SourceFacts) -> tuple[int, int]:
    """Width and height as a viewer sees them."""
    if not facts.width or not facts.height or facts.width <= 0 or facts.height <= 0:
        raise InvalidSource("the video stream has no frame size")
    sar = facts.sar if facts.sar > 0 else Fraction(1)
    width = facts.width * sar
    height = Fraction(facts.height)
    if facts.rotation % 180 == 90:
        width, height = height, width
    return round(width), round(height)


def scale_short_side(width: int, height: int, short_target: int) -> tuple[int, int]:
    """Scale so the short side is ``short_target``, keeping the aspect ratio, both even."""
    if width >= height:
        return _even(width * short_target / height), _even(short_target)
    return _even(short_target), _even(height * short_target / width)


def plan_ladder(
    source: SourceFacts,
    ladder: Sequence[Rung] = DEFAULT_LADDER,
    *,
    max_fps: float = 60.0,
    max_audio_tracks: int = 4,
    max_subtitle_tracks: int = 4,
) -> list[Rendition]:
    """The renditions to make, lowest first. Never upscales; keeps aspect ratio and orientation.

    A video with several audio tracks gets one audio rendition per track (``audio-1`` for the
    first, up to ``max_audio_tracks``), after the video renditions; their HLS then carry no
    sound (``alt_audio``), their MP4s the first track. Each text subtitle track becomes a
    WebVTT rendition ``text-N`` (N counting every subtitle stream, so ``0:s:N-1``), up to
    ``max_subtitle_tracks``."""
    if not math.isfinite(source.duration) or source.duration <= 0:
        raise InvalidSource("the source has no duration")
    if not source.has_video and not source.has_audio:
        raise InvalidSource("the source has neither video nor audio")
    if not source.has_video:
        return [Rendition("audio", "audio", 0, 0, None, 0, 0, 0, AUDIO_ONLY_BITRATE_K)]
    if not ladder:
        raise ValueError("the ladder is empty")
    width, height = display_size(source)
    short = min(width, height)
    fps = min(source.fps, max_fps) if source.fps and source.fps > 0 else None
    rungs = sorted(ladder, key=lambda r: r.height)
    fitting = [r for r in rungs if r.height <= short]
    out = []
    for rung in fitting:
        w, h = scale_short_side(width, height, rung.height)
        audio = rung.audio_bitrate_k if source.has_audio else 0
        out.append(
            Rendition(rung.name, "video", w, h, fps, rung.video_bitrate_k, rung.maxrate_k,
                      rung.bufsize_k, audio)
        )  # fmt: skip
    if not out:
        # Smaller than the lowest rung: one rendition at its own size, with that rung's
        # bitrates scaled by the pixel ratio (but not below a quarter of them).
        low = rungs[0]
        w, h = _even(width), _even(height)
        low_w, low_h = scale_short_side(width, height, low.height)
        ratio = max(0.25, (w * h) / (low_w * low_h))
        out.append(
            Rendition(
                f"{min(w, h)}p", "video", w, h, fps,
                max(1, round(low.video_bitrate_k * ratio)), max(1, round(low.maxrate_k * ratio)),
                max(1, round(low.bufsize_k * ratio)),
                low.audio_bitrate_k if source.has_audio else 0,
            )
        )  # fmt: skip
    out[0] = replace(out[0], images=True)
    tracks = source.audio_tracks[:max_audio_tracks] if source.has_audio else ()
    if len(tracks) >= 2:
        out = [replace(r, alt_audio=True) for r in out] + [
            Rendition(f"audio-{n}", "audio", 0, 0, None, 0, 0, 0, AUDIO_ONLY_BITRATE_K,
                      language=t.language, title=t.title)
            for n, t in enumerate(tracks, start=1)
        ]  # fmt: skip
    return out + [
        Rendition(f"text-{t.index + 1}", "subtitles", 0, 0, None, 0, 0, 0, 0,
                  language=t.language, title=t.title)
        for t in source.subtitle_tracks[:max_subtitle_tracks]
        if t.index < 99
    ]  # fmt: skip


def sound_apart(plan: Sequence[Rendition]) -> list[Rendition]:
    """A split video's plan (vtx.core.ranges): its sound encoded once, as a rendition of its
    own (``audio-1``, the first track), and its video renditions' HLS the picture alone
    (``alt_audio``; their MP4s get audio-1's sound). A plan with sound renditions already, or
    with no sound, is as it was."""
    if any(r.kind == "audio" for r in plan) or not any(
        r.kind == "video" and r.audio_bitrate_k for r in plan
    ):
        return list(plan)
    videos = [replace(r, alt_audio=True) for r in plan if r.kind == "video"]
    sound = Rendition("audio-1", "audio", 0, 0, None, 0, 0, 0, AUDIO_ONLY_BITRATE_K)
    return [*videos, sound, *(r for r in plan if r.kind != "video")]


def parse_ladder(text: str) -> tuple[Rung, ...]:
    """A ladder from a setting: ``name:height:video_k:maxrate_k:bufsize_k:audio_k,...``."""
    rungs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        fields = item.split(":")
        if len(fields) != 6:
            raise ValueError(
                f"rung {item!r}: expected name:height:video_k:maxrate_k:bufsize_k:audio_k"
            )
        name, *numbers = fields
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise ValueError(f"rung {item!r}: the name must be letters, digits or '-'")
        try:
            height, video, maxrate, bufsize, audio = (int(n) for n in numbers)
        except ValueError:
            raise ValueError(f"rung {item!r}: the numbers must be integers") from None
        if min(height, video, maxrate, bufsize, audio) <= 0:
            raise ValueError(f"rung {item!r}: every number must be positive")
        rungs.append(Rung(name, height, video, maxrate, bufsize, audio))
    if not rungs:
        raise ValueError("the ladder is empty")
    names = [r.name for r in rungs]
    if len(set(names)) != len(names):
        raise ValueError("rung names must be unique")
    heights = [r.height for r in rungs]
    if heights != sorted(set(heights)):
        raise ValueError("rung heights must increase")
    return tuple(rungs)


def format_ladder(ladder: Sequence[Rung]) -> str:
    return ",".join(
        f"{r.name}:{r.height}:{r.video_bitrate_k}:{r.maxrate_k}:{r.bufsize_k}:{r.audio_bitrate_k}"
        for r in ladder
    )
