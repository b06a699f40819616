"""Reading FFmpeg's HLS playlists and writing the ones vtx publishes (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vtx.core.ladder import Rendition, audio_track, is_audio_track, subtitle_track
from vtx.core.tracks import menu_name

AAC_LC = "mp4a.40.2"


@dataclass(frozen=True)
class Segment:
    sequence: int  # 0-based position in the playlist
    uri: str
    duration: float


@dataclass(frozen=True)
class MediaPlaylist:
    target_duration: int
    init_uri: str | None
    segments: tuple[Segment, ...]
    ended: bool


def parse_media_playlist(text: str) -> MediaPlaylist:
    """The segments FFmpeg has finished, in order, with their durations."""
    target = 0
    init_uri: str | None = None
    segments: list[Segment] = []
    ended = False
    pending: float | None = None
    media_sequence = 0
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            media_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MAP:"):
            init_uri = _attribute(line, "URI")
        elif line.startswith("#EXTINF:"):
            pending = float(line.split(":", 1)[1].split(",", 1)[0])
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif line and not line.startswith("#") and pending is not None:
            segments.append(Segment(media_sequence + len(segments), line, pending))
            pending = None
    return MediaPlaylist(target, init_uri, tuple(segments), ended)


def _attribute(line: str, name: str) -> str | None:
    for part in line.split(":", 1)[1].split(","):
        key, _, value = part.partition("=")
        if key.strip() == name:
            return value.strip().strip('"')
    return None


def render_media_playlist(
    segments: list[Segment] | tuple[Segment, ...], *, init_uri: str | None, ended: bool
) -> str:
    """An EVENT playlist of the segments published so far; ENDLIST once the encode is done.

    A player can start from it while the encode runs: EVENT playlists only grow.
    """
    target = max((math.ceil(s.duration) for s in segments), default=1)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:EVENT",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    if init_uri:
        lines.append(f'#EXT-X-MAP:URI="{init_uri}"')
    for segment in segments:
        lines.append(f"#EXTINF:{segment.duration:.6f},")
        lines.append(segment.uri)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Variant:
    uri: str  # relative to the master playlist, e.g. "720p/hls/index.m3u8"
    bandwidth: int  # bits per second, peak
    average_bandwidth: int
    codecs: str
    width: int = 0
    height: int = 0
    frame_rate: float | None = None


AUDIO_GROUP = "audio"
SUBTITLES_GROUP = "subs"


@dataclass(frozen=True)
class Media:
    """An alternate rendition of the master (``#EXT-X-MEDIA``): an audio track or subtitles.
    ``name`` and ``language`` come checked from vtx.core.tracks (no quotes, commas or breaks)."""

    type: Literal["AUDIO", "SUBTITLES"]
    name: str
    language: str  # "und" when unknown: then no LANGUAGE attribute
    uri: str
    default: bool = False
    forced: bool = False
    channels: int | None = None


def _media_line(m: Media) -> str:
    group = AUDIO_GROUP if m.type == "AUDIO" else SUBTITLES_GROUP
    attrs = [f"TYPE={m.type}", f'GROUP-ID="{group}"', f'NAME="{m.name}"']
    if m.language != "und":
        attrs.append(f'LANGUAGE="{m.language}"')
    attrs.append(f"DEFAULT={'YES' if m.default else 'NO'}")
    attrs.append(f"AUTOSELECT={'YES' if m.default or m.type == 'AUDIO' else 'NO'}")
    if m.type == "SUBTITLES" and m.forced:
        attrs.append("FORCED=YES")
    if m.channels:
        attrs.append(f'CHANNELS="{m.channels}"')
    attrs.append(f'URI="{m.uri}"')
    return f"#EXT-X-MEDIA:{','.join(attrs)}"


def render_master_playlist(variants: list[Variant], media: Sequence[Media] = ()) -> str:
    """The master playlist, variants ordered by bandwidth (the first one is a player's start).
    With ``media``, its audio tracks and subtitles come first and every variant names their
    groups (its own HLS then carries no sound: the audio group does)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    lines += [_media_line(m) for m in media]
    groups = []
    if any(m.type == "AUDIO" for m in media):
        groups.append(f'AUDIO="{AUDIO_GROUP}"')
    if any(m.type == "SUBTITLES" for m in media):
        groups.append(f'SUBTITLES="{SUBTITLES_GROUP}"')
    for v in sorted(variants, key=lambda v: v.bandwidth):
        attrs = [
            f"BANDWIDTH={v.bandwidth}",
            f"AVERAGE-BANDWIDTH={v.average_bandwidth}",
            f'CODECS="{v.codecs}"',
        ]
        if v.width and v.height:
            attrs.append(f"RESOLUTION={v.width}x{v.height}")
        if v.frame_rate:
            attrs.append(f"FRAME-RATE={v.frame_rate:.3f}")
        attrs += groups
        lines.append(f"#EXT-X-STREAM-INF:{','.join(attrs)}")
        lines.append(v.uri)
    return "\n".join(lines) + "\n"


def h264_codec(short_side: int) -> str:
    """The RFC 6381 codec string of the High-profile H.264 the jobrunner writes, by level."""
    level = (
        0x1E
        if short_side <= 480
        else 0x1F
        if short_side <= 720
        else 0x28
        if short_side <= 1080
        else 0x33
    )
    return f"avc1.6400{level:02x}"


def variant_of(r: Rendition) -> Variant:
    """A rendition's entry in the master playlist (its playlist at ``<name>/hls/index.m3u8``)."""
    if r.kind == "audio":
        codecs = AAC_LC
    else:
        codecs = h264_codec(min(r.width, r.height))
        if r.audio_bitrate_k:
            codecs += f",{AAC_LC}"
    return Variant(
        uri=f"{r.name}/hls/index.m3u8",
        bandwidth=(r.maxrate_k + r.audio_bitrate_k) * 1000,
        average_bandwidth=(r.video_bitrate_k + r.audio_bitrate_k) * 1000,
        codecs=codecs,
        width=r.width,
        height=r.height,
        frame_rate=r.fps,
    )


def _track_media(
    renditions: Sequence[Rendition], kind: Literal["AUDIO", "SUBTITLES"]
) -> list[Media]:
    """One group's entries, in track order, each name distinct within the group (two tracks
    both tagged "en" become "en" and "en (2)")."""
    audio = kind == "AUDIO"
    mine = [r for r in renditions if (is_audio_track(r) if audio else r.kind == "subtitles")]
    number_of = audio_track if audio else subtitle_track
    media: list[Media] = []
    names: set[str] = set()
    for r in sorted(mine, key=number_of):
        number = number_of(r) + 1
        name = menu_name(r.title, r.language, number, kind="audio" if audio else "subtitles")
        if name in names:
            name = f"{name} ({number})"
        names.add(name)
        uri = f"{r.name}/hls/index.m3u8"
        media.append(
            Media("AUDIO", name, r.language, uri, default=number == 1, channels=2)
            if audio
            else Media("SUBTITLES", name, r.language, uri)
        )
    return media


def master_of(renditions: Sequence[Rendition]) -> str | None:
    """The master playlist of a video's renditions (``<name>/hls/index.m3u8`` each): its
    audio tracks (``audio-N``) as the audio group, the first the default; its subtitles
    (``text-N``) as the subtitles group, none shown by default; the others as variants.
    None while a variant without sound of its own has no default track to play."""
    audio = _track_media(renditions, "AUDIO")
    variants = [
        variant_of(r) for r in renditions if not is_audio_track(r) and r.kind != "subtitles"
    ]
    if not variants:
        return None
    if any(r.alt_audio for r in renditions) and not (audio and audio[0].default):
        return None
    return render_master_playlist(variants, audio + _track_media(renditions, "SUBTITLES"))
