"""The first-segment schedule (vtx/core/media.py): short segments first, then the regular length,
with a keyframe at every segment's start and nowhere else, so FFmpeg's HLS muxer cuts exactly
there. The expression is run through the real FFmpeg and ffprobe (no server involved)."""

from __future__ import annotations

import itertools
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from tests.media import keyframe_times
from vtx.core import media


def test_the_schedule_starts_short_then_keeps_the_regular_length() -> None:
    starts = [media.segment_start(n) for n in range(7)]
    assert starts == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0, 19.0]
    durations = [b - a for a, b in itertools.pairwise(starts)]
    assert durations[: len(media.FIRST_SEGMENTS)] == list(media.FIRST_SEGMENTS)
    assert set(durations[len(media.FIRST_SEGMENTS) :]) == {media.SEGMENT_SECONDS}
    assert [media.segment_count(d) for d in (0.5, 1, 3, 3.5, 7, 60)] == [1, 1, 2, 3, 3, 17]
    # The muxer's rule (cut at the first keyframe at or after n x hls_time) meets every start.
    assert all(media.segment_start(n) >= n * media.HLS_TIME for n in range(50))


@pytest.mark.parametrize("fps", ["30", "25", "24000/1001", "60"])
def test_ffmpeg_cuts_the_segments_where_the_schedule_says(tmp_path: Path, fps: str) -> None:
    seconds = 13.0
    rate = float(Fraction(fps))
    playlist = tmp_path / "index.m3u8"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", f"testsrc=size=128x72:rate={fps}", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast",
         "-force_key_frames", media.keyframe_expression(), "-sc_threshold", "0",
         "-g", str(round(rate * media.SEGMENT_SECONDS) + 1),
         "-f", "hls", "-hls_time", str(media.HLS_TIME), "-hls_playlist_type", "vod",
         "-hls_segment_type", "fmp4", "-hls_segment_filename", str(tmp_path / "seg_%05d.m4s"),
         str(playlist)],
        check=True, timeout=120,
    )  # fmt: skip
    durations = [float(d) for d in re.findall(r"#EXTINF:([0-9.]+)", playlist.read_text())]
    planned = [media.segment_start(n + 1) - media.segment_start(n) for n in range(4)]
    frame = 1 / rate
    assert len(durations) == 5, durations
    for got, want in zip(durations, [*planned, seconds - media.segment_start(4)], strict=True):
        assert abs(got - want) <= frame, (durations, planned)
    times = keyframe_times(playlist)
    assert len(times) == 5, f"one keyframe per segment and no other: {times}"
    for n, t in enumerate(times):
        assert abs(t - media.segment_start(n)) <= frame, times
