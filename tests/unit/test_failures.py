"""Failure reasons in words: each refusal the probe and the jobrunner make reads as a sentence,
and what a refused file's first bytes say it is names it."""

from __future__ import annotations

import dataclasses
import zlib
from fractions import Fraction

import pytest

from tests.unit.test_settings import BASE
from vtx.core.failures import explain, sniff
from vtx.core.ladder import InvalidSource, SourceFacts, plan_ladder
from vtx.core.media import failure_reason
from vtx.core.settings import Settings
from vtx.core.sources import check_limits

SETTINGS = Settings.from_env(BASE)
UNREADABLE = "InvalidSource: the source is not a readable video or audio file: "
FACTS = SourceFacts(duration=10, has_video=True, has_audio=True, width=1920, height=1080, fps=30)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"", "an empty file"),
        (b"#EXTM3U\n#EXT-X-VERSION:3\n", "an HLS playlist"),
        (b"\xef\xbb\xbf\n  #extm3u\n", "an HLS playlist"),
        (
            b"ffconcat version 1.0\nfile 'a.mp4'\n",
            "a list of other files (an FFmpeg concat script)",
        ),
        (b"<?xml version='1.0'?>\n<MPD xmlns='urn:mpeg:dash:schema:mpd:2011'>", "a DASH manifest"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "a web page (HTML)"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "a JPEG image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a PNG image"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "a WebP image"),
        (b"PK\x03\x04\x14\x00\x00\x00", "a ZIP archive"),
        (b"\x1f\x8b\x08\x00" + zlib.compress(b"x" * 100), "a gzip archive"),
        (b'{"videos": [1, 2, 3]}', "JSON text"),
        (b"This is not a video, whatever its name says.\n" * 50, "a text file"),
        ("Ceci n'est pas une vidéo.\n".encode() * 200, "a text file"),  # cut mid-character
        # Media whose probe failed says nothing: damaged, not something else.
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41", None),
        (b"\x1aE\xdf\xa3\x9fB\x86\x81\x01", None),  # Matroska
        (bytes(range(256)) * 4, None),
    ],
)
def test_the_first_bytes_name_what_a_file_is(head: bytes, kind: str | None) -> None:
    assert sniff(head[:4096]) == kind


def refusal(facts: SourceFacts) -> str:
    """What the probe's check, or the ladder after it, says of ``facts``."""
    try:
        check_limits(facts, SETTINGS)
        plan_ladder(facts)
    except InvalidSource as exc:
        return f"InvalidSource: {exc}"
    raise AssertionError(f"{facts} was not refused")


@pytest.mark.parametrize(
    ("facts", "said"),
    [
        (
            dataclasses.replace(FACTS, duration=4 * 3600 + 5 * 60),
            "This video lasts 4 h 05 min; the longest allowed is",
        ),
        (
            dataclasses.replace(FACTS, width=7680, height=7680),
            "This video's picture is 7680x7680; the largest allowed is",
        ),
        (
            dataclasses.replace(FACTS, sar=Fraction(40, 1)),
            "This video's picture is 76800x1080 as it is displayed; the largest allowed is",
        ),
        (dataclasses.replace(FACTS, fps=1000), "This video has 1000 frames per second; the most"),
        (
            dataclasses.replace(FACTS, has_video=False, has_audio=False),
            "This file has neither pictures nor sound.",
        ),
        (dataclasses.replace(FACTS, duration=0), "The length of this file cannot be told"),
    ],
)
def test_every_limit_the_probe_holds_reads_as_a_sentence(facts: SourceFacts, said: str) -> None:
    sentence = explain(refusal(facts))
    assert sentence.startswith(said), sentence
    assert sentence.endswith(".")


def test_a_file_ffprobe_cannot_read_is_named_by_its_bytes() -> None:
    stderr = "http://s3:7070/videos/x/source/a.mp4?X-Amz-Signature=abc: Invalid data found\n"
    detail = UNREADABLE + failure_reason(stderr)
    assert explain(detail, "an HLS playlist") == (
        "This file is an HLS playlist, not a video. Upload the video file itself."
    )
    assert explain(detail, "a PNG image") == "This file is a PNG image, not a video."
    assert explain(detail, "an empty file") == "This file is empty."
    assert explain(detail, None).startswith("This file is not a video or audio file that can be")


def test_a_playlist_ffprobe_refuses_by_format_reads_as_one() -> None:
    stderr = "[hls @ 0x55d1c0] Format not on whitelist 'mov,mp4,matroska'\n"
    detail = UNREADABLE + failure_reason(stderr)
    # Even when the first bytes could not be read.
    assert (
        explain(detail)
        == "This file is an HLS playlist, not a video. Upload the video file itself."
    )
    stderr = "[concat @ 0x55d1c0] Format not on whitelist 'mov,mp4,matroska'\n"
    detail = UNREADABLE + failure_reason(stderr)
    assert explain(detail).startswith("This file is a list of other files")


@pytest.mark.parametrize(
    ("detail", "said"),
    [
        (
            "RenditionsFailed: every rendition failed: 480p (first: InvalidSource: FFmpeg could"
            " not decode the source: Invalid data found when processing input)",
            "This file is damaged: part of it could not be decoded.",
        ),
        (
            "RenditionsFailed: every rendition failed: 480p (first: InvalidSource: the source"
            " grows to 7680x4320 frames mid-stream, beyond the limit of 4096x2160)",
            "This video's picture grows to 7680x4320 partway through; the largest allowed is"
            " 4096x2160.",
        ),
        (
            "RenditionsFailed: every rendition failed: 480p, 720p (first: BackoffLimitExceeded)",
            "None of the versions of this video could be made.",
        ),
        (
            "SourceUnreadable: the source could not be read 5 times: ffprobe did not finish",
            "The file could not be read, even after several tries.",
        ),
        (
            "InvalidSpec: none of 1080p fits the source (never upscaled); it can make 480p",
            "This video is smaller than every version asked for (videos are never upscaled).",
        ),
        ("InvalidSpec: spec.source.key is not under videos/", "The transcode request for this"),
        ("InvalidStatus: status.plan[0] is not a rendition", "The transcode request for this"),
        ("SomethingNew: whatever", "The transcode failed."),
    ],
)
def test_every_other_failure_reads_as_a_sentence(detail: str, said: str) -> None:
    assert explain(detail).startswith(said)


def test_nothing_of_the_file_is_quoted_in_the_sentence() -> None:
    # A detail can carry words from the file (a format name, a tag): only numbers and this
    # module's own words reach the sentence.
    forged = (
        "InvalidSource: the source is not a readable video or audio file: <script>alert(1)"
        "</script> lasts 12s"
    )
    assert "<script>" not in explain(forged)
    assert "<script>" not in explain(forged, None)
