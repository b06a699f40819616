"""Posters, thumbnails and storyboards (vtx/core/images.py and the image branch of the encode
command): the plan, the cues, and the real FFmpeg making them from a source served over loopback
HTTP, as a jobrunner reads it (no other server involved)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import media
from vtx.core import images as img
from vtx.core.ladder import SourceFacts, plan_ladder
from vtx.jobrunner.ffmpeg import (
    ImageOutputs,
    build_encode_command,
    out_time_seconds,
    outputs_for,
    parse_progress,
)


def test_the_images_keep_the_shape_and_never_grow_past_the_source() -> None:
    wide = img.plan_images(1920, 1080, 8.0)
    assert (wide.poster, wide.thumbnail, wide.tile) == ((1280, 720), (320, 180), (160, 90))
    assert (wide.interval_s, wide.tiles, wide.columns, wide.rows) == (2, 4, 4, 1)
    assert wide.sheet == (640, 90)
    assert wide.window == (2.0, 6.0), "a quarter in, for half the length when that is short"
    phone = img.plan_images(1080, 1920, 30.0)
    assert (phone.poster, phone.thumbnail, phone.tile) == ((720, 1280), (180, 320), (90, 160))
    assert (phone.tiles, phone.columns, phone.rows) == (15, 10, 2)
    small = img.plan_images(160, 120, 5.0)
    assert (small.poster, small.thumbnail, small.tile) == ((160, 120), (160, 120), (120, 90))
    long = img.plan_images(1280, 720, 2 * 3600.0)
    assert (long.interval_s, long.tiles, long.columns, long.rows) == (72, 100, 10, 10)
    assert long.window == (1800.0, 1808.0)
    with pytest.raises(ValueError, match="a frame size and a duration"):
        img.plan_images(1280, 720, 0.0)


def test_the_storyboard_cues_cover_the_source_and_stay_on_the_sheet() -> None:
    plan = img.plan_images(1280, 720, 25.5)
    cues = img.parse_storyboard_vtt(img.storyboard_vtt(plan))
    assert len(cues) == plan.tiles == 13
    assert (cues[0].start, cues[-1].start, cues[-1].end) == (0.0, 24.0, 25.5)
    assert cues[10].xywh == (0, 90, 160, 90), "the eleventh tile starts the second row"
    assert img.storyboard_problems(cues, 25.5, plan.sheet, tolerance_s=1) == []
    short = img.storyboard_problems(cues[:-3], 25.5, plan.sheet, tolerance_s=1)
    assert short == ["its storyboard's cues end at 20.0s; the source lasts 25.5s"]
    gap = [*cues[:3], *cues[4:]]
    assert img.storyboard_problems(gap, 25.5, plan.sheet, tolerance_s=1) == [
        "its storyboard's cues leave 1 gaps or overlaps"
    ]
    assert img.storyboard_problems(cues, 25.5, (1600, 90), tolerance_s=1) == [
        "3 storyboard cues point outside its 1600x90 sheet"
    ]
    elsewhere = img.storyboard_vtt(plan, sheet="https://elsewhere.example/x.jpg")
    assert img.storyboard_problems(
        img.parse_storyboard_vtt(elsewhere), 25.5, plan.sheet, tolerance_s=1
    ) == ["its storyboard's cues point at https://elsewhere.example/x.jpg"]
    for bad in ("", "WEBVTT\n\n00:00.000 --> 00:02.000\nstoryboard.jpg\n",
                "WEBVTT\n\n0:0 --> 00:02.000\nstoryboard.jpg#xywh=0,0,1,1\n"):  # fmt: skip
        with pytest.raises(img.InvalidStoryboard):
            img.parse_storyboard_vtt(bad)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A 12 s source whose first 3 s are black, served over loopback HTTP."""
    folder = tmp_path_factory.mktemp("served")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error",
         "-f", "lavfi", "-i", "color=black:size=320x180:rate=25:duration=3",
         "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=9",
         "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0[v]", "-map", "[v]",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "50",
         "-f", "mpegts", str(folder / "src.ts")],
        check=True, timeout=120,
    )  # fmt: skip
    # A 3 s clip with sound, copied into MPEG-TS: its sound starts 21 ms before its picture.
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error",
         "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30:duration=3",
         "-f", "lavfi", "-i", "sine=frequency=1230:sample_rate=48000:duration=3",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-f", "mpegts", str(folder / "sound.ts")],
        check=True, timeout=120,
    )  # fmt: skip

    with media.served(folder) as base:
        yield f"{base}/src.ts", folder


def _encode(url: str, scratch: Path, *, images: bool) -> tuple[Path, ImageOutputs, list[float]]:
    facts = SourceFacts(duration=12.0, has_video=True, has_audio=False, width=320,
                        height=180, fps=25.0)  # fmt: skip
    plan = plan_ladder(facts)
    outputs = outputs_for(plan, scratch)
    for out in outputs:
        out.playlist.parent.mkdir(parents=True, exist_ok=True)
    pictures = ImageOutputs(img.plan_images(320, 180, 12.0), scratch / img.FOLDER)
    pictures.folder.mkdir(parents=True)
    cmd = build_encode_command(
        url, outputs, has_audio=False, duration_s=12.0, max_pixels=320 * 180, threads=1,
        images=pictures if images else None,
    )  # fmt: skip
    cmd[cmd.index("-stats_period") + 1] = "0.05"  # reports often enough for an encode this short
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    reported = [out_time_seconds(r) for r in parse_progress(proc.stdout)]
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    return outputs[0].mp4, pictures, [t for t in reported if t is not None]


def test_a_transport_stream_with_sound_gets_its_images_and_the_encode_ends(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    """The image outputs take each frame as it comes. With FFmpeg's default frame rate mode
    for image2, their timestamps on this source made FFmpeg write the storyboard's first frame
    again and again, without end: the encode never finished."""
    url = served[0].replace("/src.ts", "/sound.ts")
    facts = SourceFacts(duration=3.0, has_video=True, has_audio=True, width=854, height=480,
                        fps=30.0)  # fmt: skip
    outputs = outputs_for(plan_ladder(facts), tmp_path)
    for out in outputs:
        out.playlist.parent.mkdir(parents=True, exist_ok=True)
    pictures = ImageOutputs(img.plan_images(854, 480, 3.0), tmp_path / img.FOLDER)
    pictures.folder.mkdir(parents=True)
    cmd = build_encode_command(url, outputs, has_audio=True, duration_s=3.0,
                               max_pixels=1920 * 1080, images=pictures)  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("FFmpeg was still running after 60 s on a 3 s source")
    assert proc.returncode == 0, proc.stderr
    plan = pictures.plan
    assert _size(pictures.path(img.POSTER)) == plan.poster
    assert _size(pictures.path(img.STORYBOARD)) == plan.sheet
    assert _size(outputs[0].mp4) == (854, 480)


def _mean_luma(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-f", "lavfi", f"movie={path},signalstats",
         "-show_entries", "frame_tags=lavfi.signalstats.YAVG", "-of", "csv=p=0"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return float(out.split()[0])


def _size(path: Path) -> tuple[int, int]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0",
         str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    width, height = out.split()[0].split(",")
    return int(width), int(height)


def test_ffmpeg_makes_the_images_in_the_encode_and_leaves_the_encode_as_it_was(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = served
    mp4, pictures, reported = _encode(url, tmp_path / "with", images=True)
    plan = pictures.plan
    assert {p.name for p in pictures.folder.iterdir()} == {"poster.jpg", "thumbnail.jpg",
                                                             "storyboard.jpg"}  # fmt: skip
    assert _size(pictures.path(img.POSTER)) == plan.poster == (320, 180)
    for fmt in img.JPEGS:  # the frame header read in process says what ffprobe says
        data = pictures.path(fmt).read_bytes()
        assert img.jpeg_size(data) == _size(pictures.path(fmt)), fmt
        for cut in (data[:-2], data[:100] + data[-2:], b"GIF89a" + data):
            with pytest.raises(img.InvalidJpeg):
                img.jpeg_size(cut)
    assert _size(pictures.path(img.THUMBNAIL)) == plan.thumbnail == (320, 180)
    assert _size(pictures.path(img.STORYBOARD)) == plan.sheet == (960, 90)
    # The first 3 s are black: the poster is not, nor is the thumbnail made from it.
    assert _mean_luma(pictures.path(img.POSTER)) > 60
    assert _mean_luma(pictures.path(img.THUMBNAIL)) > 60
    # Progress is reported while encoding, not only at the end (FFmpeg waits for a frame of
    # every output before its first report).
    assert len([t for t in reported if 0 < t < 9]) >= 3, reported
    plain, _, _ = _encode(url, tmp_path / "without", images=False)
    # One encoder thread (x264 threads make the bytes vary from run to run): the same bytes.
    assert mp4.read_bytes() == plain.read_bytes(), "the rendition is the same, byte for byte"
