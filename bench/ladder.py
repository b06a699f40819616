"""Benchmark: what it costs to make the ladder, four ways, on the same source in one run.

(a) naive: one FFmpeg run per rendition per format, as the original plan did;
(b) per-rendition: the jobrunner's command for each rendition alone (MP4 and HLS from one encode);
(c) grouped: the jobrunner's command for all renditions (one decode);
(d) floor: one decode and the same encodes, written nowhere;
and (c) again with the video's poster, thumbnail and storyboard made in the same run, as the
jobrunner makes them with the lowest rendition.
Prints CPU-seconds (user+sys of FFmpeg) and wall time, ratios to the floor, what the images add
to the grouped run, and the SSIM of each grouped rendition against the naive one.
Usage: python -m bench.ladder [--seconds 20]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.media import make_clip, ssim
from vtx.core import media
from vtx.core.images import plan_images
from vtx.core.ladder import Rendition, SourceFacts, plan_ladder
from vtx.jobrunner import ffmpeg


@dataclass
class Cost:
    cpu_s: float = 0.0
    wall_s: float = 0.0


def run(cmd: list[str], cost: Cost) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, timeout=3600)
    cost.wall_s += time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cost.cpu_s += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """The source over HTTP on loopback, as the jobrunner reads it from S3."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def encoder_args(r: Rendition) -> list[str]:
    return [
        "-vf", f"scale={r.width}:{r.height}:flags=bicubic,setsar=1,fps={r.fps:g},format=yuv420p",
        "-c:v", "libx264", "-preset", ffmpeg.X264_PRESET, "-profile:v", "high",
        "-b:v", f"{r.video_bitrate_k}k", "-maxrate", f"{r.maxrate_k}k",
        "-bufsize", f"{r.bufsize_k}k",
        "-force_key_frames", media.keyframe_expression(),
        "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", f"{r.audio_bitrate_k}k", "-ac", "2", "-ar", "48000",
    ]  # fmt: skip


def naive(url: str, ladder: list[Rendition], out: Path, cost: Cost) -> None:
    base = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", url]
    for r in ladder:
        d = out / r.name
        (d / "hls").mkdir(parents=True)
        run([*base, *encoder_args(r), "-movflags", "+faststart", str(d / "video.mp4")], cost)
        run(
            [*base, *encoder_args(r), "-f", "hls", "-hls_time", str(media.HLS_TIME),
             "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
             "-hls_segment_filename", str(d / "hls" / "seg_%05d.m4s"),
             str(d / "hls" / "index.m3u8")],
            cost,
        )  # fmt: skip


def jobrunner(
    url: str, ladder: list[Rendition], out: Path, cost: Cost, grouped: bool, seconds: float,
    images: bool = False,
) -> None:  # fmt: skip
    groups = [ladder] if grouped else [[r] for r in ladder]
    for group in groups:
        outputs = ffmpeg.outputs_for(group, out)
        for o in outputs:
            o.playlist.parent.mkdir(parents=True, exist_ok=True)
        pictures = None
        if images:
            pictures = ffmpeg.ImageOutputs(plan_images(1920, 1080, seconds), out / "images")
            pictures.folder.mkdir(parents=True)
        cmd = ffmpeg.build_encode_command(
            url, outputs, has_audio=True, duration_s=seconds, max_pixels=7680 * 4320,
            images=pictures,
        )  # fmt: skip
        run([c for c in cmd if c not in ("-progress", "pipe:1")], cost)


def floor(url: str, ladder: list[Rendition], cost: Cost) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", url]
    labels = "".join(f"[s{i}]" for i in range(len(ladder)))
    chains = [f"[0:v:0]split={len(ladder)}{labels}"]
    for i, r in enumerate(ladder):
        chains.append(
            f"[s{i}]scale={r.width}:{r.height}:flags=bicubic,setsar=1,fps={r.fps:g},format=yuv420p[v{i}]"
        )
    cmd += ["-filter_complex", ";".join(chains)]
    for i, r in enumerate(ladder):
        args = encoder_args(r)
        args = args[2:]  # the scaling is in the graph
        cmd += ["-map", f"[v{i}]", "-map", "0:a:0", *args, "-f", "null", "-"]
    run(cmd, cost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--json", type=Path, help="also write the costs here (for bench.report)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vtx-bench-ladder-"))
    try:
        src_dir = work / "src"
        src_dir.mkdir()
        raw = make_clip(work / "raw.mp4", seconds=args.seconds)
        # The loopback server has no range requests: the index must come first, as uploads
        # from most cameras and editors have it.
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-i", str(raw), "-c", "copy",
             "-movflags", "+faststart", str(src_dir / "source.mp4")],
            check=True, timeout=300,
        )  # fmt: skip
        facts = SourceFacts(
            duration=args.seconds, has_video=True, has_audio=True, width=1920, height=1080, fps=30
        )
        ladder = plan_ladder(facts)
        ways = ("naive", "per-rendition", "grouped", "grouped+images", "floor")
        costs = {name: Cost() for name in ways}
        with serve(src_dir) as base:
            url = f"{base}/source.mp4"
            floor(url, ladder, costs["floor"])
            naive(url, ladder, work / "naive", costs["naive"])
            jobrunner(
                url,
                ladder,
                work / "per",
                costs["per-rendition"],
                grouped=False,
                seconds=args.seconds,
            )
            jobrunner(
                url, ladder, work / "grouped", costs["grouped"], grouped=True, seconds=args.seconds
            )
            jobrunner(
                url, ladder, work / "images", costs["grouped+images"], grouped=True,
                seconds=args.seconds, images=True,
            )  # fmt: skip
        f = costs["floor"]
        names = ", ".join(r.name for r in ladder)
        print(f"source: {args.seconds:g} s 1080p30 H.264/AAC; ladder {names}")
        print(f"{'way':<15}{'cpu s':>9}{'wall s':>9}{'cpu/floor':>11}{'wall/floor':>12}")
        for name, c in costs.items():
            ratios = f"{c.cpu_s / f.cpu_s:11.2f}{c.wall_s / f.wall_s:12.2f}"
            print(f"{name:<15}{c.cpu_s:9.1f}{c.wall_s:9.1f}{ratios}")
        print(f"naive/grouped cpu: {costs['naive'].cpu_s / costs['grouped'].cpu_s:.2f}x")
        with_images, grouped_ = costs["grouped+images"], costs["grouped"]
        cpu, wall = with_images.cpu_s / grouped_.cpu_s, with_images.wall_s / grouped_.wall_s
        print(f"images (poster, thumbnail, storyboard) in the grouped run: cpu {cpu:.3f}x, "
              f"wall {wall:.3f}x")  # fmt: skip
        if args.json:
            args.json.write_text(json.dumps(
                {name: {"cpu_s": c.cpu_s, "wall_s": c.wall_s} for name, c in costs.items()}
            ))  # fmt: skip
        print("SSIM against the source (MP4 outputs):")
        source = src_dir / "source.mp4"
        for r in ladder:
            ssim_naive = ssim(work / "naive" / r.name / "video.mp4", source, r)
            per = ssim(work / "per" / r.name / "video.mp4", source, r)
            grouped = ssim(work / "grouped" / r.name / "video.mp4", source, r)
            print(
                f"  {r.name:<6} naive {ssim_naive:.4f}"
                f"  per-rendition {per:.4f} ({per - ssim_naive:+.4f})"
                f"  grouped {grouped:.4f} ({grouped - ssim_naive:+.4f})"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
