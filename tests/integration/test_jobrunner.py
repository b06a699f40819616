"""The jobrunner in real Job pods: one encode to MP4 and HLS, published to S3 and IPFS as it
goes, with rows, status events and the resource's status; retries, outages and hostile input."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import media
from tests.stack import (
    apply,
    get,
    job_logs,
    job_namespace,
    kubectl,
    restart_missing_parts,
    stop_part,
    wait_for_job,
    wait_until,
)
from vtx.core import bus, events, videos
from vtx.core import images as img
from vtx.core.db import Cursor, Database
from vtx.core.ipfs import IpfsClient
from vtx.core.ladder import Rendition, SourceFacts, plan_ladder, sound_apart
from vtx.core.media import EXIT_INVALID_INPUT, segment_start
from vtx.core.objects import ObjectStore
from vtx.core.ranges import split
from vtx.core.resource import RenditionSpec, SourceRef, VideoTranscodeSpec, build_resource
from vtx.core.settings import Settings
from vtx.core.verify import record_problems
from vtx.jobrunner.ffmpeg import ImageOutputs, build_images_command
from vtx.operator.jobs import build_ingest_job, build_transcode_job

pytestmark = pytest.mark.stack

LADDER_1080 = plan_ladder(
    SourceFacts(duration=10, has_video=True, has_audio=True, width=1920, height=1080, fps=30)
)


@pytest.fixture(scope="module")
def job_ns(settings: Settings) -> Iterator[str]:
    with job_namespace("vtx-test-jobrunner") as ns:
        yield ns


@dataclass
class Video:
    id: str
    key: str
    path: Path
    resource: str = ""
    namespace: str = ""


def upload_video(
    store: ObjectStore, db: Database, path: Path, *, content_type: str = "video/mp4"
) -> Video:
    video_id = str(uuid.uuid4())
    key = f"videos/{video_id}/source/{path.name}"
    store.upload_file(path, key, content_type=content_type)

    def insert(cur: Cursor) -> None:
        cur.execute(
            "INSERT INTO videos (id, file_name, file_path, content_type, file_size, upload_status)"
            " VALUES (%s, %s, %s, %s, %s, 'uploaded')",
            (video_id, path.name, key, content_type, path.stat().st_size),
        )

    db.transaction(insert)
    return Video(video_id, key, path)


def create_resource(video: Video, ns: str, renditions: list[Rendition]) -> None:
    spec = VideoTranscodeSpec(
        video_id=video.id,
        source=SourceRef(bucket="media-videos", key=video.key, size=video.path.stat().st_size),
        renditions=[RenditionSpec(name=r.name) for r in renditions],
    )
    obj = build_resource(spec, ns)
    apply(obj)
    video.resource = obj["metadata"]["name"]
    video.namespace = ns


def run_job(
    video: Video, ns: str, renditions: list[Rendition], settings: Settings, *, duration: float = 10
) -> str:
    job = build_transcode_job(
        resource=video.resource or f"v-{video.id}",
        namespace=ns,
        video_id=video.id,
        source_key=video.key,
        renditions=renditions,
        duration_s=duration,
        settings=settings,
    )
    apply(job)
    name: str = job["metadata"]["name"]
    return name


@dataclass
class StatusListener:
    """Collects the status events of one video from video-status-updates, each with the time
    the jobrunner's producer sent it (its publish timestamp, in seconds): the cadence checked
    is the jobrunner's, not the broker's delivery on a busy machine."""

    settings: Settings
    video_id: str
    received: list[tuple[float, events.StatusUpdate]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._client = bus.pulsar_client(self.settings)
        self._consumer = bus.EventConsumer(
            self._client,
            bus.topic(self.settings, events.STATUS_UPDATES),
            f"test-{uuid.uuid4().hex[:8]}",
            from_earliest=False,
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self._consumer.receive(timeout_ms=500)
            if got is None:
                continue
            event, msg = got
            self._consumer.ack(msg)
            if isinstance(event, events.StatusUpdate) and event.video_id == self.video_id:
                self.received.append((msg.publish_timestamp() / 1000, event))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()
        self._client.close()

    def of(self, rendition: str) -> list[tuple[float, events.StatusUpdate]]:
        return [(t, e) for t, e in self.received if e.rendition == rendition]


def rows(
    db: Database, video_id: str
) -> dict[tuple[str, str, str], tuple[str | None, str | None, int]]:
    """(format, resolution, storage) → (S3 key, CID, segment count) for one video."""

    def query(cur: Cursor) -> list[tuple[Any, ...]]:
        cur.execute(
            "SELECT t.format, t.resolution, t.storage_type, t.file_path, t.file_cid,"
            " (SELECT count(*) FROM transcode_segments s WHERE s.transcode_id = t.id)"
            " FROM transcodes t WHERE t.video_id = %s",
            (video_id,),
        )
        return list(cur.fetchall())

    found = db.transaction(query)
    table = {(r[0], r[1], r[2]): (r[3], r[4], int(r[5])) for r in found}
    assert len(table) == len(found), "one row per video, format, resolution and storage"
    return table


def segment_rows(db: Database, video_id: str, rendition: str) -> list[tuple[int, str, str]]:
    def query(cur: Cursor) -> list[tuple[Any, ...]]:
        cur.execute(
            "SELECT s.sequence, s.file_path, s.file_cid FROM transcode_segments s"
            " JOIN transcodes t ON t.id = s.transcode_id"
            " WHERE t.video_id = %s AND t.resolution = %s AND t.format = 'hls'"
            " AND t.storage_type = 's3' ORDER BY s.sequence",
            (video_id, rendition),
        )
        return list(cur.fetchall())

    return [(int(a), str(b), str(c)) for a, b, c in db.transaction(query)]


def duration_of(report: dict[str, Any]) -> float:
    return float(report["format"]["duration"])


def check_rendition(
    video: Video,
    r: Rendition,
    store: ObjectStore,
    ipfs: IpfsClient,
    db: Database,
    tmp: Path,
    source_duration: float,
    job: str,
) -> None:
    """What a user of the rendition would notice: sizes, codecs, durations, same bytes."""
    prefix = f"videos/{video.id}/{r.name}"
    mp4 = media.probe(store.presign_get(f"{prefix}/video.mp4", expires_s=600, public=False))
    streams = {s["codec_type"]: s for s in mp4["streams"]}  # type: ignore[attr-defined]
    assert (streams["video"]["width"], streams["video"]["height"]) == (r.width, r.height)
    assert streams["video"]["codec_name"] == "h264"
    assert streams["audio"]["codec_name"] == "aac"
    assert abs(duration_of(mp4) - source_duration) <= 0.1

    # The HLS rendition exactly as S3 holds it, played from a local copy of its objects.
    playlist, local = media.local_hls(store, f"{prefix}/hls", tmp / r.name)
    assert playlist.ended, "the final playlist carries ENDLIST"
    hls = media.probe(str(local))
    hls_streams = {s["codec_type"]: s for s in hls["streams"]}  # type: ignore[attr-defined]
    assert (hls_streams["video"]["width"], hls_streams["video"]["height"]) == (r.width, r.height)
    assert abs(duration_of(hls) - source_duration) <= 0.1
    # Fast start: 1 s, 2 s, then 4 s segments, each opening on a keyframe at the planned instant
    # (so at the same instant in every rendition) and holding no other keyframe.
    starts = [segment_start(n) for n in range(len(playlist.segments))]
    frame = 1 / (r.fps or 30) + 0.01
    planned = [b - a for a, b in zip(starts, [*starts[1:], source_duration], strict=True)]
    got = [s.duration for s in playlist.segments]
    assert all(abs(g - p) <= frame for g, p in zip(got, planned, strict=True)), (got, planned)
    keyframes = media.keyframe_times(local)
    assert len(keyframes) == len(starts), (keyframes, starts)
    # From the first frame's time (the playlist's timeline starts after the audio's priming).
    shown = [k - keyframes[0] for k in keyframes]
    assert all(abs(k - t) <= frame for k, t in zip(shown, starts, strict=True)), keyframes

    # Rows: MP4 and HLS, each for S3 and IPFS, once; one segment row per segment.
    table = rows(db, video.id)
    for fmt, key in (("mp4", f"{prefix}/video.mp4"), ("hls", f"{prefix}/hls/index.m3u8")):
        for storage in ("s3", "ipfs"):
            path, cid, segments = table[(fmt, r.name, storage)]
            assert path == key
            assert cid is not None
            assert ipfs.cat(cid) == store.get_bytes(key), f"{key} differs from ipfs cat {cid}"
            assert segments == (len(playlist.segments) if fmt == "hls" else 0)
    seg_rows = segment_rows(db, video.id, r.name)
    assert [s[0] for s in seg_rows] == list(range(len(playlist.segments)))
    for _, key, cid in seg_rows:
        assert ipfs.cat(cid) == store.get_bytes(key), f"{key} differs from ipfs cat {cid}"
    # The evidence the operator goes by: every output recorded by the Job that made it.
    record = db.transaction(lambda cur: videos.rendition_records(cur, video.id))[r.name]
    assert record_problems(record, job=job, rendition=r, ipfs=True) == []


def check_status(
    listener: StatusListener,
    video: Video,
    renditions: list[Rendition],
    logs_of: Callable[[Rendition], str],
) -> None:
    """``logs_of``: the log of the Job that made a rendition (its own account of a late
    report: what held up its progress loop or its sends)."""
    resource = get("videotranscode", video.resource, video.namespace)
    for r in renditions:
        seen = listener.of(r.name)
        assert seen, f"no status event for {r.name}"
        assert seen[-1][1].phase == "done"
        assert seen[-1][1].progress == 100
        progress = [e.progress for _, e in seen]
        assert progress == sorted(progress), "progress never goes backwards"
        encoding = [t for t, e in seen if e.phase == "encoding"]
        gaps = [b - a for a, b in itertools.pairwise(encoding)]
        assert gaps, f"{r.name}: too few encoding events to see a rate"
        if max(gaps) > 2.0:
            held_up = [
                line
                for line in logs_of(r).splitlines()
                if any(
                    mark in line
                    for mark in ("since its last report", "progress loop", "to Pulsar", "not sent")
                )
            ]
            sent = [(t, e.time) for t, e in seen]
            pytest.fail(
                f"{r.name}: an encoding event at least every second: {gaps}; "
                f"(publish time, event time): {sent}; the Job's log: {held_up}"
            )
        assert seen[-1][1].message == "outputs recorded"
    # Job pods write nothing to the cluster: the operator shows their reports in the status.
    assert "status" not in resource, resource.get("status")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media.make_clip(tmp_path_factory.mktemp("media") / "clip-1080p.mp4")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long enough that the encode is still running while a test looks at it."""
    path = tmp_path_factory.mktemp("media") / "clip-60s.mp4"
    return media.make_clip(path, seconds=60, width=854, height=480)


def start_480p_job(
    source: Path, ns: str, settings: Settings, store: ObjectStore, db: Database
) -> tuple[Video, str]:
    video = upload_video(store, db, source)
    return video, run_job(video, ns, [LADDER_1080[0]], settings, duration=60)


def wait_for_segment(store: ObjectStore, video: Video, sequence: int) -> None:
    key = f"videos/{video.id}/480p/hls/seg_{sequence:05d}.m4s"
    wait_until(f"HLS segment {sequence} in S3", lambda: store.head(key), timeout=180, every=0.2)


@pytest.mark.parametrize("grouped", [False, True], ids=["job-per-rendition", "one-grouped-job"])
def test_renditions_are_published_to_s3_and_ipfs_with_rows_and_status(
    grouped: bool,
    job_ns: str,
    clip: Path,
    settings: Settings,
    store: ObjectStore,
    ipfs: IpfsClient,
    db: Database,
    tmp_path: Path,
) -> None:
    video = upload_video(store, db, clip)
    create_resource(video, job_ns, LADDER_1080)
    listener = StatusListener(settings, video.id)
    try:
        groups = [LADDER_1080] if grouped else [[r] for r in LADDER_1080]
        names = [run_job(video, job_ns, group, settings) for group in groups]
        for name in names:
            status = wait_for_job(job_ns, name, timeout=300)
            assert status["status"].get("succeeded") == 1, job_logs(job_ns, name)
        source_duration = duration_of(media.probe(str(clip)))
        for r in LADDER_1080:
            job = names[0] if grouped else names[LADDER_1080.index(r)]
            check_rendition(video, r, store, ipfs, db, tmp_path, source_duration, job)
        wait_until(
            "the last status event of every rendition",
            lambda: all(
                listener.of(r.name) and listener.of(r.name)[-1][1].phase == "done"
                for r in LADDER_1080
            ),
            timeout=30,
        )
        check_status(
            listener,
            video,
            LADDER_1080,
            lambda r: job_logs(job_ns, names[0] if grouped else names[LADDER_1080.index(r)]),
        )
    finally:
        listener.close()


def test_ingest_pins_the_exact_source_and_records_its_checksum(
    job_ns: str, clip: Path, settings: Settings, store: ObjectStore, ipfs: IpfsClient, db: Database
) -> None:
    video = upload_video(store, db, clip)
    job = build_ingest_job(
        resource=f"v-{video.id}", namespace=job_ns, video_id=video.id, source_key=video.key,
        size=clip.stat().st_size, settings=settings,
    )  # fmt: skip
    apply(job)
    status = wait_for_job(job_ns, job["metadata"]["name"], timeout=180)
    assert status["status"].get("succeeded") == 1, job_logs(job_ns, job["metadata"]["name"])

    def query(cur: Cursor) -> tuple[Any, ...] | None:
        cur.execute("SELECT ipfs_cid, checksum FROM videos WHERE id = %s", (video.id,))
        return cur.fetchone()

    row = db.transaction(query)
    assert row is not None
    cid, checksum = row
    assert checksum == "sha256:" + hashlib.sha256(clip.read_bytes()).hexdigest()
    assert ipfs.cat(cid) == clip.read_bytes()
    assert ipfs.is_pinned(cid)


def test_the_first_segment_is_in_s3_before_the_encode_ends(
    job_ns: str, long_clip: Path, settings: Settings, store: ObjectStore, db: Database,
) -> None:  # fmt: skip
    video, name = start_480p_job(long_clip, job_ns, settings, store, db)
    wait_for_segment(store, video, 0)
    job = get("job", name, job_ns)
    assert not job["status"].get("succeeded"), "the segment must be readable while encoding"
    playlist = store.get_bytes(f"videos/{video.id}/480p/hls/index.m3u8").decode()
    assert "#EXT-X-ENDLIST" not in playlist, "a growing (EVENT) playlist while encoding"
    assert "seg_00000.m4s" in playlist
    status = wait_for_job(job_ns, name, timeout=300)
    assert status["status"].get("succeeded") == 1


def test_s3_and_ipfs_outages_mid_encode_are_ridden_out(
    job_ns: str, long_clip: Path, settings: Settings, store: ObjectStore, ipfs: IpfsClient,
    db: Database, tmp_path: Path,
) -> None:  # fmt: skip
    video, name = start_480p_job(long_clip, job_ns, settings, store, db)
    wait_for_segment(store, video, 0)
    stop_part("versitygw")
    stop_part("kubo")
    try:
        time.sleep(30)  # the outage itself: what the jobrunner must ride out
    finally:
        restart_missing_parts()
    status = wait_for_job(job_ns, name, timeout=400)
    logs = job_logs(job_ns, name)
    assert status["status"].get("succeeded") == 1, logs
    assert "retrying in" in logs, "uploads backed off while storage was away"
    pods = kubectl("get", "pods", "-n", job_ns, "-l", f"job-name={name}", "-o", "name").split()
    assert len(pods) == 1, "ridden out in the same attempt, not by a retry"
    check_rendition(
        video, LADDER_1080[0], store, ipfs, db, tmp_path, duration_of(media.probe(str(long_clip))),
        name,
    )  # fmt: skip


def test_a_pod_deleted_mid_encode_is_retried_without_duplicate_rows(
    job_ns: str, long_clip: Path, settings: Settings, store: ObjectStore, ipfs: IpfsClient,
    db: Database, tmp_path: Path,
) -> None:  # fmt: skip
    video, name = start_480p_job(long_clip, job_ns, settings, store, db)
    wait_for_segment(store, video, 2)
    kubectl("delete", "pod", "-n", job_ns, "-l", f"job-name={name}", "--wait=false")
    status = wait_for_job(job_ns, name, timeout=400)
    assert status["status"].get("succeeded") == 1, job_logs(job_ns, name)
    assert status["status"].get("failed", 0) >= 1, "the deleted pod counted as one failed attempt"
    check_rendition(
        video, LADDER_1080[0], store, ipfs, db, tmp_path, duration_of(media.probe(str(long_clip))),
        name,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["text-file", "disguised-playlist", "truncated-mp4"])
def test_hostile_input_fails_at_once_with_the_invalid_input_code(
    kind: str, job_ns: str, clip: Path, settings: Settings, store: ObjectStore, db: Database,
    tmp_path: Path,
) -> None:  # fmt: skip
    path = tmp_path / "upload.mp4"
    if kind == "text-file":
        media.make_text_file(path)
    elif kind == "disguised-playlist":
        media.make_disguised_playlist(path)
    else:
        media.make_truncated_mp4(path, clip)
    video = upload_video(store, db, path)
    create_resource(video, job_ns, [LADDER_1080[0]])
    name = run_job(video, job_ns, [LADDER_1080[0]], settings)
    status = wait_for_job(job_ns, name, timeout=180)
    logs = job_logs(job_ns, name)
    conditions = {c["type"]: c for c in status["status"]["conditions"]}
    assert conditions["Failed"]["reason"] == "PodFailurePolicy", logs
    listed = kubectl(
        "get",
        "pods",
        "-n",
        job_ns,
        "-l",
        f"job-name={name}",
        "-o",
        "jsonpath={range .items[*]}{.status.containerStatuses[0].state.terminated.exitCode} {end}",
    )
    assert listed.split() == [str(EXIT_INVALID_INPUT)], "one attempt, ended as invalid input"
    assert "invalid input" in logs
    assert "root:x:0:0" not in logs, "no local file was read"
    assert "X-Amz-Signature" not in logs, "signed URLs are credentials: never logged"
    assert "status" not in get("videotranscode", video.resource, job_ns), "no pod writes it"
    assert store.head(f"videos/{video.id}/480p/video.mp4") is None


def split_plan(duration: float) -> tuple[Rendition, Rendition]:
    """A split 854x480 video's picture (480p, which makes the images) and sound renditions."""
    plan = sound_apart(
        plan_ladder(
            SourceFacts(
                duration=duration, has_video=True, has_audio=True, width=854, height=480, fps=30
            )
        )
    )
    (picture,) = [r for r in plan if r.kind == "video"]
    (sound,) = [r for r in plan if r.kind == "audio"]
    assert picture.alt_audio
    assert picture.images
    return picture, sound


def start_job(job_ns: str, video: Video, duration: float, settings: Settings, **how: Any) -> str:
    job = build_transcode_job(
        resource=f"v-{video.id}", namespace=job_ns, video_id=video.id,
        source_key=video.key, duration_s=duration, settings=settings, **how,
    )  # fmt: skip
    apply(job)
    return str(job["metadata"]["name"])


def run_split(
    job_ns: str, video: Video, duration: float, settings: Settings, store: ObjectStore,
    bounds: tuple[int, ...], before_finalize: Callable[[], None] = lambda: None,
) -> tuple[str, str]:  # fmt: skip
    """A split video's three Jobs, as the operator runs them: the sound once, the picture in
    ranges (an Indexed Job, two at a time), then the Job that puts them together. Returns the
    ranges Job's and the finalize's names."""
    picture, sound = split_plan(duration)
    sound_job = start_job(job_ns, video, duration, settings, renditions=[sound])
    ranges_job = start_job(job_ns, video, duration, settings, renditions=[picture],
                           range_bounds=bounds, parallelism=2)  # fmt: skip
    for name in (sound_job, ranges_job):
        status = wait_for_job(job_ns, name, timeout=400)
        assert status["status"].get("succeeded") == len(bounds) - 1 if name == ranges_job else 1, (
            job_logs(job_ns, name)
        )
    prefix = f"videos/{video.id}/{picture.name}"
    later = [k for k, _ in store.iter_sizes(f"{prefix}/hls/init_")]
    assert len(later) == len(bounds) - 2, f"each later range's init segment: {later}"
    tiles = [k for k, _ in store.iter_sizes(f"{prefix}/ranges/")]
    assert len(tiles) == len(bounds) - 1, f"each range's storyboard tiles: {tiles}"
    assert store.head(f"{prefix}/hls/index.m3u8") is None, "no playlist before the ranges are one"
    before_finalize()
    final = start_job(job_ns, video, duration, settings, renditions=[picture], finalize=True)
    status = wait_for_job(job_ns, final, timeout=300)
    assert status["status"].get("succeeded") == 1, job_logs(job_ns, final)
    assert [k for k, _ in store.iter_sizes(f"{prefix}/ranges/")] == [], "the tiles removed"
    return ranges_job, final


def test_a_video_split_in_ranges_is_put_together_whole(
    job_ns: str, long_clip: Path, settings: Settings, store: ObjectStore, ipfs: IpfsClient,
    db: Database, tmp_path: Path,
) -> None:  # fmt: skip
    """A split video's Jobs as the operator runs them (run_split). The rendition is the one a
    single Job makes: every frame once at its time, segments on the schedule, an MP4 with sound
    as long as the source, rows in S3 and IPFS, and the same images, byte for byte."""
    duration = duration_of(media.probe(str(long_clip)))
    picture, _ = split_plan(duration)
    video = upload_video(store, db, long_clip)
    bounds = split(duration, 3)
    ranges_job, final = run_split(job_ns, video, duration, settings, store, bounds)
    prefix = f"videos/{video.id}/{picture.name}"
    assert "a decode of the whole source" not in job_logs(job_ns, final), "the ranges' tiles used"

    check_rendition(video, picture, store, ipfs, db, tmp_path, duration, final)
    frames = media.packets(tmp_path / picture.name / "index.m3u8", "v")
    assert len(frames) == round(duration * 30), "every frame once"
    steps = media.steps((f[0] for f in frames), 4)
    assert steps == {round(1 / 30, 4)}, f"no gap or overlap where ranges meet: {steps}"
    assert [k for k, _ in store.iter_sizes(f"{prefix}/hls/init_")] == [], "later inits removed"
    logs = kubectl("logs", "-n", job_ns, "-l", f"job-name={ranges_job}", "--tail=-1")
    for r in range(len(bounds) - 1):
        assert f"range {r}: segments {bounds[r]} to {bounds[r + 1] - 1}" in logs, logs[-3000:]

    # The same video from a single Job: as many frames, as long, as close to the source.
    (whole_r,) = [r for r in plan_ladder(SourceFacts(duration=duration, has_video=True,
                  has_audio=True, width=854, height=480, fps=30)) if r.kind == "video"]  # fmt: skip
    single = upload_video(store, db, long_clip)
    whole_job = start_job(job_ns, single, duration, settings, renditions=[whole_r])
    status = wait_for_job(job_ns, whole_job, timeout=400)
    assert status["status"].get("succeeded") == 1, job_logs(job_ns, whole_job)
    mp4s = {}
    for tag, vid in (("split", video.id), ("single", single.id)):
        mp4s[tag] = tmp_path / f"{tag}.mp4"
        mp4s[tag].write_bytes(store.get_bytes(f"videos/{vid}/{picture.name}/video.mp4"))
    split_frames, single_frames = (media.packets(mp4s[t], "v") for t in ("split", "single"))
    assert len(split_frames) == len(single_frames) == round(duration * 30)
    assert abs(duration_of(media.probe(str(mp4s["split"])))
               - duration_of(media.probe(str(mp4s["single"])))) < 1 / 30  # fmt: skip
    by_split, by_single = (media.ssim(mp4s[t], long_clip, picture) for t in ("split", "single"))
    assert abs(by_split - by_single) <= 0.002, (by_split, by_single)
    heard = sorted(p[0] for p in media.packets(mp4s["split"], "a"))
    gaps = media.steps(heard, 5)
    assert gaps == {round(1024 / 48000, 5)}, f"the sound runs on without a gap: {gaps}"
    assert abs(heard[-1] - heard[0] - duration) < 0.05, (heard[0], heard[-1])
    # The images: the storyboard laid out from the ranges' tiles, the poster from its window
    # alone, and yet the very pictures of the single Job's decode of the whole source.
    for fmt in img.FILES:
        split_image, single_image = (
            store.get_bytes(img.key(v, fmt)) for v in (video.id, single.id)
        )
        assert split_image == single_image, f"the split video's {img.FILES[fmt]} is the single's"


def test_a_split_video_whose_range_made_no_tiles_gets_its_images_from_the_whole_source(
    job_ns: str, long_clip: Path, settings: Settings, store: ObjectStore, db: Database,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A range that resumed makes no storyboard tiles (its stretch was half done by an earlier
    attempt): with one range's tiles missing, the Job that puts the ranges together decodes
    the whole source for the images, which are then the ones that decode gives."""
    duration = duration_of(media.probe(str(long_clip)))
    picture, _ = split_plan(duration)
    video = upload_video(store, db, long_clip)
    bounds = split(duration, 3)
    gone = f"videos/{video.id}/{picture.name}/ranges/tiles_{bounds[1]:05d}.nut"
    _, final = run_split(job_ns, video, duration, settings, store, bounds,
                         before_finalize=lambda: store.delete(gone))  # fmt: skip
    assert f"{gone} is not stored: the pictures come from a decode of the whole source" in (
        job_logs(job_ns, final)
    )
    whole = ImageOutputs(img.plan_images(854, 480, duration), tmp_path / "whole")
    whole.folder.mkdir()
    url = store.presign_get(video.key, expires_s=600, public=False)
    max_pixels = settings.max_source_width * settings.max_source_height
    done = subprocess.run(build_images_command(url, whole, duration_s=duration,
                                               max_pixels=max_pixels),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, f"the whole source's decode on this host failed: {done.stderr}"
    for fmt in img.JPEGS:
        assert store.get_bytes(img.key(video.id, fmt)) == whole.path(fmt).read_bytes(), fmt
