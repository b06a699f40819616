"""A Ready video is complete in every store. The operator goes by evidence (the Job's state,
the rows, the objects), so a jobrunner report that never arrives does not hold a video back,
and an output that goes missing before publishing is made again rather than published; thirty
uploads of mixed sources through the API all end Ready and `vtx verify --all` finds nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests import media
from tests.integration.test_core import fetch_one
from tests.integration.test_jobrunner import upload_video
from tests.integration.test_operator import submit, wait_for_phase
from tests.services import Process, api_process, free_port, operator_process, started
from tests.stack import (
    STATE,
    get,
    job_logs,
    job_namespace,
    kubectl,
    restart_missing_parts,
    stop_part,
    wait_for_job,
    wait_until,
)
from tests.uploads import upload_all, wait_finished
from tests.verify import assert_complete, assert_verified, verify
from vtx.core import images as img
from vtx.core import videos
from vtx.core.db import Database
from vtx.core.objects import ObjectStore
from vtx.core.resource import RenditionSpec
from vtx.core.settings import Settings
from vtx.operator.jobs import job_name

pytestmark = pytest.mark.stack
RBAC = "rbac.authorization.k8s.io"


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    with job_namespace("vtx-test-integrity") as name:
        yield name


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory, ns: str) -> Iterator[Process]:
    process = operator_process(
        tmp_path_factory.mktemp("operator") / "operator.log", ns,
        health_port=free_port(), metrics_port=free_port(), env={"VTX_MAX_RUNNING_JOBS": "4"},
    )  # fmt: skip
    with started(process):
        yield process


def progress_of(ns: str, name: str, rendition: str) -> int:
    entries = get("videotranscode", name, ns).get("status", {}).get("renditions") or {}
    return int((entries.get(rendition) or {}).get("progress") or 0)


def test_lost_reports_do_not_keep_the_video_from_ready(
    ns: str, operator: Process, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """The jobrunner's reports stop arriving mid-encode (the broker goes away), so the last
    ones, "uploading" and "done", are never seen: the Job and the rows decide, and the segments
    it records keep the stall watchdog from replacing its pod."""
    # Long enough that the encode outlasts the stall time (15 s here) after the broker goes.
    clip = media.make_clip(
        tmp_path_factory.mktemp("media") / "lost-report.mp4", seconds=120, width=854, height=480
    )
    video = upload_video(store, db, clip)
    name = submit(video, ns)
    # Only the jobrunner's reports move a rendition's progress: they are arriving, and the
    # encode has a long way to go (a minute of video) when they stop.
    wait_until(f"a progress report of {name}", lambda: progress_of(ns, name, "480p") > 0, 180)
    stop_part("pulsar")
    try:
        obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator.log, timeout=300)
        last_shown = progress_of(ns, name, "480p")
    finally:
        restart_missing_parts()
    status = obj["status"]
    entry = status["renditions"]["480p"]
    # Its segments kept coming: the watchdog did not take the encode for stalled.
    assert entry["attempts"] == 1, f"the pod was replaced: {entry}"
    job = job_name(name, "transcode", ["480p"])
    assert "status events were not sent" in job_logs(ns, job), "the last reports were lost"
    assert status["phase"] == "Ready", status
    assert entry["phase"] == "Succeeded"
    assert last_shown == 100
    assert entry["outputs"]["mp4"] == f"videos/{video.id}/480p/video.mp4"
    assert_complete(video.id)


def test_an_output_missing_before_publish_is_made_again(
    ns: str, operator: Process, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    clip = media.make_clip(
        tmp_path_factory.mktemp("media") / "missing.mp4", seconds=12, width=854, height=480
    )
    video = upload_video(store, db, clip)
    name = submit(video, ns)
    wait_for_phase(ns, name, {"Transcoding"}, operator.log, timeout=120)
    operator.kill()  # the encode goes on; nobody publishes meanwhile
    try:
        job = job_name(name, "transcode", ["480p"])
        done = wait_for_job(ns, job, timeout=300)
        assert done["status"].get("succeeded") == 1, job_logs(ns, job)
        segment = f"videos/{video.id}/480p/hls/seg_00001.m4s"
        assert store.head(segment) is not None
        store.client.delete_object(Bucket=store.bucket, Key=segment)
    finally:
        operator.start()
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator.log, timeout=300)
    status = obj["status"]
    assert status["phase"] == "Ready", status
    assert status["renditions"]["480p"]["redos"] == 1, "made again, by a Job of its own"
    assert status["renditions"]["480p"]["job"] == job_name(name, "transcode", ["480p"], 1)
    reasons = kubectl(
        "get", "events", "-n", ns, f"--field-selector=involvedObject.name={name}",
        "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    )  # fmt: skip
    assert "Redo: 480p is made again (1 problems): 1 of its segments are missing from S3" in (
        reasons
    ), reasons
    assert store.head(segment) is not None
    assert_complete(video.id)


def test_a_video_stored_in_s3_only_has_no_cid_and_checks_out(
    ns: str, operator: Process, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    clip = media.make_clip(
        tmp_path_factory.mktemp("media") / "s3-only.mp4", seconds=4, width=854, height=480
    )
    video = upload_video(store, db, clip)
    name = submit(video, ns, storage_ipfs=False)
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator.log, timeout=300)
    status = obj["status"]
    assert status["phase"] == "Ready", status
    assert "cid" not in status["outputs"]
    assert status["renditions"]["480p"]["outputs"]["cids"] == {}
    assert "ingest" not in status, "nothing to pin"
    storages = {o.storage for r in db.transaction(
        lambda cur: videos.rendition_records(cur, video.id)
    ).values() for o in r.outputs.values()}  # fmt: skip
    assert storages == {"s3"}
    jobs = kubectl("get", "jobs", "-n", ns, "-l", f"vtx.dev/video-id={video.id}", "-o", "name")
    assert jobs.split() == [f"job.batch/{job_name(name, 'transcode', ['480p'])}"]
    assert_complete(video.id)


def test_verify_finds_a_missing_poster_and_a_storyboard_cut_short(
    ns: str, operator: Process, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    clip = media.make_clip(
        tmp_path_factory.mktemp("media") / "images.mp4", seconds=9, width=854, height=480
    )
    video = upload_video(store, db, clip)
    name = submit(video, ns)
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator.log, timeout=300)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    assert_complete(video.id)
    poster = store.get_bytes(img.key(video.id, img.POSTER))
    assert store.delete_prefix(img.key(video.id, img.POSTER)) == 1
    vtt = store.get_bytes(img.key(video.id, img.STORYBOARD_VTT)).decode()
    cut = vtt[: vtt.rindex("\n\n", 0, len(vtt) - 1)] + "\n"  # the last cue gone
    store.put_bytes(img.key(video.id, img.STORYBOARD_VTT), cut.encode(), content_type="text/vtt")
    proc = verify(video.id)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "480p: its poster is missing from S3" in proc.stdout, proc.stdout
    # Shorter, so its size differs from its row's first of all.
    assert "480p: its storyboard vtt in S3 has" in proc.stdout, proc.stdout
    # Put back, the video checks out again (and leaves nothing broken for `verify --all`).
    store.put_bytes(img.key(video.id, img.POSTER), poster, content_type="image/jpeg")
    store.put_bytes(img.key(video.id, img.STORYBOARD_VTT), vtt.encode(), content_type="text/vtt")
    assert_complete(video.id)


def test_verify_reads_the_subtitles_and_the_second_audio_track(
    ns: str, operator: Process, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """A film with two audio tracks and subtitles checks out whole; a WebVTT file that is no
    longer one (same size, so only reading it tells) and a missing segment of the second audio
    track are each named."""
    film = media.make_two_languages(tmp_path_factory.mktemp("media") / "tracks.mkv")
    video = upload_video(store, db, film)
    name = submit(video, ns)
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator.log, timeout=300)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    assert [r["name"] for r in obj["status"]["plan"]] == ["480p", "audio-1", "audio-2", "text-1"]
    assert_complete(video.id)
    vtt_key = f"videos/{video.id}/text-1/subtitles.vtt"
    vtt = store.get_bytes(vtt_key)
    store.put_bytes(vtt_key, vtt.replace(b"WEBVTT", b"WEBVTX", 1), content_type="text/vtt")
    segment_key = f"videos/{video.id}/audio-2/hls/seg_00000.m4s"
    segment = store.get_bytes(segment_key)
    assert store.delete_prefix(segment_key) == 1
    try:
        proc = verify(video.id)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "text-1: its WebVTT file does not start with WEBVTT" in proc.stdout, proc.stdout
        assert "audio-2: 1 of its segments are missing from S3 (numbers 0)" in proc.stdout, (
            proc.stdout
        )
    finally:  # put back even when the check fails: `verify --all` runs over every video later
        store.put_bytes(vtt_key, vtt, content_type="text/vtt")
        store.put_bytes(segment_key, segment, content_type="video/iso.segment")
    assert_complete(video.id)


def test_a_rendition_the_ladder_does_not_have_fails_the_resource_clearly(
    ns: str, operator: Process, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    clip = media.make_clip(
        tmp_path_factory.mktemp("media") / "unknown.mp4", seconds=2, width=854, height=480
    )
    video = upload_video(store, db, clip)
    name = submit(video, ns, renditions=[RenditionSpec("360p"), RenditionSpec("480p")])
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator.log, timeout=120)
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert (obj["status"]["phase"], ready["reason"]) == ("Failed", "InvalidSpec")
    assert "spec.renditions names 360p" in ready["message"]
    jobs = kubectl("get", "jobs", "-n", ns, "-l", f"vtx.dev/video-id={video.id}", "-o", "name")
    assert jobs.strip() == "", "no Job for a spec that names no rung"
    row = fetch_one(
        db, "SELECT upload_status, failure_reason, failure_detail FROM videos WHERE id = %s",
        video.id,
    )  # fmt: skip
    assert row is not None
    assert row[0] == "failed"
    assert row[1] == "The transcode request for this video was not valid, so it was not started."
    assert str(row[2]).startswith("InvalidSpec: spec.renditions names 360p")
    assert_verified(video.id)


def probes_of(bucket: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"ffprobe .*/{bucket}/videos/"], capture_output=True,
                         text=True, check=False).stdout  # fmt: skip
    return out.split()


@contextmanager
def frozen(part: str) -> Iterator[None]:
    """A server of the stack stopped mid-flight (SIGSTOP): connections to it hang."""
    pid = int((STATE / "pids" / f"{part}.pid").read_text())
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)


def test_sigterm_stops_a_busy_operator_within_ten_seconds(
    store: ObjectStore, db: Database, settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """Busy: a dozen new resources whose probes hang (storage has stopped answering)."""
    clip = media.make_clip(
        tmp_path_factory.mktemp("media") / "busy.mp4", seconds=2, width=854, height=480
    )
    videos_ = [upload_video(store, db, clip) for _ in range(12)]
    with job_namespace("vtx-test-sigterm") as busy_ns:
        # A resource is probed only when a slot is free for it: a cap of 12 lets all probe.
        process = operator_process(
            tmp_path_factory.mktemp("busy") / "operator.log", busy_ns,
            health_port=free_port(), metrics_port=free_port(),
            env={"VTX_MAX_RUNNING_JOBS": "12"},
        )  # fmt: skip
        process.start()
        try:
            with frozen("versitygw"):
                for video in videos_:
                    submit(video, busy_ns)
                wait_until(
                    "probes hanging on the frozen storage",
                    lambda: len(probes_of(settings.s3_bucket)) >= 4, timeout=60,
                )  # fmt: skip
                assert process.proc is not None
                began = time.monotonic()
                process.proc.send_signal(signal.SIGTERM)
                code = process.proc.wait(timeout=60)
                took = time.monotonic() - began
        finally:
            process.stop()
        assert took <= 10, f"the operator took {took:.1f}s to stop\n{process.tail()}"
        assert code == 0, f"exit {code}: cut short by the last-resort kill\n{process.tail()}"
        assert probes_of(settings.s3_bucket) == [], "no probe outlives the operator"


# --- thirty uploads of mixed sources --------------------------------------------------------------

SHAPES: dict[str, dict[str, Any] | None] = {
    "1080p": {"width": 1920, "height": 1080},
    "720p": {"width": 1280, "height": 720},
    "vertical": {"width": 1080, "height": 1920},
    "rotated": {"width": 1920, "height": 1080, "rotate": 90},
    "audio": None,
}
EACH = 6
RENDITIONS = {"1080p": 3, "720p": 2, "vertical": 3, "rotated": 3, "audio": 1}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, ns: str) -> Iterator[Process]:
    process = api_process(tmp_path_factory.mktemp("api") / "api.log", ns)
    with started(process):
        yield process


def sources(folder: Path) -> list[tuple[str, Path]]:
    """Thirty short sources, each of its own (a tone of its own): six of every shape."""
    made = []
    for i, (shape, size) in enumerate((s, size) for s, size in SHAPES.items() for _ in range(EACH)):
        tone = 200 + 37 * i
        if size is None:
            made.append((shape, media.make_audio_only(folder / f"a{i}.m4a", seconds=3, tone=tone)))
        else:
            path = folder / f"{shape}-{i}.mp4"
            made.append((shape, media.make_clip(path, seconds=3, fps=25, tone=tone, **size)))
    return made


def test_thirty_mixed_uploads_are_ready_and_whole(
    api: Process, operator: Process, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    made = sources(tmp_path_factory.mktemp("thirty"))
    ids = upload_all(api, [path for _, path in made], workers=6)
    shapes = dict(zip(ids, (shape for shape, _ in made), strict=True))
    final = wait_finished(api, ids, timeout=1200, operator=operator, every=5)
    assert {vid: v["phase"] for vid, v in final.items()} == dict.fromkeys(ids, "Ready")
    for vid, view in final.items():
        shape = shapes[vid]
        # The IPFS root plays every rendition (the master lists them; each one reads).
        kind = "audio" if shape == "audio" else "video"
        found = media.streams(media.probe(view["playback"]["ipfs"]), kind)
        assert len(found) == RENDITIONS[shape], f"{shape} {vid}: {len(found)} {kind} streams"
        if shape == "audio":
            mp4 = view["renditions"]["audio"]["mp4"]
            assert f"/videos/{vid}/audio/audio.mp4?" in mp4, "a signed link of the file"
            played = media.probe(mp4)
            assert [s["codec_type"] for s in media.streams(played)] == ["audio"]
        if shape in ("vertical", "rotated"):
            tall = [(s["width"], s["height"]) for s in found]
            assert all(h > w for w, h in tall), f"{shape} stays portrait: {tall}"
    assert_complete(*ids)
    everything = verify("--all")
    assert everything.returncode == 0, everything.stdout + everything.stderr
