"""Building FFmpeg commands and reading what FFmpeg reports (pure functions).

One FFmpeg process decodes the source once and encodes each rendition once; the ``tee`` muxer
writes every encode twice, as a fast-start MP4 and as fMP4 HLS, so both hold the same frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vtx.core import images as img
from vtx.core.ladder import Rendition, audio_track, subtitle_track
from vtx.core.media import (
    HLS_PLAYLIST,
    HLS_TIME,
    INIT_NAME,
    INPUT_FORMATS,
    SEGMENT_PATTERN,
    SEGMENT_SECONDS,
    allowed_protocols,
    keyframe_expression,
    mp4_name,
    segment_count,
    segment_start,
)

X264_PRESET = "veryfast"
AAC_FRAME = 1024  # samples
MAX_SOUND_LEAD_S = 1.0  # a resumed encode's sound starts at most this much before its picture
DURATION_MARGIN_S = 5.0  # read this much past the probed duration, and no more


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


@dataclass(frozen=True)
class ImageOutputs:
    """Where FFmpeg writes the video's poster, thumbnail and storyboard sheet."""

    plan: img.ImagePlan
    folder: Path

    def path(self, fmt: str) -> Path:
        return self.folder / img.FILES[fmt]


def image_chains(source: str, images: ImageOutputs) -> tuple[list[str], dict[str, str]]:
    """Filter chains from the decoded frames at ``source`` to the three JPEGs: the poster's
    candidates (one every POSTER_STEP_S in the plan's window) go through ``thumbnail``, which
    keeps the most representative; the storyboard takes the first frame at or after each tile's
    time, at most ``tiles`` of them, into one sheet. Returns the chains and each image's label.

    Each image is written twice (the outputs use ``-update 1``): first the source's first
    frame at once, then the real picture when it is ready. FFmpeg reports no progress at all
    until every output has had a frame, and these would have none until the end. The two are
    stamped 0 s and 1 s (``setpts=N/TB``) and written as they come (``-fps_mode
    passthrough``): with their own timestamps, the second could equal the first (which the
    encoder refuses) or lie so far after it that FFmpeg's constant frame rate for image2 wrote
    the first again and again without end (seen on an MPEG-TS source with sound)."""
    plan = images.plan
    start, end = plan.window
    candidates = math.ceil((end - start) / img.POSTER_STEP_S) + 1
    pick = (
        f"select='between(t\\,{start:.3f}\\,{end:.3f})"
        f"*(isnan(prev_selected_t)+gte(t-prev_selected_t\\,{img.POSTER_STEP_S}))'"
    )
    every = f"select='lt(selected_n\\,{plan.tiles})*gte(t\\,selected_n*{plan.interval_s})'"
    (pw, ph), (tw, th), (sw, sh), (cw, ch) = plan.poster, plan.thumbnail, plan.tile, plan.sheet
    first = "trim=end_frame=1"
    chains = [
        f"{source}split=4[im0][im1][im2][im3]",
        f"[im0]{first},scale={pw}:{ph}:flags=bicubic,setsar=1[im4]",
        f"[im1]{pick},scale={pw}:{ph}:flags=bicubic,setsar=1,thumbnail=n={candidates}[im5]",
        "[im4][im5]concat=n=2:v=1:a=0,setpts=N/TB,split=2[poster][im6]",
        f"[im6]scale={tw}:{th}:flags=bicubic,setsar=1[thumbnail]",
        f"[im2]{first},scale={cw}:{ch}:flags=bicubic,setsar=1[im7]",
        f"[im3]{every},scale={sw}:{sh}:flags=bicubic,setsar=1,tile={plan.columns}x{plan.rows}[im8]",
        "[im7][im8]concat=n=2:v=1:a=0,setpts=N/TB[storyboard]",
    ]
    return chains, {fmt: f"[{fmt}]" for fmt in img.JPEGS}


@dataclass(frozen=True)
class RangeTiles:
    """A range's storyboard tiles, tiles ``first`` to ``first + count - 1`` of ``plan``
    (images.range_tiles), kept raw (NUT) at ``path`` for the Job that puts the ranges together
    to lay out in the sheet: the same pictures as a decode of the whole source gives. The
    file's first picture is the range's first frame, written at once (FFmpeg reports no
    progress until every output has had a frame: see image_chains); the tiles follow it."""

    plan: img.ImagePlan
    first: int
    count: int
    path: Path


def tile_chains(source: str, tiles: RangeTiles, origin_s: float) -> list[str]:
    """From a range's decoded frames (timed from 0 at ``origin_s``) to its tiles: the same
    choice as image_chains' storyboard, each tile the first frame at or after its time."""
    plan = tiles.plan
    every = (
        f"select='lt(selected_n\\,{tiles.count})"
        f"*gte(t\\,({tiles.first}+selected_n)*{plan.interval_s}-{origin_s:g})'"
    )
    tw, th = plan.tile
    return [
        f"{source}split=2[tl0][tl1]",
        "[tl0]trim=end_frame=1[tl2]",
        f"[tl1]{every}[tl3]",
        # Scaled straight to the JPEG encoder's full range, as image_chains' storyboard is, and
        # kept raw: the finalize's sheet is then the whole decode's, byte for byte.
        f"[tl2][tl3]concat=n=2:v=1:a=0,scale={tw}:{th}:flags=bicubic,setsar=1,format=yuvj420p,"
        "setpts=N/TB[tiles]",
    ]


def rendition_dir(scratch: Path, name: str) -> Path:
    return scratch / name


def outputs_for(renditions: Sequence[Rendition], scratch: Path) -> list[Output]:
    outputs = []
    for r in renditions:
        base = rendition_dir(scratch, r.name)
        outputs.append(Output(r, base / mp4_name(r.kind), base / HLS_PLAYLIST))
    return outputs


def _tee_target(out: Output, first: int = 0, *, hls_only: bool = False) -> str:
    """Where one rendition's encode goes: the MP4 and the HLS, or (an encode that resumes at
    segment ``first``, or one range of the video) the HLS alone, numbered on from ``first``."""
    hls_dir = out.playlist.parent
    # With video, segments are cut at the keyframes the encoder puts at each planned start (see
    # media.FIRST_SEGMENTS); audio alone is cut by time, at the regular length.
    hls_time = HLS_TIME if out.rendition.kind == "video" else SEGMENT_SECONDS
    hls = ":".join(
        [
            "f=hls",
            f"hls_time={hls_time}",
            "hls_playlist_type=event",
            "hls_segment_type=fmp4",
            "hls_flags=independent_segments+temp_file",
            f"hls_fmp4_init_filename={INIT_NAME}",
            f"hls_segment_filename={hls_dir}/{SEGMENT_PATTERN}",
        ]
    )
    if first:
        # Fragments timed on the whole video's timeline (tfdt), not from this run's start.
        hls += f":start_number={first}:hls_segment_options=movflags=+frag_discont"
    # A video whose audio tracks are renditions of their own: its HLS is the picture alone.
    select = "select=v:" if out.rendition.alt_audio else ""
    if first or hls_only:
        return f"[{select}{hls}]{out.playlist}"
    return f"[f=mp4:movflags=+faststart]{out.mp4}|[{select}{hls}]{out.playlist}"


# Frame rate (one frame per frame, not per field): the plan's frame rate and cost stay those of
# the source; field rate would double both for smoother motion.
DEINTERLACE = "bwdif=mode=send_frame:parity=auto:deint=interlaced"


def build_encode_command(
    source_url: str,
    outputs: Sequence[Output],
    *,
    has_audio: bool,
    duration_s: float,
    max_pixels: int,
    rw_timeout_s: int = 30,
    threads: int = 0,
    deinterlace: bool = False,
    images: ImageOutputs | None = None,
    first_segment: int = 0,
    sound_lead_s: float = 0.0,
    end_segment: int | None = None,
    tiles: RangeTiles | None = None,
) -> list[str]:
    """The FFmpeg argument list: one decode, one encode per rendition, MP4 and HLS from each.

    From ``first_segment`` > 0 (a retry resuming after the segments an earlier attempt stored),
    the source is read from that segment's start (input seek), the keyframes stay on the
    schedule, the timestamps on the whole video's timeline, and the segments are numbered on
    from there; the encode writes HLS alone (the MP4 is put together from the segments).
    The sound is read from a second input, ``sound_lead_s`` earlier than the picture: from
    where the stored segments' sound ends (resume.Resume.sound_lead_s), so that it carries on
    without a gap.

    With ``end_segment``, the encode is one range of the video (vtx.core.ranges): segments
    ``first_segment`` up to ``end_segment`` - 1, the source read to where ``end_segment``
    starts, HLS alone. Ranges are picture alone: the sound is a rendition of its own, encoded
    once for the whole source.

    An interlaced source (``deinterlace``) is deinterlaced once, before it is split and scaled:
    bwdif at the frame rate, on the frames the decoder marks interlaced (a progressive frame in
    it passes untouched). A progressive source gets no such filter at all.

    FFmpeg decodes only what the probe saw and allowed: the first video stream that is not an
    attached picture (``0:V:0``, as the probe chose it), no frame larger than ``max_pixels``
    (a source that grows mid-stream is refused, not decoded), and no more than the probed
    duration with a margin.

    An audio rendition ``audio-N`` carries the source's N-th audio track; every other rendition
    with sound, the first. Any layout (5.1, mono) becomes stereo AAC at 48 kHz.

    With ``images``, the decoded frames also feed the video's poster, thumbnail and storyboard
    (image_chains): the renditions' encodes are the same, frame for frame.
    """
    if not outputs:
        raise ValueError("nothing to encode")
    if any(o.rendition.kind == "subtitles" for o in outputs):
        raise ValueError("subtitles are extracted, not encoded: build_subtitles_command")
    if not duration_s > 0 or max_pixels <= 0:
        raise ValueError("the probed duration and the pixel limit bound the decode")
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats"]
    cmd += ["-progress", "pipe:1", "-stats_period", "1"]
    cmd += input_options(source_url, rw_timeout_s=rw_timeout_s)
    origin = segment_start(first_segment)
    read_s = duration_s - origin + DURATION_MARGIN_S
    if end_segment is not None:
        if not first_segment < end_segment <= segment_count(duration_s):
            raise ValueError(f"no range from segment {first_segment} to {end_segment}")
        if any(o.rendition.kind != "video" for o in outputs) or (
            has_audio and any(not o.rendition.alt_audio for o in outputs)
        ):
            raise ValueError("a range is picture alone: its sound is a rendition of its own")
        if end_segment < segment_count(duration_s):
            read_s = segment_start(end_segment) - origin
    if first_segment or end_segment is not None:
        if not origin < duration_s:
            raise ValueError(f"segment {first_segment} starts after the source ends")
        if images is not None:
            raise ValueError("images come from a decode of the whole source")
    if tiles is not None and (end_segment is None or not tiles.count):
        raise ValueError("a range's tiles come from a range's decode, and one tile at least")
    if first_segment:
        cmd += ["-ss", f"{origin:.3f}"]
    cmd += ["-max_pixels", str(max_pixels)]
    cmd += ["-t", f"{read_s:.3f}", "-i", source_url]
    sound_input = 0
    if first_segment and has_audio and sound_lead_s > 0:
        if not sound_lead_s < MAX_SOUND_LEAD_S:
            raise ValueError(f"a sound lead of {sound_lead_s:.3f}s is not a resumed segment's")
        sound_input = 1
        cmd += input_options(source_url, rw_timeout_s=rw_timeout_s)
        cmd += ["-ss", f"{origin - sound_lead_s:.6f}"]
        cmd += ["-t", f"{duration_s - origin + sound_lead_s + DURATION_MARGIN_S:.3f}"]
        cmd += ["-vn", "-sn", "-dn", "-i", source_url]
    videos = [o for o in outputs if o.rendition.kind == "video"]
    if images is not None and not videos:
        raise ValueError("images come from a video rendition's decode")
    image_labels: dict[str, str] = {}
    if videos:
        chains = []
        decoded = "[0:V:0]"
        if deinterlace:
            chains.append(f"{decoded}{DEINTERLACE}[di]")
            decoded = "[di]"
        branches = len(videos) + (images is not None) + (tiles is not None)
        if branches == 1:
            sources = [decoded]
        else:
            labels = [f"[s{i}]" for i in range(branches)]
            chains.append(f"{decoded}split={branches}{''.join(labels)}")
            sources = labels
        if images is not None:
            image_chains_, image_labels = image_chains(sources.pop(), images)
            chains += image_chains_
        if tiles is not None:
            chains += tile_chains(sources.pop(), tiles, origin)
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
                "-force_key_frames", keyframe_expression(first_segment),
                "-sc_threshold", "0",
            ]  # fmt: skip
            if r.fps:
                # No keyframe of the encoder's own inside a segment: the forced ones only.
                longest, shortest = max(r.fps * SEGMENT_SECONDS, 1), max(r.fps * HLS_TIME, 1)
                cmd += ["-g", str(round(longest) + 1), "-keyint_min", str(round(shortest))]
            if threads:
                cmd += ["-threads", str(threads)]
        else:
            cmd += ["-vn"]
        if has_audio and r.audio_bitrate_k and end_segment is None:
            track = f"{sound_input}:a:{audio_track(r)}"
            cmd += ["-map", track, "-c:a", "aac", "-b:a", f"{r.audio_bitrate_k}k", "-ac", "2"]
            cmd += ["-ar", "48000"]
            if first_segment:
                # The stored segments' sound is late by the encoder's priming (one AAC frame)
                # more than a resumed encode's would be: a player hears both in sync. The
                # sound read from before the picture's start is timed before it.
                lead = sound_lead_s if sound_input else 0.0
                cmd += ["-filter:a", f"asetpts=PTS+({AAC_FRAME}/48000-{lead:.6f})/TB"]
        else:
            cmd += ["-an"]
        cmd += ["-flags", "+global_header", "-max_muxing_queue_size", "4096"]
        if first_segment:
            cmd += ["-output_ts_offset", f"{origin:.3f}"]
        hls_only = end_segment is not None
        cmd += ["-f", "tee", _tee_target(out, first_segment, hls_only=hls_only)]
    if images is not None:
        cmd += _image_outputs(image_labels, images)
    if tiles is not None:
        cmd += ["-map", "[tiles]", "-an", "-fps_mode", "passthrough"]
        cmd += ["-c:v", "rawvideo", "-f", "nut", str(tiles.path)]
    return cmd


def _image_outputs(labels: Mapping[str, str], images: ImageOutputs) -> list[str]:
    """Each image's output: the last picture its chain gives wins (see image_chains)."""
    cmd = []
    for fmt, label in labels.items():
        cmd += ["-map", label, "-update", "1", "-an", "-fps_mode", "passthrough"]
        cmd += ["-c:v", "mjpeg", "-q:v", "3", "-f", "image2", str(images.path(fmt))]
    return cmd


def build_remux_command(
    mp4: Path, sound_url: str | None = None, *, rw_timeout_s: int = 30
) -> list[str]:
    """Copy a fragmented MP4 read from standard input (an init segment and its media segments,
    one after the other, all written by vtx) into a fast-start MP4: nothing is decoded or
    encoded. With ``sound_url`` (a split video's sound rendition's MP4, written by vtx), its
    sound is copied in beside the picture."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    cmd += ["-protocol_whitelist", "pipe", "-f", "mov", "-i", "pipe:0"]
    maps = ["-map", "0"]
    if sound_url is not None:
        cmd += input_options(sound_url, rw_timeout_s=rw_timeout_s)
        cmd += ["-f", "mov", "-i", sound_url]
        maps = ["-map", "0:v", "-map", "1:a:0"]
    return [*cmd, *maps, "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(mp4)]


def build_images_command(
    source_url: str, images: ImageOutputs, *, duration_s: float, max_pixels: int,
    deinterlace: bool = False, rw_timeout_s: int = 30,
) -> list[str]:  # fmt: skip
    """The poster, thumbnail and storyboard alone, from a decode of the whole source (a resumed
    encode starts mid-way): the same filter chains as in build_encode_command, so the same
    pictures."""
    if not duration_s > 0 or max_pixels <= 0:
        raise ValueError("the probed duration and the pixel limit bound the decode")
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats"]
    cmd += input_options(source_url, rw_timeout_s=rw_timeout_s)
    cmd += ["-max_pixels", str(max_pixels), "-t", f"{duration_s + DURATION_MARGIN_S:.3f}"]
    # One decoding thread: it runs beside the encode, and threads cost CPU to keep in step.
    cmd += ["-threads", "1", "-i", source_url]
    chains = [f"[0:V:0]{DEINTERLACE}[di]"] if deinterlace else []
    image_chains_, labels = image_chains("[di]" if deinterlace else "[0:V:0]", images)
    cmd += ["-filter_complex", ";".join(chains + image_chains_)]
    return cmd + _image_outputs(labels, images)


def build_joined_images_command(
    source_url: str, images: ImageOutputs, tiles: Sequence[Path], *, duration_s: float,
    max_pixels: int, deinterlace: bool = False, rw_timeout_s: int = 30,
) -> list[str]:  # fmt: skip
    """A split video's images: the poster and thumbnail from a decode of the poster's window
    alone (input seek to its start), the storyboard laid out from the ranges' tiles (each
    file's first picture left out: see RangeTiles), in the order given. The same filter
    chains as image_chains, so the same pictures as the whole source's decode gives."""
    if not duration_s > 0 or max_pixels <= 0:
        raise ValueError("the probed duration and the pixel limit bound the decode")
    if not tiles:
        raise ValueError("no range's tiles to lay out")
    plan = images.plan
    start, end = plan.window
    candidates = math.ceil((end - start) / img.POSTER_STEP_S) + 1
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats"]
    cmd += input_options(source_url, rw_timeout_s=rw_timeout_s)
    cmd += ["-ss", f"{start:.3f}", "-max_pixels", str(max_pixels)]
    cmd += ["-t", f"{end - start + DURATION_MARGIN_S:.3f}", "-threads", "1", "-i", source_url]
    for path in tiles:
        cmd += ["-f", "nut", "-i", str(path)]
    pick = (
        f"select='between(t\\,0\\,{end - start:.3f})"
        f"*(isnan(prev_selected_t)+gte(t-prev_selected_t\\,{img.POSTER_STEP_S}))'"
    )
    (pw, ph), (tw, th) = plan.poster, plan.thumbnail
    decoded = f"[0:V:0]{DEINTERLACE}," if deinterlace else "[0:V:0]"
    chains = [
        f"{decoded}{pick},scale={pw}:{ph}:flags=bicubic,setsar=1,thumbnail=n={candidates},"
        "setpts=N/TB,split=2[poster][im0]",
        f"[im0]scale={tw}:{th}:flags=bicubic,setsar=1[thumbnail]",
    ]
    parts = "".join(f"[tl{i}]" for i in range(len(tiles)))
    chains += [
        f"[{i + 1}:v:0]trim=start_frame=1,setpts=PTS-STARTPTS,setrange=full,format=yuvj420p[tl{i}]"
        for i in range(len(tiles))
    ]
    joined = f"{parts}concat=n={len(tiles)}:v=1:a=0," if len(tiles) > 1 else parts
    chains.append(f"{joined}tile={plan.columns}x{plan.rows},setpts=N/TB[storyboard]")
    cmd += ["-filter_complex", ";".join(chains)]
    labels = {fmt: f"[{fmt}]" for fmt in img.JPEGS}
    return cmd + _image_outputs(labels, images)


def build_subtitles_command(
    source_url: str, outputs: Sequence[Output], *, duration_s: float, rw_timeout_s: int = 30
) -> list[str]:
    """One FFmpeg run, beside the encode, that turns each ``text-N`` rendition's subtitle
    stream (``0:s:N-1``: SRT, ASS/SSA, mov_text or WebVTT) into a WebVTT file. It decodes no
    picture and no sound; its cue times are on the renditions' timeline (both start where the
    source starts, give or take the streams' start offsets: tens of milliseconds). Not in the
    encode's FFmpeg: an output that gets no packet until the first cue would hold back that
    FFmpeg's progress reports."""
    if not outputs or any(o.rendition.kind != "subtitles" for o in outputs):
        raise ValueError("only subtitles renditions are extracted")
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats"]
    cmd += input_options(source_url, rw_timeout_s=rw_timeout_s)
    cmd += ["-t", f"{duration_s + DURATION_MARGIN_S:.3f}", "-i", source_url]
    for out in outputs:
        cmd += ["-map", f"0:s:{subtitle_track(out.rendition)}", "-c:s", "webvtt"]
        cmd += ["-f", "webvtt", str(out.mp4)]
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
