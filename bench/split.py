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
CPU spread over every core, plus the sound and the Job that puts the ranges together (a remux
and a one-thread decode of the whole source for the images), plus the Jobs' start-up.

Needs the stack (make up) and the images (make images). Usage:
    python -m bench.split [--seconds 180]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.operator import faststart_source, on_the_stack
from tests.services import api_process, free_port, operator_process, started
from tests.stack import REPO, job_namespace, kubectl, wait_until
from tests.uploads import token, upload, wait_finished
from tests.verify import assert_complete
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


def transcode(name: str, source: Path, work: Path, env: dict[str, str]) -> Run:
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
        assert_complete(vid)
    return Run(name, wall, cpu, len(bounds) - 1, nodes)


STARTUP_S = 10.0  # two Jobs started one after the other (pods start in about 2-5 s here)


def model(single: Run, split: Run, seconds: float, *, length_s: float, cores: int,
          split_on: bool) -> float:  # fmt: skip
    """Seconds to Ready of a ``length_s`` video on ``cores`` cores, from the CPU per second of
    source measured on the ``seconds`` long source: the single Job's CPU over the cores; or,
    split, the ranges' CPU spread over every core (the sound beside them), then the Job that
    puts them together (its image decode runs on one thread), then the Jobs' start-up."""
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
    args = parser.parse_args()
    on_the_stack()
    with tempfile.TemporaryDirectory(prefix="vtx-bench-split-") as tmp:
        work = Path(tmp)
        source = faststart_source(args.seconds, work)
        print(f"source: {args.seconds:.0f}s of 1080p30 with sound")
        cap = {"VTX_MAX_RUNNING_JOBS": "4"}  # the chart's default
        single = transcode("single", source, work, {**cap, "VTX_SPLIT_SECONDS": "0"})
        node2("start")
        wait_until("both nodes Ready", lambda: ready_nodes() == 2 or None, timeout=120)
        try:
            split = transcode("split", source, work, {**cap, "VTX_SPLIT_SECONDS": "60"})
        finally:
            node2("stop")
    if split.ranges < 2:
        raise SystemExit("the split run was not split: its figures would say nothing")
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
    print(f"model, {LONG_S / 60:.0f} minutes of 1080p30 on nodes of {CORES_PER_NODE} cores "
          f"(VTX_MAX_RUNNING_JOBS and VTX_MAX_RANGES at 16 or more):")  # fmt: skip
    for nodes in (1, 4, 16):
        t = model(single, split, args.seconds, length_s=LONG_S, cores=nodes * CORES_PER_NODE,
                  split_on=nodes > 1)  # fmt: skip
        print(f"  {nodes:>2} node(s): {t / 60:5.1f} min to Ready")


if __name__ == "__main__":
    main()
