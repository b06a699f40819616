"""One reconciliation step of a VideoTranscode: gather what is observed into a
:class:`~vtx.operator.decide.Snapshot`, :func:`~vtx.operator.decide.decide`, write the status,
carry the actions out; again while the decision asks to observe something more (the probe, the
rows, the outputs in storage, the publish).

The status is written before the actions that follow from it, so a step cut short anywhere
leaves a status from which the next step finds its way: a Job it made is seen by name, a Job
it meant to make is made, a publish is done again (it is idempotent).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from vtx.core import failpoints, videos
from vtx.core import resource as vt
from vtx.core.failures import MAX_HEAD, explain, sniff
from vtx.core.ladder import InvalidSource
from vtx.core.ranges import MAX_RANGES
from vtx.core.sources import ProbeUnavailable, probe_source
from vtx.core.verify import check_rendition, record_problems, segments_of
from vtx.operator.context import Context, create_job, delete_stuck_pods
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
    Policy,
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
from vtx.operator.grouping import Capacity, cpu_millis
from vtx.operator.jobs import build_ingest_job, build_transcode_job
from vtx.operator.metrics import PROBES, STALLS
from vtx.operator.publish import publish_video
from vtx.operator.state import Waiting, job_observations, status_patch

log = logging.getLogger(__name__)
MAX_ROUNDS = 8  # decisions in one step: probe, plan, admit, read, verify, publish, ready


@dataclass
class Observed:
    """What this step's observing actions found."""

    probe: ProbeResult | None = None
    records: dict[str, videos.RenditionRecord] | None = None
    checks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    checked: bool = False
    failures: dict[str, str] = field(default_factory=dict)
    published: vt.PublishedOutputs | None = None
    claim: videos.Claim | None = None


@dataclass
class Step:
    ctx: Context
    body: kopf.Body
    meta: kopf.Meta
    namespace: str
    status: dict[str, Any]  # as the resource holds it now: updated by every write of the step
    note: str | None = None  # what the phase event says
    initial: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation") or 1)

    @property
    def ref(self) -> str:
        """``<namespace>/<name>``: how the video's row names the resource that owns it."""
        return f"{self.namespace}/{self.name}"

    def owner(self) -> dict[str, Any]:
        return {
            "apiVersion": vt.API_VERSION,
            "kind": vt.KIND,
            "name": self.name,
            "uid": self.body.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def policy(ctx: Context) -> Policy:
    s = ctx.settings
    return Policy(
        max_output_fps=s.max_output_fps,
        max_audio_tracks=s.max_audio_tracks,
        max_subtitle_tracks=s.max_subtitle_tracks,
        redo_limit=s.redo_limit,
        probe_retry_limit=s.probe_retry_limit,
        split_seconds=s.split_seconds,
        max_ranges=min(s.max_ranges, MAX_RANGES),
        min_range_seconds=s.min_range_seconds,
    )


def reconcile_step(step: Step, spec_dict: dict[str, Any]) -> None:
    """Move the resource on as far as it can go now."""
    step.initial = dict(step.status)
    try:
        spec = vt.VideoTranscodeSpec.from_dict(spec_dict)
        vt.VideoTranscodeStatus.from_dict(step.status)
    except ValueError as exc:
        _refuse(step, exc)
        return
    observed = Observed()
    try:
        _rounds(step, spec, observed)
    except Abandoned:
        return  # its finalizer does what is left; no probe, Job or status for it now
    finally:
        # A probe's slot is held through its step only: planned, the resource asks for its
        # Jobs' slots; unplanned still, it asks for a probe's slot again at its next step.
        step.ctx.view.release_probe(step.namespace, step.name)


class Abandoned(Exception):
    """The resource was marked for deletion during the step: the step stops where it is."""


def _rounds(step: Step, spec: vt.VideoTranscodeSpec, observed: Observed) -> None:
    ctx = step.ctx
    cap = ctx.settings.max_running_jobs
    for _ in range(MAX_ROUNDS):
        if being_deleted(step.body):
            raise Abandoned
        status = vt.VideoTranscodeStatus.from_dict(step.status)
        snapshot = gather(step, spec, status, observed)
        missing = missing_jobs(snapshot)
        if missing:
            me = Waiting(str(step.meta["creationTimestamp"]), step.namespace, step.name, missing)
            if status.plan is None:  # a slot to be probed in: no Job is made, so no lock
                decision = decide(replace(snapshot, slots=ctx.view.admit_probe(me, cap)))
                apply(step, spec, decision)
            else:
                with ctx.admission:  # decide and create under one lock: no two take the last slot
                    decision = decide(replace(snapshot, slots=ctx.view.admit(me, cap)))
                    apply(step, spec, decision)
            ctx.view.set_waiting(replace(me, missing=decision.waiting))
        else:
            decision = decide(snapshot)
            apply(step, spec, decision)
            ctx.view.set_waiting(
                Waiting(str(step.meta["creationTimestamp"]), step.namespace, step.name, 0)
            )
        if not decision.observes:
            return
        observe(step, spec, decision, observed)
    log.warning("%s/%s: the step stopped after %d decisions", step.namespace, step.name, MAX_ROUNDS)


def _refuse(step: Step, exc: ValueError) -> None:
    """A spec or status the operator cannot read: Failed, saying why; nothing else is done."""
    reason = "InvalidStatus" if isinstance(exc, vt.InvalidStatus) else "InvalidSpec"
    if step.status.get("phase") == "Failed":
        return
    now = datetime.now(UTC)
    message = str(exc)[: vt.MESSAGE_LIMIT]
    failed = vt.VideoTranscodeStatus(
        phase="Failed",
        observed_generation=step.generation,
        conditions=vt.set_condition((), "Ready", "False", reason, message, step.generation, now),
    )
    write_status(step, failed.to_dict())
    detail = f"{reason}: {message}"
    step.note = explain(detail)
    kopf.warn(step.body, reason=reason, message=message)
    video_id = str((step.body.get("spec") or {}).get("videoId") or "")
    if named_after(step.name, video_id):
        _mark_failed(step.ctx, video_id, step.note, detail, step.ref)


def named_after(name: str, video_id: str) -> bool:
    """A resource named after its video (``v-<videoId>``), as vtx makes them."""
    try:
        return vt.resource_name(video_id) == name
    except ValueError:
        return False


def gather(
    step: Step, spec: vt.VideoTranscodeSpec, status: vt.VideoTranscodeStatus, observed: Observed
) -> Snapshot:
    ctx = step.ctx
    jobs, ingest = job_observations(ctx.view.jobs_of(step.namespace, step.name))
    reports = ctx.reports.of(spec.video_id)
    stalled = set()
    now = time.monotonic()
    for name, job in jobs.items():
        key = (step.namespace, name)
        if job.state != "active" or job.suspended:
            ctx.stalls.forget(key)
            continue
        mine = [r for r, e in status.renditions.items() if e.job == name]
        said = [reports[r] for r in mine if r in reports]
        # Progress, or bytes stored: a pod uploading a large MP4 is alive though its
        # progress stands still. The segments it has recorded count too: with the broker away
        # its reports stop, and a live encode must not be taken for stalled.
        recorded = ctx.db.transaction(
            functools.partial(videos.segments_recorded, video_id=spec.video_id, renditions=mine),
            name="segments recorded",
        )
        signs = (sum(r.progress for r in said), sum(r.stored_bytes for r in said), *recorded)
        if ctx.stalls.stalled(key, signs, now, ctx.settings.stall_seconds):
            stalled.add(name)
    return Snapshot(
        name=step.name,
        generation=step.generation,
        spec=spec,
        status=status,
        now=datetime.now(UTC),
        policy=policy(ctx),
        jobs=jobs,
        ingest_job=ingest,
        stalled=frozenset(stalled),
        probe=observed.probe,
        records=observed.records,
        checks=observed.checks if observed.checked else None,
        failures=observed.failures,
        published=observed.published,
        claim=videos.Claim() if step.ref in ctx.claimed else observed.claim,
        reports=reports,
        # Read only for the round that makes the plan from the probe's facts: the grouping is
        # chosen then, once (a refused or unreadable source needs no cluster view).
        capacity=(
            capacity(ctx)
            if status.plan is None and observed.probe is not None and observed.probe.facts
            else None
        ),
    )


def capacity(ctx: Context) -> Capacity:
    """What the cluster offers a video being planned (grouping.py's rule reads it)."""
    return Capacity(
        nodes=ctx.nodes.schedulable(),
        running_jobs=ctx.view.running_transcodes(),
        queued_jobs=ctx.view.queued(),
        max_running_jobs=ctx.settings.max_running_jobs,
        job_cpu_request_mcpu=cpu_millis(ctx.settings.job_cpu_request),
    )


def write_status(step: Step, after: dict[str, Any]) -> None:
    """Patch the status subresource with what changed (nothing when nothing did)."""
    patch = status_patch(step.status, after)
    if not patch:
        return
    step.ctx.custom.patch_namespaced_custom_object_status(
        vt.GROUP, vt.VERSION, step.namespace, vt.PLURAL, step.name, {"status": patch},
        _request_timeout=step.ctx.settings.request_timeout_s,
    )  # fmt: skip
    kopf_part = {k: v for k, v in step.status.items() if k not in vt.STATUS_KEYS}
    step.status = {**kopf_part, **after}


def apply(step: Step, spec: vt.VideoTranscodeSpec, decision: Decision) -> None:
    """Write the decided status, then carry out its actions (observations aside)."""
    ctx, ns = step.ctx, step.namespace
    write_status(step, decision.status.to_dict())
    if decision.note:
        step.note = decision.note
    status = decision.status
    for action in decision.actions:
        if isinstance(action, CreateTranscodeJob):
            duration = status.source.duration if status.source else 0.0
            create_job(ctx, ns, build_transcode_job(
                resource=step.name, namespace=ns, video_id=spec.video_id,
                source_key=spec.source.key, renditions=action.renditions, duration_s=duration,
                settings=ctx.settings, owner=step.owner(), name=action.name,
                ipfs=spec.storage_ipfs, resume=action.resume, range_bounds=action.range_bounds,
                parallelism=action.parallelism, finalize=action.finalize,
            ))  # fmt: skip
        elif isinstance(action, CreateIngestJob):
            create_job(ctx, ns, build_ingest_job(
                resource=step.name, namespace=ns, video_id=spec.video_id,
                source_key=spec.source.key, size=spec.source.size, settings=ctx.settings,
                owner=step.owner(),
            ))  # fmt: skip
        elif isinstance(action, DeleteJob):
            _delete_job(ctx, ns, action.name)
        elif isinstance(action, SetSuspended):
            job = ctx.batch.patch_namespaced_job(
                action.name, ns, {"spec": {"suspend": action.suspended}}
            )
            ctx.view.put_job(ctx.plain(job))
        elif isinstance(action, ReplacePods):
            if delete_stuck_pods(ctx, ns, action.name):
                STALLS.inc()
                kopf.warn(
                    step.body, reason="Stalled",
                    message=f"Job {action.name} made no progress for "
                    f"{ctx.settings.stall_seconds}s; its pod is replaced",
                )  # fmt: skip
            ctx.stalls.restart((ns, action.name), time.monotonic())
        elif isinstance(action, MarkFailed):
            _mark_failed(ctx, spec.video_id, action.reason, action.detail, step.ref)
        elif isinstance(action, Emit):
            post = kopf.warn if action.kind == "Warning" else kopf.info
            post(step.body, reason=action.reason, message=action.message)
    if any(isinstance(a, CreateTranscodeJob) for a in decision.actions):
        failpoints.hit("operator.jobs-created")


def _mark_failed(ctx: Context, video_id: str, reason: str, detail: str, resource: str) -> None:
    ctx.db.transaction(
        lambda cur: videos.mark_failed(cur, video_id, reason, detail, resource=resource),
        name="mark failed",
    )


def _delete_job(ctx: Context, namespace: str, name: str) -> None:
    try:
        ctx.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise
    ctx.view.drop_job(namespace, name)


def observe(step: Step, spec: vt.VideoTranscodeSpec, decision: Decision, seen: Observed) -> None:
    """Carry out what the decision wants to know, into ``seen`` for the next decision."""
    ctx = step.ctx
    status = decision.status
    for action in decision.observes:
        if isinstance(action, ClaimVideo):
            seen.claim = ctx.db.transaction(
                lambda cur: videos.claim_video(
                    cur, spec.video_id, step.ref, source_key=spec.source.key,
                    size=spec.source.size, content_type=spec.source.content_type,
                ),
                name="claim video",
            )  # fmt: skip
            if seen.claim.refused is None:
                ctx.claimed.add(step.ref)
            if seen.claim.created:
                kopf.info(step.body, reason="VideoRecorded",
                          message=f"video {spec.video_id} had no row: one was made")  # fmt: skip
        elif isinstance(action, Probe):
            source = (spec.source.key, spec.source.size)
            known = ctx.probed.get((step.namespace, step.name))
            if known is not None and known[0] == source:
                seen.probe = known[1]
            else:
                failpoints.hit("operator.probing")
                if not _still_unprobed(step):
                    raise Abandoned  # deleted or planned meanwhile: no probe for it now
                tries = int(step.status.get("probeFailures") or 0) + 1
                seen.probe = _probe(ctx, spec, tries)
                if seen.probe.unavailable is None:  # what it said of the file holds
                    ctx.probed.remember((step.namespace, step.name), (source, seen.probe))
            failpoints.hit("operator.probed")
        elif isinstance(action, ReadRecords):
            seen.records = ctx.db.transaction(
                lambda cur: videos.rendition_records(cur, spec.video_id), name="read rows"
            )
        elif isinstance(action, Verify):
            seen.checked = True
            seen.checks.update(_verify(step, spec, status, action.renditions, seen))
        elif isinstance(action, ExplainFailure):
            seen.failures[action.job] = _why_failed(ctx, step.namespace, action.job)
        elif isinstance(action, Publish):
            seen.published = publish_video(
                spec.video_id, action.renditions, store=ctx.store,
                ipfs=ctx.ipfs if spec.storage_ipfs else None, db=ctx.db, resource=step.ref,
            )  # fmt: skip
        else:
            assert isinstance(action, Continue)


def being_deleted(body: Mapping[str, Any]) -> bool:
    """The resource is marked for deletion (kopf keeps a running step's body current)."""
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def _still_unprobed(step: Step) -> bool:
    """Whether the resource, as the API server has it now, still wants its probe: not marked
    for deletion, no plan in its status. One GET spares a probe that a lagging watch would
    start (the step's body can be tens of seconds old when a thousand resources change)."""
    if being_deleted(step.body):
        return False
    now = read_resource(step.ctx, step.namespace, step.name)
    return now is not None and not being_deleted(now) and not (now.get("status") or {}).get("plan")


def read_resource(ctx: Context, namespace: str, name: str) -> dict[str, Any] | None:
    """The resource as the API server has it now; None when it is gone."""
    try:
        obj: dict[str, Any] = ctx.custom.get_namespaced_custom_object(
            vt.GROUP, vt.VERSION, namespace, vt.PLURAL, name,
            _request_timeout=ctx.settings.request_timeout_s,
        )  # fmt: skip
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def _probe(ctx: Context, spec: vt.VideoTranscodeSpec, tries: int) -> ProbeResult:
    PROBES.inc()
    log.info("probing the source of video %s (try %d)", spec.video_id, tries)
    url = ctx.store.presign_get(spec.source.key, expires_s=600, public=False)
    try:
        return ProbeResult(facts=probe_source(url, ctx.settings))
    except InvalidSource as exc:
        return ProbeResult(refused=str(exc), looks_like=_looks_like(ctx, spec.source.key))
    except ProbeUnavailable as exc:
        log.warning("the source of video %s could not be read: %s", spec.video_id, exc)
        return ProbeResult(unavailable=str(exc))


def _looks_like(ctx: Context, key: str) -> str | None:
    """What the first bytes of a refused source say it is (for the sentence its uploader
    reads); None when they do not tell, or cannot be read."""
    try:
        return sniff(ctx.store.get_head(key, MAX_HEAD))
    except Exception:  # any failure: the sentence is a courtesy, the refusal stands anyway
        log.warning("could not read the first bytes of %s", key, exc_info=True)
        return None


def _verify(
    step: Step,
    spec: vt.VideoTranscodeSpec,
    status: vt.VideoTranscodeStatus,
    names: tuple[str, ...],
    seen: Observed,
) -> dict[str, tuple[str, ...]]:
    """Renditions' rows and their objects in S3, checked afresh (the rows read once)."""
    ctx = step.ctx
    assert status.plan is not None
    renditions = [r for r in status.plan if r.name in names]
    records = ctx.db.transaction(
        lambda cur: videos.rendition_records(cur, spec.video_id), name="read rows"
    )
    seen.records = records
    segments = segments_of(ctx.db, spec.video_id, renditions)
    duration = status.source.duration if status.source else None
    checks: dict[str, tuple[str, ...]] = {}
    for r in renditions:
        record = records.get(r.name)
        problems = record_problems(record, job=None, rendition=r, ipfs=spec.storage_ipfs)
        if record is not None and not problems:
            problems = check_rendition(
                ctx.store, spec.video_id, r, record, segments[r.name], duration
            )
        checks[r.name] = tuple(problems)
    return checks


def _why_failed(ctx: Context, namespace: str, job: str) -> str:
    """The last line a failed pod of ``job`` wrote (its termination message), or the Job's own
    reason when no pod said anything."""
    pods = ctx.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}")
    for pod in sorted(pods.items, key=lambda p: p.metadata.creation_timestamp, reverse=True):
        for cs in pod.status.container_statuses or []:
            term = cs.state.terminated if cs.state else None
            if term is not None and term.exit_code and term.message:
                lines = [ln for ln in term.message.strip().splitlines() if ln.strip()]
                if lines:
                    return str(lines[-1])[: vt.MESSAGE_LIMIT]
    view_job = ctx.view.job(namespace, job)
    for c in ((view_job or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return f"{c.get('reason', 'Failed')}: {c.get('message', '')}"[: vt.MESSAGE_LIMIT]
    return "the Job failed"
