"""The operator, run as `vtx operator` against the local cluster with the real jobrunner image:
a VideoTranscode becomes probed, planned, transcoded and published."""

from __future__ import annotations

import collections
import json
import math
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import media
from tests.integration.test_core import fetch_one
from tests.integration.test_jobrunner import Video, duration_of, upload_video
from tests.services import PROBE_LINE, Process, free_port, started
from tests.services import operator_process as operator_process_for
from tests.stack import apply, get, job_namespace, kubectl, wait_until
from tests.verify import assert_complete, assert_verified
from vtx.core import bus, events, videos
from vtx.core import images as img
from vtx.core.db import Cursor, Database
from vtx.core.hls import parse_media_playlist
from vtx.core.ipfs import IpfsClient
from vtx.core.media import HLS_PLAYLIST, segment_count
from vtx.core.objects import ObjectStore
from vtx.core.outbox import OutboxRelay, write_event
from vtx.core.resource import (
    RenditionSpec,
    SourceRef,
    VideoTranscodeSpec,
    build_resource,
    video_id_from_name,
)
from vtx.operator.jobs import job_name

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    with job_namespace("vtx-test-operator") as name:
        yield name


@pytest.fixture(scope="module")
def operator_process(tmp_path_factory: pytest.TempPathFactory, ns: str) -> Iterator[Process]:
    process = operator_process_for(tmp_path_factory.mktemp("operator") / "operator.log", ns)
    with started(process):
        yield process


@pytest.fixture
def operator(operator_process: Process) -> Path:
    """The running operator's log (restarted first if a test left it stopped)."""
    if not operator_process.running:
        operator_process.start()
    return operator_process.log


def submit(video: Video, ns: str, **options: Any) -> str:
    spec = VideoTranscodeSpec(
        video_id=video.id,
        source=SourceRef(key=video.key, size=video.path.stat().st_size),
        **options,
    )
    obj = build_resource(spec, ns)
    apply(obj)
    name: str = obj["metadata"]["name"]
    return name


def wait_for_phase(
    ns: str, name: str, phases: set[str], log: Path, timeout: float
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj = get("videotranscode", name, ns)
        return obj if obj.get("status", {}).get("phase") in phases else None

    try:
        return wait_until(f"{name} to reach {sorted(phases)}", reached, timeout=timeout, every=1)
    except TimeoutError as exc:
        status = json.dumps(get("videotranscode", name, ns).get("status"), indent=1)[:3000]
        raise TimeoutError(
            f"{exc}\nstatus: {status}\noperator log:\n{log.read_text()[-3000:]}"
        ) from None


def test_a_1080p_upload_becomes_ready_with_three_renditions(
    ns: str, operator: Path, store: ObjectStore, ipfs: IpfsClient, db: Database,
    settings: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    clip = media.make_clip(tmp_path_factory.mktemp("media") / "op-1080p.mp4", seconds=8)
    video = upload_video(store, db, clip)
    with StatusTap(settings, video.id) as tap:
        name = submit(video, ns)
        obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator, timeout=600)
        # The operator announces the video's own phases; the jobrunners their renditions'.
        phases = tap.wait_for(lambda e: e.rendition is None and e.phase == "Ready", 30)
    # With a slot free under the cap, the Jobs come in the step that planned them: no Queued.
    assert [p for p in phases if p in ("Queued", "Transcoding", "Ready")] == [
        "Transcoding", "Ready",
    ]  # fmt: skip
    assert {e.rendition for e in tap.events if e.rendition} == {"480p", "720p", "1080p"}
    assert any(e.phase == "encoding" and 0 < e.progress < 100 for e in tap.events)
    status = obj["status"]
    assert status["phase"] == "Ready", status
    assert status["progress"] == 100
    assert status["renditionsReady"] == "3/3"
    assert sorted(status["renditions"]) == ["1080p", "480p", "720p"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {
        "Probed": "True",
        "JobsCreated": "True",
        "Degraded": "False",
        "Ready": "True",
    }
    row = kubectl("get", "vt", name, "-n", ns, "--no-headers").split()
    assert row[1:4] == ["Ready", "100", "3/3"]
    # The spec leaves it open, so the renditions share one Job (one decode), and the status says
    # why: one schedulable node; or, on two (make up NODES=2), no room, as the test's operator
    # has a cap of 2 running Jobs for 3 renditions.
    grouping = status["grouping"]
    nodes = kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").split()
    if len(nodes) == 1:
        assert (grouping["grouped"], grouping["reason"]) == (True, "OneNode"), grouping
        assert grouping["message"].startswith("1 schedulable node: "), grouping
    else:
        assert (grouping["grouped"], grouping["reason"]) == (True, "NoRoom"), grouping
        assert " free slots and " in grouping["message"], grouping
    assert len({status["renditions"][r]["job"] for r in ("480p", "720p", "1080p")}) == 1

    # The master playlist plays from the IPFS gateway by the root CID...
    gateway = f"{settings.ipfs_gateway_url}/ipfs/{status['outputs']['cid']}/master.m3u8"
    report = media.probe(gateway)
    heights = sorted(int(s["height"]) for s in report["streams"] if s.get("codec_type") == "video")  # type: ignore[attr-defined]
    assert heights == [480, 720, 1080]
    # ...and from S3, as a local copy of exactly what the bucket holds.
    master = status["outputs"]["master"]
    local = tmp_path / "s3"
    local.mkdir()
    (local / "master.m3u8").write_bytes(store.get_bytes(master))
    for rendition in ("480p", "720p", "1080p"):
        folder = local / rendition / "hls"
        folder.mkdir(parents=True)
        prefix = f"videos/{video.id}/{rendition}/hls"
        text = store.get_bytes(f"{prefix}/index.m3u8").decode()
        (folder / "index.m3u8").write_text(text)
        playlist = parse_media_playlist(text)
        for uri in [s.uri for s in playlist.segments] + [playlist.init_uri or ""]:
            if uri:
                (folder / uri).write_bytes(store.get_bytes(f"{prefix}/{uri}"))
    local_report = media.probe(str(local / "master.m3u8"))
    assert abs(float(local_report["format"]["duration"]) - 8) <= 0.1  # type: ignore[index]

    # The poster, thumbnail and storyboard: made in the 480p rendition's run, listed there,
    # in S3 and in the IPFS root, the same bytes in both.
    images = status["renditions"]["480p"]["outputs"]["images"]
    assert images == {fmt: img.key(video.id, fmt) for fmt in img.FILES}
    assert "images" not in status["renditions"]["1080p"]["outputs"]
    root = status["outputs"]["cid"]
    for fmt in img.FILES:
        assert ipfs.cat(f"{root}/images/{img.FILES[fmt]}") == store.get_bytes(images[fmt])
    sizes = {}
    for fmt in img.JPEGS:
        report = media.probe(store.presign_get(images[fmt], expires_s=300, public=False))
        sizes[fmt] = [(s["width"], s["height"]) for s in report["streams"]]  # type: ignore[attr-defined]
    assert sizes == {
        "poster": [(1280, 720)], "thumbnail": [(320, 180)], "storyboard": [(4 * 160, 90)],
    }, "an 8 s source: 4 tiles of 2 s in one row"  # fmt: skip
    cues = img.parse_storyboard_vtt(store.get_bytes(images["storyboard_vtt"]).decode())
    assert [(c.start, c.xywh[0]) for c in cues] == [(0, 0), (2, 160), (4, 320), (6, 480)]
    assert cues[-1].end == pytest.approx(8, abs=0.1)

    def upload_status(cur: Cursor) -> Any:
        cur.execute("SELECT upload_status, ipfs_cid FROM videos WHERE id = %s", (video.id,))
        return cur.fetchone()

    state, _ = db.transaction(upload_status)
    assert state == "completed"

    def progress_row(cur: Cursor) -> Any:
        cur.execute("SELECT phase, progress, renditions, outputs FROM videos WHERE id = %s",
                    (video.id,))  # fmt: skip
        return cur.fetchone()

    phase, progress, renditions, outputs = db.transaction(progress_row)
    assert (phase, progress) == ("Ready", 100), "the row says what the resource says"
    assert {n: r["phase"] for n, r in renditions.items()} == dict.fromkeys(
        ("480p", "720p", "1080p"), "Succeeded"
    )
    assert renditions["720p"]["height"] == 720
    assert outputs == status["outputs"]
    assert_complete(video.id)


SHAPES = {
    "720p source: no upscale": (dict(width=1280, height=720), ["480p:854x480", "720p:1280x720"]),
    "phone video stays vertical": (
        dict(width=1920, height=1080, rotate=90),
        ["480p:480x854", "720p:720x1280", "1080p:1080x1920"],
    ),
    "audio only": (None, ["audio:0x0"]),
}


class StatusTap:
    """Reads video-status-updates from now on (as an API replica does) for one video."""

    def __init__(self, settings: Any, video_id: str) -> None:
        self.settings = settings
        self.video_id = video_id
        self.events: list[events.StatusUpdate] = []

    def __enter__(self) -> StatusTap:
        import pulsar

        self.client = bus.pulsar_client(self.settings)
        self.reader = self.client.create_reader(
            bus.topic(self.settings, events.STATUS_UPDATES), pulsar.MessageId.latest
        )
        return self

    def __exit__(self, *_: object) -> None:
        self.reader.close()
        self.client.close()

    def drain(self) -> None:
        import pulsar

        while True:
            try:
                msg = self.reader.read_next(timeout_millis=200)
            except pulsar.Timeout:
                return
            event = events.decode(msg.data())
            if isinstance(event, events.StatusUpdate) and event.video_id == self.video_id:
                self.events.append(event)

    def wait_for(self, done: Any, timeout: float) -> list[str]:
        """Read until an event satisfies ``done``; the video-level phases seen, in order."""

        def seen() -> bool:
            self.drain()
            return any(done(e) for e in self.events)

        wait_until("the status event", seen, timeout=timeout)
        return [e.phase for e in self.events if e.rendition is None]


@pytest.mark.parametrize("case", list(SHAPES), ids=list(SHAPES))
def test_the_plan_follows_the_source(
    case: str, ns: str, operator: Path, store: ObjectStore, db: Database, settings: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    shape, expected = SHAPES[case]
    folder = tmp_path_factory.mktemp("media")
    if shape is None:
        clip = media.make_audio_only(folder / "audio.m4a", seconds=6)
    else:
        clip = media.make_clip(folder / "clip.mp4", seconds=6, **shape)  # type: ignore[arg-type]
    video = upload_video(
        store, db, clip, content_type="audio/mp4" if shape is None else "video/mp4"
    )
    name = submit(video, ns)
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator, timeout=600)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    gateway = f"{settings.ipfs_gateway_url}/ipfs/{obj['status']['outputs']['cid']}"
    got = []
    for rendition in sorted(obj["status"]["renditions"]):
        report = media.probe(f"{gateway}/{rendition}/hls/index.m3u8")
        video_streams = [s for s in report["streams"] if s["codec_type"] == "video"]  # type: ignore[attr-defined]
        size = (
            f"{video_streams[0]['width']}x{video_streams[0]['height']}" if video_streams else "0x0"
        )
        got.append(f"{rendition}:{size}")
    assert sorted(got) == sorted(expected)
    media.probe(f"{gateway}/master.m3u8")
    # Images for a picture, none for sound alone (the plan says which rendition makes them).
    listed = [k for k, _ in store.iter_sizes(f"videos/{video.id}/images/")]
    carriers = [r["name"] for r in obj["status"]["plan"] if r.get("images")]
    if shape is None:
        assert (listed, carriers) == ([], [])
    else:
        assert (len(listed), carriers) == (4, [expected[0].split(":")[0]])
    assert_complete(video.id)


def test_an_interlaced_broadcast_recording_comes_out_progressive(
    ns: str, operator: Path, store: ObjectStore, db: Database, tmp_path: Path
) -> None:
    clip = media.make_interlaced(tmp_path / "broadcast.ts", seconds=4)
    combed = media.field_detection(str(clip))
    assert combed["interlaced"] > 0.9 * sum(combed.values()), f"the source combs: {combed}"
    video = upload_video(store, db, clip, content_type="video/mp2t")
    name = submit(video, ns, renditions=(RenditionSpec("1080p"),))
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator, timeout=600)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    assert obj["status"]["source"]["fieldOrder"] == "tt"
    mp4 = obj["status"]["renditions"]["1080p"]["outputs"]["mp4"]
    frames = media.field_detection(store.presign_get(mp4, expires_s=600, public=False))
    total = sum(frames.values())
    assert total >= 95, f"the 1080p output has its 4 s of frames at 25 fps: {frames}"
    assert frames["interlaced"] <= 0.02 * total, f"no combing left: {frames}"
    assert frames["progressive"] >= 0.9 * total, frames
    assert_complete(video.id)


HOSTILE = {
    "a text file named .mp4": (
        media.make_text_file,
        "Invalid data found",
        "This file is a text file, not a video.",
    ),
    "a playlist disguised as .mp4": (
        media.make_disguised_playlist,
        "not a readable video",
        "This file is an HLS playlist, not a video. Upload the video file itself.",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_a_hostile_source_fails_as_invalid_without_jobs(
    case: str, ns: str, operator: Path, store: ObjectStore, db: Database, tmp_path: Path
) -> None:
    make, words, said = HOSTILE[case]
    video = upload_video(store, db, make(tmp_path / "upload.mp4"))
    name = submit(video, ns)
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator, timeout=120)
    assert obj["status"]["phase"] == "Failed"
    probed = next(c for c in obj["status"]["conditions"] if c["type"] == "Probed")
    assert probed["status"] == "False"
    assert probed["reason"] == "InvalidSource"
    assert words in probed["message"]
    jobs = kubectl("get", "jobs", "-n", ns, "-l", f"vtx.dev/video-id={video.id}", "-o", "name")
    assert jobs.strip() == "", "no Job (so no retry) for a source that is not media"

    def upload_status(cur: Cursor) -> Any:
        cur.execute(
            "SELECT upload_status, failure_reason, failure_detail, phase FROM videos WHERE id = %s",
            (video.id,),
        )
        return cur.fetchone()

    state, reason, detail, phase = db.transaction(upload_status)
    assert state == "failed"
    assert reason == said, "the reason in words, for whoever uploaded it"
    assert detail.startswith("InvalidSource")
    assert words in detail
    assert phase == "Failed"
    assert_verified(video.id)


def start_long_transcode(
    ns: str, store: ObjectStore, db: Database, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Video, str]:
    """A 60 s 480p upload and its resource: long enough to act on while it encodes."""
    path = tmp_path_factory.mktemp("media") / "long.mp4"
    video = upload_video(store, db, media.make_clip(path, seconds=60, width=854, height=480))
    return video, submit(video, ns)


def wait_for_progress(ns: str, name: str, rendition: str, percent: int) -> None:
    def reached() -> bool:
        renditions = get("videotranscode", name, ns).get("status", {}).get("renditions") or {}
        return int((renditions.get(rendition) or {}).get("progress") or 0) >= percent

    wait_until(f"{rendition} of {name} to pass {percent}%", reached, timeout=180)


def running_transcode_pods(ns: str) -> int:
    out = kubectl(
        "get", "pods", "-n", ns, "-l", "vtx.dev/job-kind=transcode",
        "--field-selector=status.phase!=Succeeded,status.phase!=Failed", "-o", "name",
    )  # fmt: skip
    return len(out.split())


def test_the_cap_on_running_jobs_holds_and_every_resource_finishes(
    ns: str, operator: Path, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    clip = media.make_clip(
        tmp_path_factory.mktemp("media") / "cap.mp4", seconds=4, width=1280, height=720
    )
    videos = [upload_video(store, db, clip) for _ in range(5)]
    names = [submit(video, ns) for video in videos]  # created together, after every upload
    peak = 0
    queued: set[str] = set()
    unprobed: set[str] = set()  # seen waiting for a slot before their probe

    def all_done() -> bool:
        nonlocal peak
        peak = max(peak, running_transcode_pods(ns))
        statuses = [get("videotranscode", n, ns).get("status", {}) for n in names]
        phases = [st.get("phase") for st in statuses]
        queued.update(n for n, p in zip(names, phases, strict=True) if p == "Queued")
        unprobed.update(
            n
            for n, st in zip(names, statuses, strict=True)
            if st.get("phase") == "Queued" and not st.get("plan")
            and any(c.get("reason") == "WaitingForSlot" for c in st.get("conditions") or [])
        )  # fmt: skip
        return all(p in ("Ready", "Failed") for p in phases)

    wait_until("5 resources (a Job each, on one node) to finish under a cap of 2", all_done,
               timeout=900, every=0.5)  # fmt: skip
    assert peak == 2, f"the cap is 2 running transcode pods; the most seen was {peak}"
    # Two resources' Jobs fill the cap: the others are seen waiting in Queued, not yet probed.
    assert len(queued) >= 3, f"resources seen Queued: {sorted(queued)}"
    assert len(unprobed) >= 2, f"resources seen waiting unprobed: {sorted(unprobed)}"
    ids = [video_id_from_name(n) for n in names]
    probes = collections.Counter(v for v, _ in PROBE_LINE.findall(operator.read_text()))
    assert {v: probes[v] for v in ids} == dict.fromkeys(ids, 1), "one probe per source"
    for n in names:
        assert get("videotranscode", n, ns)["status"]["phase"] == "Ready"
    assert_complete(*ids)


def test_suspend_stops_the_jobs_and_resume_finishes(
    ns: str, operator: Path, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    video, name = start_long_transcode(ns, store, db, tmp_path_factory)
    wait_for_phase(ns, name, {"Transcoding"}, operator, timeout=120)
    kubectl("patch", "vt", name, "-n", ns, "--type=merge", "-p", '{"spec": {"suspend": true}}')
    wait_for_phase(ns, name, {"Suspended"}, operator, timeout=60)
    selector = f"vtx.dev/video-id={video.id},vtx.dev/job-kind=transcode"

    def no_pods() -> bool:
        pods = kubectl(
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            selector,
            "--field-selector=status.phase=Running",
            "-o",
            "name",
        )
        return pods.strip() == ""

    wait_until("the transcode pods to stop", no_pods, timeout=90)
    suspended = kubectl(
        "get", "jobs", "-n", ns, "-l", selector, "-o", "jsonpath={.items[*].spec.suspend}"
    )
    assert suspended.split() == ["true"]
    kubectl("patch", "vt", name, "-n", ns, "--type=merge", "-p", '{"spec": {"suspend": false}}')
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator, timeout=600)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    assert_complete(video.id)


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_deletion_policy_decides_the_outputs(
    policy: str, ns: str, operator: Path, store: ObjectStore, ipfs: IpfsClient, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    # A clip of its own: outputs that an earlier video shares keep their pin (the next test).
    tone = unique_tone()
    clip = media.make_clip(
        tmp_path_factory.mktemp("media") / f"del-{tone}.mp4", seconds=4, width=854, height=480,
        tone=tone,
    )  # fmt: skip
    video = upload_video(store, db, clip)
    name = submit(video, ns, deletion_policy=policy)
    obj = wait_for_phase(ns, name, {"Ready"}, operator, timeout=300)
    cid = obj["status"]["outputs"]["cid"]
    assert ipfs.is_pinned(cid)
    kubectl("delete", "vt", name, "-n", ns, "--wait=true", "--timeout=120s")
    outputs = [k for k in store.iter_keys(f"videos/{video.id}/") if "/source/" not in k]
    status_row = fetch_one(db, "SELECT upload_status FROM videos WHERE id = %s", video.id)
    if policy == "Delete":
        assert outputs == [], "the renditions and the master playlist are removed"
        assert not ipfs.is_pinned(cid)
        assert status_row == ("deleted",), "lists no longer offer the removed outputs"
    else:
        assert f"videos/{video.id}/master.m3u8" in outputs
        assert ipfs.is_pinned(cid)
        assert status_row == ("completed",), "the retained outputs still play"
    assert store.head(video.key) is not None, "the uploaded original stays either way"
    if policy == "Retain":
        assert_complete(video.id)
    else:
        assert_verified(video.id)


def unique_tone() -> int:
    return 300 + uuid.uuid4().int % 3000


def test_outputs_shared_by_two_videos_stay_pinned_until_both_are_deleted(
    ns: str, operator: Path, store: ObjectStore, ipfs: IpfsClient, db: Database, settings: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    # Audio: AAC encodes bit for bit the same each time (x264 under a bitrate cap need not).
    tone = unique_tone()
    clip = media.make_audio_only(
        tmp_path_factory.mktemp("media") / f"twice-{tone}.m4a", seconds=4, tone=tone
    )
    videos = [upload_video(store, db, clip, content_type="audio/mp4") for _ in range(2)]
    names = [submit(v, ns, deletion_policy="Delete") for v in videos]
    cids = [
        wait_for_phase(ns, n, {"Ready"}, operator, timeout=300)["status"]["outputs"]["cid"]
        for n in names
    ]
    assert cids[0] == cids[1], "the same file uploaded twice gives the same outputs, one root"
    kubectl("delete", "vt", names[0], "-n", ns, "--wait=true", "--timeout=120s")
    assert list(store.iter_keys(f"videos/{videos[0].id}/master.m3u8")) == []
    assert ipfs.is_pinned(cids[1]), "the second video's outputs lost their pin"
    report = media.probe(f"{settings.ipfs_gateway_url}/ipfs/{cids[1]}/master.m3u8")
    assert any(s.get("codec_type") == "audio" for s in report["streams"])  # type: ignore[attr-defined]
    kubectl("delete", "vt", names[1], "-n", ns, "--wait=true", "--timeout=120s")
    assert not ipfs.is_pinned(cids[1]), "no video has these outputs any more"
    assert_verified(*(v.id for v in videos))


def test_deleting_a_resource_stops_its_jobs(
    ns: str, operator: Path, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    video, name = start_long_transcode(ns, store, db, tmp_path_factory)
    wait_for_phase(ns, name, {"Transcoding"}, operator, timeout=120)
    kubectl("delete", "vt", name, "-n", ns, "--wait=true", "--timeout=120s")
    selector = f"vtx.dev/video-id={video.id}"
    wait_until(
        "the deleted resource's Jobs and pods to go",
        lambda: kubectl("get", "jobs,pods", "-n", ns, "-l", selector, "-o", "name").strip() == "",
        timeout=120,
    )
    assert_verified(video.id)


def test_an_upload_event_without_a_resource_gets_one_and_is_transcoded(
    ns: str, operator: Path, store: ObjectStore, db: Database, settings: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    clip = media.make_clip(
        tmp_path_factory.mktemp("media") / "intake.mp4", seconds=4, width=854, height=480
    )
    video = upload_video(store, db, clip)
    event = events.TranscodeRequested(
        video_id=video.id, bucket=settings.s3_bucket, key=video.key, size=clip.stat().st_size,
        content_type="video/mp4", namespace=ns,
    )  # fmt: skip
    db.transaction(lambda cur: write_event(cur, events.TRANSCODE_QUEUE, event))
    client = bus.pulsar_client(settings)
    try:
        relay = OutboxRelay(db, client, settings)
        for _ in range(100):  # a batch of 100 each: the outbox holds far fewer
            if not relay.relay_once():
                break
        relay.close()
    finally:
        client.close()
    name = f"v-{video.id}"
    wait_until(
        "the operator to create the resource from the queue event",
        lambda: kubectl("get", "vt", name, "-n", ns, "--ignore-not-found", "-o", "name").strip(),
        timeout=60,
    )
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator, timeout=300)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    assert_complete(video.id)


def operator_metrics(port: int = 19108) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
    return text


def stalls_counted(metrics: str) -> float:
    line = next(m for m in metrics.splitlines() if m.startswith("vtx_stalled_pods_total "))
    return float(line.split()[1])


def freeze_ffmpeg(video_id: str) -> None:
    """Freeze the video's FFmpeg (it runs as a process of this machine): its pod is alive and
    mid-encode, and makes no progress until something kills it."""
    frozen = subprocess.run(["pkill", "-STOP", "-f", f"ffmpeg .*{video_id}"], check=False)
    assert frozen.returncode == 0, "found the pod's FFmpeg to freeze"


HLS_DIR = re.compile(r"hls_segment_filename=([^:\]|]+)/seg_")


def freeze_ffmpeg_after(video_id: str, segments: int, timeout: float) -> int:
    """Freeze the video's one FFmpeg as soon as it has finished ``segments`` segments (listed
    in the media playlist it writes, read through /proc/<pid>/root), not when the jobrunner has
    stored them: the encoder runs a segment or two ahead of the uploads. Returns how many
    segments FFmpeg had finished when it stopped (one more if it ended one meanwhile)."""

    def encoder() -> tuple[int, Path] | None:
        found = subprocess.run(["pgrep", "-f", f"ffmpeg .*{video_id}"], capture_output=True,
                               text=True, check=False).stdout.split()  # fmt: skip
        if len(found) != 1:
            return None
        pid = int(found[0])
        folder = HLS_DIR.search(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
        assert folder, "the FFmpeg command names its HLS segment files"
        rendition = (Path(f"/proc/{pid}/root") / folder[1].lstrip("/")).parent
        return pid, rendition / HLS_PLAYLIST

    pid, playlist = wait_until(f"the FFmpeg of {video_id}", encoder, timeout=timeout, every=0.05)

    def written() -> int:
        try:
            return len(parse_media_playlist(playlist.read_text()).segments)
        except FileNotFoundError:
            return 0

    wait_until(f"{segments} segments written by FFmpeg", lambda: written() >= segments,
               timeout=timeout, every=0.02)  # fmt: skip
    subprocess.run(["kill", "-STOP", str(pid)], check=True)
    return written()


def test_a_stalled_encode_gets_its_pod_replaced(
    ns: str, operator: Path, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    video, name = start_long_transcode(ns, store, db, tmp_path_factory)

    wait_for_progress(ns, name, "480p", 5)
    stalls_before = stalls_counted(operator_metrics())
    freeze_ffmpeg(video.id)
    wait_until(
        "a Stalled warning on the resource",
        lambda: (
            "Stalled"
            in kubectl(
                "get",
                "events",
                "-n",
                ns,
                f"--field-selector=involvedObject.name={name}",
                "-o",
                "jsonpath={.items[*].reason}",
            )
        ),
        timeout=120,
    )
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator, timeout=600)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    assert obj["status"]["renditions"]["480p"]["attempts"] >= 2

    metrics = operator_metrics()
    assert stalls_counted(metrics) == stalls_before + 1, "this stall, and only it, was counted"
    assert 'vtx_resources{phase="Ready"}' in metrics
    assert "vtx_time_to_ready_seconds_count" in metrics
    assert_complete(video.id)


def test_an_operator_killed_mid_transcode_makes_no_duplicate_jobs(
    ns: str, operator_process: Process, operator: Path, store: ObjectStore,
    db: Database, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    video, name = start_long_transcode(ns, store, db, tmp_path_factory)
    wait_for_phase(ns, name, {"Transcoding"}, operator, timeout=120)
    operator_process.kill()
    operator_process.start()
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator, timeout=600)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    jobs = kubectl("get", "jobs", "-n", ns, "-l", f"vtx.dev/video-id={video.id}", "-o", "name")
    expected = [job_name(name, "transcode", ["480p"]), job_name(name, "ingest")]
    assert sorted(jobs.split()) == sorted(f"job.batch/{j}" for j in expected)
    assert_complete(video.id)


def test_a_jobrunner_pod_deleted_mid_encode_is_retried_to_ready(
    ns: str, operator: Path, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    video, name = start_long_transcode(ns, store, db, tmp_path_factory)

    wait_for_progress(ns, name, "480p", 10)
    # A 480p encode is quick: frozen, the pod is surely still encoding when it is deleted.
    freeze_ffmpeg(video.id)
    kubectl(
        "delete",
        "pod",
        "-n",
        ns,
        "-l",
        f"vtx.dev/video-id={video.id},vtx.dev/job-kind=transcode",
        "--wait=false",
    )
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator, timeout=600)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    assert obj["status"]["renditions"]["480p"]["attempts"] >= 2

    def counts(cur: Cursor) -> Any:
        cur.execute(
            "SELECT t.format, t.storage_type, count(DISTINCT t.id), count(s.id),"
            " count(DISTINCT s.sequence) FROM transcodes t LEFT JOIN transcode_segments s"
            " ON s.transcode_id = t.id WHERE t.video_id = %s AND t.resolution = '480p'"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            (video.id,),
        )
        return cur.fetchall()

    rows = db.transaction(counts)
    # One row per output and storage, the images' (480p makes them) among them.
    assert [r[:3] for r in rows] == [
        (fmt, storage, 1)
        for fmt in ("hls", "mp4", "poster", "storyboard", "storyboard_vtt", "thumbnail")
        for storage in ("ipfs", "s3")
    ]
    for fmt, _, _, segments, sequences in rows:
        assert segments == sequences, f"{fmt}: one row per segment"
        assert segments == (segment_count(60) if fmt == "hls" else 0)
    assert_complete(video.id)


def pod_log(ns: str, job: str) -> str:
    """The log of the pod of ``job`` that succeeded (a video is Ready on its recorded outputs,
    which its pod writes just before it exits)."""

    def succeeded() -> list[str] | None:
        pods = kubectl("get", "pods", "-n", ns, "-l", f"job-name={job}",
                       "--field-selector=status.phase=Succeeded", "-o", "name").split()  # fmt: skip
        return pods or None

    pods = wait_until(f"a pod of {job} to succeed", succeeded, timeout=60)
    assert len(pods) == 1, f"one pod of {job} succeeded: {pods}"
    return kubectl("logs", "-n", ns, pods[0])


CPU_USED = re.compile(
    r"this attempt used ([0-9.]+)s of CPU \((whole|from segment \d+)\), ([0-9.]+)s of it FFmpeg"
)
RESUMED_AT = re.compile(r"resuming at segment (\d+) \(([0-9.]+)s of ([0-9.]+)s\)")


def test_a_pod_killed_at_60_percent_resumes_at_its_last_segment_for_under_half_the_cpu(
    ns: str, operator: Path, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """A 720p Job (the video's images, made by its 480p Job, are not asked for: that Job
    decodes the whole source again for them, see docs/faults.md). 90 s of it: what any
    attempt pays whatever the length (the pod's start, the probe, the imports) is then a
    small part of a whole encode, as for the videos a resume is for."""
    folder = tmp_path_factory.mktemp("media")
    seconds = 90

    def transcode(tone: int) -> tuple[Video, str, str]:
        clip = media.make_clip(folder / f"{tone}.mp4", seconds=seconds, width=1280,
                               height=720, tone=tone)  # fmt: skip
        video = upload_video(store, db, clip)
        name = submit(video, ns, renditions=[RenditionSpec("720p")])
        return video, name, job_name(name, "transcode", ["720p"])

    video, name, job = transcode(587)
    total = segment_count(seconds)
    target = math.ceil(0.6 * total)

    finished = freeze_ffmpeg_after(video.id, target, timeout=180)

    def stored() -> bool:
        count, _ = db.transaction(lambda cur: videos.segments_recorded(cur, video.id, ["720p"]))
        return count >= finished

    # The pod is killed once what its FFmpeg finished is stored: the retry starts there.
    wait_until(f"the {finished} segments FFmpeg wrote stored", stored, timeout=60, every=0.1)
    kubectl("delete", "pod", "-n", ns, "-l", f"job-name={job}", "--wait=false")
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator, timeout=600)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    assert obj["status"]["renditions"]["720p"]["attempts"] == 2
    retried = pod_log(ns, job)
    resumed = RESUMED_AT.search(retried)
    assert resumed, f"the retry resumed:\n{retried[-2000:]}"
    at, start_s, duration_s = int(resumed[1]), float(resumed[2]), float(resumed[3])
    assert 0.55 <= start_s / duration_s <= 0.75, f"resumed at {start_s}s of {duration_s}s"
    cpu = CPU_USED.search(retried)
    assert cpu, retried[-2000:]
    assert cpu[2] == f"from segment {at}"
    # The MP4, copied out of the segments of both attempts: every frame of the source.
    mp4 = media.probe(store.presign_get(f"videos/{video.id}/720p/video.mp4", expires_s=600,
                                        public=False))  # fmt: skip
    assert abs(duration_of(mp4) - seconds) <= 0.1, mp4.get("format")
    assert_complete(video.id)

    # The same picture with another tone (the same source would share the first's outputs),
    # encoded whole by one pod: the cost the resume is measured by.
    again, again_name, again_job = transcode(659)
    obj = wait_for_phase(ns, again_name, {"Ready", "Failed"}, operator, timeout=600)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    whole = CPU_USED.search(pod_log(ns, again_job))
    assert whole
    assert whole[2] == "whole"
    ratio = float(cpu[1]) / float(whole[1])
    print(f"resumed at {start_s:.0f}s of {duration_s:.0f}s: {cpu[1]}s of CPU ({cpu[3]}s "
          f"FFmpeg's) against {whole[1]}s ({whole[3]}s) for the whole encode: "
          f"{ratio:.2f}x")  # fmt: skip
    assert ratio <= 0.5, f"the retry cost {ratio:.2f}x a whole encode's CPU"
    assert_complete(again.id)


def test_a_failed_ingest_degrades_the_video_but_does_not_fail_it(
    ns: str, operator: Path, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    clip = media.make_clip(
        tmp_path_factory.mktemp("media") / "ingest.mp4", seconds=4, width=854, height=480
    )
    video = upload_video(store, db, clip)
    # The announced size is not the stored one: the ingest refuses to record that original.
    spec = VideoTranscodeSpec(
        video_id=video.id, source=SourceRef(key=video.key, size=clip.stat().st_size + 1)
    )
    obj = build_resource(spec, ns)
    apply(obj)
    name = obj["metadata"]["name"]

    def ingest_ended() -> dict[str, Any] | None:
        got = get("videotranscode", name, ns)
        ended = (got.get("status", {}).get("ingest") or {}).get("phase") in ("Succeeded", "Failed")
        return got if ended and got["status"].get("phase") in ("Ready", "Failed") else None

    try:
        obj = wait_until(f"{name} to finish with its ingest", ingest_ended, timeout=600)
    except TimeoutError as exc:
        status = json.dumps(get("videotranscode", name, ns).get("status"), indent=1)[:3000]
        raise TimeoutError(f"{exc}\nstatus: {status}") from None
    status = obj["status"]
    assert status["phase"] == "Ready", "the renditions are all there"
    assert status["ingest"]["phase"] == "Failed"
    assert "announced" in status["ingest"]["message"], status["ingest"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "IngestFailed")
    assert "not pinned to IPFS" in degraded["message"]
    ingest = get("job", job_name(name, "ingest"), ns)
    assert ingest["status"].get("failed") == 1, "invalid input is not retried"

    def source_cid(cur: Cursor) -> Any:
        cur.execute("SELECT ipfs_cid, checksum FROM videos WHERE id = %s", (video.id,))
        return cur.fetchone()

    assert db.transaction(source_cid) == (None, None), "nothing recorded for a wrong original"
    assert_complete(video.id)


def ready_count(metrics_port: int) -> float:
    """The Ready resources an operator has seen (its vtx_resources gauge)."""
    text = operator_metrics(metrics_port)
    line = next(m for m in text.splitlines() if m.startswith('vtx_resources{phase="Ready"}'))
    return float(line.split()[1])


def test_two_operators_one_acts_and_the_other_takes_over(
    ns: str, operator_process: Process, operator: Path, store: ObjectStore, db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    second_metrics = free_port()
    second = operator_process_for(
        tmp_path_factory.mktemp("operator-b") / "operator.log", ns,
        health_port=free_port(), metrics_port=second_metrics,
    )  # fmt: skip
    metrics_port = {id(operator_process): 19108, id(second): second_metrics}
    second.start()
    try:
        pair = [operator_process, second]

        def priority(p: Process) -> int | None:
            found = re.findall(r"this replica's priority is (\d+)", p.log.read_text())
            return int(found[-1]) if found else None

        wait_until("both operators to say their peering priority",
                   lambda: all(priority(p) for p in pair), timeout=60)  # fmt: skip
        active, standby = sorted(pair, key=lambda p: priority(p) or 0, reverse=True)
        if standby is operator_process:
            # It was acting alone: it pauses when it sees the newcomer of higher priority. (A
            # newcomer of lower priority starts paused, as kopf peering starts every replica.)
            wait_until(
                "the running operator to pause for the newcomer",
                lambda: "Pausing operations" in standby.log.read_text(), timeout=60,
            )  # fmt: skip
        resumed_before = standby.log.read_text().count("Resuming operations")
        ready_before = ready_count(metrics_port[id(standby)])
        clip = media.make_clip(
            tmp_path_factory.mktemp("media") / "peer.mp4", seconds=4, width=854, height=480
        )
        first = upload_video(store, db, clip)
        name = submit(first, ns)
        assert (
            wait_for_phase(ns, name, {"Ready", "Failed"}, active.log, 300)["status"]["phase"]
            == "Ready"
        )
        assert ready_count(metrics_port[id(standby)]) == ready_before, "the standby did nothing"
        # The active one dies: the other resumes once the peer's record expires.
        active.kill()
        wait_until(
            "the standby operator to resume",
            lambda: standby.log.read_text().count("Resuming operations") > resumed_before,
            timeout=120,
        )
        later = upload_video(store, db, clip)
        name = submit(later, ns)
        obj = wait_for_phase(ns, name, {"Ready", "Failed"}, standby.log, 300)
        assert obj["status"]["phase"] == "Ready", obj["status"]
        for video in (first, later):
            jobs = kubectl("get", "jobs", "-n", ns, "-l", f"vtx.dev/video-id={video.id}",
                           "-o", "name").split()  # fmt: skip
            assert len(jobs) == 2, f"one transcode Job and one ingest Job: {jobs}"
        assert_complete(first.id, later.id)
    finally:
        second.stop()
