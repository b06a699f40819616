"""A source's audio and subtitle tracks as the probe reads them, checked into bounded values
(pure functions): what a track's language and name may be before they reach a rendition, a
path or an ``#EXT-X-MEDIA`` line of the master playlist; and the check of the WebVTT files
made of subtitle tracks.

How they are used (vtx.core.ladder plans them): every audio track of a video with several
becomes an audio rendition ``audio-N`` of the master's audio group (the first the default; the
video variants' HLS then carry no sound, through the tee muxer's ``select=v``, while their MP4s
keep the first track); every text subtitle track (SRT, ASS/SSA, mov_text, WebVTT) becomes a
WebVTT rendition ``text-N`` of its subtitles group. Any audio layout is downmixed to stereo
AAC. A source with one audio track and no subtitles keeps the layout it always had.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

TEXT_SUBTITLE_CODECS = ("subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text")
MAX_TITLE = 60  # characters of a track's name kept
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?$")
UNDETERMINED = "und"


@dataclass(frozen=True)
class Track:
    kind: Literal["audio", "subtitles"]
    index: int  # among the source's streams of its kind: FFmpeg's 0:a:N or 0:s:N
    codec: str
    language: str  # a BCP 47-like code as tagged (``en``, ``deu``, ``pt-BR``), else "und"
    title: str | None  # as tagged, printable and bounded; None when untagged
    channels: int | None = None
    default: bool = False
    forced: bool = False


def language_of(value: Any) -> str:
    """A language tag as a code a playlist may carry, or "und"."""
    if not isinstance(value, str):
        return UNDETERMINED
    value = value.strip()
    return value if _LANGUAGE.fullmatch(value) and value.lower() != UNDETERMINED else UNDETERMINED


def title_of(value: Any) -> str | None:
    """A track's name as a person may read it in a menu: printable characters only (no quotes,
    commas or line breaks, which the playlist's attribute syntax gives meaning), bounded."""
    if not isinstance(value, str):
        return None
    kept = []
    for ch in unicodedata.normalize("NFC", value):
        category = unicodedata.category(ch)
        if ch in "\"',\\" or category[0] == "C":
            kept.append(" ")
        elif category[0] in "LMNPSZ":
            kept.append(ch)
    text = " ".join("".join(kept).split())[:MAX_TITLE].strip()
    return text or None


def tracks_from_ffprobe(
    streams: Sequence[Mapping[str, Any]], *, max_audio: int, max_subtitles: int
) -> tuple[tuple[Track, ...], tuple[Track, ...], int]:
    """The audio tracks and the text subtitle tracks of a source, in stream order and up to
    the limits; the third value counts what was left out (bitmap subtitles, tracks beyond a
    limit)."""
    audio: list[Track] = []
    subtitles: list[Track] = []
    left_out = 0
    counts = {"audio": 0, "subtitle": 0}
    for s in streams:
        kind = s.get("codec_type")
        if kind not in counts:
            continue
        index = counts[kind]
        counts[kind] += 1
        tags = s.get("tags") if isinstance(s.get("tags"), Mapping) else {}
        disposition = s.get("disposition") if isinstance(s.get("disposition"), Mapping) else {}
        assert isinstance(tags, Mapping)
        assert isinstance(disposition, Mapping)
        codec = str(s.get("codec_name") or "")[:32]
        channels = s.get("channels")
        track = Track(
            kind="audio" if kind == "audio" else "subtitles",
            index=index,
            codec=codec,
            language=language_of(tags.get("language")),
            title=title_of(tags.get("title")),
            channels=channels if isinstance(channels, int) and 0 < channels <= 64 else None,
            default=disposition.get("default") == 1,
            forced=disposition.get("forced") == 1,
        )
        if kind == "audio":
            if len(audio) < max_audio:
                audio.append(track)
            else:
                left_out += 1
        elif codec in TEXT_SUBTITLE_CODECS and len(subtitles) < max_subtitles:
            subtitles.append(track)
        else:
            left_out += 1
    return tuple(audio), tuple(subtitles), left_out


def menu_name(title: str | None, language: str, number: int, *, kind: str = "audio") -> str:
    """What a player's menu shows for a track: its title, else its language, else a number."""
    if title:
        return title
    if language != UNDETERMINED:
        return language
    return f"{'Audio' if kind == 'audio' else 'Subtitles'} {number}"


# --- WebVTT subtitles as FFmpeg writes them (verify) -----------------------------------------

MAX_WEBVTT_BYTES = 8 * 1024 * 1024
_CUE_TIME = re.compile(
    r"^(?:(\d+):)?([0-5]\d):([0-5]\d)\.(\d{3}) --> (?:(\d+):)?([0-5]\d):([0-5]\d)\.(\d{3})(?: .*)?$"
)


def _seconds(hours: str | None, minutes: str, seconds: str, millis: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def cue_times(text: str) -> list[tuple[float, float]]:
    """The start and end of each cue of a WebVTT file, in order."""
    times = []
    for line in text.splitlines():
        m = _CUE_TIME.match(line.strip())
        if m:
            times.append((_seconds(*m.group(1, 2, 3, 4)), _seconds(*m.group(5, 6, 7, 8))))
    return times


def webvtt_problems(data: bytes, duration: float | None, *, slack_s: float = 4.0) -> list[str]:
    """What is wrong with a subtitles rendition's WebVTT file: not one, too big, a cue that
    ends before it starts or past the video's end (with ``slack_s``)."""
    if len(data) > MAX_WEBVTT_BYTES:
        return [f"has {len(data)} bytes, more than {MAX_WEBVTT_BYTES}"]
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return ["is not UTF-8 text"]
    if not (text.startswith("WEBVTT") and text[6:7] in ("", " ", "\t", "\n", "\r")):
        return ["does not start with WEBVTT"]
    problems = []
    for start, end in cue_times(text):
        if end < start:
            problems.append(f"has a cue that ends ({end:.3f}s) before it starts ({start:.3f}s)")
            break
        if duration and start > duration + slack_s:
            problems.append(f"has a cue at {start:.3f}s, after the video's end ({duration:.1f}s)")
            break
    return problems
