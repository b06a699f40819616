"""Benchmark: the operator on the local cluster, against baselines run in the same process.

1. Time to Ready: a VideoTranscode for a 1080p source, from creation to Ready (one Job per
   rendition, all renditions in one grouped Job, then as the operator chooses with the spec
   silent), against bare FFmpeg making the same ladder (the jobrunner's own grouped command,
   reading the same object from S3, writing to local disk).
2. Ready after the last Job: short 480p transcodes one after another, the time from their Job's
   completion to Ready with the operator woken by the Job's end (the default), against the same
   with only its 2 s timer stepping the resource (VTX_WAKE_ON_JOB_END=false).
3. Many at once: N resources created together; the time until every one is Queued or has its
   Jobs, against the time the API server took to accept them; and the operator's peak RSS.

Needs the stack (make up) and the images (make images). Usage:
    python -m bench.operator [--seconds 20] [--count 1000] [--only ready|lag|many]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.media import make_clip
from tests.services import PROBE_LINE, Process, free_port, operator_process
from tests.stack import STATE, apply, job_namespace, stack_env
from vtx.core import media
from vtx.core import resource as vt
from vtx.core.db import Cursor, Database
from vtx.core.images import plan_images
from vtx.core.kube import load_kube_config
from vtx.core.ladder import SourceFacts, plan_ladder
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings
from vtx.jobrunner import ffmpeg

RSS_TARGET_MB = 300


def upload(store: ObjectStore, db: Database, path: Path) -> tuple[str, str]:
    video_id = str(uuid.uuid4())
    key = f"videos/{video_id}/source/{path.name}"
    store.upload_file(path, key, content_type="video/mp4")

    def insert(cur: Cursor) -> None:
        cur.execute(
            "INSERT INTO videos (id, file_name, file_path, content_type, file_size, upload_status)"
            " VALUES (%s, %s, %s, 'video/mp4', %s, 'uploaded')",
            (video_id, path.name, key, path.stat().st_size),
        )

    db.transaction(insert)
    return video_id, key


def resource_for(
    video_id: str, key: str, size: int, ns: str, grouped: bool | None
) -> dict[str, Any]:
    spec = vt.VideoTranscodeSpec(
        video_id=video_id, source=vt.SourceRef(key=key, size=size), group_renditions=grouped
    )
    return vt.build_resource(spec, ns)


def on_the_stack() -> tuple[dict[str, str], Settings]:
    """The local stack's environment and settings, with the Kubernetes client pointed at it."""
    env = stack_env()
    os.environ["KUBECONFIG"] = env["KUBECONFIG"]
    load_kube_config()
    return env, Settings.from_env(env)


def faststart_source(seconds: float, work: Path, name: str = "source") -> Path:
    """A ``seconds`` long 1080p30 clip with audio, its index at the front as uploads have it."""
    raw = make_clip(work / f"{name}-raw.mp4", seconds=seconds)
    source = work / f"{name}.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(raw), "-c", "copy",
                    "-movflags", "+faststart", str(source)], check=True, timeout=600)  # fmt: skip
    return source


def wait(what: str, check: Callable[[], bool], timeout: float, every: float = 0.2) -> float:
    """Seconds until ``check`` holds; raises naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


def bare_command(url: str, seconds: float, work: Path) -> tuple[list[str], list[ffmpeg.Output]]:
    """The jobrunner's grouped command for a ``seconds`` long 1080p30 source at ``url``, writing
    what the jobrunner writes for it under ``work`` (its folders made): the default ladder and
    the video's images (poster, thumbnail, storyboard), without progress reports."""
    ladder = plan_ladder(
        SourceFacts(duration=seconds, has_video=True, has_audio=True, width=1920, height=1080,
                    fps=30)
    )  # fmt: skip
    outputs = ffmpeg.outputs_for(ladder, work)
    for o in outputs:
        o.playlist.parent.mkdir(parents=True, exist_ok=True)
    images = None
    if any(r.images for r in ladder):
        images = ffmpeg.ImageOutputs(plan_images(1920, 1080, seconds), work / "images")
        images.folder.mkdir(parents=True, exist_ok=True)
    encode = ffmpeg.build_encode_command(
        url, outputs, has_audio=True, duration_s=seconds, max_pixels=7680 * 4320, images=images
    )
    return [c for c in encode if c not in ("-progress", "pipe:1")], outputs


def bare_ffmpeg(url: str, seconds: float, work: Path) -> float:
    cmd, _ = bare_command(url, seconds, work)
    start = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, timeout=3600)
    return time.monotonic() - start


def transcode_jobs_done(batch: Any, obj: dict[str, Any], ns: str) -> bool:
    """Whether ``obj`` has transcode Jobs and every one of them has completed."""
    selector = f"vtx.dev/video-id={obj['spec']['videoId']},vtx.dev/job-kind=transcode"
    jobs = batch.list_namespaced_job(ns, label_selector=selector).items
    return bool(jobs) and all((j.status.succeeded or 0) >= 1 for j in jobs)


def time_to_ready(custom: Any, obj: dict[str, Any], ns: str) -> tuple[float, dict[str, float]]:
    """Seconds from creation to Ready, and when each phase (and each rendition's end, and the
    end of every transcode Job) was first seen, polling every 0.2 s."""
    name = obj["metadata"]["name"]
    batch: Any = client.BatchV1Api()
    start, wall = time.monotonic(), time.time()
    custom.create_namespaced_custom_object(vt.GROUP, vt.VERSION, ns, vt.PLURAL, obj)
    seen: dict[str, float] = {}

    def ready() -> bool:
        got = custom.get_namespaced_custom_object(vt.GROUP, vt.VERSION, ns, vt.PLURAL, name)
        status = got.get("status") or {}
        phase = status.get("phase")
        if phase == "Failed":
            raise RuntimeError(f"{name} failed: {status}")
        marks = [str(phase)] + [
            f"{r} done"
            for r, entry in sorted((status.get("renditions") or {}).items())
            if (entry or {}).get("phase") == "Succeeded"
        ]
        if transcode_jobs_done(batch, obj, ns):
            marks.append("Jobs complete")
        for mark in marks:
            seen.setdefault(mark, time.monotonic() - start)
        return phase == "Ready"

    took = wait(f"{name} to be Ready", ready, timeout=1800)
    seen.update(pod_marks(obj, ns, wall))
    return took, seen


# The jobrunner's log lines that mark its steps (vtx/jobrunner/run.py).
POD_STEPS = {"encode begins": "INFO vtx.jobrunner.run: encoding ",
             "encode ends": "INFO vtx.jobrunner.run: encoded;",
             "recorded": "INFO vtx.jobrunner.run: recorded "}  # fmt: skip


def log_marks(log: str, needles: Mapping[str, str], since: float) -> dict[str, tuple[float, str]]:
    """For each mark, when its needle first appears in ``log`` (a pod's log read with the
    kubelet's timestamps), in seconds from ``since`` (epoch), and the text after the needle."""
    found: dict[str, tuple[float, str]] = {}
    for line in log.splitlines():
        stamp, _, text = line.partition(" ")
        for mark, needle in needles.items():
            if needle in text and mark not in found:
                at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                found[mark] = (at - since, text.split(needle, 1)[1])
    return found


def pod_marks(obj: dict[str, Any], ns: str, wall: float) -> dict[str, float]:
    """When each transcode pod of ``obj`` started its container, began and ended its encode,
    recorded its outputs (from its log's timestamps) and exited (the kubelet's, to the
    second), in seconds from ``wall``; labelled by the pod's renditions when there are several."""
    core: Any = client.CoreV1Api()
    selector = f"vtx.dev/video-id={obj['spec']['videoId']},vtx.dev/job-kind=transcode"
    pods = core.list_namespaced_pod(ns, label_selector=selector).items
    marks: dict[str, float] = {}
    for pod in pods:
        log = core.read_namespaced_pod_log(pod.metadata.name, ns, timestamps=True)
        steps = log_marks(log, POD_STEPS, wall)
        found = {mark: at for mark, (at, _) in steps.items()}
        label = steps["encode begins"][1].split(" ", 1)[0] if "encode begins" in steps else ""
        for c in pod.status.container_statuses or []:
            if c.state.terminated is not None:
                found.setdefault("pod started", c.state.terminated.started_at.timestamp() - wall)
                found.setdefault("pod exited", c.state.terminated.finished_at.timestamp() - wall)
        prefix = f"{label} " if len(pods) > 1 and label else ""
        marks.update({f"{prefix}{m}": at for m, at in found.items()})
    return marks


def part_one(args: argparse.Namespace, settings: Settings, work: Path) -> None:
    store, db = ObjectStore(settings), Database(settings.database_url, max_connections=2)
    custom: Any = client.CustomObjectsApi()
    source = faststart_source(args.seconds, work)
    with job_namespace("vtx-bench-ready") as ns:
        proc = operator_process(
            work / "operator-ready.log", ns, health_port=free_port(), metrics_port=free_port(),
            env={"VTX_MAX_RUNNING_JOBS": "4"},
        )  # fmt: skip
        proc.start()
        try:
            video_id, key = upload(store, db, source)
            url = store.presign_get(key, expires_s=3600, public=False)
            bare = bare_ffmpeg(url, args.seconds, work / "bare")
            size = source.stat().st_size
            results: dict[bool | None, float] = {}
            timelines: dict[bool | None, dict[str, float]] = {}
            for grouped in (False, True, None):
                video_id, key = upload(store, db, source)
                obj = resource_for(video_id, key, size, ns, grouped)
                results[grouped], timelines[grouped] = time_to_ready(custom, obj, ns)
            name = obj["metadata"]["name"]
            got = custom.get_namespaced_custom_object(vt.GROUP, vt.VERSION, ns, vt.PLURAL, name)
            grouping = got["status"]["grouping"]
            chosen = f"{'grouped' if grouping['grouped'] else 'one Job each'}: {grouping['reason']}"
        finally:
            proc.stop()
    print(f"1. time to Ready, {args.seconds:g} s 1080p30 source, ladder 480p/720p/1080p")
    print(f"   bare FFmpeg (the jobrunner's grouped command, images too)   {bare:7.1f} s  1.00")
    ways: tuple[tuple[bool | None, str], ...] = (
        (False, "operator, one Job per rendition (forced)"),
        (True, "operator, one grouped Job (forced)"),
        (None, f"operator, its own choice ({chosen})"),
    )
    for grouped, label in ways:
        print(f"   {label:<58}{results[grouped]:7.1f} s  {results[grouped] / bare:.2f}x")
        seen = timelines[grouped]
        timeline = ", ".join(f"{m} {at:.1f}" for m, at in sorted(seen.items(), key=lambda m: m[1]))
        print(f"      first seen (s): {timeline}")
        recorded = max(at for m, at in seen.items() if m.endswith("recorded"))
        print(f"      last pod's outputs recorded → Ready: {seen['Ready'] - recorded:.1f} s "
              "(the pod's exit, the kubelet's report of it, the operator's checks and publish; "
              "polled every 0.2 s)")  # fmt: skip
        steps = ("pod started", "encode begins", "encode ends", "recorded")
        if all(m in seen for m in steps):  # one pod: where its time went
            at = [0.0, *(seen[m] for m in steps), seen["Ready"]]
            parts = ("to the pod's start (1 s steps)", "start-up and probe", "encode",
                     "storing after the encode", "recorded to Ready")  # fmt: skip
            print("      where the time went (s): " + ", ".join(
                f"{p} {b - a:.1f}" for p, a, b in zip(parts, at[:-1], at[1:], strict=True)
            ) + f"; the encode is {(seen['encode ends'] - seen['encode begins']) / bare:.2f}x "
                "bare FFmpeg")  # fmt: skip
    print("   target: operator ≤ 1.15x bare FFmpeg")


def ready_lag(custom: Any, batch: Any, obj: dict[str, Any], ns: str) -> tuple[float, float]:
    """Seconds from the pod's last log line (its outputs recorded, the kubelet's timestamp) to
    the resource seen Ready, polled every 0.1 s; and from Ready to the Job seen Complete
    (negative: the Job said Complete first)."""
    name = obj["metadata"]["name"]
    custom.create_namespaced_custom_object(vt.GROUP, vt.VERSION, ns, vt.PLURAL, obj)
    marks: dict[str, float] = {}

    def ready() -> bool:
        if transcode_jobs_done(batch, obj, ns):
            marks.setdefault("jobs", time.time())
        got = custom.get_namespaced_custom_object(vt.GROUP, vt.VERSION, ns, vt.PLURAL, name)
        phase = (got.get("status") or {}).get("phase")
        if phase == "Failed":
            raise RuntimeError(f"{name} failed: {got.get('status')}")
        return phase == "Ready"

    wait(f"{name} to be Ready", ready, timeout=600, every=0.1)
    ready_at = time.time()

    def complete() -> bool:
        if transcode_jobs_done(batch, obj, ns):
            marks.setdefault("jobs", time.time())
        return "jobs" in marks

    wait(f"the transcode Jobs of {name} to be Complete", complete, timeout=120, every=0.1)
    recorded = max(at for m, at in pod_marks(obj, ns, 0.0).items() if m.endswith("recorded"))
    return ready_at - recorded, marks["jobs"] - ready_at


def part_lag(args: argparse.Namespace, settings: Settings, work: Path) -> None:
    store, db = ObjectStore(settings), Database(settings.database_url, max_connections=2)
    custom: Any = client.CustomObjectsApi()
    batch: Any = client.BatchV1Api()
    source = make_clip(work / "short.mp4", seconds=2, width=854, height=480, fps=25)
    size = source.stat().st_size
    lags: dict[bool, list[float]] = {}
    job_after: dict[bool, list[float]] = {}
    with job_namespace("vtx-bench-lag") as ns:
        for woken in (True, False):
            proc = operator_process(
                work / f"operator-lag-{woken}.log", ns, health_port=free_port(),
                metrics_port=free_port(), env={"VTX_WAKE_ON_JOB_END": str(woken).lower()},
            )  # fmt: skip
            proc.start()
            try:
                lags[woken], job_after[woken] = [], []
                for _ in range(args.runs):
                    video_id, key = upload(store, db, source)
                    obj = resource_for(video_id, key, size, ns, False)
                    lag, after = ready_lag(custom, batch, obj, ns)
                    lags[woken].append(lag)
                    job_after[woken].append(after)
            finally:
                proc.stop()
    print(f"2. the pod's outputs recorded (its last log line) → Ready, 2 s 480p source, "
          f"{args.runs} runs each")  # fmt: skip
    base = sum(lags[False]) / len(lags[False])
    for woken, label in ((False, "2 s timer only (VTX_WAKE_ON_JOB_END=false)"),
                         (True, "woken by the pod's exit (default)")):  # fmt: skip
        mean = sum(lags[woken]) / len(lags[woken])
        after = sum(job_after[woken]) / len(job_after[woken])
        print(f"   {label:<46} mean {mean:4.2f} s  max {max(lags[woken]):4.2f} s  "
              f"{mean / base:.2f}x; the Job's Complete {after:+.2f} s after Ready")  # fmt: skip


def part_two(args: argparse.Namespace, settings: Settings, work: Path) -> None:
    store, db = ObjectStore(settings), Database(settings.database_url, max_connections=2)
    custom: Any = client.CustomObjectsApi()
    clip = make_clip(work / "tiny.mp4", seconds=2, width=320, height=180)
    data, size = clip.read_bytes(), clip.stat().st_size
    ids = [str(uuid.uuid4()) for _ in range(args.count)]
    # A source of its own per video, as uploads make them (a resource naming another video's
    # source is refused).
    keys = {vid: f"{media.video_prefix(vid)}/source/tiny.mp4" for vid in ids}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda v: store.put_bytes(keys[v], data, content_type="video/mp4"), ids))

    def rows(cur: Cursor) -> None:
        # A row per video, as uploads make them; the operator keeps each row's phase current,
        # which is what the wait below reads (listing 1,000 resources every second would load
        # the API server more than the operator does).
        cur.executemany(
            "INSERT INTO videos (id, file_name, file_path, content_type, file_size,"
            " upload_status) VALUES (%s, 'tiny.mp4', %s, 'video/mp4', %s, 'uploaded')",
            [(i, keys[i], size) for i in ids],
        )

    db.transaction(rows)
    with job_namespace("vtx-bench-many") as ns:
        if not args.with_pods:
            # Jobs are made but their pods are not allowed to start: what is measured is the
            # operator and the control plane, not this node running hundreds of tiny encodes.
            quota = {"name": "no-pods", "namespace": ns}
            apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": quota,
                   "spec": {"hard": {"pods": "0"}}})  # fmt: skip
        proc: Process = operator_process(
            work / "operator-many.log", ns, health_port=free_port(), metrics_port=free_port(),
            env={"VTX_MAX_RUNNING_JOBS": "4"},
        )  # fmt: skip
        proc.start()
        try:
            objs = [resource_for(i, keys[i], size, ns, None) for i in ids]
            assert proc.proc is not None
            watched = {"operator": proc.proc.pid, **{p: part_pid(p) for p in PARTS}}
            cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
            start = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda o: custom.create_namespaced_custom_object(
                    vt.GROUP, vt.VERSION, ns, vt.PLURAL, o), objs))  # fmt: skip
            created = time.monotonic() - start

            def settled() -> bool:
                def count(cur: Cursor) -> int:
                    cur.execute(
                        "SELECT count(*) FROM videos WHERE id = ANY(%s::UUID[])"
                        " AND phase IN ('Queued', 'Transcoding', 'Ready')",
                        (ids,),
                    )
                    row = cur.fetchone()
                    return int(row[0]) if row else 0

                return bool(db.transaction(count) == args.count)

            wait(f"{args.count} resources to be Queued or have Jobs", settled, 600, every=1.0)
            total = time.monotonic() - start
            peak = proc.peak_rss_bytes() / 2**20
            report_many(args.count, created, total, peak, args.with_pods)
            for name, pid in watched.items():
                own, children = (a - b for a, b in zip(cpu_seconds(pid), cpu_before[name],
                                                       strict=True))  # fmt: skip
                extra = f" (+{children:.0f} s in its ffprobe children)" if children >= 1 else ""
                print(f"   CPU used meanwhile by {name:<16}{own:7.0f} s{extra}")
            # Deleting them runs each one's finalizer: the operator stays up for it.
            start = time.monotonic()
            custom.delete_collection_namespaced_custom_object(vt.GROUP, vt.VERSION, ns, vt.PLURAL)
            wait("the resources to be deleted", lambda: not custom.list_namespaced_custom_object(
                vt.GROUP, vt.VERSION, ns, vt.PLURAL, limit=1)["items"], 900, every=1.0)  # fmt: skip
            deleted = time.monotonic() - start
            print(f"   deleting them all (finalizers)                          "
                  f"{deleted:7.1f} s  {deleted / created:.2f}x   target ≤ 2x")  # fmt: skip
            probes = PROBE_LINE.findall((work / "operator-many.log").read_text(errors="replace"))
            twice = len(probes) - len(set(probes))
            print(f"   sources probed: {len(probes)} probes of {len(set(probes))} sources "
                  f"({twice} probed again for the same try)")  # fmt: skip
        finally:
            proc.stop()


PARTS = ("kube-apiserver", "etcd", "kube-controller-manager")


def part_pid(name: str) -> int:
    return int((STATE / "pids" / f"{name}.pid").read_text())


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, waited-for children's) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def report_many(count: int, created: float, total: float, peak: float, pods: bool) -> None:
    where = "their pods running on this node" if pods else "pods kept from starting (quota 0)"
    print(f"3. {count} resources created at once (cap 4 running Jobs; {where})", flush=True)
    print(f"   API server accepting them (16 client threads)          {created:7.1f} s  1.00")
    print(f"   until every one is Queued or has its Jobs               {total:7.1f} s  "
          f"{total / created:.2f}x   target ≤ 3x")  # fmt: skip
    print(f"   operator peak RSS                                       {peak:7.0f} MB"
          f"   target < {RSS_TARGET_MB} MB", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20, help="length of the 1080p source")
    parser.add_argument("--count", type=int, default=1000, help="resources created at once")
    parser.add_argument("--only", choices=("ready", "lag", "many"), help="run one part")
    parser.add_argument("--runs", type=int, default=8, help="transcodes per mode in part 2")
    parser.add_argument(
        "--with-pods", action="store_true",
        help="let the admitted Jobs' pods run (on this node) during part 2",
    )  # fmt: skip
    args = parser.parse_args()
    _env, settings = on_the_stack()
    with tempfile.TemporaryDirectory(prefix="vtx-bench-operator-") as tmp:
        work = Path(tmp)
        if args.only in (None, "ready"):
            part_one(args, settings, work)
        if args.only in (None, "lag"):
            part_lag(args, settings, work)
        if args.only in (None, "many"):
            part_two(args, settings, work)


if __name__ == "__main__":
    main()
