from __future__ import annotations

from fractions import Fraction

import pytest

from vtx.core.ladder import (
    DEFAULT_LADDER,
    InvalidSource,
    SourceFacts,
    format_ladder,
    parse_ladder,
    plan_ladder,
)


def video(w: int, h: int, **kw: object) -> SourceFacts:
    return SourceFacts(duration=10, has_video=True, has_audio=True, width=w, height=h, **kw)  # type: ignore[arg-type]


CASES = [
    ("1080p landscape", video(1920, 1080, fps=30.0),
     [("480p", 854, 480), ("720p", 1280, 720), ("1080p", 1920, 1080)]),
    ("720p, no upscale", video(1280, 720), [("480p", 854, 480), ("720p", 1280, 720)]),
    ("vertical 1080x1920", video(1080, 1920),
     [("480p", 480, 854), ("720p", 720, 1280), ("1080p", 1080, 1920)]),
    ("rotated 90 stays portrait", video(1920, 1080, rotation=90),
     [("480p", 480, 854), ("720p", 720, 1280), ("1080p", 1080, 1920)]),
    ("rotated -90 (270) stays portrait", video(1920, 1080, rotation=270),
     [("480p", 480, 854), ("720p", 720, 1280), ("1080p", 1080, 1920)]),
    ("4K capped at the top rung", video(3840, 2160),
     [("480p", 854, 480), ("720p", 1280, 720), ("1080p", 1920, 1080)]),
    ("320x240, smaller than every rung", video(320, 240), [("240p", 320, 240)]),
    ("odd 1366x769 gets even sizes", video(1366, 769), [("480p", 852, 480), ("720p", 1278, 720)]),
    ("anamorphic 720x576 SAR 16:11", video(720, 576, sar=Fraction(16, 11)), [("480p", 872, 480)]),
]  # fmt: skip


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_sizes(source: SourceFacts, expected: list[tuple[str, int, int]]) -> None:
    plan = plan_ladder(source)
    assert [(r.name, r.width, r.height) for r in plan] == expected
    assert all(r.kind == "video" and r.audio_bitrate_k > 0 for r in plan)


def test_bitrates_come_from_the_ladder() -> None:
    plan = plan_ladder(video(1920, 1080))
    assert [(r.video_bitrate_k, r.maxrate_k, r.bufsize_k, r.audio_bitrate_k) for r in plan] == [
        (1400, 1498, 2100, 128),
        (2800, 2996, 4200, 128),
        (5000, 5350, 7500, 192),
    ]


def test_a_small_source_gets_scaled_down_bitrates() -> None:
    (r,) = plan_ladder(video(320, 240))
    assert r.video_bitrate_k == 350, "a quarter of 480p's: 320x240 is 1/5 of 640x480's pixels"


def test_aspect_ratio_is_kept_within_a_pixel() -> None:
    for r in plan_ladder(video(1366, 769)):
        assert abs(r.width / r.height - 1366 / 769) * r.height < 1.0


@pytest.mark.parametrize(("max_fps", "fps"), [(30.0, 30.0), (60.0, 60.0)])
def test_frame_rate_is_capped(max_fps: float, fps: float) -> None:
    plan = plan_ladder(video(1920, 1080, fps=60.0), max_fps=max_fps)
    assert {r.fps for r in plan} == {fps}


def test_unknown_frame_rate_keeps_the_source_rate() -> None:
    assert {r.fps for r in plan_ladder(video(1280, 720))} == {None}


def test_video_without_audio_gets_no_audio() -> None:
    silent = SourceFacts(duration=5, has_video=True, has_audio=False, width=1280, height=720)
    assert {r.audio_bitrate_k for r in plan_ladder(silent)} == {0}


def test_audio_only_gives_one_audio_rendition() -> None:
    plan = plan_ladder(SourceFacts(duration=30, has_video=False, has_audio=True))
    assert [(r.name, r.kind, r.width, r.height, r.audio_bitrate_k) for r in plan] == [
        ("audio", "audio", 0, 0, 128)
    ]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (SourceFacts(duration=10, has_video=False, has_audio=False), "neither video nor audio"),
        (
            SourceFacts(duration=0, has_video=True, has_audio=True, width=640, height=480),
            "duration",
        ),
        (SourceFacts(duration=10, has_video=True, has_audio=False), "no frame size"),
    ],
    ids=["no streams", "no duration", "no frame size"],
)
def test_invalid_sources_are_refused(source: SourceFacts, reason: str) -> None:
    with pytest.raises(InvalidSource, match=reason):
        plan_ladder(source)


def test_ladder_setting_round_trips() -> None:
    text = format_ladder(DEFAULT_LADDER)
    assert (
        text
        == "480p:480:1400:1498:2100:128,720p:720:2800:2996:4200:128,1080p:1080:5000:5350:7500:192"
    )
    assert parse_ladder(text) == DEFAULT_LADDER


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("480p:480:1400", "expected name:height"),
        ("480p:480:1400:1498:2100:x", "integers"),
        ("480p:0:1400:1498:2100:128", "positive"),
        ("a:480:1:1:1:1,a:720:1:1:1:1", "unique"),
        ("b:720:1:1:1:1,a:480:1:1:1:1", "increase"),
    ],
)
def test_bad_ladder_settings_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ladder(text)
