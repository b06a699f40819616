"""Segment-parallel transcoding's plan: a long source cut into time ranges on segment
boundaries, one range per completion of an Indexed Job, each encoding every video rendition
of its range with the segments numbered on the whole video's count.

A range is given by its bounds, the segment numbers where ranges begin, ending with the
video's segment count: ``(0, 30, 60, 91)`` is three ranges, segments 0-29, 30-59 and 60-90.
Bounds travel through a resource's status and a Job's arguments, so they are checked
(:func:`check_bounds`) wherever they are read back.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from vtx.core.media import HLS_INIT, segment_count, segment_start

MAX_RANGES = 64  # the most ranges any setting may ask for (Indexed Job completions)


@dataclass(frozen=True)
class Range:
    """Segments ``first`` to ``end - 1`` of a video: ``first`` starts at ``start_s``, the
    range ends where segment ``end`` would start (or at the source's end)."""

    index: int
    first: int
    end: int

    @property
    def start_s(self) -> float:
        return segment_start(self.first)

    @property
    def end_s(self) -> float:
        return segment_start(self.end)


def init_rel(first: int) -> str:
    """Where, in a rendition's folder, the range starting at segment ``first`` stores its init
    segment: the first range's is the rendition's; the others' are kept until the ranges are
    put together, to check that they describe the same codecs."""
    return HLS_INIT if first == 0 else f"hls/init_{first:05d}.mp4"


def tiles_rel(first: int) -> str:
    """Where, in the folder of the rendition that makes the images, the range starting at
    segment ``first`` keeps its storyboard tiles (lossless) until the ranges are put
    together."""
    return f"ranges/tiles_{first:05d}.nut"


def init_first(rel: str) -> int:
    """The segment a later range's init segment (is_range_init) says its range begins at."""
    if not is_range_init(rel):
        raise ValueError(f"{rel[:40]!r} is not a range's init segment")
    return int(rel.removeprefix("hls/init_").removesuffix(".mp4"))


def is_range_init(rel: str) -> bool:
    """Whether ``rel`` (in a rendition's folder) is a later range's init segment."""
    name = rel.removeprefix("hls/init_").removesuffix(".mp4")
    return rel.startswith("hls/init_") and len(name) == 5 and name.isdigit() and name != "00000"


def split(duration_s: float, count: int) -> tuple[int, ...]:
    """The bounds of ``count`` ranges of about the same length in time (fewer when the source
    has fewer segments): each boundary is the segment start nearest its even share."""
    if not duration_s > 0:
        raise ValueError("a source with no duration is not split")
    total = segment_count(duration_s)
    count = max(1, min(count, total, MAX_RANGES))
    bounds = [0]
    for i in range(1, count):
        share = duration_s * i / count
        nearest = min(range(bounds[-1] + 1, total), key=lambda n: abs(segment_start(n) - share))
        # Leave at least one segment to each range still to come.
        bounds.append(min(nearest, total - (count - i)))
    bounds.append(total)
    return tuple(bounds)


def range_count(
    duration_s: float, *, slots: int, cap: int, split_s: float, min_range_s: float
) -> int:
    """How many ranges to run: one for a source no longer than ``split_s``; else as many as
    there are ``slots`` (spare CPUs of the cluster), at most ``cap`` and no range shorter
    than ``min_range_s``."""
    if duration_s <= split_s or slots < 2:
        return 1
    longest = max(1, int(duration_s // max(min_range_s, 1e-3)))
    return max(1, min(slots, cap, longest, MAX_RANGES))


def check_bounds(bounds: Sequence[object], duration_s: float) -> tuple[int, ...]:
    """Bounds read back from a resource or a Job, as typed values, or ValueError: integers,
    from 0 up to the source's segment count, each range at least one segment, at most
    MAX_RANGES ranges."""
    if not 2 <= len(bounds) <= MAX_RANGES + 1:
        raise ValueError(f"{len(bounds)} range bounds: between 2 and {MAX_RANGES + 1}")
    if not all(type(b) is int for b in bounds):
        raise ValueError("range bounds are whole segment numbers")
    checked = tuple(int(b) for b in bounds if type(b) is int)
    if checked[0] != 0 or checked[-1] != segment_count(duration_s):
        raise ValueError(
            f"range bounds run from 0 to the segment count {segment_count(duration_s)}: "
            f"{checked[0]} to {checked[-1]}"
        )
    if any(b <= a for a, b in itertools.pairwise(checked)):
        raise ValueError("range bounds rise: every range holds a segment")
    return checked


def ranges_of(bounds: Sequence[int]) -> tuple[Range, ...]:
    """The ranges of checked bounds, in order."""
    return tuple(Range(i, first, end) for i, (first, end) in enumerate(itertools.pairwise(bounds)))
