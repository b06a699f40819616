"""The operator's decisions, as a table: a snapshot of what it observed in, the status and the
actions it decides out. Every phase transition, the cap, suspend before and after admission,
retries, partial and total failure, a lost jobrunner report, a Complete Job whose rows are
missing, outputs missing from storage, and a restart between any two writes of a step."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vtx.core import images as img
from vtx.core import resource as vt
from vtx.core import videos
from vtx.core.ladder import Rendition, SourceFacts, plan_ladder
from vtx.core.media import mp4_name
from vtx.core.videos import OutputRecord, RenditionRecord
from vtx.operator.decide import (
    ClaimVideo,
    Continue,
    CreateIngestJob,
    CreateTranscodeJob,
    Decision,
    DeleteJob,
    Emit,
    ExplainFailure,
    MarkFailed,
    Probe,
    ProbeResult,
    Publish,
    ReadRecords,
    ReplacePods,
    SetSuspended,
    Snapshot,
    Verify,
    decide,
    missing_jobs,
)
from vtx.operator.grouping import Capacity, Nodes
from vtx.operator.jobs import job_name, planned_jobs, split_jobs
from vtx.operator.reports import Report
from vtx.operator.state import JobObs

VID = "0b9f0a55-2b8c-4d8f-9a51-3a3c0c1e1a11"
NAME = f"v-{VID}"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
FACTS = SourceFacts(duration=10.0, has_video=True, has_audio=True, width=1920, height=1080, fps=30)
PLAN = tuple(plan_ladder(FACTS))
SPEC = vt.VideoTranscodeSpec(
    video_id=VID, source=vt.SourceRef(key=f"videos/{VID}/source/a.mp4", size=1000)
)
SOURCE = vt.SourceStatus(duration=10.0, width=1920, height=1080, fps=30.0, has_audio=True)


def jobs_of(grouped: bool = False, redos: dict[str, int] | None = None) -> list[str]:
    return list(planned_jobs(NAME, PLAN, grouped, redos))


def job_of(r: Rendition, redo: int = 0) -> str:
    return job_name(NAME, "transcode", [r.name], redo)


def planned(phase: Any = "Transcoding", **entries: vt.RenditionStatus) -> vt.VideoTranscodeStatus:
    """A status after the probe: the plan, and an entry per rendition (Queued unless given)."""
    return vt.VideoTranscodeStatus(
        phase=phase,
        source=SOURCE,
        plan=PLAN,
        renditions={
            r.name: entries.get(f"r{r.name}") or vt.RenditionStatus(phase="Queued") for r in PLAN
        },
    )


def snap(status: vt.VideoTranscodeStatus, **kw: Any) -> Snapshot:
    spec = kw.pop("spec", SPEC)
    claim = kw.pop("claim", videos.Claim())
    return Snapshot(name=NAME, generation=1, spec=spec, status=status, now=NOW, claim=claim, **kw)


def job(name: str, state: Any = "active", attempts: int = 1, suspended: bool = False) -> JobObs:
    return JobObs(name, state, attempts, suspended)


def record(r: Rendition, job: str, *, segments: int = 3, ipfs: bool = True) -> RenditionRecord:
    """The rows a jobrunner leaves when it has recorded a rendition whole."""
    outputs = {}
    fmp4 = r.kind != "subtitles"
    for fmt in (videos.file_format(r.kind), videos.HLS):
        for storage in (videos.S3, videos.IPFS) if ipfs else (videos.S3,):
            hls = fmt == videos.HLS
            outputs[(fmt, storage)] = OutputRecord(
                fmt=fmt, storage=storage,
                key=f"videos/{VID}/{r.name}/" + ("hls/index.m3u8" if hls else mp4_name(r.kind)),
                cid=f"cid-{r.name}-{fmt}" if ipfs else None, size=1234, duration=10.0, job=job,
                segment_count=segments if hls else None,
                init_cid=f"cid-{r.name}-init" if hls and ipfs and fmp4 else None,
                decode_errors=0,
                segments=segments if hls else 0, first_sequence=0 if hls else None,
                last_sequence=segments - 1 if hls else None, segment_seconds=10.0 if hls else 0,
                segments_with_cid=segments if hls and ipfs else 0,
            )  # fmt: skip
    for fmt in img.FILES if r.images else ():
        for storage in (videos.S3, videos.IPFS) if ipfs else (videos.S3,):
            outputs[(fmt, storage)] = OutputRecord(
                fmt=fmt, storage=storage, key=img.key(VID, fmt),
                cid=f"cid-{fmt}" if ipfs else None, size=99, duration=10.0, job=job,
                segment_count=None, init_cid=None, decode_errors=0, width=160, height=90,
            )  # fmt: skip
    return RenditionRecord(r.name, outputs)


def all_jobs(state: Any = "succeeded") -> dict[str, JobObs]:
    return {n: job(n, state) for n in jobs_of()}


def records(**overrides: RenditionRecord | None) -> dict[str, RenditionRecord]:
    out = {r.name: record(r, job_of(r)) for r in PLAN}
    for key, value in overrides.items():
        name = key.removeprefix("r")
        if value is None:
            del out[name]
        else:
            out[name] = value
    return out


def no_problems() -> dict[str, tuple[str, ...]]:
    return {r.name: () for r in PLAN}


def cond(status: vt.VideoTranscodeStatus, type: str) -> vt.Condition:
    found = status.condition(type)
    assert found is not None, f"no {type} condition"
    return found


def kinds(d: Decision) -> list[str]:
    return [type(a).__name__ for a in d.actions if not isinstance(a, Emit)]


def events(d: Decision) -> list[str]:
    return [a.reason for a in d.actions if isinstance(a, Emit)]


def entry_phases(d: Decision) -> dict[str, str]:
    return {n: e.phase for n, e in d.status.renditions.items()}


# --- the probe and the plan --------------------------------------------------------------------


def test_a_new_resource_with_a_slot_is_probed_first() -> None:
    s = snap(vt.VideoTranscodeStatus(), slots=1)
    assert missing_jobs(s) == 1, "it asks admission for a slot before its probe"
    d = decide(s)
    assert d.actions == (Probe(),)
    assert d.status == vt.VideoTranscodeStatus()


def test_a_new_resource_without_a_slot_waits_queued_unprobed() -> None:
    d = decide(snap(vt.VideoTranscodeStatus(), slots=0))
    assert Probe() not in d.actions
    assert d.status.phase == "Queued"
    assert d.status.plan is None
    c = cond(d.status, "Probed")
    assert (c.status, c.reason) == ("Unknown", "WaitingForSlot")
    assert events(d) == ["Queued"]
    # Stepped again while no slot is free: nothing to write, no event, no probe.
    again = decide(snap(d.status, slots=0))
    assert again.actions == ()
    assert again.status == d.status
    # A slot frees: the probe, then the plan replaces the waiting condition.
    assert decide(snap(d.status, slots=1)).actions == (Probe(),)
    planned_ = decide(snap(d.status, slots=1, probe=ProbeResult(facts=FACTS)))
    assert planned_.status.plan == PLAN
    assert cond(planned_.status, "Probed").status == "True"


def test_no_slot_is_asked_for_a_suspended_or_backing_off_unplanned_resource() -> None:
    suspended = dataclasses.replace(SPEC, suspend=True)
    assert missing_jobs(snap(vt.VideoTranscodeStatus(), spec=suspended)) == 0
    backing_off = vt.VideoTranscodeStatus(probe_failures=1, probe_retry_at="2026-11-29T12:00:10Z")
    assert missing_jobs(snap(backing_off)) == 0
    later = dataclasses.replace(snap(backing_off), now=NOW + timedelta(seconds=11))
    assert missing_jobs(later) == 1


def test_a_probed_source_is_planned_and_decided_again_for_admission() -> None:
    d = decide(snap(vt.VideoTranscodeStatus(), probe=ProbeResult(facts=FACTS)))
    assert d.status.plan == PLAN
    assert d.status.phase == "Queued"
    assert d.status.source == SOURCE
    assert entry_phases(d) == dict.fromkeys(("480p", "720p", "1080p"), "Queued")
    assert cond(d.status, "Probed").status == "True"
    assert kinds(d) == ["Continue"], "admission comes next, in the same step"
    assert events(d) == ["Probed"]


def test_an_unusable_source_fails_without_a_job() -> None:
    refused = ProbeResult(
        refused="the source is not a readable video or audio file: Invalid data found",
        looks_like="an HLS playlist",
    )
    d = decide(snap(vt.VideoTranscodeStatus(), probe=refused))
    assert d.status.phase == "Failed"
    assert d.status.plan is None
    said = "This file is an HLS playlist, not a video. Upload the video file itself."
    assert MarkFailed(said, f"InvalidSource: {refused.refused}") in d.actions
    assert d.note == said, "the status event says it in words"
    assert not [a for a in d.actions if isinstance(a, CreateTranscodeJob)]
    c = cond(d.status, "Probed")
    assert (c.status, c.reason) == ("False", "InvalidSource")


def test_a_source_that_cannot_be_read_now_is_probed_again_later_then_fails() -> None:
    first = decide(snap(vt.VideoTranscodeStatus(), probe=ProbeResult(unavailable="timed out")))
    assert first.status.phase is None
    assert first.status.probe_failures == 1
    assert first.status.probe_retry_at == "2026-11-29T12:00:10Z"
    assert events(first) == ["ProbeRetry"]
    # Before the retry time: nothing, not even a probe.
    assert decide(snap(first.status)).actions == ()
    later = dataclasses.replace(snap(first.status, slots=1), now=NOW + timedelta(seconds=11))
    assert decide(later).actions == (Probe(),)
    status = dataclasses.replace(first.status, probe_failures=4)
    last = decide(snap(status, probe=ProbeResult(unavailable="timed out")))
    assert last.status.phase == "Failed"
    failed = next(a for a in last.actions if isinstance(a, MarkFailed))
    assert failed.detail == "SourceUnreadable: the source could not be read 5 times: timed out"
    assert failed.reason.startswith("The file could not be read, even after several tries.")


def test_renditions_asked_for_by_name() -> None:
    spec = dataclasses.replace(SPEC, renditions=(vt.RenditionSpec("720p"),))
    d = decide(snap(vt.VideoTranscodeStatus(), spec=spec, probe=ProbeResult(facts=FACTS)))
    assert [r.name for r in d.status.plan or ()] == ["720p"]
    asked = (vt.RenditionSpec("720p"), vt.RenditionSpec("4k"))
    unknown = dataclasses.replace(SPEC, renditions=asked)
    d = decide(snap(vt.VideoTranscodeStatus(), spec=unknown, probe=ProbeResult(facts=FACTS)))
    assert d.status.phase == "Failed"
    c = cond(d.status, "Ready")
    assert c.reason == "InvalidSpec"
    assert "4k" in c.message
    small = SourceFacts(duration=5, has_video=True, has_audio=False, width=640, height=360, fps=25)
    too_big = dataclasses.replace(SPEC, renditions=(vt.RenditionSpec("1080p"),))
    d = decide(snap(vt.VideoTranscodeStatus(), spec=too_big, probe=ProbeResult(facts=small)))
    assert d.status.phase == "Failed", "never upscaled, and never the whole ladder instead"
    failed = next(a for a in d.actions if isinstance(a, MarkFailed))
    assert "none of 1080p fits" in failed.detail
    assert (
        d.note == "This video is smaller than every version asked for (videos are never upscaled)."
    )


# --- admission and the cap ---------------------------------------------------------------------


def test_every_job_and_the_ingest_are_created_when_slots_are_free() -> None:
    s = snap(planned("Queued"), slots=3)
    assert missing_jobs(s) == 3
    d = decide(s)
    created = [a for a in d.actions if isinstance(a, CreateTranscodeJob)]
    assert [a.name for a in created] == jobs_of()
    assert CreateIngestJob() in d.actions
    assert d.status.ingest == vt.IngestStatus("Running", "pinning the original to IPFS")
    assert d.status.phase == "Transcoding"
    assert entry_phases(d) == dict.fromkeys(("480p", "720p", "1080p"), "Pending")
    assert cond(d.status, "JobsCreated").status == "True"
    assert d.waiting == 0


def test_the_cap_admits_what_it_can_and_the_rest_wait_queued() -> None:
    none = decide(snap(planned("Queued"), slots=0))
    assert kinds(none) == []
    assert none.status.phase == "Queued"
    assert none.waiting == 3
    one = decide(snap(planned("Queued"), slots=1))
    assert [a.name for a in one.actions if isinstance(a, CreateTranscodeJob)] == jobs_of()[:1]
    assert one.waiting == 2
    assert one.status.phase == "Transcoding"
    assert entry_phases(one) == {"480p": "Pending", "720p": "Queued", "1080p": "Queued"}
    assert one.status.condition("JobsCreated") is None, "not all of them yet"


def test_grouped_renditions_share_one_job() -> None:
    spec = dataclasses.replace(SPEC, group_renditions=True)
    d = decide(snap(planned("Queued"), spec=spec, slots=4))
    created = [a for a in d.actions if isinstance(a, CreateTranscodeJob)]
    assert len(created) == 1
    assert created[0].renditions == PLAN


def capacity(nodes: int, mcpu: int = 4000, running: int = 0) -> Capacity:
    return Capacity(Nodes(nodes, mcpu), running, 0, 4, 500)


def created_jobs(d: Decision) -> list[tuple[str, ...]]:
    return [
        tuple(r.name for r in a.renditions) for a in d.actions if isinstance(a, CreateTranscodeJob)
    ]


def test_on_one_node_the_plan_groups_the_renditions_and_says_why() -> None:
    d = decide(
        snap(vt.VideoTranscodeStatus(), probe=ProbeResult(facts=FACTS), capacity=capacity(1))
    )
    assert d.status.grouping is not None
    assert (d.status.grouping.grouped, d.status.grouping.reason) == (True, "OneNode")
    assert "1 schedulable node" in d.status.grouping.message
    assert cond(d.status, "Probed").message.endswith("; one Job (OneNode)")
    # Admission, in the same step: one Job for the three renditions.
    after = decide(snap(d.status, slots=4))
    assert created_jobs(after) == [("480p", "720p", "1080p")]


def test_on_free_nodes_each_rendition_gets_its_job() -> None:
    d = decide(
        snap(vt.VideoTranscodeStatus(), probe=ProbeResult(facts=FACTS), capacity=capacity(3))
    )
    assert d.status.grouping is not None
    assert (d.status.grouping.grouped, d.status.grouping.reason) == (False, "Spread")
    assert d.status.grouping.message.startswith("3 schedulable nodes with ")
    after = decide(snap(d.status, slots=4))
    assert created_jobs(after) == [("480p",), ("720p",), ("1080p",)]


def test_a_long_video_on_free_nodes_is_split_then_put_together() -> None:
    long = dataclasses.replace(FACTS, duration=600.0)
    d = decide(snap(vt.VideoTranscodeStatus(), probe=ProbeResult(facts=long), capacity=capacity(2)))
    g = d.status.grouping
    assert g is not None
    assert g.reason == "Split"
    # Room for 4 Jobs (the cap; 8 by CPU): 4 ranges of 150 s.
    assert len(g.range_bounds) == 5, g
    assert "4 ranges of about 150s" in g.message
    plan = d.status.plan
    assert plan is not None
    assert [r.name for r in plan] == ["480p", "720p", "1080p", "audio-1"]
    assert all(r.alt_audio for r in plan if r.kind == "video"), "the sound is encoded once"
    assert cond(d.status, "Probed").message.endswith("; 4 ranges (Split)")
    videos_ = tuple(r for r in plan if r.kind == "video")
    sound = plan[-1]
    ranges_job, final_job = split_jobs(NAME, plan)
    sound_job = job_name(NAME, "transcode", ["audio-1"])
    status = dataclasses.replace(d.status, source=dataclasses.replace(SOURCE, duration=600.0))
    assert missing_jobs(snap(status)) == 1 + 4, "the sound, and a slot per range"

    after = decide(snap(status, slots=4))
    made = [a for a in after.actions if isinstance(a, CreateTranscodeJob)]
    assert [(a.name, a.parallelism) for a in made] == [(sound_job, 1), (ranges_job, 3)]
    assert made[1].range_bounds == g.range_bounds
    assert made[1].renditions == videos_

    # The ranges stored, the sound not yet: nothing to put together.
    running = {sound_job: job(sound_job), ranges_job: job(ranges_job, "succeeded")}
    wait = decide(snap(after.status, slots=4, jobs=running))
    assert created_jobs(wait) == []
    assert missing_jobs(snap(after.status, jobs=running)) == 0
    sound_done = dataclasses.replace(
        after.status,
        renditions={**after.status.renditions, "audio-1": vt.RenditionStatus(phase="Succeeded")},
    )
    both = {sound_job: job(sound_job, "succeeded"), ranges_job: job(ranges_job, "succeeded")}
    final = decide(snap(sound_done, slots=4, jobs=both))
    made = [a for a in final.actions if isinstance(a, CreateTranscodeJob)]
    assert [(a.name, a.finalize, a.renditions) for a in made] == [(final_job, True, videos_)]

    # Put together: the video renditions' rows name that Job; then the video is published.
    done = {**both, final_job: job(final_job, "succeeded")}
    rows = {r.name: record(r, final_job) for r in videos_} | {"audio-1": record(sound, sound_job)}
    checks = {r.name: () for r in plan}
    published = decide(snap(final.status, jobs=done, records=rows, checks=checks))
    assert [type(a).__name__ for a in published.actions if isinstance(a, Publish)] == ["Publish"]
    assert set(entry_phases(published).values()) == {"Succeeded"}
    assert not any(isinstance(a, DeleteJob) for a in published.actions), "no Job of it is stray"


def test_a_split_video_whose_sound_failed_fails_its_video_renditions_without_a_job() -> None:
    long = dataclasses.replace(FACTS, duration=600.0)
    d = decide(snap(vt.VideoTranscodeStatus(), probe=ProbeResult(facts=long), capacity=capacity(2)))
    plan = d.status.plan
    assert plan is not None
    ranges_job, final_job = split_jobs(NAME, plan)
    sound_job = job_name(NAME, "transcode", ["audio-1"])
    status = dataclasses.replace(d.status, source=dataclasses.replace(SOURCE, duration=600.0))
    after = decide(snap(status, slots=4))
    sound_failed = dataclasses.replace(
        after.status,
        renditions={
            **after.status.renditions,
            "audio-1": vt.RenditionStatus(phase="Failed", message="pod failed: exit code 1"),
        },
    )
    running = {sound_job: job(sound_job, "failed"), ranges_job: job(ranges_job)}
    waits = decide(snap(sound_failed, slots=4, jobs=running))
    assert created_jobs(waits) == []
    assert entry_phases(waits)["720p"] != "Failed", "not while its ranges run (no Job left over)"
    jobs = {sound_job: job(sound_job, "failed"), ranges_job: job(ranges_job, "succeeded")}
    assert missing_jobs(snap(sound_failed, jobs=jobs)) == 0
    gone = decide(snap(sound_failed, slots=4, jobs=jobs))
    assert created_jobs(gone) == [], "no Job to put together what cannot have its sound"
    assert set(entry_phases(gone).values()) == {"Failed"}
    message = gone.status.renditions["720p"].message
    assert message == (
        "the sound rendition audio-1 failed (pod failed: exit code 1): a split video's MP4s take"
        " their sound from it"
    )
    assert gone.status.phase == "Failed"
    assert cond(gone.status, "Ready").reason == "RenditionsFailed"
    assert final_job not in {a.name for a in gone.actions if isinstance(a, CreateTranscodeJob)}


def test_no_split_on_one_node_for_a_short_video_or_when_the_spec_says() -> None:
    long = dataclasses.replace(FACTS, duration=600.0)
    apart = dataclasses.replace(SPEC, group_renditions=False)
    for facts, nodes, spec in ((long, 1, SPEC), (FACTS, 3, SPEC), (long, 3, apart)):
        d = decide(snap(vt.VideoTranscodeStatus(), spec=spec, probe=ProbeResult(facts=facts),
                        capacity=capacity(nodes)))  # fmt: skip
        assert d.status.grouping is not None
        assert d.status.grouping.reason != "Split", (facts.duration, nodes)
        assert d.status.grouping.range_bounds == ()


def test_range_bounds_that_do_not_fit_the_source_fail_the_video() -> None:
    status = dataclasses.replace(
        planned("Transcoding"), grouping=vt.Grouping(True, "Split", "", (0, 2, 90))
    )
    d = decide(snap(status, slots=4))
    assert d.status.phase == "Failed"
    assert cond(d.status, "Ready").reason == "InvalidStatus"
    assert created_jobs(d) == []


def test_the_spec_forces_either_way() -> None:
    for forced, expect in ((False, [("480p",), ("720p",), ("1080p",)]),
                           (True, [("480p", "720p", "1080p")])):  # fmt: skip
        spec = dataclasses.replace(SPEC, group_renditions=forced)
        probe = ProbeResult(facts=FACTS)
        d = decide(snap(vt.VideoTranscodeStatus(), spec=spec, probe=probe, capacity=capacity(1)))
        assert d.status.grouping is not None
        assert (d.status.grouping.grouped, d.status.grouping.reason) == (forced, "Spec")
        assert created_jobs(decide(snap(d.status, spec=spec, slots=4))) == expect


def test_the_choice_is_kept_whatever_the_cluster_says_later() -> None:
    status = dataclasses.replace(planned("Queued"), grouping=vt.Grouping(True, "OneNode", ""))
    d = decide(snap(status, slots=4, capacity=capacity(5, mcpu=64000)))
    assert created_jobs(d) == [("480p", "720p", "1080p")]


def test_a_plan_made_before_the_operator_chose_follows_its_spec() -> None:
    """Resources planned by an operator that did not choose (no status.grouping) keep the Jobs
    they were planned with: the spec's flag, then false by default."""
    assert created_jobs(decide(snap(planned("Queued"), slots=4))) == [
        ("480p",), ("720p",), ("1080p",)
    ]  # fmt: skip


# --- following the Jobs --------------------------------------------------------------------------


def test_running_jobs_show_their_attempts_and_the_video_transcodes() -> None:
    jobs = {n: job(n, attempts=2) for n in jobs_of()}
    d = decide(snap(planned("Transcoding"), jobs=jobs))
    assert d.status.phase == "Transcoding"
    assert {e.attempts for e in d.status.renditions.values()} == {2}
    assert entry_phases(d) == dict.fromkeys(("480p", "720p", "1080p"), "Running")
    assert kinds(d) == []


def test_a_stalled_job_gets_its_pod_replaced() -> None:
    jobs = {n: job(n) for n in jobs_of()}
    d = decide(snap(planned("Transcoding"), jobs=jobs, stalled=frozenset({jobs_of()[1]})))
    assert [a for a in d.actions if isinstance(a, ReplacePods)] == [ReplacePods(jobs_of()[1])]


def test_a_complete_job_is_only_a_claim_until_its_rows_and_objects_check_out() -> None:
    jobs = all_jobs("succeeded")
    first = decide(snap(planned("Transcoding"), jobs=jobs))
    assert kinds(first) == ["ReadRecords"]
    assert first.status.phase == "Transcoding"
    second = decide(snap(planned("Transcoding"), jobs=jobs, records=records()))
    assert [a for a in second.actions if isinstance(a, Verify)] == [
        Verify(("1080p", "480p", "720p"))
    ]
    assert "Succeeded" not in entry_phases(second).values()
    third = decide(snap(planned("Transcoding"), jobs=jobs, records=records(), checks=no_problems()))
    assert entry_phases(third) == dict.fromkeys(("480p", "720p", "1080p"), "Succeeded")
    assert third.status.phase == "Publishing"
    assert [a for a in third.actions if isinstance(a, Publish)] == [Publish(PLAN)]
    outputs = third.status.renditions["720p"].outputs
    assert outputs is not None
    assert outputs.mp4 == f"videos/{VID}/720p/video.mp4"
    assert outputs.cids == {
        "video.mp4": "cid-720p-mp4",
        "hls/index.m3u8": "cid-720p-hls",
        "hls/init.mp4": "cid-720p-init",
    }
    published = vt.PublishedOutputs(f"videos/{VID}/master.m3u8", "root")
    done = decide(
        snap(third.status, jobs=jobs, records=records(), checks=no_problems(), published=published)
    )
    assert done.status.phase == "Ready"
    assert done.status.progress == 100
    assert done.status.outputs == published
    assert cond(done.status, "Ready").reason == "Published"
    assert cond(done.status, "Degraded").status == "False"
    assert events(done) == ["Ready"]


def test_a_lost_jobrunner_report_does_not_hold_the_video_back() -> None:
    """The jobrunner's last report (Uploading at 60%) never arrived: the Job and the rows say
    it is done, and that is what counts."""
    stale = vt.RenditionStatus(phase="Uploading", progress=60, job=jobs_of()[2])
    status = planned("Transcoding", r1080p=stale)
    d = decide(snap(status, jobs=all_jobs(), records=records(), checks=no_problems()))
    assert entry_phases(d)["1080p"] == "Succeeded"
    assert [a for a in d.actions if isinstance(a, Publish)] == [Publish(PLAN)]


def test_a_report_of_success_without_evidence_is_not_believed() -> None:
    """A rendition whose jobrunner says Uploading 100% while its Job still runs stays open."""
    claim = vt.RenditionStatus(phase="Uploading", progress=100, job=jobs_of()[0])
    jobs = {**all_jobs(), jobs_of()[0]: job(jobs_of()[0], "active")}
    d = decide(snap(planned("Transcoding", r480p=claim), jobs=jobs, records=records(),
                    checks=no_problems()))  # fmt: skip
    assert entry_phases(d)["480p"] == "Uploading"
    assert d.status.phase == "Transcoding"
    assert not [a for a in d.actions if isinstance(a, Publish)]


def test_a_complete_job_without_rows_is_made_again_then_fails_the_rendition() -> None:
    d = decide(snap(planned("Transcoding"), jobs=all_jobs(), records=records(r720p=None), slots=1))
    entry = d.status.renditions["720p"]
    assert (entry.phase, entry.redos) == ("Pending", 1)
    assert "no rows record its outputs" in (entry.message or "")
    redo = job_of(PLAN[1], 1)
    assert CreateTranscodeJob(redo, (PLAN[1],), resume=False) in d.actions
    assert DeleteJob(jobs_of()[1]) not in d.actions, "deleted once it is no longer planned"
    assert "Redo" in events(d)
    # The next step: the first Job is not planned any more.
    after = decide(snap(d.status, jobs={**all_jobs(), redo: job(redo)}))
    assert DeleteJob(jobs_of()[1]) in after.actions
    # At the limit: the rendition fails, the video is Ready without it and says so.
    worn = dataclasses.replace(entry, redos=2, job=job_name(NAME, "transcode", ["720p"], 2))
    status = planned("Transcoding", r720p=worn)
    jobs = {n: job(n, "succeeded") for n in planned_jobs(NAME, PLAN, False, {"720p": 2})}
    last = decide(snap(status, jobs=jobs, records=records(r720p=None), checks=no_problems()))
    assert entry_phases(last)["720p"] == "Failed"
    assert "did not check out after 3 runs" in (last.status.renditions["720p"].message or "")
    assert [a for a in last.actions if isinstance(a, Publish)] == [Publish((PLAN[0], PLAN[2]))]


def test_rows_recorded_by_another_run_are_not_evidence() -> None:
    stale = record(PLAN[0], "some-other-job")
    d = decide(snap(planned("Transcoding"), jobs=all_jobs(), records=records(r480p=stale)))
    assert d.status.renditions["480p"].redos == 1
    assert "recorded by some-other-job" in (d.status.renditions["480p"].message or "")


def test_gaps_in_the_segment_rows_are_not_evidence() -> None:
    gap = record(PLAN[0], job_of(PLAN[0]))
    hls = gap.outputs[(videos.HLS, videos.S3)]
    gap.outputs[(videos.HLS, videos.S3)] = dataclasses.replace(hls, segments=2, last_sequence=2)  # type: ignore[index]
    d = decide(snap(planned("Transcoding"), jobs=all_jobs(), records=records(r480p=gap)))
    assert "2 segment rows numbered 0 to 2, not 0 to 2" in (
        d.status.renditions["480p"].message or ""
    )


def test_outputs_missing_from_storage_are_made_again() -> None:
    checks = {**no_problems(), "1080p": ("3 of its segments are missing from S3",)}
    d = decide(snap(planned("Transcoding"), jobs=all_jobs(), records=records(), checks=checks))
    assert d.status.renditions["1080p"].phase == "Queued"
    assert d.status.renditions["1080p"].redos == 1
    assert d.status.phase == "Transcoding"
    assert not [a for a in d.actions if isinstance(a, Publish)]


def test_outputs_checked_in_an_earlier_step_are_checked_again_before_publishing() -> None:
    done = vt.RenditionStatus(phase="Succeeded", progress=100)
    status = planned("Publishing", r480p=done, r720p=done, r1080p=done)
    d = decide(snap(status, jobs=all_jobs(), records=records()))
    assert [a for a in d.actions if isinstance(a, Verify)] == [Verify(("1080p", "480p", "720p"))]
    broken = {**no_problems(), "480p": ("its MP4 is missing from S3",)}
    d = decide(snap(status, jobs=all_jobs(), records=records(), checks=broken, slots=1))
    assert d.status.renditions["480p"].phase == "Pending"
    assert CreateTranscodeJob(job_of(PLAN[0], 1), (PLAN[0],), resume=False) in d.actions
    assert d.status.phase == "Transcoding", "never a complete-looking Ready"


# --- failures ------------------------------------------------------------------------------------


def test_a_failed_job_fails_its_renditions_with_the_pods_words() -> None:
    jobs = {**all_jobs("active"), jobs_of()[0]: job(jobs_of()[0], "failed")}
    first = decide(snap(planned("Transcoding"), jobs=jobs))
    assert ExplainFailure(jobs_of()[0]) in first.actions
    d = decide(snap(planned("Transcoding"), jobs=jobs, failures={jobs_of()[0]: "InvalidSource: x"}))
    assert d.status.renditions["480p"].phase == "Failed"
    assert d.status.renditions["480p"].message == "InvalidSource: x"
    assert d.status.phase == "Transcoding"


def test_partial_failure_is_ready_and_degraded() -> None:
    failed = vt.RenditionStatus(phase="Failed", message="OOMKilled")
    jobs = {**all_jobs(), jobs_of()[2]: job(jobs_of()[2], "failed")}
    published = vt.PublishedOutputs(f"videos/{VID}/master.m3u8", "root")
    d = decide(snap(planned("Transcoding", r1080p=failed), jobs=jobs, records=records(),
                    checks=no_problems(), published=published))  # fmt: skip
    assert d.status.phase == "Ready"
    c = cond(d.status, "Degraded")
    assert (c.status, c.reason) == ("True", "RenditionsFailed")
    assert "1080p" in c.message


def test_total_failure_fails_the_video() -> None:
    failed = vt.RenditionStatus(phase="Failed", message="x")
    status = planned("Transcoding", r480p=failed, r720p=failed, r1080p=failed)
    d = decide(snap(status, jobs=all_jobs("failed")))
    assert d.status.phase == "Failed"
    assert (
        MarkFailed(
            "None of the versions of this video could be made.",
            "RenditionsFailed: every rendition failed: 480p, 720p, 1080p (first: x)",
        )
        in d.actions
    )
    # What the first failed rendition said decides the sentence.
    damaged = vt.RenditionStatus(
        phase="Failed", message="InvalidSource: FFmpeg could not decode the source: bad slice"
    )
    status = planned("Transcoding", r480p=damaged, r720p=failed, r1080p=failed)
    d = decide(snap(status, jobs=all_jobs("failed")))
    assert d.note == "This file is damaged: part of it could not be decoded."


def test_decode_errors_are_a_warning_on_a_ready_video() -> None:
    noisy = record(PLAN[0], job_of(PLAN[0]))
    key = (videos.MP4, videos.S3)
    noisy.outputs[key] = dataclasses.replace(noisy.outputs[key], decode_errors=7)  # type: ignore[index]
    done = vt.RenditionStatus(phase="Succeeded", progress=100)
    status = planned("Publishing", r480p=done, r720p=done, r1080p=done)
    published = vt.PublishedOutputs(f"videos/{VID}/master.m3u8", "root")
    d = decide(snap(status, jobs=all_jobs(), records=records(r480p=noisy), checks=no_problems(),
                    published=published))  # fmt: skip
    assert d.status.phase == "Ready"
    c = cond(d.status, "Degraded")
    assert (c.status, c.reason) == ("True", "DecodeErrors")
    assert "7 decode errors" in c.message


def test_a_failed_ingest_after_ready_degrades_without_failing() -> None:
    done = vt.RenditionStatus(phase="Succeeded", progress=100)
    ready = dataclasses.replace(
        planned("Ready", r480p=done, r720p=done, r1080p=done),
        ingest=vt.IngestStatus("Running"),
        outputs=vt.PublishedOutputs("m", "root"),
    )
    ingest = job(f"{NAME}-ingest", "failed")
    first = decide(snap(ready, ingest_job=ingest))
    assert ExplainFailure(ingest.name) in first.actions
    second = decide(snap(ready, ingest_job=ingest, failures={ingest.name: "ipfs down"}))
    assert kinds(second) == ["ReadRecords"]
    d = decide(snap(ready, ingest_job=ingest, failures={ingest.name: "ipfs down"},
                    records=records()))  # fmt: skip
    assert d.status.phase == "Ready"
    assert d.status.ingest == vt.IngestStatus("Failed", "ipfs down")
    assert cond(d.status, "Degraded").reason == "IngestFailed"


# --- suspend -------------------------------------------------------------------------------------


def test_suspend_before_admission_probes_nothing_and_makes_nothing() -> None:
    spec = dataclasses.replace(SPEC, suspend=True)
    d = decide(snap(vt.VideoTranscodeStatus(), spec=spec))
    assert d.status.phase == "Suspended"
    assert kinds(d) == []
    queued = decide(snap(planned("Queued"), spec=spec, slots=3))
    assert queued.status.phase == "Suspended"
    assert not [a for a in queued.actions if isinstance(a, CreateTranscodeJob)]
    assert missing_jobs(snap(planned("Queued"), spec=spec)) == 0


def test_suspend_after_admission_suspends_the_running_jobs_and_resume_resumes_them() -> None:
    spec = dataclasses.replace(SPEC, suspend=True)
    jobs = {n: job(n) for n in jobs_of()}
    d = decide(snap(planned("Transcoding"), spec=spec, jobs=jobs))
    assert [a for a in d.actions if isinstance(a, SetSuspended)] == [
        SetSuspended(n, True) for n in jobs_of()
    ]
    assert d.status.phase == "Suspended"
    suspended = {n: job(n, suspended=True) for n in jobs_of()}
    again = decide(snap(d.status, spec=spec, jobs=suspended))
    assert kinds(again) == [], "nothing more to do while suspended"
    resumed = decide(snap(d.status, jobs=suspended))
    assert [a for a in resumed.actions if isinstance(a, SetSuspended)] == [
        SetSuspended(n, False) for n in jobs_of()
    ]
    assert resumed.status.phase == "Transcoding"
    assert "Resumed" in events(resumed)


# --- a restart between any two writes ------------------------------------------------------


def test_restart_after_the_probe_before_the_plan_was_written_probes_again() -> None:
    status = vt.VideoTranscodeStatus(phase="Pending")
    assert decide(snap(status, slots=1)).actions == (Probe(),)


def test_restart_after_jobs_were_created_before_the_status_said_so() -> None:
    """The Jobs exist (the watch shows them); the status still says Queued: nothing is made
    twice, and the status catches up."""
    jobs = {n: job(n) for n in jobs_of()}
    s = snap(planned("Queued"), jobs=jobs, ingest_job=job(f"{NAME}-ingest"))
    assert missing_jobs(s) == 0
    d = decide(dataclasses.replace(s, slots=3))
    assert not [a for a in d.actions if isinstance(a, (CreateTranscodeJob, CreateIngestJob))]
    assert d.status.phase == "Transcoding"
    assert entry_phases(d) == dict.fromkeys(("480p", "720p", "1080p"), "Running")


def test_restart_during_publish_publishes_again() -> None:
    done = vt.RenditionStatus(phase="Succeeded", progress=100)
    status = planned("Publishing", r480p=done, r720p=done, r1080p=done)
    d = decide(snap(status, jobs=all_jobs(), records=records(), checks=no_problems()))
    assert [a for a in d.actions if isinstance(a, Publish)] == [Publish(PLAN)]


def test_restart_after_a_redo_was_decided_before_it_was_made() -> None:
    """The status says 720p is made again (redos 1) but its Job is not there yet."""
    redone = vt.RenditionStatus(phase="Queued", redos=1)
    s = snap(planned("Transcoding", r720p=redone), jobs=all_jobs())
    assert missing_jobs(s) == 1
    d = decide(dataclasses.replace(s, slots=1, records=records()))
    assert CreateTranscodeJob(job_of(PLAN[1], 1), (PLAN[1],), resume=False) in d.actions
    assert DeleteJob(jobs_of()[1]) in d.actions


def test_restart_when_the_ready_video_has_nothing_left_to_do() -> None:
    done = vt.RenditionStatus(phase="Succeeded", progress=100)
    ready = dataclasses.replace(
        planned("Ready", r480p=done, r720p=done, r1080p=done),
        ingest=vt.IngestStatus("Succeeded"),
        outputs=vt.PublishedOutputs("m", "root"),
    )
    d = decide(snap(ready))
    assert d.actions == ()
    assert d.status == ready


def test_a_resource_without_ipfs_publishes_no_ingest() -> None:
    spec = dataclasses.replace(SPEC, storage_ipfs=False)
    d = decide(snap(planned("Queued"), spec=spec, slots=3))
    assert CreateIngestJob() not in d.actions
    assert d.status.ingest is None
    only_s3 = {r.name: record(r, job_of(r), ipfs=False) for r in PLAN}
    d = decide(snap(planned("Transcoding"), spec=spec, jobs=all_jobs(), records=only_s3,
                    checks=no_problems()))  # fmt: skip
    assert entry_phases(d) == dict.fromkeys(("480p", "720p", "1080p"), "Succeeded")
    assert d.status.renditions["480p"].outputs == vt.RenditionOutputs(
        f"videos/{VID}/480p/video.mp4", f"videos/{VID}/480p/hls/index.m3u8", {},
        {fmt: img.key(VID, fmt) for fmt in img.FILES},
    )  # fmt: skip
    assert d.status.renditions["720p"].outputs == vt.RenditionOutputs(
        f"videos/{VID}/720p/video.mp4", f"videos/{VID}/720p/hls/index.m3u8", {}
    ), "the images are the 480p rendition's alone"


@pytest.mark.parametrize("phase", ["Ready", "Failed"])
def test_a_finished_video_makes_no_job(phase: Any) -> None:
    d = decide(snap(planned(phase), slots=3))
    assert not [a for a in d.actions if isinstance(a, CreateTranscodeJob)]
    assert missing_jobs(snap(planned(phase))) == 0


def test_the_continue_action_is_an_observation() -> None:
    d = decide(snap(vt.VideoTranscodeStatus(), probe=ProbeResult(facts=FACTS)))
    assert d.observes == (Continue(),)
    assert decide(snap(planned("Queued"), slots=0)).observes == ()
    assert ReadRecords() in decide(snap(planned(), jobs=all_jobs())).observes


# --- a resource works on its own video only ----------------------------------------------------


def test_the_video_is_claimed_before_anything_else() -> None:
    d = decide(snap(vt.VideoTranscodeStatus(), claim=None))
    assert d.actions == (ClaimVideo(),)
    running = decide(snap(planned("Transcoding"), claim=None, jobs=all_jobs("active")))
    assert running.actions == (ClaimVideo(),), "after a restart too"


@pytest.mark.parametrize(
    "why",
    [
        f"video {VID} belongs to resource other/v-{VID}",
        f"videos/{VID}/source/x.mp4 is not the upload of video {VID}",
        f"video {VID} was deleted",
    ],
)
def test_a_video_that_is_not_the_resources_is_refused_without_a_word_to_its_row(
    why: str,
) -> None:
    d = decide(snap(vt.VideoTranscodeStatus(), claim=videos.Claim(refused=why), slots=3))
    assert d.status.phase == "Failed"
    assert cond(d.status, "Ready").reason == "InvalidSpec"
    assert cond(d.status, "Ready").message == why
    assert not [a for a in d.actions if isinstance(a, (MarkFailed, CreateTranscodeJob, Probe))]


def test_a_resource_not_named_after_its_video_is_refused() -> None:
    other = dataclasses.replace(SPEC, video_id="11111111-2222-4333-8444-555555555555")
    d = decide(snap(vt.VideoTranscodeStatus(), spec=other))
    assert d.status.phase == "Failed"
    assert "is named v-11111111-2222-4333-8444-555555555555" in cond(d.status, "Ready").message
    assert not [a for a in d.actions if isinstance(a, (MarkFailed, ClaimVideo, Probe))]


def test_a_running_rendition_shows_what_its_jobrunner_reported() -> None:
    jobs = {n: job(n) for n in jobs_of()}
    reports = {
        "480p": Report("uploading", 95, None),
        "720p": Report("encoding", 40, None),
        "1080p": Report("retrying", 10, "retrying: S3 away"),
    }
    d = decide(snap(planned("Transcoding"), jobs=jobs, reports=reports))
    shown = {n: (e.phase, e.progress, e.message) for n, e in d.status.renditions.items()}
    assert shown == {
        "480p": ("Uploading", 95, None),
        "720p": ("Running", 40, None),
        "1080p": ("Running", 10, "retrying: S3 away"),
    }
    assert d.status.progress == 48
    assert d.status.phase == "Transcoding"
    claimed_done = {"480p": Report("done", 100, "outputs recorded")}
    d = decide(snap(planned("Transcoding"), jobs=jobs, reports=claimed_done))
    assert d.status.renditions["480p"].phase == "Uploading", "done is a report, not a verdict"


def test_the_report_book_keeps_only_the_videos_it_watches() -> None:
    from vtx.core.events import StatusUpdate
    from vtx.operator.reports import ReportBook

    book = ReportBook()
    book.record(StatusUpdate(video_id=VID, rendition="480p", phase="encoding", progress=12.7))
    assert len(book) == 0, "a video no resource here works on"
    book.watch(VID)
    book.record(StatusUpdate(video_id=VID, rendition="480p", phase="encoding", progress=12.7))
    book.record(StatusUpdate(video_id=VID, rendition=None, phase="Transcoding", progress=5))
    assert book.of(VID) == {"480p": Report("encoding", 12)}
    book.forget(VID)
    assert len(book) == 0
    book.record(StatusUpdate(video_id=VID, rendition="480p", phase="encoding", progress=50))
    assert len(book) == 0


def test_a_source_outside_the_videos_folder_is_refused_before_anything_is_asked() -> None:
    foreign = dataclasses.replace(
        SPEC, source=vt.SourceRef(key="videos/11111111-2222-4333-8444-555555555555/source/a.mp4",
                                  size=1),
    )  # fmt: skip
    d = decide(snap(vt.VideoTranscodeStatus(), spec=foreign, claim=None))
    assert d.status.phase == "Failed"
    assert "the source key must be under" in cond(d.status, "Ready").message
    assert not [a for a in d.actions if isinstance(a, (ClaimVideo, MarkFailed, Probe))]


def test_the_report_book_bounds_the_bytes_a_pod_says_it_stored() -> None:
    from vtx.core.events import StatusUpdate
    from vtx.operator.reports import MAX_STORED_BYTES, ReportBook

    book = ReportBook()
    book.watch(VID)
    for said, kept in ((-5, 0), (7_000_000, 7_000_000), (1 << 62, MAX_STORED_BYTES)):
        book.record(StatusUpdate(video_id=VID, rendition="480p", phase="uploading",
                                 progress=95, stored_bytes=said))  # fmt: skip
        assert book.of(VID)["480p"].stored_bytes == kept


def test_a_job_storing_bytes_is_not_stalled_though_its_progress_stands_still() -> None:
    from vtx.operator.context import StallWatch

    watch, key = StallWatch(), ("ns", "job")
    assert not watch.stalled(key, (95, 1_000), now=0.0, stall_s=10)
    assert not watch.stalled(key, (95, 2_000), now=8.0, stall_s=10)
    assert not watch.stalled(key, (95, 3_000), now=16.0, stall_s=10), "bytes moved: alive"
    assert not watch.stalled(key, (95, 3_000), now=25.0, stall_s=10)
    assert watch.stalled(key, (95, 3_000), now=26.0, stall_s=10), "nothing moved for 10 s"
    assert not watch.stalled(key, (0, 0), now=27.0, stall_s=10), "a new attempt starts over"


def test_the_probe_memo_keeps_the_newest_and_forgets_on_demand() -> None:
    from vtx.operator.context import ProbeMemo

    memo = ProbeMemo(capacity=2)
    for name in ("a", "b", "c"):
        memo.remember(("ns", name), (("key", 1), name))
    assert memo.get(("ns", "a")) is None, "the oldest went"
    assert memo.get(("ns", "c")) == (("key", 1), "c")
    memo.forget(("ns", "c"))
    assert memo.get(("ns", "c")) is None
    assert len(memo) == 1
