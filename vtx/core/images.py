"""A video's still images: a poster, a thumbnail and a storyboard (one sprite sheet of small
tiles and a WebVTT file whose cues point into it with ``#xywh=``), planned from the source's
display size and length (pure functions).

The Job of the lowest video rendition makes them in its FFmpeg run, from the frames it decodes
anyway (see vtx.jobrunner.ffmpeg): a few scaled frames and three JPEGs. A split video's ranges
each make the storyboard tiles of their stretch (range_tiles); the Job that puts the ranges
together lays them out and decodes the poster's window alone. The poster is the most
representative frame (FFmpeg's ``thumbnail`` filter: the frame closest to the average colour
histogram) among candidates a quarter of the way in, so neither a black first frame nor a fade
becomes the picture of the video; the thumbnail is the poster, smaller.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vtx.core.ladder import scale_short_side

FOLDER = "images"  # videos/<id>/images/… in S3, images/… in the IPFS directory
POSTER = "poster"
THUMBNAIL = "thumbnail"
STORYBOARD = "storyboard"
STORYBOARD_VTT = "storyboard_vtt"
# The rows' formats (transcodes.format) and the file each names.
FILES: Mapping[str, str] = {
    POSTER: "poster.jpg",
    THUMBNAIL: "thumbnail.jpg",
    STORYBOARD: "storyboard.jpg",
    STORYBOARD_VTT: "storyboard.vtt",
}
JPEGS = (POSTER, THUMBNAIL, STORYBOARD)

POSTER_SHORT_SIDE = 720  # pixels, at most: never larger than the source
THUMBNAIL_SHORT_SIDE = 180
TILE_SHORT_SIDE = 90
MAX_COLUMNS = 10
MAX_TILES = 100  # one sheet: a longer video gets a longer interval between tiles
MIN_INTERVAL_S = 2
POSTER_WINDOW_S = 8.0  # candidates for the poster come from this long a stretch …
POSTER_STEP_S = 0.25  # … one every this often


def made(renditions: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a video's images are made, from its rows' renditions: the rendition that makes
    them succeeded."""
    return any(
        r.get("images") is True and r.get("phase") == "Succeeded" for r in renditions.values()
    )


def key(video_id: str, fmt: str) -> str:
    """The S3 key of one of a video's images."""
    return f"videos/{video_id}/{FOLDER}/{FILES[fmt]}"


@dataclass(frozen=True)
class ImagePlan:
    poster: tuple[int, int]
    thumbnail: tuple[int, int]
    tile: tuple[int, int]
    interval_s: int  # one tile per this many seconds
    tiles: int
    columns: int
    rows: int
    window: tuple[float, float]  # where the poster's candidates come from, in seconds
    duration: float

    @property
    def sheet(self) -> tuple[int, int]:
        return self.tile[0] * self.columns, self.tile[1] * self.rows


def plan_images(width: int, height: int, duration: float) -> ImagePlan:
    """The images of a source ``width`` by ``height`` as displayed, ``duration`` seconds long."""
    if width < 2 or height < 2 or not math.isfinite(duration) or duration <= 0:
        raise ValueError("images need a frame size and a duration")
    short = min(width, height)

    def size(target: int) -> tuple[int, int]:
        return scale_short_side(width, height, min(target, short))

    interval = max(MIN_INTERVAL_S, math.ceil(duration / MAX_TILES))
    tiles = max(1, math.ceil(duration / interval - 1e-6))
    columns = min(MAX_COLUMNS, tiles)
    start = duration / 4
    return ImagePlan(
        poster=size(POSTER_SHORT_SIDE),
        thumbnail=size(THUMBNAIL_SHORT_SIDE),
        tile=size(TILE_SHORT_SIDE),
        interval_s=interval,
        tiles=tiles,
        columns=columns,
        rows=math.ceil(tiles / columns),
        window=(start, start + min(POSTER_WINDOW_S, duration / 2)),
        duration=duration,
    )


def range_tiles(plan: ImagePlan, start_s: float, end_s: float) -> tuple[int, int]:
    """The storyboard tiles a range of the video from ``start_s`` to ``end_s`` makes: the
    first tile's number and how many. Tile n is the first frame at or after n * interval, so
    it belongs to the range where that time falls; ranges side by side make every tile once."""
    first = max(0, math.ceil(start_s / plan.interval_s - 1e-9))
    end = min(plan.tiles, max(0, math.ceil(end_s / plan.interval_s - 1e-9)))
    return first, max(0, end - first)


def timestamp(seconds: float) -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def storyboard_vtt(plan: ImagePlan, sheet: str = FILES[STORYBOARD]) -> str:
    """The storyboard's cues: tile n shows second n * interval and covers until the next one."""
    lines = ["WEBVTT", ""]
    tw, th = plan.tile
    for n in range(plan.tiles):
        start = n * plan.interval_s
        end = min((n + 1) * plan.interval_s, plan.duration)
        x, y = (n % plan.columns) * tw, (n // plan.columns) * th
        lines += [f"{timestamp(start)} --> {timestamp(end)}", f"{sheet}#xywh={x},{y},{tw},{th}"]
        lines.append("")
    return "\n".join(lines)


# --- reading the files back (verify, the API) -------------------------------------------------


class InvalidJpeg(ValueError):
    """Bytes that are not one whole baseline or progressive JPEG picture."""


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height of a whole JPEG file (its frame header), read without decoding it:
    it starts with SOI, its segments chain up to a frame header, and it ends with EOI."""
    if data[:2] != b"\xff\xd8":
        raise InvalidJpeg("it does not start like a JPEG file")
    if data[-2:] != b"\xff\xd9":
        raise InvalidJpeg("it does not end like a whole JPEG file")
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise InvalidJpeg(f"no segment marker at byte {at}")
        marker = data[at + 1]
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _SOF:
            if length < 8 or at + 9 > len(data):
                raise InvalidJpeg("its frame header is cut short")
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            if not width or not height:
                raise InvalidJpeg("its frame header has no size")
            return width, height
        if marker == 0xDA or length < 2:
            break  # image data before any frame header, or a broken length
        at += 2 + length
    raise InvalidJpeg("it has no frame header")


# --- reading a storyboard back (verify, the API) ----------------------------------------------


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    target: str  # what the cue points at, before the fragment
    xywh: tuple[int, int, int, int]


_TIME = re.compile(r"^(?:(\d+):)?([0-5]\d):([0-5]\d)\.(\d{3})$")
_XYWH = re.compile(r"^(?P<target>[^#\s]+)#xywh=(\d{1,5}),(\d{1,5}),(\d{1,5}),(\d{1,5})$")
MAX_CUES = 10_000


class InvalidStoryboard(ValueError):
    """A storyboard WebVTT file that is not one vtx writes."""


def _seconds(text: str) -> float:
    m = _TIME.fullmatch(text.strip())
    if m is None:
        raise InvalidStoryboard(f"{text.strip()[:40]!r} is not a WebVTT timestamp")
    hours, minutes, secs, ms = (int(g) if g else 0 for g in m.groups())
    return hours * 3600 + minutes * 60 + secs + ms / 1000


def parse_storyboard_vtt(text: str) -> list[Cue]:
    """The cues of a storyboard WebVTT file, each pointing at a tile."""
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n")]
    if not blocks or not blocks[0].startswith("WEBVTT"):
        raise InvalidStoryboard("it does not start with WEBVTT")
    cues: list[Cue] = []
    for block in blocks[1:]:
        if not block:
            continue
        lines = block.split("\n")
        if "-->" not in lines[0]:  # a cue identifier first
            lines = lines[1:]
        if len(lines) != 2 or "-->" not in lines[0]:
            raise InvalidStoryboard(f"cue {len(cues) + 1} is not a time range and one line")
        start, _, end = lines[0].partition("-->")
        m = _XYWH.fullmatch(lines[1].strip())
        if m is None:
            raise InvalidStoryboard(f"cue {len(cues) + 1} does not point at a tile (#xywh=)")
        x, y, w, h = (int(m.group(i)) for i in range(2, 6))
        cues.append(Cue(_seconds(start), _seconds(end.split()[0]), m["target"], (x, y, w, h)))
        if len(cues) > MAX_CUES:
            raise InvalidStoryboard(f"it has more than {MAX_CUES} cues")
    return cues


def storyboard_problems(
    cues: Sequence[Cue], duration: float, sheet: tuple[int, int], *, tolerance_s: float
) -> list[str]:
    """The cues against the source's length and the sheet's size: from 0, one after another,
    to the end, each on a tile inside the sheet."""
    if not cues:
        return ["its storyboard has no cue"]
    problems = []
    if cues[0].start != 0:
        problems.append(f"its storyboard starts at {cues[0].start:.3f}s, not 0")
    gaps = sum(1 for a, b in itertools.pairwise(cues) if abs(b.start - a.end) > 1e-3)
    if gaps:
        problems.append(f"its storyboard's cues leave {gaps} gaps or overlaps")
    if any(c.end <= c.start for c in cues):
        problems.append("its storyboard has cues that end before they start")
    if abs(cues[-1].end - duration) > tolerance_s:
        problems.append(
            f"its storyboard's cues end at {cues[-1].end:.1f}s; the source lasts {duration:.1f}s"
        )
    outside = sum(
        1 for c in cues
        if c.xywh[2] <= 0 or c.xywh[3] <= 0
        or c.xywh[0] + c.xywh[2] > sheet[0] or c.xywh[1] + c.xywh[3] > sheet[1]
    )  # fmt: skip
    if outside:
        problems.append(f"{outside} storyboard cues point outside its {sheet[0]}x{sheet[1]} sheet")
    targets = {c.target for c in cues}
    if targets != {FILES[STORYBOARD]}:
        problems.append(f"its storyboard's cues point at {', '.join(sorted(targets))[:80]}")
    return problems
