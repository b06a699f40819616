"""Reading ffprobe: the argument list of a safe probe, and its JSON report turned into the
facts the planner needs (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from vtx.core.ladder import FIELD_ORDERS, MAX_AUDIO_TRACKS, MAX_SUBTITLE_TRACKS, SourceFacts
from vtx.core.tracks import tracks_from_ffprobe


def ffprobe_args(
    url: str, *, allowed_protocols: str, allowed_formats: str, timeout_s: int
) -> list[str]:
    """ffprobe of ``url`` reading only the given protocols and demuxers (input options)."""
    return [
        "ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
        "-protocol_whitelist", allowed_protocols,
        "-format_whitelist", allowed_formats,
        "-rw_timeout", str(timeout_s * 1_000_000),
        "-i", url,
    ]  # fmt: skip


def _ratio(value: Any) -> Fraction | None:
    """``"30000/1001"`` or ``"4:3"`` as a fraction; None when absent, zero or garbled."""
    if not isinstance(value, str):
        return None
    num, sep, den = value.replace(":", "/").partition("/")
    try:
        result = Fraction(int(num), int(den)) if sep else Fraction(value)
    except (ValueError, ZeroDivisionError):
        return None
    return result if result > 0 else None


def _number(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _rotation(stream: Mapping[str, Any]) -> int:
    for side in stream.get("side_data_list") or []:
        if isinstance(side, Mapping) and "rotation" in side:
            value = _number(side.get("rotation"))
            if value is not None:
                return int(value) % 360
    tags = stream.get("tags")
    if isinstance(tags, Mapping):
        value = _number(tags.get("rotate"))
        if value is not None:
            return int(value) % 360
    return 0


def facts_from_ffprobe(report: Mapping[str, Any]) -> SourceFacts:
    """The planner's facts from ``ffprobe -show_format -show_streams`` JSON; never raises on
    missing or garbled fields (what cannot be read is unknown)."""
    streams = [s for s in report.get("streams") or [] if isinstance(s, Mapping)]
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video"
            and not (s.get("disposition") or {}).get("attached_pic")
        ),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    fmt = report.get("format") if isinstance(report.get("format"), Mapping) else {}
    assert isinstance(fmt, Mapping)
    duration = _number(fmt.get("duration"))
    if duration is None:
        durations = [d for s in streams if (d := _number(s.get("duration"))) is not None]
        duration = max(durations, default=0.0)
    fps = None
    width = height = None
    sar = Fraction(1)
    rotation = 0
    field_order = "unknown"
    if video is not None:
        rate = _ratio(video.get("avg_frame_rate")) or _ratio(video.get("r_frame_rate"))
        fps = round(float(rate), 3) if rate else None
        width, height = _int(video.get("width")), _int(video.get("height"))
        sar = _ratio(video.get("sample_aspect_ratio")) or Fraction(1)
        rotation = _rotation(video)
        order = video.get("field_order")
        field_order = order if isinstance(order, str) and order in FIELD_ORDERS else "unknown"
    tracks = tracks_from_ffprobe(
        streams, max_audio=MAX_AUDIO_TRACKS, max_subtitles=MAX_SUBTITLE_TRACKS
    )
    return SourceFacts(
        duration=duration,
        has_video=video is not None,
        has_audio=audio is not None,
        width=width,
        height=height,
        rotation=rotation,
        sar=sar,
        fps=fps,
        video_codec=str(video.get("codec_name")) if video and video.get("codec_name") else None,
        audio_codec=str(audio.get("codec_name")) if audio and audio.get("codec_name") else None,
        field_order=field_order,
        audio_tracks=tracks[0],
        subtitle_tracks=tracks[1],
    )
