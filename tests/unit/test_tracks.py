"""A source's audio and subtitle tracks (vtx/core/tracks.py): what the probe says, bounded;
several audio tracks planned, encoded and offered in the master as audio renditions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from vtx.core import tracks
from vtx.core.hls import Media, Variant, master_of, render_master_playlist, variant_of
from vtx.core.ladder import (
    InvalidPlan,
    SourceFacts,
    audio_track,
    plan_from_list,
    plan_ladder,
    rendition_from_dict,
    rendition_to_dict,
    subtitle_track,
)
from vtx.jobrunner import ffmpeg


def stream(kind: str, codec: str, **tags: Any) -> dict[str, Any]:
    disposition = tags.pop("disposition", {})
    channels = tags.pop("channels", None)
    s: dict[str, Any] = {"codec_type": kind, "codec_name": codec, "tags": tags}
    if disposition:
        s["disposition"] = disposition
    if channels is not None:
        s["channels"] = channels
    return s


def test_every_track_is_read_in_order_with_its_language_and_name() -> None:
    streams = [
        stream("video", "h264"),
        stream("audio", "aac", language="eng", title="English", channels=2,
               disposition={"default": 1}),
        stream("audio", "ac3", language="fra", title="Français 5.1", channels=6),
        stream("subtitle", "subrip", language="en"),
        stream("subtitle", "hdmv_pgs_subtitle", language="de"),  # a bitmap: left out
        stream("subtitle", "ass", language="pt-BR", title="Forced", disposition={"forced": 1}),
    ]  # fmt: skip
    audio, subtitles, left_out = tracks.tracks_from_ffprobe(streams, max_audio=8, max_subtitles=8)
    assert [(t.index, t.language, t.title, t.channels, t.default) for t in audio] == [
        (0, "eng", "English", 2, True), (1, "fra", "Français 5.1", 6, False),
    ]  # fmt: skip
    assert [(t.index, t.codec, t.language, t.forced) for t in subtitles] == [
        (0, "subrip", "en", False), (2, "ass", "pt-BR", True),
    ]  # fmt: skip
    assert left_out == 1


def test_limits_leave_tracks_out_and_say_how_many() -> None:
    streams = [stream("audio", "aac") for _ in range(5)] + [stream("subtitle", "webvtt")] * 3
    audio, subtitles, left_out = tracks.tracks_from_ffprobe(streams, max_audio=2, max_subtitles=1)
    assert (len(audio), len(subtitles), left_out) == (2, 1, 5)


def test_hostile_tags_become_plain_bounded_words() -> None:
    assert tracks.language_of("en") == "en"
    assert tracks.language_of("und") == "und"
    for bad in ("", "english", 'en",URI="x', "../", None, 7):
        assert tracks.language_of(bad) == "und", bad
    assert tracks.title_of('Director\'s "cut",\nURI="http://x"') == "Director s cut URI= http://x"
    assert tracks.title_of("\x00\x1b[31m") == "[31m"
    assert tracks.title_of("a" * 500) == "a" * tracks.MAX_TITLE
    assert tracks.title_of("   ") is None
    untagged = tracks.tracks_from_ffprobe([stream("audio", "aac")], max_audio=1,
                                          max_subtitles=1)[0][0]  # fmt: skip
    assert tracks.menu_name(untagged.title, untagged.language, 2) == "Audio 2"


def test_the_master_lists_audio_tracks_and_subtitles_and_every_variant_names_them() -> None:
    variants = [Variant("480p/hls/index.m3u8", 1_500_000, 1_400_000, "avc1.64001e", 854, 480)]
    media = [
        Media("AUDIO", "English", "en", "audio-1/hls/index.m3u8", default=True, channels=2),
        Media("AUDIO", "Audio 2", "und", "audio-2/hls/index.m3u8", channels=2),
        Media("SUBTITLES", "English", "en", "text-1/index.m3u8", forced=True),
    ]
    lines = render_master_playlist(variants, media).splitlines()
    assert lines[3:6] == [
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="English",LANGUAGE="en",DEFAULT=YES,'
        'AUTOSELECT=YES,CHANNELS="2",URI="audio-1/hls/index.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="Audio 2",DEFAULT=NO,AUTOSELECT=YES,'
        'CHANNELS="2",URI="audio-2/hls/index.m3u8"',
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",DEFAULT=NO,'
        'AUTOSELECT=NO,FORCED=YES,URI="text-1/index.m3u8"',
    ]
    assert lines[6].endswith(',AUDIO="audio",SUBTITLES="subs"'), lines[6]
    assert render_master_playlist(variants) == render_master_playlist(variants, ()), "as before"
    assert "AUDIO=" not in render_master_playlist(variants)


# --- a video's audio tracks as renditions -------------------------------------------------


def facts(*audio: tracks.Track, has_video: bool = True) -> SourceFacts:
    return SourceFacts(duration=10, has_video=has_video, has_audio=bool(audio),
                       width=1920 if has_video else None, height=1080 if has_video else None,
                       fps=30, audio_tracks=audio)  # fmt: skip


def track(index: int, language: str = "und", title: str | None = None) -> tracks.Track:
    return tracks.Track("audio", index, "aac", language, title, channels=6)


def test_several_audio_tracks_become_audio_renditions_after_the_video_ones() -> None:
    plan = plan_ladder(facts(track(0, "en", "English"), track(1, "de"), track(2)))
    assert [(r.name, r.kind, r.alt_audio) for r in plan] == [
        ("480p", "video", True), ("720p", "video", True), ("1080p", "video", True),
        ("audio-1", "audio", False), ("audio-2", "audio", False), ("audio-3", "audio", False),
    ]  # fmt: skip
    assert [(r.language, r.title, audio_track(r)) for r in plan[3:]] == [
        ("en", "English", 0), ("de", None, 1), ("und", None, 2),
    ]  # fmt: skip
    assert all(r.audio_bitrate_k for r in plan), "the MP4s keep the first track's sound"
    assert plan_from_list([rendition_to_dict(r) for r in plan]) == tuple(plan)
    # As many as the setting says; one track, or sound alone, as before.
    limited = plan_ladder(facts(*(track(i) for i in range(6))), max_audio_tracks=2)
    assert [r.name for r in limited if r.kind == "audio"] == ["audio-1", "audio-2"]
    one = plan_ladder(facts(track(0, "en")))
    assert [r.name for r in one] == ["480p", "720p", "1080p"]
    assert not any(r.alt_audio for r in one)
    assert [r.name for r in plan_ladder(facts(track(0), track(1), has_video=False))] == ["audio"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "audio-0"}, "not of the form"),
        ({"name": "audio-100"}, "not of the form"),
        ({"language": 'en",URI="http://x'}, "not a language code"),
        ({"title": 'a",URI="x'}, "printable text"),
        ({"title": "x" * 61}, "printable text"),
        ({"alt_audio": True}, "false for audio"),
    ],
)
def test_an_audio_track_rendition_is_checked_when_read_back(
    change: dict[str, Any], message: str
) -> None:
    good = rendition_to_dict(plan_ladder(facts(track(0, "en", "English"), track(1)))[3])
    assert rendition_from_dict(good).language == "en"
    with pytest.raises(InvalidPlan, match=message):
        rendition_from_dict({**good, **change})


def test_a_video_rendition_has_no_language_and_says_whether_its_hls_has_sound() -> None:
    video = rendition_to_dict(plan_ladder(facts(track(0), track(1)))[0])
    assert rendition_from_dict(video).alt_audio
    with pytest.raises(InvalidPlan, match="have a language or title"):
        rendition_from_dict({**video, "language": "en"})
    with pytest.raises(InvalidPlan, match="alt_audio"):
        rendition_from_dict({**video, "alt_audio": "yes"})


def test_the_encode_maps_each_track_and_keeps_sound_out_of_the_video_hls() -> None:
    plan = plan_ladder(facts(track(0), track(1)))
    outs = ffmpeg.outputs_for([plan[0], *plan[3:]], Path("/s"))
    cmd = ffmpeg.build_encode_command("http://s3/src", outs, has_audio=True, duration_s=8,
                                      max_pixels=1920 * 1080)  # fmt: skip
    maps = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-map"]
    assert maps == ["[v0]", "0:a:0", "0:a:0", "0:a:1"]
    tees = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "tee"]
    assert tees[0].startswith("[f=mp4:movflags=+faststart]/s/480p/video.mp4|[select=v:f=hls:")
    assert tees[1].startswith("[f=mp4:movflags=+faststart]/s/audio-1/audio.mp4|[f=hls:")
    assert tees[2].startswith("[f=mp4:movflags=+faststart]/s/audio-2/audio.mp4|[f=hls:")
    assert cmd.count("-ac") == 3, "every track downmixed to stereo"


def test_the_master_offers_the_tracks_the_first_by_default_with_distinct_names() -> None:
    plan = plan_ladder(facts(track(0, "en"), track(1, "en"), track(2, "de", "Deutsch")))
    text = master_of(plan)
    assert text is not None
    media_lines = [line for line in text.splitlines() if line.startswith("#EXT-X-MEDIA:")]
    assert media_lines == [
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="en",LANGUAGE="en",DEFAULT=YES,'
        'AUTOSELECT=YES,CHANNELS="2",URI="audio-1/hls/index.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="en (2)",LANGUAGE="en",DEFAULT=NO,'
        'AUTOSELECT=YES,CHANNELS="2",URI="audio-2/hls/index.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="Deutsch",LANGUAGE="de",DEFAULT=NO,'
        'AUTOSELECT=YES,CHANNELS="2",URI="audio-3/hls/index.m3u8"',
    ]
    variants = [line for line in text.splitlines() if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(variants) == 3
    assert all(v.endswith(',AUDIO="audio"') for v in variants)
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert uris == ["480p/hls/index.m3u8", "720p/hls/index.m3u8", "1080p/hls/index.m3u8"]
    # While transcoding: no master that would play the picture without its default sound.
    assert master_of([plan[0]]) is None
    assert master_of([plan[0], plan[4]]) is None
    assert master_of([plan[0], plan[3]]) is not None
    one = plan_ladder(facts(track(0)))
    assert master_of(one) == render_master_playlist([variant_of(r) for r in one]), "as before"


# --- subtitles --------------------------------------------------------------------------------


def text(index: int, language: str = "und", title: str | None = None) -> tracks.Track:
    return tracks.Track("subtitles", index, "subrip", language, title)


def test_text_subtitles_become_webvtt_renditions_named_by_their_stream() -> None:
    source = replace(facts(track(0, "en")), subtitle_tracks=(text(0, "en"), text(2, "fr", "FR")))
    plan = plan_ladder(source)
    assert [(r.name, r.kind) for r in plan[3:]] == [
        ("text-1", "subtitles"),
        ("text-3", "subtitles"),
    ]
    assert [(r.language, r.title, subtitle_track(r)) for r in plan[3:]] == [
        ("en", None, 0), ("fr", "FR", 2),
    ]  # fmt: skip
    assert not any(r.alt_audio for r in plan), "one audio track: sound stays in the variants"
    assert all(r.audio_bitrate_k == 0 and r.width == 0 for r in plan[3:])
    assert plan_from_list([rendition_to_dict(r) for r in plan]) == tuple(plan)
    assert [r.name for r in plan_ladder(source, max_subtitle_tracks=1)][3:] == ["text-1"]
    assert len(plan_ladder(source, max_subtitle_tracks=0)) == 3
    with pytest.raises(InvalidPlan, match="audio_bitrate_k"):
        rendition_from_dict({**rendition_to_dict(plan[3]), "audio_bitrate_k": 128})


def test_the_master_offers_subtitles_none_shown_by_default() -> None:
    source = replace(facts(track(0, "en"), track(1, "de")), subtitle_tracks=(text(0, "en"),))
    text_ = master_of(plan_ladder(source))
    assert text_ is not None
    lines = text_.splitlines()
    assert (
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="en",LANGUAGE="en",DEFAULT=NO,'
        'AUTOSELECT=NO,URI="text-1/hls/index.m3u8"'
    ) in lines
    assert (
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="en",LANGUAGE="en",DEFAULT=YES,'
        'AUTOSELECT=YES,CHANNELS="2",URI="audio-1/hls/index.m3u8"' in lines
    ), "a name per group"
    variants = [line for line in lines if line.startswith("#EXT-X-STREAM-INF:")]
    assert all(v.endswith(',AUDIO="audio",SUBTITLES="subs"') for v in variants), variants
    # One audio track: sound in the variants, subtitles as their group.
    alone = master_of(plan_ladder(replace(facts(track(0)), subtitle_tracks=(text(0),))))
    assert alone is not None
    assert "TYPE=AUDIO" not in alone
    assert 'NAME="Subtitles 1"' in alone
    assert alone.splitlines()[4].endswith(',SUBTITLES="subs"')


def test_subtitles_are_extracted_beside_the_encode_not_in_it() -> None:
    plan = plan_ladder(replace(facts(track(0)), subtitle_tracks=(text(0), text(3))))
    outs = ffmpeg.outputs_for(plan, Path("/s"))
    cmd = ffmpeg.build_subtitles_command("http://s3/src", outs[3:], duration_s=8)
    assert cmd[cmd.index("-i") + 1] == "http://s3/src"
    maps = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-map"]
    assert maps == ["0:s:0", "0:s:3"]
    files = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "webvtt" and cmd[i - 1] == "-f"]
    assert files == ["/s/text-1/subtitles.vtt", "/s/text-4/subtitles.vtt"]
    assert "-filter_complex" not in cmd
    assert cmd[cmd.index("-protocol_whitelist") + 1] == "http,tcp"
    with pytest.raises(ValueError, match="extracted, not encoded"):
        ffmpeg.build_encode_command("http://s3/src", outs, has_audio=True, duration_s=8,
                                    max_pixels=1920 * 1080)  # fmt: skip


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"WEBVTT\n\n00:00.500 --> 00:01.500\nHello\n", None),
        (b"\xef\xbb\xbfWEBVTT\n\n01:00:00.500 --> 01:00:01.500\nlate\n", "after the video's end"),
        (b"WEBVTT\n\n00:02.000 --> 00:01.000\nbackwards\n", "ends (1.000s) before it starts"),
        (b"1\n00:00:00,500 --> 00:00:01,500\nan SRT file\n", "does not start with WEBVTT"),
        (b"WEBVTTX\n", "does not start with WEBVTT"),
        (b"WEBVTT\n\xff\xfe", "not UTF-8"),
        (b"WEBVTT\n" + b"x" * tracks.MAX_WEBVTT_BYTES, "more than"),
    ],
)
def test_a_subtitles_file_is_checked_before_it_is_published(
    data: bytes, problem: str | None
) -> None:
    found = tracks.webvtt_problems(data, 10.0)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1
        assert problem in found[0], found
