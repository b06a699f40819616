"""Building FFmpeg commands and reading what FFmpeg reports (pure functions).

One FFmpeg process decodes the source once and encodes each rendition once; the ``tee`` muxer
writes every encode twice, as a fast-start MP4 and as fMP4 HLS, so both hold the same frames.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from vtx.core.ladder import Rendition

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
SEGMENT_SECONDS = 4
KEYFRAME_SECONDS = 2  # every segment starts on a keyframe at the same time in every rendition
X264_PRESET = "veryfast"
EXIT_INVALID_INPUT = 42  # the operator's podFailurePolicy fails the Job at once on this code
EXIT_RETRYABLE = 75  # EX_TEMPFAIL: storage, network or an interruption; the Job retries


def allowed_protocols(url: str) -> str:
    """The source's scheme and what it needs underneath; never file, concat or data."""
    scheme = urlsplit(url).scheme
    if scheme == "https":
        return "https,tls,tcp"
    if scheme == "http":
        return "http,tcp"
    raise ValueError(f"the source must be an http(s) URL, not {scheme or 'a path'}")


def input_options(url: str, *, rw_timeout_s: int) -> list[str]:
    return [
        "-protocol_whitelist",
        allowed_protocols(url),
        "-format_whitelist",
        ",".join(INPUT_FORMATS),
        "-rw_timeout",
        str(rw_timeout_s * 1_000_000),
        "-reconnect",
        "1",
        "-reconnect_on_network_error",
        "1",
        # Ride out a storage outage of up to a minute instead of failing the attempt.
        "-reconnect_delay_max",
        "60",
    ]


@dataclass(frozen=True)
class Output:
    rendition: Rendition
    mp4: Path
    playlist: Path  # the HLS playlist FFmpeg writes; segments land beside it


def rendition_dir(scratch: Path, name: str) -> Path:
    return scratch / name


def outputs_for(renditions: Sequence[Rendition], scratch: Path) -> list[Output]:
    outputs = []
    for r in renditions:
        base = rendition_dir(scratch, r.name)
        file_name = "audio.mp4" if r.kind == "audio" else "video.mp4"
        outputs.append(Output(r, base / file_name, base / "hls" / "index.m3u8"))
    return outputs


def _tee_target(out: Output) -> str:
    hls_dir = out.playlist.parent
    hls = ":".join(
        [
            "f=hls",
            f"hls_time={SEGMENT_SECONDS}",
            "hls_playlist_type=event",
            "hls_segment_type=fmp4",
            "hls_flags=independent_segments+temp_file",
            "hls_fmp4_init_filename=init.mp4",
            f"hls_segment_filename={hls_dir}/seg_%05d.m4s",
        ]
    )
    return f"[f=mp4:movflags=+faststart]{out.mp4}|[{hls}]{out.playlist}"


def build_encode_command(
    source_url: str,
    outputs: Sequence[Output],
    *,
    has_audio: bool,
    rw_timeout_s: int = 30,
    threads: int = 0,
) -> list[str]:
    """The FFmpeg argument list: one decode, one encode per rendition, MP4 and HLS from each."""
    if not outputs:
        raise ValueError("nothing to encode")
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats"]
    cmd += ["-progress", "pipe:1", "-stats_period", "1"]
    cmd += input_options(source_url, rw_timeout_s=rw_timeout_s)
    cmd += ["-i", source_url]
    videos = [o for o in outputs if o.rendition.kind == "video"]
    if videos:
        chains = []
        if len(videos) == 1:
            sources = ["[0:v:0]"]
        else:
            labels = [f"[s{i}]" for i in range(len(videos))]
            chains.append(f"[0:v:0]split={len(videos)}{''.join(labels)}")
            sources = labels
        for i, (src, out) in enumerate(zip(sources, videos, strict=True)):
            r = out.rendition
            steps = [f"scale={r.width}:{r.height}:flags=bicubic", "setsar=1"]
            if r.fps:
                steps.append(f"fps={r.fps:g}")
            steps.append("format=yuv420p")
            chains.append(f"{src}{','.join(steps)}[v{i}]")
        cmd += ["-filter_complex", ";".join(chains)]
    video_index = 0
    for out in outputs:
        r = out.rendition
        if r.kind == "video":
            cmd += ["-map", f"[v{video_index}]"]
            video_index += 1
            cmd += [
                "-c:v", "libx264", "-preset", X264_PRESET, "-profile:v", "high",
                "-b:v", f"{r.video_bitrate_k}k", "-maxrate", f"{r.maxrate_k}k",
                "-bufsize", f"{r.bufsize_k}k",
                "-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})",
                "-sc_threshold", "0",
            ]  # fmt: skip
            if r.fps:
                gop = max(1, round(r.fps * KEYFRAME_SECONDS))
                cmd += ["-g", str(gop), "-keyint_min", str(gop)]
            if threads:
                cmd += ["-threads", str(threads)]
        else:
            cmd += ["-vn"]
        if has_audio and r.audio_bitrate_k:
            cmd += ["-map", "0:a:0", "-c:a", "aac", "-b:a", f"{r.audio_bitrate_k}k", "-ac", "2"]
            cmd += ["-ar", "48000"]
        else:
            cmd += ["-an"]
        cmd += ["-flags", "+global_header", "-max_muxing_queue_size", "4096"]
        cmd += ["-f", "tee", _tee_target(out)]
    return cmd


def parse_progress(lines: Iterable[str]) -> Iterable[Mapping[str, str]]:
    """Blocks of FFmpeg's ``-progress`` output, one mapping per report."""
    block: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if not sep:
            continue
        block[key] = value
        if key == "progress":
            yield block
            block = {}


def out_time_seconds(report: Mapping[str, str]) -> float | None:
    """Seconds of output written so far (``out_time_us``; N/A early in the encode)."""
    for key in ("out_time_us", "out_time_ms"):  # FFmpeg < 4.4 names microseconds "_ms"
        value = report.get(key, "")
        if value.lstrip("-").isdigit():
            return max(0.0, int(value) / 1_000_000)
    return None


_INVALID_INPUT = re.compile(
    r"Invalid data found|moov atom not found|not on (the )?(format )?whitelist|"
    r"not in (the )?(format )?whitelist|Unknown input format|could not find codec parameters|"
    r"Output file #\d+ does not contain any stream|Stream map .* matches no streams|"
    r"does not contain any stream|error while decoding|partial file|corrupt|"
    r"Invalid argument|Unsupported codec|no decoder",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"Connection refused|Connection reset|Connection timed out|timed out|"
    r"Server returned 5\d\d|Server returned 4(03|04|08|29)|Network is unreachable|"
    r"No route to host|Temporary failure|I/O error|Broken pipe|No space left|"
    r"Cannot allocate memory",
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
