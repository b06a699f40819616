"""Resuming an encode at a segment (vtx/jobrunner/resume.py, build_encode_command's
first_segment): the choice of where to start, and, through the real FFmpeg and ffprobe over
loopback HTTP (no server of the stack involved), that the resumed segments carry on the first
attempt's: numbering, keyframes, every video timestamp, the sound in sync, and an
MP4 put together from them that lasts as long as the whole encode's."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.media import joined, keyframe_times, make_clip, packets, served
from vtx.core import media
from vtx.core.hls import Segment, parse_media_playlist
from vtx.core.ladder import Rendition
from vtx.core.videos import SegmentRow
from vtx.jobrunner.ffmpeg import (
    Output,
    build_encode_command,
    build_remux_command,
    outputs_for,
)
from vtx.jobrunner.resume import (
    first_to_encode,
    resumable,
    same_codecs,
    sound_lead_of,
    stored_run,
    stsd_boxes,
)

SECONDS = 14.0
AAC_FRAME_S = 1024 / 48000
VIDEO = Rendition("180p", "video", 320, 180, 25.0, 300, 320, 450, 64)


def test_the_stored_run_stops_at_the_first_segment_missing_or_of_another_size() -> None:
    def row(n: int, size: int = 10) -> SegmentRow:
        return SegmentRow(n, f"videos/v/180p/hls/seg_{n:05d}.m4s", None, size, 4.0)

    rows = [row(0), row(1), row(2), row(4)]
    sizes = {r.key: r.size for r in rows}
    prefix = "videos/v/180p"
    assert stored_run(rows, sizes, prefix) == [
        Segment(n, f"seg_{n:05d}.m4s", 4.0) for n in range(3)
    ]  # 3 is not recorded
    assert len(stored_run(rows, {**sizes, rows[1].key: 9}, prefix)) == 1  # another object
    gone = {k: v for k, v in sizes.items() if k != rows[2].key}
    assert len(stored_run(rows, gone, prefix)) == 2
    assert stored_run([row(0, size=0)], {rows[0].key: 0}, prefix) == []
    # A row is a pod's word: one naming another key, or an unplanned length, ends the run.
    elsewhere = replace(rows[1], key="videos/v/180p/hls/../../w/seg_00001.m4s")
    assert len(stored_run([rows[0], elsewhere], {**sizes, elsewhere.key: 10}, prefix)) == 1
    assert len(stored_run([rows[0], replace(rows[1], duration=3600.0)], sizes, prefix)) == 1
    assert stored_run(rows, sizes, "videos/other/180p") == []


def test_the_encode_resumes_at_the_first_segment_a_rendition_lacks() -> None:
    assert first_to_encode([5, 3, 7], 60.0) == 3
    assert first_to_encode([], 60.0) == 0
    # Every segment stored (the attempt died while finishing): the last is encoded again.
    assert first_to_encode([9, 9], 30.0) == media.segment_count(30.0) - 1 == 8


def test_only_video_with_its_sound_muxed_in_resumes() -> None:
    text = Rendition("text-1", "subtitles", 0, 0, None, 0, 0, 0, 0)
    sound = Rendition("audio-1", "audio", 0, 0, None, 0, 0, 0, 128)
    alt = Rendition("360p", "video", 640, 360, 30.0, 800, 856, 1200, 0, alt_audio=True)
    assert resumable([VIDEO, text])
    assert not resumable([VIDEO, sound])
    assert not resumable([alt])
    assert not resumable([text])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 14 s clip with sound, served over loopback HTTP with byte ranges (FFmpeg's input
    seek reads the index, then jumps)."""
    folder = tmp_path_factory.mktemp("source")
    make_clip(folder / "src.mp4", seconds=SECONDS, width=320, height=180, fps=25, tone=770)
    with served(folder) as base:
        yield f"{base}/src.mp4"


def _encode(url: str, scratch: Path, first: int, lead: float = 0.0) -> Output:
    (out,) = outputs_for([VIDEO], scratch)
    out.playlist.parent.mkdir(parents=True)
    cmd = build_encode_command(
        url, [out], has_audio=True, duration_s=SECONDS, max_pixels=320 * 180, threads=1,
        first_segment=first, sound_lead_s=lead,
    )  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return out


def _duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return float(out)


def test_a_resumed_encode_carries_on_the_first_attempts_segments(
    source: str, tmp_path: Path
) -> None:
    first = 3  # starts at 7 s: two regular segments after it, the last one short
    whole = _encode(source, tmp_path / "whole", 0)
    whole_list = parse_media_playlist(whole.playlist.read_text()).segments
    hls = whole.playlist.parent
    whole_init = hls / media.INIT_NAME
    stored = [hls / s.uri for s in whole_list[:first]]
    # Where the stored sound ends, less the priming: 2 to 5 AAC frames before the picture's
    # segment start (the MP4 muxer moved the first attempt's timeline by the B-frame delay).
    lead = sound_lead_of(
        joined(tmp_path / "first.mp4", whole_init, stored[:1]),
        joined(tmp_path / "last.mp4", whole_init, stored[-1:]),
        first,
    )
    assert 2 * AAC_FRAME_S <= lead <= 5 * AAC_FRAME_S, lead
    resumed = _encode(source, tmp_path / "resumed", first, lead)
    assert not resumed.mp4.exists(), "a resumed encode writes HLS only"

    resumed_list = parse_media_playlist(resumed.playlist.read_text()).segments
    assert [s.uri for s in resumed_list] == [s.uri for s in whole_list[first:]]
    assert [s.sequence for s in resumed_list] == list(range(first, len(whole_list)))
    for mine, theirs in zip(resumed_list, whole_list[first:], strict=True):
        assert abs(mine.duration - theirs.duration) < 1 / 25, (resumed_list, whole_list)
    resumed_init = resumed.playlist.parent / media.INIT_NAME
    assert len(stsd_boxes(whole_init.read_bytes())) == 2  # picture and sound
    assert same_codecs(whole_init.read_bytes(), resumed_init.read_bytes())

    # The stored init segment and the first attempt's segments, then the resumed ones: what
    # a player is given.
    made = [resumed.playlist.parent / s.uri for s in resumed_list]
    mixed = joined(tmp_path / "mixed.mp4", whole_init, stored + made)
    reference = joined(tmp_path / "reference.mp4", whole_init, [hls / s.uri for s in whole_list])
    assert packets(mixed, "v") == packets(reference, "v"), "every video timestamp as before"
    times = keyframe_times(mixed)
    assert len(times) == len(whole_list)
    for n, t in enumerate(times):
        assert abs(t - times[0] - media.segment_start(n)) < 1 / 25, times

    # The sound: in sync (each sample where the whole encode puts it), and the resumed
    # sound (its first packet: the encoder's priming) starts where the stored sound ends.
    first_resumed = resumed.playlist.parent / resumed_list[0].uri
    before = packets(joined(tmp_path / "before.mp4", whole_init, stored), "a")
    after = packets(joined(tmp_path / "after.mp4", whole_init, [first_resumed]), "a")
    stored_end = before[-1][0] + AAC_FRAME_S
    gap = after[0][0] - stored_end
    assert abs(gap) < 0.001, (stored_end, after[0])
    offset = after[0][0] - (media.segment_start(first) - lead)
    assert abs(offset - packets(reference, "a")[0][0]) < 0.002, "the sound in sync"

    # The MP4, copied out of the segments, lasts as long as the whole encode's.
    mp4 = tmp_path / "video.mp4"
    run = subprocess.run(
        build_remux_command(mp4),
        input=mixed.read_bytes(),
        capture_output=True,
        timeout=60,
        env={"PATH": os.environ["PATH"]},
    )
    assert run.returncode == 0, run.stderr
    assert abs(_duration(mp4) - _duration(whole.mp4)) < 0.05
    assert len(packets(mp4, "v")) == len(packets(whole.mp4, "v")) == SECONDS * 25
