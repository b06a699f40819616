from __future__ import annotations

from pathlib import Path

import pytest

from vtx.core import hls, media
from vtx.core.ladder import Rendition
from vtx.jobrunner import ffmpeg
from vtx.jobrunner.retry import StorageUnavailable, with_retry

MAX_PIXELS = 7680 * 4320
R480 = Rendition("480p", "video", 854, 480, 30.0, 1400, 1498, 2100, 128)
R720 = Rendition("720p", "video", 1280, 720, 30.0, 2800, 2996, 4200, 128)
AUDIO = Rendition("audio", "audio", 0, 0, None, 0, 0, 0, 128)

FFMPEG_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:EVENT
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4.000000,
seg_00000.m4s
#EXTINF:3.966667,
seg_00001.m4s
"""


def test_a_playlist_in_progress_lists_finished_segments_only() -> None:
    playlist = hls.parse_media_playlist(FFMPEG_PLAYLIST)
    assert playlist.init_uri == "init.mp4"
    assert [(s.sequence, s.uri, s.duration) for s in playlist.segments] == [
        (0, "seg_00000.m4s", 4.0),
        (1, "seg_00001.m4s", 3.966667),
    ]
    assert not playlist.ended
    assert hls.parse_media_playlist(FFMPEG_PLAYLIST + "#EXT-X-ENDLIST\n").ended


def test_published_playlists_grow_then_end() -> None:
    segments = list(hls.parse_media_playlist(FFMPEG_PLAYLIST).segments)
    growing = hls.render_media_playlist(segments, init_uri="init.mp4", ended=False)
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in growing
    assert "#EXT-X-ENDLIST" not in growing
    final = hls.render_media_playlist(segments, init_uri="init.mp4", ended=True)
    assert final.endswith("#EXT-X-ENDLIST\n")
    assert hls.parse_media_playlist(final).segments == tuple(segments)


def test_master_playlist_orders_variants_by_bandwidth() -> None:
    text = hls.render_master_playlist(
        [
            hls.Variant(
                "720p/hls/index.m3u8", 3_124_000, 2_928_000, "avc1.64001f,mp4a.40.2", 1280, 720, 30
            ),
            hls.Variant(
                "480p/hls/index.m3u8", 1_626_000, 1_528_000, "avc1.64001e,mp4a.40.2", 854, 480, 30
            ),
        ]
    )
    lines = text.splitlines()
    assert lines[3].startswith("#EXT-X-STREAM-INF:BANDWIDTH=1626000,")
    assert "RESOLUTION=854x480" in lines[3]
    assert 'CODECS="avc1.64001e,mp4a.40.2"' in lines[3]
    assert lines[4] == "480p/hls/index.m3u8"
    assert lines[6] == "720p/hls/index.m3u8"


def test_one_decode_feeds_every_rendition_and_each_is_written_twice() -> None:
    outs = ffmpeg.outputs_for([R480, R720], Path("/scratch/w"))
    cmd = ffmpeg.build_encode_command(
        "https://s3.example/src?sig=1", outs, has_audio=True, duration_s=10, max_pixels=MAX_PIXELS
    )
    assert cmd.count("-i") == 1, "one input, decoded once"
    graph = cmd[cmd.index("-filter_complex") + 1]
    # The first video stream that is not an attached picture: the one the probe looked at.
    assert graph.startswith("[0:V:0]split=2[s0][s1]")
    # The decode is bounded: no frame beyond the limit, no more than the probed duration.
    assert cmd[cmd.index("-max_pixels") + 1] == str(MAX_PIXELS)
    assert cmd[cmd.index("-t") + 1] == "15.000"
    assert cmd.index("-max_pixels") < cmd.index("-i"), "an input option: it binds the decoder"
    assert "scale=854:480" in graph
    assert "scale=1280:720" in graph
    assert cmd.count("tee") == 2
    tee = cmd[cmd.index("tee") + 1]
    assert tee.startswith("[f=mp4:movflags=+faststart]/scratch/w/480p/video.mp4|[f=hls:")
    assert "hls_segment_type=fmp4" in tee
    assert f"hls_time={media.HLS_TIME}" in tee
    # Keyframes at the same instants in every rendition, so players switch cleanly.
    assert cmd.count(media.keyframe_expression()) == 2
    assert cmd[cmd.index("-protocol_whitelist") + 1] == "https,tls,tcp"
    formats = cmd[cmd.index("-format_whitelist") + 1].split(",")
    assert "hls" not in formats
    assert "concat" not in formats


def test_an_interlaced_source_is_deinterlaced_once_before_it_is_scaled() -> None:
    outs = ffmpeg.outputs_for([R480, R720], Path("/scratch/w"))

    def graph(outputs: list[ffmpeg.Output], deinterlace: bool) -> list[str]:
        cmd = ffmpeg.build_encode_command(
            "http://s3/src", outputs, has_audio=True, duration_s=10, max_pixels=MAX_PIXELS,
            deinterlace=deinterlace,
        )  # fmt: skip
        return cmd[cmd.index("-filter_complex") + 1].split(";")

    both = graph(outs, True)
    assert both[:2] == [
        "[0:V:0]bwdif=mode=send_frame:parity=auto:deint=interlaced[di]",
        "[di]split=2[s0][s1]",
    ]
    assert all("bwdif" not in chain for chain in both[1:]), "once, for every rendition"
    one = graph(outs[:1], True)
    assert one[0].endswith("[di]")
    assert one[1].startswith("[di]scale=854:480")
    # A progressive source is left as it is: no deinterlacer at all.
    assert not any("bwdif" in chain for chain in graph(outs, False))


def test_an_audio_only_rendition_has_no_video() -> None:
    outs = ffmpeg.outputs_for([AUDIO], Path("/s"))
    cmd = ffmpeg.build_encode_command(
        "http://s3/src", outs, has_audio=True, duration_s=8, max_pixels=MAX_PIXELS
    )
    assert "-filter_complex" not in cmd
    assert "-vn" in cmd
    assert cmd[cmd.index("-b:a") + 1] == "128k"
    assert "/s/audio/audio.mp4" in cmd[-1]


def test_only_http_sources_are_read() -> None:
    for url in ("file:///etc/passwd", "/etc/passwd", "concat:a|b"):
        with pytest.raises(ValueError, match="http"):
            media.allowed_protocols(url)


def test_progress_reports_are_parsed() -> None:
    lines = [
        "frame=10",
        "out_time_us=N/A",
        "progress=continue",
        "out_time_us=2500000",
        "progress=end",
    ]
    reports = list(ffmpeg.parse_progress(lines))
    assert [ffmpeg.out_time_seconds(r) for r in reports] == [None, 2.5]


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("upload.mp4: Invalid data found when processing input", "invalid"),
        ("[mov,mp4,m4a,3gp,3g2,mj2 @ 0x1] moov atom not found", "invalid"),
        ("Format hls is not on the format whitelist", "invalid"),
        ("Connection to tcp://s3:7070 failed: Connection refused", "transient"),
        ("Server returned 503 Service Unavailable", "transient"),
        ("something nobody anticipated", "transient"),
    ],
)
def test_failures_are_classified(stderr: str, kind: str) -> None:
    assert media.classify_failure(stderr) == kind


def test_retry_backs_off_then_gives_up_with_the_cause() -> None:
    clock = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        clock[0] += s

    def failing() -> None:
        raise ConnectionError("refused")

    with pytest.raises(StorageUnavailable, match=r"S3 put k failed for 30s .* refused"):
        with_retry(failing, "S3 put k", budget_s=30, sleep=sleep, clock=lambda: clock[0])
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]

    calls = iter([ConnectionError("x"), None])

    def flaky() -> str:
        exc = next(calls)
        if exc:
            raise exc
        return "ok"

    assert with_retry(flaky, "x", budget_s=30, sleep=sleep, clock=lambda: clock[0]) == "ok"


def test_failure_reasons_are_telling_and_carry_no_signed_url() -> None:
    url = "http://s3:7070/media-videos/a.mp4?X-Amz-Signature=abc123&X-Amz-Credential=k"
    stderr = f"[hls @ 0x55f5e6d79240] Format not on whitelist 'mov,mp4'\n{url}: Invalid argument\n"
    assert (
        media.failure_reason(stderr)
        == "hls input is not allowed (Format not on whitelist 'mov,mp4')"
    )
    reason = media.failure_reason(f"{url}: Invalid data found when processing input\n")
    assert reason == "the source: Invalid data found when processing input"
    assert "Signature" not in media.redact_urls(f"opening {url} failed")


def test_only_the_encoded_streams_oversized_frames_refuse_the_source() -> None:
    grown = (
        "[h264 @ 0x55d0] [IMGUTILS @ 0x7fc3] Picture size 8192x8192 exceeds specified max"
        " pixel count 33177600, see the documentation if you wish to increase it\n"
    )
    cover = grown.replace("h264", "mjpeg").replace("8192x8192", "7680x7680")
    assert media.oversized_frame(grown, "h264") == "8192x8192"
    assert media.oversized_frame(cover, "h264") is None, "a cover picture is never encoded"
    assert media.oversized_frame(cover + grown, "h264") == "8192x8192"
    assert media.oversized_frame("Error while decoding stream #0:0\n", "h264") is None


def test_stored_bytes_are_reported_at_most_each_second_and_add_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typing import cast

    from vtx.core.settings import Settings
    from vtx.jobrunner import report

    def no_broker(_settings: Settings) -> None:
        raise ConnectionError("no broker in a unit test")

    monkeypatch.setattr("vtx.jobrunner.report.bus.pulsar_client", no_broker)
    sent: list[tuple[str, float, int]] = []
    monkeypatch.setattr(report.Reporter, "_send_event",
                        lambda _self, _name, st: sent.append((st.phase, st.progress,
                                                              st.stored_bytes)))  # fmt: skip
    clock = [0.0]
    reporter = report.Reporter(cast(Settings, None), "v", ["480p"], clock=lambda: clock[0])
    reporter.update("480p", "uploading", 95.0)
    for _ in range(4):
        reporter.stored("480p", 1000)
        clock[0] += 0.4
    assert sent == [("uploading", 95.0, 0), ("uploading", 95.0, 4000)]


def test_a_late_report_is_logged_with_how_late_it_is(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A report due every second that comes 2.5 s after the last says so in the Job's log: the
    account of what held the job up when a progress bar stood still."""
    from typing import cast

    from vtx.core.settings import Settings
    from vtx.jobrunner import report

    def no_broker(_settings: Settings) -> None:
        raise ConnectionError("no broker in a unit test")

    monkeypatch.setattr("vtx.jobrunner.report.bus.pulsar_client", no_broker)
    clock = [0.0]
    reporter = report.Reporter(cast(Settings, None), "v", ["1080p"], clock=lambda: clock[0])
    for step in (0.0, 1.0, 1.0, 2.5):
        clock[0] += step
        reporter.update("1080p", "encoding", clock[0])
    late = [r.getMessage() for r in caplog.records if "since its last report" in r.getMessage()]
    assert late == ["status of 1080p: 2.5s since its last report"]
