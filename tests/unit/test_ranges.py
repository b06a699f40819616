"""Segment-parallel transcoding's plan (vtx/core/ranges.py) and its encodes
(build_encode_command's end_segment): the ranges cut on segment boundaries, bounds read back
only when whole, and, through the real FFmpeg and ffprobe over loopback HTTP (no server of the
stack involved), ranges encoded apart that join into the whole encode's segments: the same
numbering, keyframes and video timestamps, no gap or overlap where ranges meet."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.media import joined, keyframe_times, make_clip, packets, served
from vtx.core import media
from vtx.core.hls import parse_media_playlist
from vtx.core.ladder import Rendition
from vtx.core.ranges import MAX_RANGES, Range, check_bounds, range_count, ranges_of, split
from vtx.jobrunner.ffmpeg import Output, build_encode_command, outputs_for
from vtx.jobrunner.resume import same_codecs

SECONDS = 23.0  # segments 0-6: 1 s, 2 s, then 4 s each, the last one 4 s too
# Picture alone: a split video's sound is a rendition of its own.
PICTURE = Rendition("180p", "video", 320, 180, 25.0, 300, 320, 450, 0, alt_audio=True)


def test_ranges_are_cut_on_segment_starts_near_even_shares() -> None:
    duration = 600.0  # 151 segments
    total = media.segment_count(duration)
    bounds = split(duration, 4)
    assert (bounds[0], bounds[-1], len(bounds)) == (0, total, 5)
    for i, b in enumerate(bounds[1:-1], start=1):
        assert abs(media.segment_start(b) - duration * i / 4) <= media.SEGMENT_SECONDS / 2
    assert split(duration, 1) == (0, total)
    # Fewer segments than ranges asked for: one segment each.
    assert split(5.0, 10) == (0, 1, 2, 3)
    assert len(split(3600.0, 1000)) == MAX_RANGES + 1
    assert ranges_of((0, 30, 91)) == (Range(0, 0, 30), Range(1, 30, 91))
    assert Range(1, 30, 91).start_s == media.segment_start(30)


def test_the_range_count_follows_the_length_the_free_slots_and_the_cap() -> None:
    def count(duration: float, slots: int, cap: int = 16) -> int:
        return range_count(duration, slots=slots, cap=cap, split_s=120, min_range_s=30)

    assert count(120, slots=8) == 1, "no longer than the setting: one Job"
    assert count(180, slots=1) == 1, "no spare slot: one Job"
    assert count(180, slots=8) == 6, "no range shorter than 30 s"
    assert count(1800, slots=8) == 8
    assert count(1800, slots=40, cap=16) == 16


@pytest.mark.parametrize(
    ("bounds", "why"),
    [
        ([0], "between 2"),
        ([0, 3.0, 7], "whole segment"),
        ([0, True, 7], "whole segment"),
        (["0", 7], "whole segment"),
        ([1, 7], "from 0"),
        ([0, 6], "from 0"),
        ([0, 4, 4, 7], "rise"),
        ([0, 5, 3, 7], "rise"),
        (list(range(MAX_RANGES + 2)), "between 2"),
    ],
)
def test_bounds_read_back_are_whole_or_refused(bounds: list[object], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_bounds(bounds, SECONDS)


def test_good_bounds_read_back_as_they_were() -> None:
    assert check_bounds([0, 3, 7], SECONDS) == (0, 3, 7)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("source")
    make_clip(folder / "src.mp4", seconds=SECONDS, width=320, height=180, fps=25, tone=810)
    with served(folder) as base:
        yield f"{base}/src.mp4"


def _encode(url: str, scratch: Path, first: int = 0, end: int | None = None) -> Output:
    (out,) = outputs_for([PICTURE], scratch)
    out.playlist.parent.mkdir(parents=True)
    cmd = build_encode_command(
        url, [out], has_audio=True, duration_s=SECONDS, max_pixels=320 * 180, threads=1,
        first_segment=first, end_segment=end,
    )  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return out


def test_ranges_encoded_apart_join_into_the_whole_encode(source: str, tmp_path: Path) -> None:
    whole = _encode(source, tmp_path / "whole")
    whole_list = parse_media_playlist(whole.playlist.read_text()).segments
    assert len(whole_list) == media.segment_count(SECONDS) == 7
    bounds = (0, 2, 4, 7)  # the first range ends between the short segments
    parts = [_encode(source, tmp_path / f"r{r.index}", r.first, r.end) for r in ranges_of(bounds)]
    assert not any(p.mp4.exists() for p in parts), "a range writes HLS alone"

    made: list[Path] = []
    for r, part in zip(ranges_of(bounds), parts, strict=True):
        listed = parse_media_playlist(part.playlist.read_text()).segments
        assert [s.sequence for s in listed] == list(range(r.first, r.end))
        assert [s.uri for s in listed] == [s.uri for s in whole_list[r.first : r.end]]
        for got, want in zip(listed, whole_list[r.first : r.end], strict=True):
            assert abs(got.duration - want.duration) < 1 / 25, (listed, whole_list)
        init = part.playlist.parent / media.INIT_NAME
        assert same_codecs(
            init.read_bytes(), (whole.playlist.parent / media.INIT_NAME).read_bytes()
        )
        made += [part.playlist.parent / s.uri for s in listed]

    hls = whole.playlist.parent
    reference = joined(tmp_path / "reference.mp4", hls / media.INIT_NAME,
                       [hls / s.uri for s in whole_list])  # fmt: skip
    together = joined(tmp_path / "together.mp4", hls / media.INIT_NAME, made)
    mine, theirs = packets(together, "v"), packets(reference, "v")
    assert len(mine) == len(theirs) == SECONDS * 25, "every frame once"
    assert mine == theirs, "every video timestamp as in the whole encode"
    assert packets(together, "a") == [], "no sound in a range"
    times = keyframe_times(together)
    assert len(times) == len(whole_list)
    for n, t in enumerate(times):
        assert abs(t - times[0] - media.segment_start(n)) < 1 / 25, times


def test_a_range_is_refused_what_it_cannot_hold(source: str, tmp_path: Path) -> None:
    (picture,) = outputs_for([PICTURE], tmp_path)
    (muxed,) = outputs_for([Rendition("180p", "video", 320, 180, 25.0, 300, 320, 450, 64)],
                           tmp_path)  # fmt: skip

    def command(out: Output, first: int, end: int) -> list[str]:
        return build_encode_command(
            source, [out], has_audio=True, duration_s=SECONDS, max_pixels=320 * 180,
            first_segment=first, end_segment=end,
        )  # fmt: skip

    with pytest.raises(ValueError, match="sound is a rendition of its own"):
        command(muxed, 2, 4)
    with pytest.raises(ValueError, match="no range"):
        command(picture, 4, 4)
    with pytest.raises(ValueError, match="no range"):
        command(picture, 0, 8)
