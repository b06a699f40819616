from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from tests.unit.test_settings import BASE
from vtx.core.ladder import InvalidSource, SourceFacts, plan_ladder
from vtx.core.probe import facts_from_ffprobe, ffprobe_args
from vtx.core.settings import Settings
from vtx.core.sources import MEDIA_ENV, check_limits, sandboxed

# Trimmed from real ffprobe 5.1 reports.
PHONE: dict[str, Any] = {
    "streams": [
        {
            "codec_name": "h264", "codec_type": "video", "width": 1920, "height": 1080,
            "sample_aspect_ratio": "1:1", "r_frame_rate": "30000/1001",
            "avg_frame_rate": "30000/1001", "disposition": {"attached_pic": 0},
            "side_data_list": [
                {"side_data_type": "Display Matrix", "displaymatrix": "...", "rotation": -90}
            ],
        },
        {"codec_name": "aac", "codec_type": "audio", "sample_rate": "48000", "channels": 2},
    ],
    "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "12.345000"},
}  # fmt: skip
COVER_ART_AUDIO: dict[str, Any] = {
    "streams": [
        {"codec_name": "mp3", "codec_type": "audio", "duration": "184.2"},
        {
            "codec_name": "mjpeg", "codec_type": "video", "width": 600, "height": 600,
            "avg_frame_rate": "0/0", "r_frame_rate": "90000/1",
            "disposition": {"attached_pic": 1},
        },
    ],
    "format": {"format_name": "mp3"},
}  # fmt: skip
ANAMORPHIC_DV: dict[str, Any] = {
    "streams": [
        {
            "codec_name": "dvvideo", "codec_type": "video", "width": 720, "height": 576,
            "sample_aspect_ratio": "16:15", "avg_frame_rate": "25/1", "r_frame_rate": "25/1",
            "tags": {"rotate": "0"},
        },
        {"codec_name": "pcm_s16le", "codec_type": "audio"},
    ],
    "format": {"duration": "60.000000"},
}  # fmt: skip


def test_a_phone_video_is_known_to_be_rotated() -> None:
    facts = facts_from_ffprobe(PHONE)
    assert (facts.width, facts.height, facts.rotation) == (1920, 1080, 270)
    assert facts.fps == 29.97
    assert facts.duration == 12.345
    assert (facts.video_codec, facts.audio_codec) == ("h264", "aac")
    lowest = plan_ladder(facts)[0]
    assert (lowest.width, lowest.height) == (480, 854), "stays portrait"


@pytest.mark.parametrize(
    ("said", "order", "interlaced"),
    [
        ("tt", "tt", True),
        ("bb", "bb", True),
        ("tb", "tb", True),
        ("bt", "bt", True),
        ("progressive", "progressive", False),
        ("unknown", "unknown", False),
        (None, "unknown", False),
        ("tt; rm -rf /", "unknown", False),  # anything else a file makes ffprobe say
        (7, "unknown", False),
    ],
)
def test_the_field_order_is_read_into_a_known_value(
    said: object, order: str, interlaced: bool
) -> None:
    video = {**PHONE["streams"][0], "field_order": said}
    facts = facts_from_ffprobe({**PHONE, "streams": [video, PHONE["streams"][1]]})
    assert (facts.field_order, facts.interlaced) == (order, interlaced)


def test_cover_art_is_not_video() -> None:
    facts = facts_from_ffprobe(COVER_ART_AUDIO)
    assert not facts.has_video
    assert facts.has_audio
    assert facts.duration == 184.2, "from the stream when the format has none"
    assert [r.kind for r in plan_ladder(facts)] == ["audio"]


def test_an_anamorphic_source_keeps_its_sample_aspect_ratio() -> None:
    facts = facts_from_ffprobe(ANAMORPHIC_DV)
    assert facts.sar == Fraction(16, 15)
    assert facts.fps == 25.0
    assert facts.rotation == 0


def test_a_garbled_report_yields_unknowns_not_errors() -> None:
    garbled: dict[str, Any] = {
        "streams": [
            "nonsense",
            {"codec_type": "video", "width": "wide", "avg_frame_rate": "1/0",
             "sample_aspect_ratio": "0:1", "side_data_list": [{"rotation": "x"}]},
        ],
        "format": {"duration": "N/A"},
    }  # fmt: skip
    facts = facts_from_ffprobe(garbled)
    assert facts.has_video
    assert (facts.width, facts.height, facts.fps, facts.sar, facts.rotation) == (
        None, None, None, Fraction(1), 0,
    )  # fmt: skip
    assert facts.duration == 0.0
    empty = facts_from_ffprobe({})
    assert not empty.has_video
    assert not empty.has_audio


def test_the_probe_reads_only_whitelisted_protocols_and_formats() -> None:
    args = ffprobe_args(
        "https://s3/x?sig",
        allowed_protocols="https,tls,tcp",
        allowed_formats="mov,mp4",
        timeout_s=5,
    )
    assert args[0] == "ffprobe"
    assert args[-2:] == ["-i", "https://s3/x?sig"]
    assert args[args.index("-protocol_whitelist") + 1] == "https,tls,tcp"
    assert args[args.index("-format_whitelist") + 1] == "mov,mp4"
    assert args[args.index("-rw_timeout") + 1] == "5000000"
    assert args.index("-protocol_whitelist") < args.index("-i"), "input options come first"


@pytest.mark.parametrize(
    ("width", "height", "sar", "refused"),
    [
        (1920, 1080, Fraction(1), None),
        (1920, 1080, Fraction(40), "76800x1080 as displayed"),
        (1920, 1080, Fraction(1, 40), None),  # 48x1080 as displayed: small, within the limits
        (7680, 4320, Fraction(2), "15360x4320 as displayed"),
        (8192, 1080, Fraction(1), "8192x1080, larger than the limit"),
    ],
)
def test_the_limits_hold_for_the_frame_as_displayed(
    width: int, height: int, sar: Fraction, refused: str | None
) -> None:
    facts = SourceFacts(duration=10, has_video=True, has_audio=False, width=width,
                        height=height, sar=sar, fps=30)  # fmt: skip
    settings = Settings.from_env(BASE)
    if refused is None:
        check_limits(facts, settings)
        for r in plan_ladder(facts):
            assert max(r.width, r.height) <= settings.max_source_width
    else:
        with pytest.raises(InvalidSource, match=refused):
            check_limits(facts, settings)


def test_a_probe_runs_with_limits_and_without_the_callers_credentials() -> None:
    args = sandboxed(["ffprobe", "-i", "http://s3/x"], memory_mb=512, cpu_s=30)
    assert args[0] == "prlimit"
    assert f"--as={512 * 1024 * 1024}" in args
    assert "--cpu=30" in args
    assert "--fsize=0" in args, "a probe writes no file"
    assert args[args.index("--") + 1 :] == ["ffprobe", "-i", "http://s3/x"]
    assert set(MEDIA_ENV) == {"PATH", "LANG"}
