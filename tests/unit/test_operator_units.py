"""The operator's pure parts: Job manifests, what it concludes from status, its view of Jobs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.test_settings import BASE
from vtx.core import resource as vt
from vtx.core.ladder import Rendition
from vtx.core.settings import Settings
from vtx.operator import lost
from vtx.operator.grouping import node_ready
from vtx.operator.index import ClusterView
from vtx.operator.jobs import (
    SOURCE_SECONDS,
    active_deadline_seconds,
    build_ingest_job,
    build_transcode_job,
    job_name,
    planned_jobs,
)
from vtx.operator.rows import row_state
from vtx.operator.state import Waiting, job_obs, merge_patch, pod_exited_ok, status_patch

ENV = {
    **BASE,
    "VTX_JOB_CONFIGMAP": "vtx-config",
    "VTX_JOB_SECRET_ENV": "VTX_DATABASE_URL=vtx-db/url,VTX_S3_SECRET_KEY=vtx-storage/secretKey",
}
R480 = Rendition("480p", "video", 854, 480, 30.0, 1400, 1498, 2100, 128)
R720 = Rendition("720p", "video", 1280, 720, 30.0, 2800, 2996, 4200, 128)
VID = "0b9f0a55-2b8c-4d8f-9a51-3a3c0c1e1a11"
RESOURCE = f"v-{VID}"


def transcode_job(**overrides: Any) -> dict[str, Any]:
    settings = Settings.from_env({**ENV, **overrides})
    return build_transcode_job(
        resource=RESOURCE, namespace="media", video_id=VID, source_key=f"videos/{VID}/source/a.mp4",
        renditions=[R480], duration_s=60.0, settings=settings,
        owner={"apiVersion": "vtx.dev/v1alpha1", "kind": "VideoTranscode", "name": RESOURCE,
               "uid": "u-1", "controller": True},
    )  # fmt: skip


def test_a_transcode_job_is_locked_down_and_bounded() -> None:
    job = transcode_job()
    spec = job["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert job["metadata"]["name"] == job_name(RESOURCE, "transcode", ["480p"])
    assert len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["ownerReferences"][0]["controller"] is True
    assert job["metadata"]["annotations"][SOURCE_SECONDS] == "60.000"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["serviceAccountName"] == "vtx-jobrunner"
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert pod["volumes"] == [{"name": "scratch", "emptyDir": {"sizeLimit": "4Gi"}}]
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob"
    assert rules[0]["onExitCodes"]["values"] == [42]
    assert rules[1]["action"] == "Ignore"
    assert spec["backoffLimit"] == 3
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert spec["activeDeadlineSeconds"] == 300 + 60 * 10
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # A lost node's pods go after VTX_NODE_LOST_SECONDS, not the cluster's 300 s.
    assert {(t["key"], t["effect"], t["tolerationSeconds"]) for t in pod["tolerations"]} == {
        ("node.kubernetes.io/unreachable", "NoExecute", 60),
        ("node.kubernetes.io/not-ready", "NoExecute", 60),
    }
    assert (
        transcode_job(VTX_NODE_LOST_SECONDS="7")["spec"]["template"]["spec"]["tolerations"][0][
            "tolerationSeconds"
        ]
        == 7
    )
    # The video's transcode pods spread over the nodes, as a preference.
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"] == {
        "vtx.dev/video-id": VID, "vtx.dev/job-kind": "transcode"
    }  # fmt: skip
    assert spread["labelSelector"]["matchLabels"].items() <= job["metadata"]["labels"].items()


def test_credentials_reach_job_pods_by_reference_only() -> None:
    job = transcode_job()
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"configMapRef": {"name": "vtx-config"}}]
    assert container["env"] == [
        {"name": "VTX_DATABASE_URL",
         "valueFrom": {"secretKeyRef": {"name": "vtx-db", "key": "url"}}},
        {"name": "VTX_S3_SECRET_KEY",
         "valueFrom": {"secretKeyRef": {"name": "vtx-storage", "key": "secretKey"}}},
    ]  # fmt: skip
    text = json.dumps(job)
    assert "hunter2" not in text
    assert "s3-secret-value" not in text
    with_secret = transcode_job(VTX_JOB_SECRET="vtx-jobrunner", VTX_JOB_CONFIGMAP="")
    env_from = with_secret["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert env_from == [{"secretRef": {"name": "vtx-jobrunner"}}]


def test_deadlines_scale_with_the_source_and_the_group() -> None:
    settings = Settings.from_env(ENV)
    assert active_deadline_seconds(0, settings) == 300
    assert active_deadline_seconds(100, settings, renditions=3) == 300 + 100 * 10 * 3


def test_the_ingest_job_checks_the_announced_size() -> None:
    job = build_ingest_job(
        resource=RESOURCE, namespace="media", video_id=VID,
        source_key=f"videos/{VID}/source/a.mp4", size=1234, settings=Settings.from_env(ENV),
    )  # fmt: skip
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--size") + 1] == "1234"
    assert job["metadata"]["name"] == f"{RESOURCE}-ingest"
    # It streams bytes: a small CPU request, so that it never keeps a transcode pod off the node.
    requests = job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert requests["cpu"] == "100m"


def test_names_are_deterministic_per_group() -> None:
    assert job_name(RESOURCE, "transcode", ["480p"]) == job_name(RESOURCE, "transcode", ["480p"])
    assert job_name(RESOURCE, "transcode", ["480p"]) != job_name(RESOURCE, "transcode", ["720p"])
    grouped = job_name(RESOURCE, "transcode", ["480p", "720p", "1080p"])
    assert grouped.startswith(f"{RESOURCE}-g3-")
    assert len(grouped) <= 63
    assert list(planned_jobs(RESOURCE, [R480, R720], grouped=False)) == [
        job_name(RESOURCE, "transcode", ["480p"]), job_name(RESOURCE, "transcode", ["720p"]),
    ]  # fmt: skip
    assert planned_jobs(RESOURCE, [R480, R720], grouped=True) == {
        job_name(RESOURCE, "transcode", ["480p", "720p"]): (R480, R720)
    }
    assert transcode_job()["metadata"]["name"] in planned_jobs(RESOURCE, [R480], grouped=False)


def test_a_rendition_made_again_gets_a_job_of_its_own_and_its_group_keeps_its_name() -> None:
    grouped = planned_jobs(RESOURCE, [R480, R720], grouped=True, redos={"720p": 2})
    assert grouped == {
        job_name(RESOURCE, "transcode", ["480p", "720p"]): (R480,),
        job_name(RESOURCE, "transcode", ["720p"], 2): (R720,),
    }
    assert job_name(RESOURCE, "transcode", ["720p"], 2).endswith("-r2")
    alone = planned_jobs(RESOURCE, [R480, R720], grouped=False, redos={"480p": 1})
    assert list(alone) == [
        job_name(RESOURCE, "transcode", ["480p"], 1), job_name(RESOURCE, "transcode", ["720p"]),
    ]  # fmt: skip


@pytest.mark.parametrize("length", [38, 56, 62, 63, 120, 253])
def test_long_resource_names_keep_what_tells_their_jobs_apart(length: int) -> None:
    resource = ("v" * (length - 1) + "x")[:length]
    other = ("v" * (length - 1) + "y")[:length]
    names = {
        job_name(resource, "transcode", ["480p"]),
        job_name(resource, "transcode", ["720p"]),
        job_name(resource, "transcode", ["480p", "720p"]),
        job_name(resource, "transcode", ["480p", "720p", "1080p"]),
        job_name(resource, "transcode", ["720p"], 1),
        job_name(resource, "ingest"),
        job_name(other, "transcode", ["480p"]),
        job_name(other, "ingest"),
    }
    assert len(names) == 8, "every Job a name of its own"
    assert all(len(n) <= 63 and n[-1].isalnum() for n in names)


def test_the_jobrunner_arguments_come_from_one_definition() -> None:
    import argparse

    from vtx.core.jobargs import TranscodeArgs, add_transcode_arguments

    job = transcode_job()
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "jobrunner"
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_transcode_arguments(sub.add_parser("transcode"))
    parsed = TranscodeArgs.from_namespace(parser.parse_args(args[1:]))
    assert parsed.renditions == (R480,)
    assert parsed.job == job["metadata"]["name"]
    assert parsed.resume, "a Job's retried pods resume from the segments stored"
    assert parsed.argv() == args[1:]
    # A Job that makes a rendition again starts over.
    again = build_transcode_job(
        resource=RESOURCE, namespace="media", video_id=VID, source_key=f"videos/{VID}/source/a.mp4",
        renditions=[R480], duration_s=60.0, settings=Settings.from_env(ENV), resume=False,
    )  # fmt: skip
    again_args = again["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--start-over" in again_args
    assert not TranscodeArgs.from_namespace(parser.parse_args(again_args[1:])).resume


def test_status_patches_write_only_what_changed() -> None:
    status = {"phase": "Transcoding", "progress": 40, "renditions": {"480p": {"progress": 40}},
              "kopf": {"progress": {}}}  # fmt: skip
    after = {"phase": "Transcoding", "progress": 41, "renditions": {"480p": {"progress": 40}}}
    assert status_patch(status, after) == {"progress": 41}, "kopf's part stays as it is"
    assert status_patch(status, {**after, "progress": 40}) == {}, "an idle step writes nothing"
    gone = {"phase": "Transcoding", "progress": 40, "renditions": {"480p": {}}}
    assert status_patch(status, gone) == {"renditions": {"480p": {"progress": None}}}
    merged = merge_patch(status, {"renditions": {"720p": {"phase": "Running"}}, "progress": None})
    assert merged == {
        "phase": "Transcoding",
        "renditions": {"480p": {"progress": 40}, "720p": {"phase": "Running"}},
        "kopf": {"progress": {}},
    }


def job(name: str, owner: str, *, active: bool = True, version: str = "1") -> dict[str, Any]:
    conditions = [] if active else [{"type": "Complete", "status": "True"}]
    return {
        "metadata": {
            "name": name, "namespace": "ns", "resourceVersion": version,
            "labels": {"vtx.dev/job-kind": "transcode"},
            "ownerReferences": [{"name": owner, "controller": True}],
        },
        "spec": {},
        "status": {"active": 1 if active else 0, "conditions": conditions},
    }  # fmt: skip


def test_the_view_admits_in_creation_order_under_the_cap() -> None:
    view = ClusterView()
    view.put_job(job("a-1", "a"))
    a = Waiting("2026-01-01T00:00:01Z", "ns", "a", 1)
    b = Waiting("2026-01-01T00:00:02Z", "ns", "b", 2)
    view.set_waiting(b)
    assert view.admit(a, cap=2) == 1, "one slot left, and a is older than b"
    view.put_job(job("a-2", "a"))
    view.set_waiting(Waiting(a.created, "ns", "a", 0))
    assert view.admit(b, cap=2) == 0, "the cap is full"
    view.put_job(job("a-1", "a", active=False, version="2"))
    assert view.running_transcodes() == 1
    assert view.admit(b, cap=2) == 1
    assert view.queued() == 2
    view.put_job(job("a-1", "a", active=True, version="1"))
    assert view.running_transcodes() == 1, "an older copy does not replace a newer one"
    assert sorted(view.jobs_of("ns", "a")) == ["a-1", "a-2"]
    view.drop_job("ns", "a-1")
    assert sorted(view.jobs_of("ns", "a")) == ["a-2"]


def pod(*, exit_code: int | None, container: str = "jobrunner") -> dict[str, Any]:
    ended = {"exitCode": exit_code, "finishedAt": "2026-01-01T00:00:09Z"}
    state = {"running": {}} if exit_code is None else {"terminated": ended}
    return {"status": {"phase": "Running", "containerStatuses": [
        {"name": container, "state": state}]}}  # fmt: skip


def test_a_pod_that_exited_0_ends_its_job_before_the_job_says_so() -> None:
    """The kubelet's report of the container's exit comes 1.5-2.5 s before the Job's Complete:
    the Job counts as succeeded from it, once; its slot of the cap waits for the Job's word."""
    assert pod_exited_ok(pod(exit_code=0)) == "2026-01-01T00:00:09Z"
    assert pod_exited_ok(pod(exit_code=None)) is None, "still running"
    assert pod_exited_ok(pod(exit_code=75)) is None, "asked to be retried"
    assert pod_exited_ok(pod(exit_code=42)) is None, "invalid input"
    assert pod_exited_ok(pod(exit_code=0, container="sidecar")) is None
    view = ClusterView()
    assert view.mark_pod_exited_ok("ns", "a-1") is None, "a Job the view does not know"
    view.put_job(job("a-1", "a"))
    view.put_job(job("a-2", "a"))
    assert view.running_transcodes() == 2
    ended = view.mark_pod_exited_ok("ns", "a-1")
    assert ended is not None
    assert ended["metadata"]["name"] == "a-1"
    assert view.mark_pod_exited_ok("ns", "a-1") is None, "news once"
    assert view.ended_by_pod("ns", "a-1")
    assert not view.ended_by_pod("ns", "a-2")
    assert view.running_transcodes() == 2, "the cap counts the pod until the Job ends"
    states = {n: job_obs(j).state for n, j in view.jobs_of("ns", "a").items()}
    assert states == {"a-1": "succeeded", "a-2": "active"}
    failed = job("a-1", "a", version="2")
    failed["status"]["conditions"] = [{"type": "Failed", "status": "True", "reason": "Deadline"}]
    view.put_job(failed)
    assert job_obs(view.jobs_of("ns", "a")["a-1"]).state == "failed", "the Job's word wins"
    view.drop_job("ns", "a-1")
    assert not view.ended_by_pod("ns", "a-1")
    view.put_job(job("a-1", "a", version="3"))
    assert job_obs(view.jobs_of("ns", "a")["a-1"]).state == "active", "forgotten with the Job"


def test_a_probe_holds_its_slot_through_the_step() -> None:
    """Resources created in the same second are ordered by name: each one arriving sees only
    those already known, and without the held slot all of them would be probed at once."""
    view = ClusterView()
    same_second = "2026-01-01T00:00:01Z"
    first, second, third = (Waiting(same_second, "ns", n, 1) for n in ("z", "a", "m"))
    assert view.admit_probe(first, cap=2) == 1
    assert view.admit_probe(second, cap=2) == 1, "one slot left, though 'a' sorts before 'z'"
    assert view.admit_probe(third, cap=2) == 0, "both slots are held by probes"
    assert view.admit_probe(first, cap=2) == 1, "its own slot, asked again in its step"
    view.release_probe("ns", "z")
    view.set_waiting(Waiting(same_second, "ns", "z", 0))
    view.put_job(job("z-1", "z"))  # z planned and made its Job
    assert view.admit_probe(third, cap=2) == 0, "z's Job and a's probe fill the cap"
    view.forget("ns", "a")
    assert view.admit_probe(third, cap=2) == 1


def test_a_free_slot_goes_to_the_first_in_the_queue() -> None:
    view = ClusterView()
    view.put_job(job("x-1", "x"))
    view.set_waiting(Waiting("2026-01-01T00:00:03Z", "ns", "c", 1))
    view.set_waiting(Waiting("2026-01-01T00:00:01Z", "ns", "a", 2))
    view.set_waiting(Waiting("2026-01-01T00:00:02Z", "ns", "b", 1))
    assert view.first_waiting(cap=1) == [], "no slot free"
    assert view.first_waiting(cap=2) == [("ns", "a")]
    assert view.first_waiting(cap=3) == [("ns", "a")], "a's two Jobs take both slots"
    assert view.first_waiting(cap=4) == [("ns", "a"), ("ns", "b")]
    assert view.first_waiting(cap=9) == [("ns", "a"), ("ns", "b"), ("ns", "c")]


def test_the_row_keeps_the_plan_beside_the_progress() -> None:
    status = vt.VideoTranscodeStatus(
        phase="Transcoding",
        progress=30,
        plan=(R480, R720),
        source=vt.SourceStatus(duration=12.5),
        renditions={"480p": vt.RenditionStatus(phase="Running", progress=60, message="encoding")},
    )
    row = row_state(status)
    assert row.renditions["480p"]["phase"] == "Running"
    assert row.renditions["480p"]["progress"] == 60
    assert row.renditions["720p"]["phase"] == "Pending"
    assert row.renditions["720p"]["height"] == 720
    assert (row.phase, row.progress, row.outputs, row.source_duration) == (
        "Transcoding", 30, {}, 12.5,
    )  # fmt: skip
    assert row_state(status) == row, "equal states compare equal (no rewrite)"


async def test_a_handler_cancelled_before_its_thread_starts_never_runs() -> None:
    """What lets the operator stop at once with hundreds of deletions queued (SIGTERM cancels
    the handlers' tasks): a call still queued for the operator's threads is dropped, and the
    task ends without waiting for the threads."""
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace
    from typing import cast

    from vtx.operator.context import Context
    from vtx.operator.handlers import _in_thread

    release, ran = threading.Event(), list[str]()
    with ThreadPoolExecutor(1) as pool:
        ctx = cast(Context, SimpleNamespace(executor=pool))
        busy = asyncio.ensure_future(_in_thread(ctx, release.wait, 10))
        queued = asyncio.ensure_future(_in_thread(ctx, ran.append, "queued"))
        await asyncio.sleep(0.05)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(queued, 1)  # not waiting for the busy thread
        release.set()
        assert await busy is True
    assert ran == [], "a cancelled call still queued never runs"


def _pod(phase: str = "Running", deletion: str | None = "2026-12-02T10:00:30Z") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "media", "uid": "u"}
    if deletion:
        meta["deletionTimestamp"] = deletion
    return {"metadata": meta, "spec": {"nodeName": "n2"}, "status": {"phase": phase}}


def test_a_pod_being_deleted_is_overdue_15_s_after_its_deadline() -> None:
    at = datetime(2026, 12, 2, 10, 0, 30, tzinfo=UTC)
    assert lost.seconds_until_overdue(_pod(), at - timedelta(seconds=30)) == 45.0
    assert lost.seconds_until_overdue(_pod(), at + timedelta(seconds=14)) == 1.0
    assert lost.seconds_until_overdue(_pod(), at + timedelta(seconds=15)) == 0.0
    assert lost.seconds_until_overdue(_pod(), at + timedelta(hours=1)) == 0.0
    # Not being deleted, or ended already: nothing to wait for.
    assert lost.seconds_until_overdue(_pod(deletion=None), at) is None
    for phase in ("Succeeded", "Failed"):
        assert lost.seconds_until_overdue(_pod(phase), at + timedelta(hours=1)) is None


def test_only_a_node_that_says_ready_keeps_its_pods() -> None:
    def node(*conditions: tuple[str, str]) -> dict[str, Any]:
        return {"status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}

    assert node_ready(node(("MemoryPressure", "False"), ("Ready", "True")))
    assert not node_ready(node(("Ready", "Unknown")))
    assert not node_ready(node(("Ready", "False")))
    assert not node_ready(node(("MemoryPressure", "False")))
    assert not node_ready(None)


def test_a_lost_pod_ends_failed_with_a_condition_the_job_policy_ignores() -> None:
    patch = lost.failed_patch("n2", datetime(2026, 12, 2, 10, 1, tzinfo=UTC))
    assert patch["status"]["phase"] == "Failed"
    (condition,) = patch["status"]["conditions"]
    assert condition["type"] == "DisruptionTarget"
    assert condition["status"] == "True"
    assert condition["reason"] == "NodeLost"
    assert "n2" in condition["message"]
    assert condition["lastTransitionTime"] == "2026-12-02T10:01:00Z"
    # The transcode Job's policy ignores exactly that condition.
    ignored = transcode_job()["spec"]["podFailurePolicy"]["rules"][1]
    assert ignored == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
