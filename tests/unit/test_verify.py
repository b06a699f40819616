"""The checks of a whole video that need no server: rows, playlists, an MP4's ffprobe report,
an IPFS directory's listing."""

from __future__ import annotations

import dataclasses

from tests.unit.test_decide import PLAN, VID, record
from vtx.core import videos
from vtx.core.hls import Segment, render_media_playlist
from vtx.core.ladder import Rendition
from vtx.core.verify import (
    directory_files,
    directory_problems,
    mp4_problems,
    playlist_problems,
    record_problems,
)
from vtx.core.videos import SegmentRow

R480 = PLAN[0]


def segments(n: int, seconds: float = 4.0) -> list[SegmentRow]:
    return [
        SegmentRow(i, f"videos/{VID}/480p/hls/seg_{i:05d}.m4s", f"cid{i}", 100 + i, seconds)
        for i in range(n)
    ]


def playlist(rows: list[SegmentRow], *, ended: bool = True, init: str = "init.mp4") -> str:
    listed = [Segment(s.sequence, s.key.rsplit("/", 1)[-1], s.duration) for s in rows]
    return render_media_playlist(listed, init_uri=init, ended=ended)


def test_complete_rows_have_no_problem_and_each_gap_is_named() -> None:
    assert record_problems(record(R480, "j"), job="j", rendition=R480, ipfs=True) == []
    assert record_problems(record(R480, "j"), job=None, rendition=R480, ipfs=True) == []
    assert record_problems(None, job="j", rendition=R480, ipfs=True) == [
        "no rows record its outputs"
    ]
    other = record_problems(record(R480, "k"), job="j", rendition=R480, ipfs=True)
    assert "its MP4 (s3) was recorded by k, not by j" in other
    no_cids = record_problems(record(R480, "j", ipfs=False), job="j", rendition=R480, ipfs=True)
    assert "its MP4 (ipfs) is not recorded" in no_cids
    s3_only = record_problems(record(R480, "j", ipfs=False), job="j", rendition=R480, ipfs=False)
    assert s3_only == []


def test_rows_of_two_runs_are_told_apart() -> None:
    mixed = record(R480, "j")
    key = (videos.HLS, videos.IPFS)
    mixed.outputs[key] = dataclasses.replace(mixed.outputs[key], job="j-r1")  # type: ignore[index]
    problems = record_problems(mixed, job=None, rendition=R480, ipfs=True)
    assert problems == ["its rows were recorded by different Jobs: j, j-r1"]


def test_a_playlist_is_checked_against_its_rows_and_the_source() -> None:
    rows = segments(3, seconds=10 / 3)
    assert playlist_problems(playlist(rows), rows, 10.0) == []
    assert "its playlist does not end (no ENDLIST)" in playlist_problems(
        playlist(rows, ended=False), rows, 10.0
    )
    assert "its playlist lists 3 segments, its rows 2" in playlist_problems(
        playlist(rows), rows[:2], 10.0
    )
    short = playlist_problems(playlist(rows[:1]), rows[:1], 10.0)
    assert "its segments last 3.3s; the source lasts 10.0s" in short
    assert playlist_problems(playlist(rows), rows, 13.5) == [], "within one segment"
    assert "its playlist names init segment 'other.mp4'" in playlist_problems(
        playlist(rows, init="other.mp4"), rows, 10.0
    )


def test_an_mp4_is_checked_for_its_size_sound_and_length() -> None:
    good = {
        "streams": [
            {"codec_type": "video", "width": R480.width, "height": R480.height},
            {"codec_type": "audio"},
        ],
        "format": {"duration": "10.01"},
    }
    assert mp4_problems(good, R480, 10.0) == []
    wrong = {**good, "streams": [{"codec_type": "video", "width": 640, "height": 480}]}
    problems = mp4_problems(wrong, R480, 10.0)
    assert "its MP4 holds video [(640, 480)], not one 854x480 stream" in problems
    assert "its MP4 lacks the sound" in problems
    assert mp4_problems({**good, "format": {"duration": "3.0"}}, R480, 10.0) == [
        "its MP4 lasts 3.0s; the source lasts 10.0s"
    ]
    assert mp4_problems({**good, "format": {}}, R480, 10.0) == ["its MP4 has no duration"]


def test_an_ipfs_directory_must_hold_exactly_the_files_of_the_rows() -> None:
    rows = segments(2)
    expected = directory_files([R480], {"480p": record(R480, "j")}, {"480p": rows})
    assert set(expected) == {
        "480p/video.mp4", "480p/hls/index.m3u8", "480p/hls/init.mp4",
        "480p/hls/seg_00000.m4s", "480p/hls/seg_00001.m4s", "images/poster.jpg",
        "images/thumbnail.jpg", "images/storyboard.jpg", "images/storyboard.vtt",
    }  # fmt: skip
    listed = {path: (cid, max(size, 0)) for path, (cid, size) in expected.items()}
    assert directory_problems(listed, expected) == []
    del listed["480p/hls/seg_00001.m4s"]
    listed["480p/extra.txt"] = ("x", 1)
    listed["480p/video.mp4"] = ("other", 1234)
    problems = directory_problems(listed, expected)
    assert "the IPFS directory lacks 1 files: 480p/hls/seg_00001.m4s" in problems
    assert "the IPFS directory holds unexpected files: 480p/extra.txt" in problems
    assert "IPFS 480p/video.mp4 is other; its row says cid-480p-mp4" in problems


def test_a_subtitles_rendition_is_one_webvtt_segment_and_a_webvtt_file() -> None:
    text = Rendition("text-1", "subtitles", 0, 0, None, 0, 0, 0, 0, language="en")
    rows = record(text, "j", segments=1)
    assert record_problems(rows, job="j", rendition=text, ipfs=True) == []
    assert (videos.VTT, videos.S3) in rows.outputs
    mp4_rows = dataclasses.replace(
        rows,
        outputs={
            (videos.MP4 if f == videos.VTT else f, s): o for (f, s), o in rows.outputs.items()
        },
    )
    assert "its WebVTT file (s3) is not recorded" in record_problems(
        mp4_rows, job="j", rendition=text, ipfs=True
    )
    one = [SegmentRow(0, f"videos/{VID}/text-1/hls/seg_00000.vtt", "cid0", 99, 10.0)]
    assert playlist_problems(playlist(one, init=""), one, 10.0, "subtitles") == []
    assert "its playlist names init segment 'init.mp4'" in playlist_problems(
        playlist(one), one, 10.0, "subtitles"
    )
    as_video = playlist_problems(playlist(segments(1, 10.0)), segments(1, 10.0), 10.0, "subtitles")
    assert "its playlist's segments are not numbered 0, 1, 2, …" in as_video
    files = directory_files([text], {"text-1": rows}, {"text-1": one})
    assert set(files) == {"text-1/subtitles.vtt", "text-1/hls/index.m3u8",
                          "text-1/hls/seg_00000.vtt"}  # fmt: skip
