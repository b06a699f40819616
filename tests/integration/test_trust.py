"""What users and pods control reaches FFmpeg, paths and keys only as checked data: a forged
plan is refused and nothing runs; a resource or queue event naming another video touches
nothing of it; hostile files are refused once or transcoded within the limits; a probe that
hangs fails the video after its retries."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests import media
from tests.integration.test_core import fetch_one
from tests.integration.test_integrity import frozen
from tests.integration.test_jobrunner import Video, upload_video
from tests.integration.test_operator import submit, wait_for_phase
from tests.services import Process, free_port, operator_process, started
from tests.stack import REPO, apply, get, job_namespace, kubectl, stack_env, wait_until
from tests.verify import assert_complete, assert_verified
from vtx.core import events
from vtx.core.db import Cursor, Database
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore
from vtx.core.outbox import write_event
from vtx.core.resource import SourceRef, VideoTranscodeSpec, build_resource
from vtx.core.settings import Settings
from vtx.operator.jobs import job_name

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    with job_namespace("vtx-test-trust") as name:
        yield name


@pytest.fixture(scope="module")
def other_ns() -> Iterator[str]:
    with job_namespace("vtx-test-trust-other") as name:
        yield name


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory, ns: str, other_ns: str) -> Iterator[Process]:
    process = operator_process(
        tmp_path_factory.mktemp("operator") / "operator.log", ns,
        health_port=free_port(), metrics_port=free_port(),
        env={"VTX_MAX_RUNNING_JOBS": "4"}, extra_args=("--namespace", other_ns),
    )  # fmt: skip
    with started(process):
        yield process


def failed_with(ns: str, name: str, log: Path, reason: str, words: str) -> dict[str, Any]:
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, log, timeout=300)
    status = obj["status"]
    assert status["phase"] == "Failed", status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == reason, ready
    assert words in ready["message"], ready
    return obj


def jobs_of(ns: str, video_id: str) -> list[str]:
    out = kubectl("get", "jobs", "-n", ns, "-l", f"vtx.dev/video-id={video_id}", "-o", "name")
    return out.split()


def outputs_of(store: ObjectStore, video_id: str) -> list[str]:
    return [k for k in store.iter_keys(f"videos/{video_id}/") if "/source/" not in k]


def kubectl_run(*args: str, input: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", *args], input=input, capture_output=True, text=True,
        env={**os.environ, **stack_env()}, timeout=60, check=False,
    )  # fmt: skip


def suspended(ns: str, video: Video, log: Path, **annotations: str) -> str:
    spec = VideoTranscodeSpec(
        video_id=video.id, source=SourceRef(key=video.key, size=video.path.stat().st_size),
        suspend=True,
    )  # fmt: skip
    obj = build_resource(spec, ns)
    if annotations:
        obj["metadata"]["annotations"] = annotations
    apply(obj)
    name: str = obj["metadata"]["name"]
    wait_for_phase(ns, name, {"Suspended"}, log, timeout=60)
    return name


GOOD_480P = {
    "name": "480p", "kind": "video", "width": 854, "height": 480, "fps": 25.0,
    "videoKbps": 1400, "maxrateKbps": 1498, "bufsizeKbit": 2100, "audioKbps": 128,
}  # fmt: skip
MOVIE = (
    "320:240[a];movie=/var/run/secrets/kubernetes.io/serviceaccount/token:f=tty[b];[a][b]overlay"
)
FORGED_FOR_THE_SCHEMA: dict[str, tuple[dict[str, Any], str]] = {
    "a filter graph in a width": ({"width": MOVIE}, "status.plan[0].width"),
    "a pipe in a name": ({"name": "480p|[f=mp4]/tmp/x.mp4"}, "status.plan[0].name"),
    "a path in a name": ({"name": "../../etc"}, "status.plan[0].name"),
    "a newline in a name": ({"name": "480p\n#EXT-X-ENDLIST"}, "status.plan[0].name"),
    "a slash in a name": ({"name": "480p/x"}, "status.plan[0].name"),
}
FORGED_FOR_THE_OPERATOR: dict[str, tuple[dict[str, Any], str]] = {
    "an odd width": ({"width": 855}, "width and height must be even"),
    "a sound-only kind under a video name": ({"kind": "audio"}, "does not fit its name"),
    "a video rendition with no bitrate": ({"videoKbps": 0}, "video_bitrate_k must be"),
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media.make_clip(tmp_path_factory.mktemp("media") / "trust.mp4", seconds=3,
                           width=854, height=480, fps=25)  # fmt: skip


def test_a_plan_forged_with_filters_or_paths_is_refused_by_the_api_server(
    ns: str, operator: Process, clip: Path, store: ObjectStore, db: Database
) -> None:
    video = upload_video(store, db, clip)
    name = suspended(ns, video, operator.log)
    for case, (change, field) in FORGED_FOR_THE_SCHEMA.items():
        patch = {"status": {"plan": [{**GOOD_480P, **change}]}}
        proc = kubectl_run(
            "patch", "vt", name, "-n", ns, "--subresource=status", "--type=merge",
            "-p", json.dumps(patch), input="",
        )  # fmt: skip
        assert proc.returncode != 0, f"{case}: the API server stored it"
        assert field in proc.stderr, f"{case}: {proc.stderr}"
    assert "plan" not in get("videotranscode", name, ns).get("status", {})
    assert jobs_of(ns, video.id) == []


@pytest.mark.parametrize("case", list(FORGED_FOR_THE_OPERATOR), ids=list(FORGED_FOR_THE_OPERATOR))
def test_a_plan_the_operator_did_not_write_is_refused_and_nothing_runs(
    case: str, ns: str, operator: Process, clip: Path, store: ObjectStore, db: Database
) -> None:
    video = upload_video(store, db, clip)
    name = suspended(ns, video, operator.log)
    change, words = FORGED_FOR_THE_OPERATOR[case]
    forged = {"status": {"phase": "Queued", "plan": [{**GOOD_480P, **change}]}}
    kubectl("patch", "vt", name, "-n", ns, "--subresource=status", "--type=merge",
            "-p", json.dumps(forged))  # fmt: skip
    kubectl("patch", "vt", name, "-n", ns, "--type=merge", "-p", '{"spec": {"suspend": false}}')
    failed_with(ns, name, operator.log, "InvalidStatus", words)
    assert jobs_of(ns, video.id) == [], "no Job, so no pod"
    assert outputs_of(store, video.id) == [], "nothing written"
    rows = fetch_one(db, "SELECT count(*) FROM transcodes WHERE video_id = %s", video.id)
    assert rows == (0,)
    assert_verified(video.id)


def test_a_plan_in_an_annotation_is_ignored(
    ns: str, operator: Process, clip: Path, store: ObjectStore, db: Database
) -> None:
    video = upload_video(store, db, clip)
    forged = json.dumps([{"name": "480p", "kind": "video", "width": MOVIE, "height": 480}])
    spec = VideoTranscodeSpec(
        video_id=video.id, source=SourceRef(key=video.key, size=clip.stat().st_size)
    )
    obj = build_resource(spec, ns)
    obj["metadata"]["annotations"] = {"vtx.dev/plan": forged}
    apply(obj)
    name = obj["metadata"]["name"]
    done = wait_for_phase(ns, name, {"Ready", "Failed"}, operator.log, timeout=300)
    assert done["status"]["phase"] == "Ready", done["status"]
    assert done["status"]["plan"][0]["width"] == 854, "the operator's own plan"
    args = kubectl("get", "job", job_name(name, "transcode", ["480p"]), "-n", ns,
                   "-o", "jsonpath={.spec.template.spec.containers[0].args}")  # fmt: skip
    assert "movie" not in args
    assert_complete(video.id)


# --- another video's outputs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ready_video(
    ns: str, operator: Process, clip: Path, store: ObjectStore, db: Database
) -> tuple[Video, str]:
    video = upload_video(store, db, clip)
    name = submit(video, ns, deletion_policy="Delete")
    done = wait_for_phase(ns, name, {"Ready", "Failed"}, operator.log, timeout=300)
    assert done["status"]["phase"] == "Ready", done["status"]
    return video, done["status"]["outputs"]["cid"]


def untouched(video: Video, before: list[str], cid: str, store: ObjectStore,
              ipfs: IpfsClient, db: Database) -> None:  # fmt: skip
    assert outputs_of(store, video.id) == before
    assert ipfs.is_pinned(cid)
    row = fetch_one(db, "SELECT upload_status, phase FROM videos WHERE id = %s", video.id)
    assert row == ("completed", "Ready")
    assert_complete(video.id)


def test_a_resource_for_another_namespaces_video_touches_none_of_it(
    other_ns: str, operator: Process, ready_video: tuple[Video, str], store: ObjectStore,
    ipfs: IpfsClient, db: Database,
) -> None:  # fmt: skip
    video, cid = ready_video
    before = outputs_of(store, video.id)
    name = submit(video, other_ns, deletion_policy="Delete")
    failed_with(other_ns, name, operator.log, "InvalidSpec", "belongs to resource")
    assert jobs_of(other_ns, video.id) == []
    kubectl("delete", "vt", name, "-n", other_ns, "--wait=true", "--timeout=60s")
    untouched(video, before, cid, store, ipfs, db)


def test_a_resource_naming_another_videos_source_touches_none_of_it(
    ns: str, operator: Process, ready_video: tuple[Video, str], clip: Path, store: ObjectStore,
    ipfs: IpfsClient, db: Database,
) -> None:  # fmt: skip
    video, cid = ready_video
    before = outputs_of(store, video.id)
    mine = upload_video(store, db, clip)
    spec = VideoTranscodeSpec(video_id=mine.id, source=SourceRef(key=video.key, size=1))
    obj = build_resource(spec, ns)
    apply(obj)
    failed_with(ns, obj["metadata"]["name"], operator.log, "InvalidSpec",
                f"the source key must be under videos/{mine.id}/source/")  # fmt: skip
    untouched(video, before, cid, store, ipfs, db)
    row = fetch_one(db, "SELECT upload_status FROM videos WHERE id = %s", mine.id)
    assert row == ("uploaded",), "not even the resource's own row: the resource is not trusted"


def test_a_resource_made_by_hand_for_a_video_with_no_row_gets_one(
    ns: str, operator: Process, clip: Path, store: ObjectStore, db: Database
) -> None:
    video_id = str(uuid.uuid4())
    key = f"videos/{video_id}/source/by-hand.mp4"
    store.upload_file(clip, key, content_type="video/mp4")
    spec = VideoTranscodeSpec(
        video_id=video_id, source=SourceRef(key=key, size=clip.stat().st_size)
    )
    obj = build_resource(spec, ns)
    apply(obj)
    done = wait_for_phase(ns, obj["metadata"]["name"], {"Ready", "Failed"}, operator.log, 300)
    assert done["status"]["phase"] == "Ready", done["status"]
    row = fetch_one(db, "SELECT upload_status, file_path, resource FROM videos WHERE id = %s",
                    video_id)  # fmt: skip
    assert row == ("completed", key, f"{ns}/{obj['metadata']['name']}")
    assert_complete(video_id)


def test_a_queue_event_for_another_videos_source_is_refused(
    ns: str, operator: Process, ready_video: tuple[Video, str], clip: Path, store: ObjectStore,
    ipfs: IpfsClient, db: Database, settings: Settings,
) -> None:  # fmt: skip
    from vtx.core import bus
    from vtx.core.outbox import OutboxRelay

    video, cid = ready_video
    before = outputs_of(store, video.id)
    mine = upload_video(store, db, clip)
    forged = [
        # Another video's source under my id, and another video's id with its own source
        # (it is completed: nothing is waiting for a transcode).
        events.TranscodeRequested(video_id=mine.id, bucket=settings.s3_bucket, key=video.key,
                                  size=clip.stat().st_size, namespace=ns),
        events.TranscodeRequested(video_id=video.id, bucket=settings.s3_bucket, key=video.key,
                                  size=clip.stat().st_size, namespace=ns),
    ]  # fmt: skip

    def queue(cur: Cursor) -> None:
        for event in forged:
            write_event(cur, events.TRANSCODE_QUEUE, event)

    db.transaction(queue)
    client = bus.pulsar_client(settings)
    try:
        relay = OutboxRelay(db, client, settings)
        while relay.relay_once():
            pass
        relay.close()
    finally:
        client.close()
    wait_until(
        "the intake to refuse both events",
        lambda: operator.log.read_text().count("intake: refused an event") >= 2, timeout=60,
    )  # fmt: skip
    assert kubectl("get", "vt", f"v-{mine.id}", "-n", ns, "--ignore-not-found") == ""
    untouched(video, before, cid, store, ipfs, db)


# --- hostile files ------------------------------------------------------------------------------

REFUSED_AT_THE_PROBE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a 7680x7680 picture as the first video track": (
        lambda p: media.make_cover_first(p, flagged=False),
        "7680x7680, larger than the limit",
    ),
    "pixels 40 times as wide as high": (
        lambda p: media.make_stretched(p, "40:1"),
        "76800x1080 as displayed",
    ),
    "an HLS playlist pointing at the metadata service": (
        lambda p: media.make_pointing_playlist(p, "hls", "http://169.254.169.254/latest/"),
        "not a readable video",
    ),
    "an HLS playlist pointing at the API server": (
        lambda p: media.make_pointing_playlist(p, "hls", "https://kubernetes.default/api"),
        "not a readable video",
    ),
    "a concat list pointing at the metadata service": (
        lambda p: media.make_pointing_playlist(p, "concat", "http://169.254.169.254/latest/"),
        "not a readable video",
    ),
    "a concat list pointing at the API server": (
        lambda p: media.make_pointing_playlist(p, "concat", "https://10.96.0.1/api"),
        "not a readable video",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_AT_THE_PROBE), ids=list(REFUSED_AT_THE_PROBE))
def test_hostile_files_refused_at_the_probe_once(
    case: str, ns: str, operator: Process, store: ObjectStore, db: Database, tmp_path: Path
) -> None:
    make, words = REFUSED_AT_THE_PROBE[case]
    video = upload_video(store, db, make(tmp_path / "upload.mp4"))
    name = submit(video, ns)
    obj = failed_with(ns, name, operator.log, "InvalidSource", words)
    assert "probeFailures" not in obj["status"], "refused once, not retried"
    assert jobs_of(ns, video.id) == []
    assert_verified(video.id)


def test_a_source_that_grows_mid_stream_is_refused_in_one_pod_within_its_memory(
    ns: str, operator: Process, store: ObjectStore, db: Database, tmp_path: Path
) -> None:
    video = upload_video(store, db, media.make_growing_ts(tmp_path / "growing.mp4"))
    name = submit(video, ns)
    failed_with(ns, name, operator.log, "RenditionsFailed", "every rendition failed")
    rendition = get("videotranscode", name, ns)["status"]["renditions"]["240p"]
    assert "grows to 8192x8192 frames mid-stream" in rendition["message"], rendition
    job = job_name(name, "transcode", ["240p"])
    ends = kubectl(
        "get", "pods", "-n", ns, "-l", f"job-name={job}", "-o",
        "jsonpath={range .items[*]}{.status.containerStatuses[0].state.terminated.exitCode}:"
        "{.status.containerStatuses[0].state.terminated.reason} {end}",
    ).split()  # fmt: skip
    assert ends == ["42:Error"], f"one pod, ended as invalid input (not OOMKilled): {ends}"
    assert_verified(video.id)


TRANSCODED_WITHIN_THE_LIMITS: dict[
    str, tuple[Callable[[Path], Path], dict[str, tuple[int, int]]]
] = {
    "an attached picture beside the video": (
        lambda p: media.make_cover_first(p, flagged=True),
        {"360p": (640, 360)},
    ),
    "pixels 40 times as high as wide": (
        lambda p: media.make_stretched(p, "1:40"),
        {"48p": (48, 1080)},
    ),
}


@pytest.mark.parametrize(
    "case", list(TRANSCODED_WITHIN_THE_LIMITS), ids=list(TRANSCODED_WITHIN_THE_LIMITS)
)
def test_odd_files_are_transcoded_within_the_limits(
    case: str, ns: str, operator: Process, store: ObjectStore, db: Database, tmp_path: Path
) -> None:
    make, sizes = TRANSCODED_WITHIN_THE_LIMITS[case]
    video = upload_video(store, db, make(tmp_path / "upload.mp4"))
    name = submit(video, ns)
    obj = wait_for_phase(ns, name, {"Ready", "Failed"}, operator.log, timeout=300)
    assert obj["status"]["phase"] == "Ready", obj["status"]
    got = {p["name"]: (p["width"], p["height"]) for p in obj["status"]["plan"]}
    assert got == sizes
    for rendition, (width, height) in sizes.items():
        url = store.presign_get(f"videos/{video.id}/{rendition}/video.mp4", expires_s=600,
                                public=False)  # fmt: skip
        streams = media.streams(media.probe(url), "video")
        assert [(s["width"], s["height"]) for s in streams] == [(width, height)]
    assert_complete(video.id)


def test_a_probe_that_hangs_fails_the_video_after_its_retries(
    store: ObjectStore, db: Database, clip: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    video = upload_video(store, db, clip)
    with job_namespace("vtx-test-trust-hang") as hang_ns:
        process = operator_process(
            tmp_path_factory.mktemp("hang") / "operator.log", hang_ns,
            health_port=free_port(), metrics_port=free_port(),
            env={"VTX_PROBE_TIMEOUT_SECONDS": "3", "VTX_PROBE_RETRY_LIMIT": "2"},
        )  # fmt: skip
        process.start()
        try:
            with frozen("versitygw"):
                name = submit(video, hang_ns)
                obj = failed_with(hang_ns, name, process.log, "SourceUnreadable",
                                  "could not be read 2 times")  # fmt: skip
        finally:
            process.stop()
        assert obj["status"]["probeFailures"] == 2
        assert jobs_of(hang_ns, video.id) == []
    assert_verified(video.id)


# --- a job pod's reach --------------------------------------------------------------------------

LINK_LOCAL = "169.254.77.77"  # in the range clouds serve instance metadata from
REACH = r"""
import json, os, socket, ssl, time, urllib.request
def refused(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return False
    except OSError:
        return True
if os.environ.get("WAIT_FOR_POLICY"):
    # A policy takes effect a moment after the pod starts: wait (30 s at most) until the
    # API server's port, which it leaves out, is refused.
    deadline = time.monotonic() + 30
    while not refused("10.244.0.1", 6443) and time.monotonic() < deadline:
        time.sleep(0.5)
def attempt(url, method="GET", headers=None, data=None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=5, context=ssl._create_unverified_context()) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return type(e).__name__
token = os.environ.get("VTX_IPFS_API_TOKEN", "")
print(json.dumps({
    "metadata": attempt("http://LINK_LOCAL/latest/meta-data/"),
    "kubo_config": attempt(os.environ["VTX_IPFS_API_URL"] + "/api/v0/config/show", "POST",
                           {"Authorization": "Bearer " + token}),
    "kubo_add": attempt(os.environ["VTX_IPFS_API_URL"] + "/api/v0/add", "POST",
                        {"Authorization": "Bearer " + token,
                         "Content-Type": "multipart/form-data; boundary=x"},
                        b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\""
                        b"\r\n\r\nhi\r\n--x--\r\n"),
    "api_server": attempt("https://kubernetes.default.svc/apis/vtx.dev/v1alpha1"),
    "token_mounted": os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"),
    "s3": attempt(os.environ["VTX_S3_ENDPOINT"] + "/"),
}))
""".replace("LINK_LOCAL", LINK_LOCAL)


@contextmanager
def link_local_server() -> Iterator[None]:
    """An HTTP server at a link-local address on the stack's bridge, where a cloud's metadata
    service would answer: what a job pod must not reach."""
    from tests.stack import STATE

    bridge = "vtx0"
    subprocess.run(["ip", "addr", "add", f"{LINK_LOCAL}/32", "dev", bridge], check=True)
    server = subprocess.Popen(
        ["python3", "-m", "http.server", "80", "--bind", LINK_LOCAL],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=STATE,
    )  # fmt: skip
    try:
        wait_until("the link-local stand-in to answer", lambda: subprocess.run(
            ["curl", "-fsS", "-o", "/dev/null", f"http://{LINK_LOCAL}/"], check=False,
        ).returncode == 0, timeout=10)  # fmt: skip
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)
        subprocess.run(["ip", "addr", "del", f"{LINK_LOCAL}/32", "dev", bridge], check=False)


def reach_from_a_job_pod(ns: str, name: str, *, policy: bool) -> dict[str, Any]:
    """What a pod made like a transcode Job's (its labels, account, image and settings)
    can reach."""
    from vtx.core.settings import Settings as S
    from vtx.operator.jobs import LABEL_KIND, LABEL_VIDEO, _pod_spec

    settings = S.from_env({**stack_env(), "VTX_JOB_SECRET": "vtx-jobrunner"})
    labels = {
        "app.kubernetes.io/name": "vtx-jobrunner",
        LABEL_VIDEO: "00000000-0000-4000-8000-000000000000",
        LABEL_KIND: "transcode",
    }
    pod = _pod_spec(settings, ["--version"], labels, settings.job_cpu_request)
    container = pod["spec"]["containers"][0]
    container["command"] = ["python3", "-c", REACH]
    container.pop("args")
    if policy:
        container["env"].append({"name": "WAIT_FOR_POLICY", "value": "1"})
    apply({"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"backoffLimit": 0, "template": pod}})  # fmt: skip
    from tests.stack import job_logs, wait_for_job

    done = wait_for_job(ns, name, timeout=120)
    logs = job_logs(ns, name)
    assert done["status"].get("succeeded") == 1, logs
    found: dict[str, Any] = json.loads(logs.strip().splitlines()[-1])
    return found


def test_a_job_pod_reaches_its_servers_and_nothing_else(ns: str) -> None:
    rendered = subprocess.run(
        ["helm", "template", "vtx", str(REPO / "charts/vtx"), "--namespace", ns,
         "--kube-version", "1.34.2",
         "-f", str(REPO / "charts/vtx/values-local.yaml"),
         "--show-only", "templates/jobrunner-networkpolicy.yaml"],
        capture_output=True, text=True, check=True, env={**os.environ, **stack_env()},
    ).stdout  # fmt: skip
    with link_local_server():
        open_reach = reach_from_a_job_pod(ns, "reach-without-policy", policy=False)
        kubectl("apply", "-n", ns, "-f", "-", input=rendered)
        try:
            reach = reach_from_a_job_pod(ns, "reach-with-policy", policy=True)
        finally:
            kubectl("delete", "networkpolicy", "vtx-jobrunner", "-n", ns, "--ignore-not-found")
    # Without the policy the stand-in and the API server answer (an HTTP status): the policy
    # is what keeps them out (no answer at all).
    assert isinstance(open_reach["metadata"], int), open_reach
    assert isinstance(open_reach["api_server"], int), open_reach
    assert not isinstance(reach["metadata"], int), reach
    assert not isinstance(reach["api_server"], int), reach
    assert isinstance(reach["s3"], int), f"its servers stay reachable: {reach}"
    for got in (open_reach, reach):
        assert got["token_mounted"] is False
        assert got["kubo_config"] == 403, "Kubo's RPC: the job pods' token may only add"
        assert got["kubo_add"] == 200
    account = f"system:serviceaccount:{ns}:vtx-jobrunner"
    can = kubectl("auth", "can-i", "patch", "videotranscodes.vtx.dev", "--subresource=status",
                  "-n", ns, f"--as={account}", check=False)  # fmt: skip
    assert can.strip() == "no"
    # A real attempt, with a token of the job pods' account (pods get none mounted).
    token = kubectl("create", "token", "vtx-jobrunner", "-n", ns).strip()
    env = stack_env()
    server = subprocess.run(
        ["kubectl", "--kubeconfig", env["KUBECONFIG"], "config", "view", "--minify", "-o",
         "jsonpath={.clusters[0].cluster.server}"], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    patched = subprocess.run(
        ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PATCH",
         "-H", f"Authorization: Bearer {token}",
         "-H", "Content-Type: application/merge-patch+json", "-d", '{"status": {"phase": "Ready"}}',
         f"{server}/apis/vtx.dev/v1alpha1/namespaces/{ns}/videotranscodes/v-x/status"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    assert patched == "403", patched
