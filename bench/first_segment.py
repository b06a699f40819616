"""Benchmark: how soon an upload starts to play, against baselines measured in the same run.

For each source length (1080p30 with audio, default 10 s, 30 s and 2 min):

1. A no-op Job: the jobrunner's image running ``true``, from creation to Complete, polled every
   50 ms: what running any pod costs on this cluster (the baseline of the target).
2. Bare FFmpeg: the jobrunner's own grouped command on this host (the ladder and the images),
   reading the source from S3, until the first 480p HLS segment file is whole on disk, and until
   it ends.
3. vtx: the REST flow (announce, PUT, complete) through an API and an operator on this host;
   from ``complete`` answering to the first 480p segment being readable through the API (the
   API's media playlist lists one, and its signed URL answers 200), then to ``Ready``.

Needs the stack (make up) and the images (make images). Usage:
    python -m bench.first_segment [--lengths 10,30,120]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from kubernetes import client

from bench.operator import bare_command, faststart_source, log_marks, on_the_stack, wait
from tests.services import Process, api_process, free_port, operator_process
from tests.stack import job_namespace
from tests.uploads import announce_and_put, bearer, complete
from vtx.core import media
from vtx.core.hls import parse_media_playlist
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings

POLL_S = 0.05


def noop_job(ns: str, settings: Settings) -> float:
    """Seconds from creating a Job that runs ``true`` in the jobrunner's image to its Complete."""
    batch: Any = client.BatchV1Api()
    name = f"noop-{uuid.uuid4().hex[:8]}"
    container = {"name": "noop", "image": settings.job_image, "command": ["true"],
                 "imagePullPolicy": "IfNotPresent"}  # fmt: skip
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "containers": [container],
            "automountServiceAccountToken": False,
        }}},
    }  # fmt: skip
    batch.create_namespaced_job(ns, body)

    def complete() -> bool:
        conditions = batch.read_namespaced_job_status(name, ns).status.conditions or []
        return any(c.type == "Complete" and c.status == "True" for c in conditions)

    return wait(f"the no-op Job {name} to complete", complete, timeout=120, every=POLL_S)


def bare_ffmpeg(url: str, seconds: float, work: Path) -> tuple[float, float]:
    """Seconds until bare FFmpeg (the jobrunner's grouped command) has the first 480p segment
    whole on disk (FFmpeg writes it under a temporary name and renames it), and until it ends."""
    cmd, outputs = bare_command(url, seconds, work)
    first = next(o for o in outputs if o.rendition.name == "480p").playlist.parent / (
        media.SEGMENT_PATTERN % 0
    )
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        segment = wait("bare FFmpeg's first 480p segment", first.exists, 600, every=POLL_S)
        if proc.wait(timeout=3600) != 0:
            raise RuntimeError(f"bare FFmpeg failed with {proc.returncode}")
        return segment, time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# The jobrunner's log lines on the way to the first segment (vtx/jobrunner), in their order.
FIRST_STEPS = {"jobrunner probing": "INFO vtx.jobrunner.run: probing the source of ",
               "FFmpeg started": "INFO vtx.jobrunner.run: encoding ",
               "first 480p segment stored": "first segment of 480p stored"}  # fmt: skip


def first_segment_steps(vid: str, ns: str, since: float) -> dict[str, float]:
    """When the pod that made ``vid``'s 480p started (the kubelet's time, in 1 s steps) and
    reached each of FIRST_STEPS (its log's timestamps), in seconds from ``since`` (epoch)."""
    core: Any = client.CoreV1Api()
    marks: dict[str, float] = {}
    for pod in core.list_namespaced_pod(ns, label_selector=f"vtx.dev/video-id={vid}").items:
        log = core.read_namespaced_pod_log(pod.metadata.name, ns, timestamps=True)
        found = {mark: at for mark, (at, _) in log_marks(log, FIRST_STEPS, since).items()}
        if "first 480p segment stored" not in found:
            continue  # not the pod that made the 480p
        for c in pod.status.container_statuses or []:
            state = c.state.terminated or c.state.running
            if state is not None:
                marks["pod started (1 s steps)"] = state.started_at.timestamp() - since
        marks.update(found)
    return marks


def through_the_api(
    api: Process, token: str, source: Path, ns: str
) -> tuple[float, float, dict[str, float]]:
    """Seconds from ``complete`` answering to the first 480p segment readable through the API,
    and to Ready; and when the 480p pod reached its steps on the way (first_segment_steps)."""
    vid = announce_and_put(api, token, source)
    headers = bearer(token)
    playlist_url = f"{api.url}/v1/videos/{vid}/play/480p/hls/index.m3u8"
    complete(api, token, vid, expect=202)
    start, since = time.monotonic(), time.time()

    def first_segment() -> bool:
        got = requests.get(playlist_url, headers=headers, timeout=10)
        if got.status_code != 200:
            return False
        segments = parse_media_playlist(got.text).segments
        return bool(segments) and requests.get(segments[0].uri, timeout=10).status_code == 200

    wait(f"the first 480p segment of {vid} through the API", first_segment, 900, every=POLL_S)
    first = time.monotonic() - start

    def ready() -> bool:
        view = requests.get(f"{api.url}/v1/videos/{vid}", headers=headers, timeout=10).json()
        if view["phase"] == "Failed":
            raise RuntimeError(f"{vid} failed: {view}")
        return bool(view["phase"] == "Ready")

    wait(f"{vid} to be Ready", ready, timeout=1800, every=0.2)
    took = time.monotonic() - start
    steps = first_segment_steps(vid, ns, since)
    steps["readable through the API"] = first
    return first, took, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lengths", default="10,30,120", help="source lengths in seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here (bench.report)")
    args = parser.parse_args()
    lengths = [float(s) for s in args.lengths.split(",")]
    env, settings = on_the_stack()
    store = ObjectStore(settings)
    token = env["VTX_API_TOKEN"]
    rows = []
    paths: list[tuple[float, dict[str, float]]] = []
    with (
        tempfile.TemporaryDirectory(prefix="vtx-bench-first-") as tmp,
        job_namespace("vtx-bench-first") as ns,
    ):
        work = Path(tmp)
        # One PUT per source, whatever its size: what is measured starts at `complete`.
        api = api_process(work / "api.log", ns, env={"VTX_MULTIPART_THRESHOLD": str(4 * 2**30)})
        operator = operator_process(
            work / "operator.log", ns, health_port=free_port(), metrics_port=free_port(),
            env={"VTX_MAX_RUNNING_JOBS": "4"},
        )  # fmt: skip
        api.start()
        operator.start()
        try:
            noop_job(ns, settings)  # the image's first start on this node is not the baseline
            for seconds in lengths:
                source = faststart_source(seconds, work, f"source-{seconds:g}")
                key = f"bench/first-segment/{uuid.uuid4()}.mp4"
                store.upload_file(source, key, content_type="video/mp4")
                url = store.presign_get(key, expires_s=3600, public=False)
                noop = noop_job(ns, settings)
                bare, bare_all = bare_ffmpeg(url, seconds, work / f"bare-{seconds:g}")
                first, ready, steps = through_the_api(api, token, source, ns)
                rows.append((seconds, noop, bare, first, bare_all, ready))
                paths.append((seconds, steps))
        finally:
            operator.stop()
            api.stop()
    print("time to the first 480p segment, 1080p30 source with audio, ladder 480p/720p/1080p (s)")
    print(f"   {'source':>8} {'no-op Job':>10} {'bare FFmpeg':>12} {'vtx':>7} {'vtx/no-op':>10}"
          f" {'vtx/bare':>9}")  # fmt: skip
    for seconds, noop, bare, first, _, _ in rows:
        print(f"   {seconds:7g}s {noop:10.2f} {bare:12.2f} {first:7.2f} {first / noop:9.2f}x"
              f" {first / bare:8.2f}x")  # fmt: skip
    print("   target: vtx ≤ 1.5x the no-op Job")
    print(
        "   where vtx's time went, from `complete` answering (s; the 480p pod's log and kubelet):"
    )
    for seconds, steps in paths:
        marks = sorted(steps.items(), key=lambda m: m[1])
        print(f"   {seconds:7g}s " + ", ".join(f"{m} {at:.2f}" for m, at in marks))
    print("time to Ready: from `complete` through the API, against bare FFmpeg's whole ladder (s)")
    print(f"   {'source':>8} {'bare FFmpeg':>12} {'vtx':>7} {'vtx/bare':>9}")
    for seconds, _, _, _, bare_all, ready in rows:
        print(f"   {seconds:7g}s {bare_all:12.1f} {ready:7.1f} {ready / bare_all:8.2f}x")
    print("   target: vtx ≤ 1.15x bare FFmpeg")
    if args.json:
        keys = ("source_s", "noop_job_s", "bare_first_segment_s", "first_segment_s",
                "bare_ready_s", "ready_s")  # fmt: skip
        args.json.write_text(json.dumps([dict(zip(keys, row, strict=True)) for row in rows]))


if __name__ == "__main__":
    main()
