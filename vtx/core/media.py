"""The media policy every component shares: which demuxers and protocols a hostile upload may
be read with, how the HLS outputs are cut, where each output lives, what FFmpeg's complaints
mean, and the exit codes a job pod reports them with (pure definitions and functions)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Demuxers a source may be read with. Playlists (hls, concat) and image sequences are not here:
# a "video" that is really a playlist could point FFmpeg at other files or hosts.
INPUT_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "flv",
    "mpegts",
    "mpeg",
    "ogg",
    "asf",
    "wav",
    "mp3",
    "aac",
    "flac",
    "m4v",
    "h264",
    "hevc",
)
# HLS segments: short ones first, so that playback can start soon after the encode does, then
# the regular length. Every segment starts on a keyframe at the same instant in every rendition
# (players switch renditions there) and holds no other keyframe: FFmpeg's HLS muxer cuts at the
# first keyframe at or after n x its hls_time for segment n, so with hls_time at the shortest
# length and keyframes only at the planned starts it cuts exactly there.
FIRST_SEGMENTS = (1, 2)  # seconds
SEGMENT_SECONDS = 4
HLS_TIME = min(*FIRST_SEGMENTS, SEGMENT_SECONDS)


def segment_start(n: int) -> float:
    """When segment ``n`` (0-based) of a video rendition starts, in seconds."""
    if n < len(FIRST_SEGMENTS):
        return float(sum(FIRST_SEGMENTS[:n]))
    return float(sum(FIRST_SEGMENTS) + (n - len(FIRST_SEGMENTS)) * SEGMENT_SECONDS)


def segment_count(duration: float) -> int:
    """How many segments a video rendition of ``duration`` seconds has (the last may be short)."""
    n = 0
    while segment_start(n) < duration - 1e-3:
        n += 1
    return n


def keyframe_expression(first: int = 0) -> str:
    """FFmpeg's ``-force_key_frames`` expression that puts a keyframe at every segment_start:
    the k-th forced keyframe (``n_forced``) comes at the first frame at or after start k.

    An encode that resumes at segment ``first`` (input seek to its start, so its frames are
    timed from 0 there) forces the k-th keyframe at start ``first + k`` less that start."""
    origin = segment_start(first)
    lead = len(FIRST_SEGMENTS)
    regular = f"{sum(FIRST_SEGMENTS) - origin + (first - lead) * SEGMENT_SECONDS:g}"
    regular += f"+n_forced*{SEGMENT_SECONDS}"
    at = regular
    for k in reversed(range(max(0, lead - first))):
        at = f"if(eq(n_forced,{k}),{segment_start(first + k) - origin:g},{at})"
    return f"expr:gte(t,{at})"


EXIT_INVALID_INPUT = 42  # the operator's podFailurePolicy fails the Job at once on this code
EXIT_RETRYABLE = 75  # EX_TEMPFAIL: storage, network or an interruption; the Job retries

# --- where outputs live (S3 keys, mirrored by the IPFS directory) ----------------------------
MASTER_PLAYLIST = "master.m3u8"
HLS_PLAYLIST = "hls/index.m3u8"
INIT_NAME = "init.mp4"  # the fMP4 HLS init segment, beside the playlist
HLS_INIT = f"hls/{INIT_NAME}"
SEGMENT_PATTERN = "seg_%05d.m4s"  # FFmpeg's name for segment n


def video_prefix(video_id: str) -> str:
    return f"videos/{video_id}"


def rendition_prefix(video_id: str, rendition: str) -> str:
    return f"videos/{video_id}/{rendition}"


def master_key(video_id: str) -> str:
    return f"videos/{video_id}/{MASTER_PLAYLIST}"


SUBTITLES_FILE = "subtitles.vtt"
SUBTITLE_SEGMENT_PATTERN = "seg_%05d.vtt"


def mp4_name(kind: str) -> str:
    """The rendition's whole file in its folder: ``video.mp4``, ``audio.mp4`` for sound only,
    ``subtitles.vtt`` for subtitles."""
    if kind == "subtitles":
        return SUBTITLES_FILE
    return "audio.mp4" if kind == "audio" else "video.mp4"


def init_name(kind: str) -> str | None:
    """The init segment beside a rendition's playlist: fMP4 has one, WebVTT (subtitles) none."""
    return None if kind == "subtitles" else INIT_NAME


def segment_name(sequence: int, kind: str = "video") -> str:
    return (SUBTITLE_SEGMENT_PATTERN if kind == "subtitles" else SEGMENT_PATTERN) % sequence


def allowed_protocols(url: str) -> str:
    """The source's scheme and what it needs underneath; never file, concat or data."""
    scheme = urlsplit(url).scheme
    if scheme == "https":
        return "https,tls,tcp"
    if scheme == "http":
        return "http,tcp"
    raise ValueError(f"the source must be an http(s) URL, not {scheme or 'a path'}")


# --- what FFmpeg's messages mean ----------------------------------------------------------------
_INVALID_INPUT = re.compile(
    r"Invalid data found|moov atom not found|not on (the )?(format )?whitelist|"
    r"not in (the )?(format )?whitelist|Unknown input format|could not find codec parameters|"
    r"Output file #\d+ does not contain any stream|Stream map .* matches no streams|"
    r"does not contain any stream|error while decoding|partial file|corrupt|"
    r"Invalid argument|Unsupported codec|no decoder|"
    # The encoder refuses what the source made of the plan (a size or rate it cannot take):
    # the same source fails the same way on every try.
    r"Error while opening encoder|Could not open encoder|Error initializing output stream|"
    r"exceeds specified max pixel count",
    re.IGNORECASE,
)
# A decoder refused a frame larger than the limit; its context (``[h264 @ 0x...]``) says which.
_OVERSIZED_FRAME = re.compile(
    r"^\[(?P<codec>[\w-]+) @ 0x[0-9a-f]+\].*Picture size (?P<size>\d+x\d+) exceeds specified"
    r" max pixel count",
    re.MULTILINE,
)
_TRANSIENT = re.compile(
    r"Connection refused|Connection reset|Connection timed out|timed out|"
    r"Server returned 5\d\d|Server returned 4(03|04|08|29)|Network is unreachable|"
    r"No route to host|Temporary failure|I/O error|Broken pipe|No space left|"
    r"Cannot allocate memory",
    re.IGNORECASE,
)
# A decoder's complaint about one packet or frame: FFmpeg goes on, the output has a glitch.
_DECODE_ERROR = re.compile(
    r"error while decoding|concealing \d+ (DC|AC|MV) errors|Invalid NAL unit|"
    r"corrupt (decoded )?frame|decode_slice_header error|Error splitting the input into NAL",
    re.IGNORECASE,
)


def classify_failure(stderr: str) -> str:
    """``"invalid"`` when FFmpeg's messages say the input itself is bad, else ``"transient"``.

    Network and storage trouble wins: a truncated read caused by a dropped connection looks
    like bad data too, and retrying it is what a user would want.
    """
    if _TRANSIENT.search(stderr):
        return "transient"
    if _INVALID_INPUT.search(stderr):
        return "invalid"
    return "transient"


def oversized_frame(stderr: str, codec: str | None) -> str | None:
    """The size of a frame the decoder of ``codec`` (the video stream FFmpeg encodes from)
    refused for being larger than the limit, if any. Other streams' decoders are left out: a
    cover picture too large to decode is refused while FFmpeg reads the file's streams, and
    is never encoded."""
    for match in _OVERSIZED_FRAME.finditer(stderr):
        if codec is None or match.group("codec") == codec:
            return match.group("size")
    return None


def count_decode_errors(stderr: str) -> int:
    """Lines in which a decoder reported damage it concealed or skipped."""
    return sum(1 for line in stderr.splitlines() if _DECODE_ERROR.search(line))


_SIGNED_URL = re.compile(r"(https?://[^\s?]+)\?\S*?(?=:?(\s|$))")
_CONTEXT = re.compile(r"^\[(?P<part>[\w,]+) @ 0x[0-9a-f]+\]\s*")
_ANY_URL = re.compile(r"https?://\S+?(?=:\s|:$|\s|$)")


def redact_urls(text: str) -> str:
    """Drop query strings from URLs: a signed URL is a credential and must not be logged."""
    return _SIGNED_URL.sub(r"\1", text)


def failure_reason(stderr: str) -> str:
    """The most telling line of FFmpeg's messages, without signed URLs or addresses."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        match = _CONTEXT.match(line)
        if match and "whitelist" in line:
            return f"{match.group('part')} input is not allowed ({line[match.end() :]})"
    chosen = next((line for line in lines if _INVALID_INPUT.search(line)), None)
    chosen = chosen or next((line for line in lines if _TRANSIENT.search(line)), None)
    chosen = chosen or (lines[-1] if lines else "no message")
    # The URL is the source's, at an address users cannot reach and need not know.
    return _ANY_URL.sub("the source", _CONTEXT.sub("", chosen))[:300]
