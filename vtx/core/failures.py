"""Why a video failed, as a sentence a person understands (pure).

The operator's reasons are written for whoever runs the cluster: a condition reason and what
ffprobe, FFmpeg or a check said (``InvalidSource: hls input is not allowed (...)``). The person
who uploaded the file gets a sentence instead (``This file is an HLS playlist, not a video.``),
and the technical words are kept beside it (``failure_detail``). A sentence is made only from
this module's own words and from numbers: nothing of the file's (a name, a tag, a line of a
playlist) is ever quoted in it.
"""

from __future__ import annotations

import re

MAX_HEAD = 4096  # bytes of the source the sniffer looks at

# What a file that is not media says in its first bytes: (prefix, what it is). Compared after
# leading whitespace and a byte-order mark, case-insensitively.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"#extm3u", "an HLS playlist"),
    (b"ffconcat", "a list of other files (an FFmpeg concat script)"),
    (b"<!doctype html", "a web page (HTML)"),
    (b"<html", "a web page (HTML)"),
    (b"%pdf-", "a PDF document"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89png\r\n\x1a\n", "a PNG image"),
    (b"gif87a", "a GIF image"),
    (b"gif89a", "a GIF image"),
    (b"pk\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"rar!\x1a\x07", "a RAR archive"),
    (b"{\\rtf", "a text document (RTF)"),
)


def sniff(head: bytes) -> str | None:
    """What the first bytes of a file say it is, when that is something other than media:
    ``"an HLS playlist"``, ``"a PNG image"``, ``"a text file"``... ``None`` when they do not
    tell (a damaged or unusual media file, say)."""
    if not head:
        return "an empty file"
    start = head[:MAX_HEAD].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    for prefix, kind in _MAGIC:
        if start.startswith(prefix):
            return kind
    if start.startswith(b"<?xml") and b"<mpd" in start:
        return "a DASH manifest"
    if start.startswith(b"riff") and start[8:12] == b"webp":
        return "a WebP image"
    if start.startswith((b"{", b"[")) and _is_text(head):
        return "JSON text"
    if _is_text(head):
        return "a text file"
    return None


def _is_text(head: bytes) -> bool:
    try:
        text = head[:MAX_HEAD].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head[:MAX_HEAD]) - 3:  # not merely a character cut at the end
            return False
        text = head[: exc.start].decode("utf-8")
    printable = sum(1 for c in text if c.isprintable() or c in "\t\r\n")
    return bool(text) and printable >= 0.98 * len(text)


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


_NOT_MEDIA = (
    "This file is not a video or audio file that can be read: it may be damaged, or in a format"
    " that is not supported."
)

_POINTERS = ("an HLS playlist", "a DASH manifest")  # files that point at the video
_HLS = "This file is an HLS playlist, not a video. Upload the video file itself."
_CONCAT = "This file is a list of other files (an FFmpeg concat script), not a video."
_NO_STREAMS = "This file has neither pictures nor sound."
_NO_LENGTH = "The length of this file cannot be told: it may be cut short or damaged."
_UNDECODABLE = "This file is damaged: part of it could not be decoded."
_UNREADABLE = (
    "The file could not be read, even after several tries. It may be damaged, or storage was"
    " unavailable; uploading it again may help."
)
# (pattern in the technical reason, the sentence)
_SENTENCES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bhls input is not allowed"), _HLS),
    (re.compile(r"\bconcat input is not allowed"), _CONCAT),
    (re.compile(r"neither (a )?video nor (an )?audio"), _NO_STREAMS),
    (re.compile(r"has no duration"), _NO_LENGTH),
    (re.compile(r"FFmpeg could not decode"), _UNDECODABLE),
    (re.compile(r"could not be read \d+ times"), _UNREADABLE),
)
_TOO_LONG = re.compile(r"lasts (\d+)s, more than the limit of (\d+)s")
_TOO_BIG = re.compile(r"is (\d+)x(\d+)( as displayed)?.*?larger than the limit of (\d+)x(\d+)")
_GROWS = re.compile(r"grows to (\d+)x(\d+) frames mid-stream, beyond the limit of (\d+)x(\d+)")
_TOO_FAST = re.compile(r"has ([\d.]+) frames per second, more than the limit of ([\d.]+)")
_TOO_SMALL = re.compile(r"none of .* fits the source \(never upscaled\)")


def explain(detail: str, looks_like: str | None = None) -> str:
    """The sentence for a technical failure reason (``Reason: what the tools said``);
    ``looks_like`` is what :func:`sniff` made of the file, when the probe refused it."""
    reason = detail.split(":", 1)[0]
    if reason == "InvalidSource" and "not a readable video or audio file" in detail:
        if looks_like == "an empty file":
            return "This file is empty."
        if looks_like in _POINTERS:
            return f"This file is {looks_like}, not a video. Upload the video file itself."
        if looks_like is not None:
            return f"This file is {looks_like}, not a video."
    if m := _TOO_LONG.search(detail):
        return (
            f"This video lasts {_duration(int(m[1]))}; the longest allowed is"
            f" {_duration(int(m[2]))}."
        )
    if m := _GROWS.search(detail):
        return (
            f"This video's picture grows to {m[1]}x{m[2]} partway through; the largest allowed"
            f" is {m[3]}x{m[4]}."
        )
    if m := _TOO_BIG.search(detail):
        shown = " as it is displayed" if m[3] else ""
        return (
            f"This video's picture is {m[1]}x{m[2]}{shown}; the largest allowed is {m[4]}x{m[5]}."
        )
    if m := _TOO_FAST.search(detail):
        return f"This video has {m[1]} frames per second; the most allowed is {m[2]}."
    for pattern, sentence in _SENTENCES:
        if pattern.search(detail):
            return sentence
    if reason == "InvalidSource":
        return _NOT_MEDIA
    if reason == "InvalidSpec" and _TOO_SMALL.search(detail):
        return "This video is smaller than every version asked for (videos are never upscaled)."
    if reason in ("InvalidSpec", "InvalidStatus"):
        return "The transcode request for this video was not valid, so it was not started."
    if reason == "RenditionsFailed":
        return "None of the versions of this video could be made."
    return "The transcode failed."
