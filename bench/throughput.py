"""Benchmark: many uploads at once, and where the machine's CPU goes while vtx makes them.

1. Bare FFmpeg: the jobrunner's grouped command (the ladder and the images) for each of N copies
   of a 1080p30 source with audio (default 6 of 10 s), run two at a time on this host (one per
   core), reading from S3.
2. vtx: the same N uploads through the REST flow (announce, PUT, then every ``complete`` at
   once) to an API and an operator on this host, until every video is Ready.

While vtx works, a sampler (every 0.2 s) reads the CPU of the FFmpeg processes in pods, of each
pod's cgroup (transcode or ingest Job), of the operator and the API (with their ffprobe
children) and of every server of the stack; the kubepods cgroup and /proc/stat give the totals,
so what no sampler saw is shown too (a process's last 0.2 s before it exits is not seen).

Needs the stack (make up) and the images (make images). Usage:
    python -m bench.throughput [--uploads 6] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from kubernetes import client

from bench.operator import bare_command, cpu_seconds, faststart_source, on_the_stack, wait
from tests.services import Process, api_process, free_port, operator_process
from tests.stack import STATE, job_namespace
from tests.uploads import announce_and_put, bearer, complete
from vtx.core.objects import ObjectStore

KUBEPODS = Path("/sys/fs/cgroup/cpuacct/kubepods")
TICK = os.sysconf("SC_CLK_TCK")
TARGET = 1.3


def host_busy() -> float:
    """CPU seconds the whole host has spent busy (all cores) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICK


def cgroup_seconds(path: Path) -> float:
    return int((path / "cpuacct.usage").read_text()) / 1e9


def pod_cgroups() -> dict[str, Path]:
    """Pod uid → its cpuacct cgroup (any QoS class)."""
    found: dict[str, Path] = {}
    for parent in (KUBEPODS, KUBEPODS / "burstable", KUBEPODS / "besteffort"):
        if parent.is_dir():
            for d in parent.glob("pod*"):
                found[d.name[3:].replace("_", "-")] = d
    return found


def ffmpeg_processes() -> dict[int, float]:
    """pid → CPU seconds of every FFmpeg process running in a pod."""
    out: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "comm").read_text().strip() != "ffmpeg":
                continue
            if "kubepods" not in (d / "cgroup").read_text():
                continue
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(d.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


class Sampler:
    """Keeps the last CPU figure seen of every FFmpeg process and pod cgroup while it runs."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.ffmpeg: dict[int, float] = {}
        self.pods: dict[str, float] = {}  # pod uid → CPU s
        self.kinds: dict[str, str] = {}  # pod uid → its Job's kind
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._core: Any = client.CoreV1Api()
        self._listed = 0.0
        self.busy: list[tuple[float, float]] = []  # (monotonic time, host busy CPU-s)
        self.own_cpu = 0.0  # what sampling cost (this thread's CPU)
        self.running: list[int] = []  # FFmpeg processes running, per sample

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            self.busy.append((now, host_busy()))
            running = ffmpeg_processes()
            self.running.append(len(running))
            self.ffmpeg.update(running)
            for uid, path in pod_cgroups().items():
                try:
                    self.pods[uid] = cgroup_seconds(path)
                except OSError:
                    continue
            if time.monotonic() - self._listed > 1.0:
                self._listed = time.monotonic()
                for pod in self._core.list_namespaced_pod(self.ns).items:
                    labels = pod.metadata.labels or {}
                    self.kinds[pod.metadata.uid] = labels.get("vtx.dev/job-kind", "other")
            self.own_cpu = time.thread_time()

    def encoding(self) -> tuple[float, float]:
        """The first and the last sample time at which an FFmpeg process was running."""
        times = [t for (t, _), n in zip(self.busy, self.running, strict=True) if n]
        return times[0], times[-1]

    def busy_between(self, start: float, end: float) -> float:
        """Host CPU-s busy between two sample times (the samples nearest to them)."""
        inside = [b for t, b in self.busy if start <= t <= end]
        return inside[-1] - inside[0] if len(inside) > 1 else 0.0

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for uid, seconds in self.pods.items():
            kind = self.kinds.get(uid)
            if kind is not None:  # a pod of this run (others run elsewhere on the cluster)
                out[kind] = out.get(kind, 0.0) + seconds
        return out


def bare_ladders(url: str, seconds: float, copies: int, work: Path) -> tuple[float, float, float]:
    """Wall and CPU seconds of ``copies`` grouped FFmpeg ladders run two at a time, and the
    host's busy CPU seconds meanwhile (FFmpeg, and the stack at rest)."""
    commands = [bare_command(url, seconds, work / f"bare-{i}")[0] for i in range(copies)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = host_busy()
    start = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda cmd: subprocess.run(cmd, check=True, capture_output=True,
                                                 timeout=3600), commands))  # fmt: skip
    wall = time.monotonic() - start
    busy = host_busy() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, busy


def all_ready(api: Process, token: str, ids: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        for vid in ids:
            view = requests.get(f"{api.url}/v1/videos/{vid}", headers=bearer(token), timeout=10)
            phase = view.json()["phase"]
            if phase == "Failed":
                raise RuntimeError(f"{vid} failed: {view.text}")
            if phase != "Ready":
                return False
        return True

    return check


SERVERS = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kubelet",
           "containerd", "postgres", "pulsar", "versitygw", "kubo", "prometheus")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=6, help="uploads at once")
    parser.add_argument("--seconds", type=float, default=10, help="length of each 1080p source")
    parser.add_argument("--cap", type=int, help="VTX_MAX_RUNNING_JOBS (default: the default)")
    parser.add_argument("--json", type=Path, help="also write the figures here (bench.report)")
    args = parser.parse_args()
    env, settings = on_the_stack()
    store = ObjectStore(settings)
    token = env["VTX_API_TOKEN"]
    cap = args.cap or settings.max_running_jobs
    with (
        tempfile.TemporaryDirectory(prefix="vtx-bench-throughput-") as tmp,
        job_namespace("vtx-bench-throughput") as ns,
    ):
        work = Path(tmp)
        source = faststart_source(args.seconds, work)
        key = f"bench/throughput/{uuid.uuid4()}.mp4"
        store.upload_file(source, key, content_type="video/mp4")
        url = store.presign_get(key, expires_s=3600, public=False)
        bare_wall, bare_cpu, bare_busy = bare_ladders(url, args.seconds, args.uploads, work)

        api = api_process(work / "api.log", ns, env={"VTX_MULTIPART_THRESHOLD": str(4 * 2**30)})
        operator = operator_process(
            work / "operator.log", ns, health_port=free_port(), metrics_port=free_port(),
            env={"VTX_MAX_RUNNING_JOBS": str(cap)},
        )  # fmt: skip
        api.start()
        operator.start()
        try:
            ids = [announce_and_put(api, token, source) for _ in range(args.uploads)]
            assert api.proc is not None
            assert operator.proc is not None
            ours = {"operator": operator.proc.pid, "api": api.proc.pid}
            servers = {name: int((STATE / "pids" / f"{name}.pid").read_text()) for name in SERVERS}
            watched = {**ours, **servers}
            before = {name: cpu_seconds(pid) for name, pid in watched.items()}
            pods_before, busy_before = cgroup_seconds(KUBEPODS), host_busy()
            self_before = resource.getrusage(resource.RUSAGE_SELF)
            with Sampler(ns) as sampler:
                start = time.monotonic()
                with ThreadPoolExecutor(args.uploads) as pool:
                    list(pool.map(lambda vid: complete(api, token, vid, expect=202), ids))
                wait(f"{args.uploads} uploads to be Ready", all_ready(api, token, ids), 1800, 0.5)
                end = time.monotonic()
                wall = end - start
            busy = host_busy() - busy_before
            self_after = resource.getrusage(resource.RUSAGE_SELF)
            polling = (self_after.ru_utime - self_before.ru_utime) + (
                self_after.ru_stime - self_before.ru_stime
            )
            pods = cgroup_seconds(KUBEPODS) - pods_before
            used = {
                name: sum(a - b for a, b in zip(cpu_seconds(pid), before[name], strict=True))
                for name, pid in watched.items()
            }
        finally:
            operator.stop()
            api.stop()
    encode = sum(sampler.ffmpeg.values())
    kinds = sampler.by_kind()
    transcode_pods = kinds.get("transcode", 0.0)
    n, s = args.uploads, args.seconds
    print(f"{n} uploads of a {s:g} s 1080p30 clip at once, ladder 480p/720p/1080p, to Ready"
          f" (at most {cap} transcode Jobs running)")  # fmt: skip
    print(f"   bare FFmpeg, the same {n} ladders two at a time   {bare_wall:7.1f} s  1.00"
          f"   ({bare_cpu:.0f} CPU-s)")  # fmt: skip
    print(f"   vtx, every `complete` at once → all Ready     {wall:7.1f} s  "
          f"{wall / bare_wall:.2f}x   target ≤ {TARGET}x")  # fmt: skip
    rest = (bare_busy - bare_cpu) / bare_wall
    print(f"   the host was busy {bare_busy:.0f} CPU-s meanwhile: the stack at rest used"
          f" {rest:.2f} cores")  # fmt: skip
    print(f"where the CPU went while vtx worked ({busy:.0f} CPU-s busy on the host, "
          f"{busy / bare_busy:.2f}x the bare run's; at rest the stack would have used"
          f" {rest * wall:.0f})")  # fmt: skip
    rows = [
        ("FFmpeg in the transcode pods (the encode)", encode),
        ("the rest of the transcode pods (jobrunner)", transcode_pods - encode),
        ("the ingest pods (pinning the originals)", kinds.get("ingest", 0.0)),
        ("other pods of the cluster", pods - sum(kinds.values())),
        *((f"{name} (+ its children)", used[name]) for name in (*ours, *servers)),
        ("this benchmark: sampling /proc and cgroups", sampler.own_cpu),
        ("this benchmark: the rest (polling the API)", polling - sampler.own_cpu),
    ]
    seen = sum(v for _, v in rows)
    rows.append(("not seen by a sampler (exits, other processes)", busy - seen))
    for what, seconds in rows:
        print(f"   {what:<48} {seconds:7.1f} CPU-s  {seconds / busy:6.1%}")
    first, last = sampler.encoding()
    cores = os.cpu_count() or 1
    print(f"where the time went (idle: {cores} cores for that time, less the host's busy CPU-s)")
    for what, a, b in (
        ("every `complete` → the first FFmpeg running", start, first),
        ("some FFmpeg running (first seen → last seen)", first, last),
        ("the last FFmpeg gone → every video Ready", last, end),
    ):
        idle = cores * (b - a) - sampler.busy_between(a, b)
        print(f"   {what:<48} {b - a:7.1f} s   idle {max(0.0, idle):5.1f} CPU-s")
    print("   per 5 s from `complete`: cores busy / FFmpeg processes running (most seen)")
    strip = []
    for a in range(0, int(end - start) + 1, 5):
        t0, t1 = start + a, min(end, start + a + 5)
        idx = [i for i, (t, _) in enumerate(sampler.busy) if t0 <= t <= t1]
        if t1 - t0 < 1 or len(idx) < 2:
            continue
        cores_busy = sampler.busy_between(t0, t1) / (t1 - t0)
        strip.append(f"{cores_busy:.1f}/{max(sampler.running[i] for i in idx)}")
    print("   " + " ".join(strip))
    if args.json:
        args.json.write_text(json.dumps({
            "uploads": n, "source_s": s, "bare_s": bare_wall, "bare_cpu_s": bare_cpu,
            "bare_busy_cpu_s": bare_busy, "vtx_s": wall, "busy_cpu_s": busy, "cpu": dict(rows),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
