"""Segment-parallel transcoding's plan (vtx/core/ranges.py) and its encodes
(build_encode_command's end_segment): the ranges cut on segment boundaries, bounds read back
only when whole, and, through the real FFmpeg and ffprobe over loopback HTTP (no server of the
stack involved), ranges encoded apart that join into the whole encode's segments: the same
numbering, keyframes and video timestamps, no gap or overlap where ranges meet."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.media import joined, keyframe_times, make_clip, packets, served
from tests.unit.test_settings import BASE
from vtx.core import events, media
from vtx.core import images as img
from vtx.core.hls import parse_media_playlist
from vtx.core.jobargs import TranscodeArgs, add_transcode_arguments
from vtx.core.ladder import Rendition, sound_apart
from vtx.core.ranges import (
    MAX_RANGES,
    Range,
    check_bounds,
    init_first,
    init_rel,
    is_range_init,
    range_count,
    ranges_of,
    split,
)
from vtx.core.settings import Settings
from vtx.jobrunner.ffmpeg import (
    ImageOutputs,
    Output,
    RangeTiles,
    build_encode_command,
    build_images_command,
    build_joined_images_command,
    outputs_for,
)
from vtx.jobrunner.resume import same_codecs
from vtx.operator.index import ClusterView
from vtx.operator.jobs import build_transcode_job
from vtx.operator.reports import Report, ReportBook
from vtx.operator.state import is_indexed, slots_held

VIDEO_ID = "0b9f0a55-2b8c-4d8f-9a51-3a3c0c1e1a11"
SECONDS = 23.0  # segments 0-6: 1 s, 2 s, then 4 s each, the last one 4 s too
# Picture alone: a split video's sound is a rendition of its own.
PICTURE = Rendition("180p", "video", 320, 180, 25.0, 300, 320, 450, 64, alt_audio=True)


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


def _parsed(args: list[str]) -> TranscodeArgs:
    parser = argparse.ArgumentParser()
    add_transcode_arguments(parser.add_subparsers().add_parser("transcode"))
    return TranscodeArgs.from_namespace(parser.parse_args(args))


def _split_job(**how: Any) -> dict[str, Any]:
    vid = "0b9f0a55-2b8c-4d8f-9a51-3a3c0c1e1a11"
    return build_transcode_job(
        resource=f"v-{vid}", namespace="media", video_id=vid,
        source_key=f"videos/{vid}/source/a.mp4", renditions=[PICTURE], duration_s=600.0,
        settings=Settings.from_env(BASE), **how,
    )  # fmt: skip


def test_a_split_videos_ranges_are_one_indexed_job_each_index_retried_alone() -> None:
    bounds = split(600.0, 4)
    job = _split_job(range_bounds=bounds, parallelism=9)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert (spec["completions"], spec["parallelism"]) == (4, 4), "no more at once than ranges"
    assert spec["backoffLimitPerIndex"] >= 1
    assert "backoffLimit" not in spec, "an index's failures count for it alone"
    assert job["metadata"]["labels"]["vtx.dev/job-kind"] == "ranges"
    args = spec["template"]["spec"]["containers"][0]["args"]
    parsed = _parsed(args[1:])
    assert (parsed.range_bounds, parsed.finalize) == (bounds, False)
    assert parsed.argv() == args[1:]
    final = _split_job(finalize=True)
    assert final["metadata"]["labels"]["vtx.dev/job-kind"] == "finalize"
    assert final["metadata"]["name"] != job["metadata"]["name"]
    final_args = final["spec"]["template"]["spec"]["containers"][0]["args"]
    assert _parsed(final_args[1:]).finalize
    assert "completionMode" not in final["spec"]


@pytest.mark.parametrize("value", ["0", "0,x,9", "-1,4", "0,1e3", "0," + "9" * 8, "0,,4"])
def test_range_bounds_on_a_command_line_are_numbers_or_refused(value: str) -> None:
    base = ["transcode", "--video-id", "0b9f0a55-2b8c-4d8f-9a51-3a3c0c1e1a11", "--source-key",
            "videos/0b9f0a55-2b8c-4d8f-9a51-3a3c0c1e1a11/source/a.mp4", "--job", "j",
            "--rendition", '{"name":"180p","kind":"video","width":320,"height":180}']  # fmt: skip
    with pytest.raises(SystemExit):
        _parsed([*base, "--range-bounds", value])


def test_a_split_videos_sound_is_a_rendition_of_its_own() -> None:
    muxed = replace(PICTURE, alt_audio=False)
    text = Rendition("text-1", "subtitles", 0, 0, None, 0, 0, 0, 0)
    plan = sound_apart([muxed, text])
    assert [r.name for r in plan] == ["180p", "audio-1", "text-1"]
    assert plan[0].alt_audio, "the picture's HLS alone; its MP4 gets audio-1's sound"
    assert plan[1].kind == "audio"
    silent = replace(muxed, audio_bitrate_k=0)
    assert sound_apart([silent]) == [silent], "no sound: nothing to set apart"
    already = [PICTURE, plan[1]]
    assert sound_apart(already) == already


def test_a_later_ranges_init_segment_has_a_name_of_its_own() -> None:
    assert init_rel(0) == media.HLS_INIT
    assert init_rel(30) == "hls/init_00030.mp4"
    assert is_range_init("hls/init_00030.mp4")
    assert init_first("hls/init_00030.mp4") == 30
    with pytest.raises(ValueError, match="not a range's init segment"):
        init_first("hls/init.mp4")
    for rel in ("hls/init.mp4", "hls/init_00000.mp4", "hls/init_3.mp4", "hls/init_0003x.mp4",
                "hls/seg_00030.m4s"):  # fmt: skip
        assert not is_range_init(rel), rel


def test_a_running_ranges_job_holds_a_slot_per_range_it_runs_at_once() -> None:
    job = _split_job(range_bounds=split(600.0, 4), parallelism=3)
    job["status"] = {"active": 3}
    assert slots_held(job) == 3
    assert is_indexed(job)
    job["status"] = {"succeeded": 4, "conditions": [{"type": "Complete", "status": "True"}]}
    assert slots_held(job) == 0
    final = _split_job(finalize=True)
    final["status"] = {"active": 1}
    assert (slots_held(final), is_indexed(final)) == (1, False)
    view = ClusterView()
    running = _split_job(range_bounds=split(600.0, 4), parallelism=2) | {"status": {"active": 2}}
    view.put_job(running)
    assert view.running_transcodes() == 2
    assert view.mark_pod_exited_ok("media", running["metadata"]["name"]) is None, (
        "one range's pod exiting does not end the ranges Job"
    )


def test_a_split_renditions_progress_is_its_ranges_together() -> None:
    book = ReportBook()
    book.watch(VIDEO_ID)

    def report(part: int, progress: float, phase: str = "encoding") -> Report:
        book.record(events.StatusUpdate(VIDEO_ID, phase, progress, rendition="480p", part=part,
                                        parts=4, stored_bytes=10))  # fmt: skip
        return book.of(VIDEO_ID)["480p"]

    assert report(0, 80).progress == 20, "ranges not heard from are at 0"
    assert report(2, 40).progress == 30
    assert report(0, 100, "done").progress == 35, "a range's later report replaces its earlier"
    assert report(1, 100, "done").phase == "encoding"
    report(2, 100, "done")
    last = report(3, 100, "done")
    assert (last.phase, last.progress, last.stored_bytes) == ("done", 100, 40)
    assert last.message == "4 of 4 ranges stored"


def test_a_ranges_report_after_the_finalizes_is_dropped() -> None:
    book = ReportBook()
    book.watch(VIDEO_ID)
    book.record(events.StatusUpdate(VIDEO_ID, "encoding", 90.0, rendition="480p", part=1,
                                    parts=2))  # fmt: skip
    book.record(events.StatusUpdate(VIDEO_ID, "uploading", 100.0, rendition="480p"))
    # A range's report sent before the finalize's, read after it.
    book.record(events.StatusUpdate(VIDEO_ID, "encoding", 95.0, rendition="480p", part=1,
                                    parts=2))  # fmt: skip
    assert book.of(VIDEO_ID)["480p"] == Report("uploading", 100)
    book.forget(VIDEO_ID)
    book.watch(VIDEO_ID)
    book.record(events.StatusUpdate(VIDEO_ID, "encoding", 90.0, rendition="480p", part=1,
                                    parts=2))  # fmt: skip
    assert book.of(VIDEO_ID)["480p"].progress == 45, "a video watched again starts afresh"


@pytest.mark.parametrize(("part", "parts"), [(4, 4), (-1, 4), (0, 0), (0, MAX_RANGES + 1),
                                             (None, 4), (1, None)])  # fmt: skip
def test_a_report_of_a_range_that_cannot_be_is_refused(part: int | None, parts: int | None) -> None:
    payload = events.to_payload(events.StatusUpdate(VIDEO_ID, "encoding", 5.0, rendition="480p"))
    payload |= {k: v for k, v in (("part", part), ("parts", parts)) if v is not None}
    with pytest.raises(events.MalformedEvent, match="no range"):
        events.decode(payload)


def test_a_report_of_a_range_reads_back() -> None:
    sent = events.StatusUpdate(VIDEO_ID, "encoding", 5.0, rendition="480p", part=3, parts=4)
    got = events.decode(events.encode(sent))
    assert isinstance(got, events.StatusUpdate)
    assert (got.part, got.parts) == (3, 4)


@pytest.mark.parametrize("duration", [23.0, 60.0, 179.96, 1800.0, 10_801.0])
@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_ranges_side_by_side_make_every_storyboard_tile_once(duration: float, count: int) -> None:
    plan = img.plan_images(1920, 1080, duration)
    made: list[int] = []
    for r in ranges_of(split(duration, count)):
        first, n = img.range_tiles(plan, r.start_s, min(r.end_s, duration))
        assert all(r.start_s <= t * plan.interval_s < r.end_s for t in range(first, first + n))
        made += range(first, first + n)
    assert made == list(range(plan.tiles))


def test_a_split_videos_images_are_the_whole_decodes(source: str, tmp_path: Path) -> None:
    """The storyboard laid out from the tiles each range made in its encode, the poster and
    thumbnail from a decode of the poster's window alone: the very files a decode of the
    whole source writes."""
    plan = img.plan_images(320, 180, SECONDS)
    whole = ImageOutputs(plan, tmp_path / "whole")
    whole.folder.mkdir()
    cmd = build_images_command(source, whole, duration_s=SECONDS, max_pixels=320 * 180)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    tiles = []
    for r in ranges_of((0, 2, 4, 7)):
        first, count = img.range_tiles(plan, r.start_s, min(r.end_s, SECONDS))
        (out,) = outputs_for([PICTURE], tmp_path / f"r{r.index}")
        out.playlist.parent.mkdir(parents=True)
        made = RangeTiles(plan, first, count, tmp_path / f"tiles{r.index}.nut")
        cmd = build_encode_command(
            source, [out], has_audio=True, duration_s=SECONDS, max_pixels=320 * 180, threads=1,
            first_segment=r.first, end_segment=r.end, tiles=made,
        )  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        tiles.append(made.path)
    joined_ = ImageOutputs(plan, tmp_path / "joined")
    joined_.folder.mkdir()
    cmd = build_joined_images_command(
        source, joined_, tiles, duration_s=SECONDS, max_pixels=320 * 180
    )
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    for fmt in img.JPEGS:
        assert joined_.path(fmt).read_bytes() == whole.path(fmt).read_bytes(), fmt
    with pytest.raises(ValueError, match="one tile at least"):
        build_encode_command(
            source, [out], has_audio=True, duration_s=SECONDS, max_pixels=320 * 180,
            tiles=made,
        )  # fmt: skip
