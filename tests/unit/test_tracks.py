"""A source's audio and subtitle tracks (vtx/core/tracks.py): what the probe says, bounded."""

from __future__ import annotations

from typing import Any

from vtx.core import tracks
from vtx.core.hls import Media, Variant, render_master_playlist


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
    assert tracks.menu_name(untagged, 2) == "Audio 2"


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
