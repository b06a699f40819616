"""Playback through the API: playlists served with signed, absolute URLs of their segments, so
a private bucket plays in any HLS player while the bytes still come straight from S3.

Relative URIs stay relative where they point at other playlists (the master's variants), so
the API's playlist paths mirror the bucket's layout: ``play/master.m3u8``,
``play/<rendition>/hls/index.m3u8``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from vtx.core import images as img

_SEGMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MAP_URI = re.compile(r'URI="([^"]*)"')


class UnexpectedPlaylist(ValueError):
    """A playlist that names something other than a file beside it."""


def _checked(name: str) -> str:
    if not _SEGMENT_NAME.fullmatch(name) or ".." in name:
        raise UnexpectedPlaylist(f"playlist entry {name[:80]!r} is not a file name")
    return name


def sign_media_playlist(text: str, sign: Callable[[str], str]) -> str:
    """``text`` with every segment and init-segment URI replaced by ``sign(name)``."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-MAP:"):
            line = _MAP_URI.sub(lambda m: f'URI="{sign(_checked(m.group(1)))}"', line)
        elif line and not line.startswith("#"):
            line = sign(_checked(line))
        out.append(line)
    return "\n".join(out) + "\n"


def has_segments(text: str) -> bool:
    """Whether a media playlist lists at least one finished segment."""
    return any(line.startswith("#EXTINF:") for line in text.splitlines())


def sign_storyboard(text: str, sheet_url: str) -> str:
    """A storyboard's WebVTT with each cue pointing at ``sheet_url`` (keeping its ``#xywh=``).
    The file is read back cue by cue and written anew: nothing but times and tiles passes."""
    lines = ["WEBVTT", ""]
    for cue in img.parse_storyboard_vtt(text):
        if cue.target != img.FILES[img.STORYBOARD]:
            raise img.InvalidStoryboard(f"a cue points at {cue.target[:80]!r}")
        x, y, w, h = cue.xywh
        lines += [f"{img.timestamp(cue.start)} --> {img.timestamp(cue.end)}",
                  f"{sheet_url}#xywh={x},{y},{w},{h}", ""]  # fmt: skip
    return "\n".join(lines)
