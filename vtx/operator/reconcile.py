"""One reconciliation step of a VideoTranscode: probe and plan, admit and create Jobs, follow
them, publish. A step only records what it wants changed (``Step.changes``, a merge patch of the
status); the handler writes what differs from the current status, so an idle step writes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from vtx.core import resource as vt
from vtx.core.ladder import InvalidSource, Rendition, plan_ladder
from vtx.core.sources import ProbeUnavailable, probe_source
from vtx.operator import rows
from vtx.operator.context import Context, create_job, delete_stuck_pods
from vtx.operator.jobs import build_ingest_job, build_transcode_job, job_name, transcode_jobs
from vtx.operator.metrics import STALLS, TIME_TO_READY
from vtx.operator.publish import FinishedRendition, publish_video
from vtx.operator.state import (
    PLAN_ANNOTATION,
    Waiting,
    decode_plan,
    encode_plan,
    job_state,
    summarize,
)

log = logging.getLogger(__name__)
TERMINAL = {"Ready", "Failed"}


@dataclass
class Step:
    ctx: Context
    body: kopf.Body
    spec: vt.VideoTranscodeSpec
    status: dict[str, Any]  # as it was when the step began
    meta: kopf.Meta
    namespace: str
    changes: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    note: str | None = None  # what the phase event says

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def video_id(self) -> str:
        return self.spec.video_id

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation") or 1)

    def condition(self, type: str, value: str, reason: str, message: str) -> None:
        current = self.changes.get("conditions") or self.status.get("conditions") or []
        self.changes["conditions"] = vt.set_condition(
            current, type, value, reason, message, self.generation,  # type: ignore[arg-type]
            datetime.now(UTC),
        )  # fmt: skip

    def rendition(self, name: str, **fields: Any) -> None:
        self.changes.setdefault("renditions", {}).setdefault(name, {}).update(fields)

    def owner(self) -> dict[str, Any]:
        return {
            "apiVersion": vt.API_VERSION,
            "kind": vt.KIND,
            "name": self.name,
            "uid": self.body.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def reconcile_step(step: Step) -> None:
    phase = step.status.get("phase")
    if phase in TERMINAL:
        follow_ingest(step)
        return
    plan_text = (step.meta.get("annotations") or {}).get(PLAN_ANNOTATION)
    if plan_text is None:
        probe_and_plan(step)
        # Planned: on to admission in the same step, not a timer interval later.
        plan_text = step.annotations.get(PLAN_ANNOTATION)
        if plan_text is None:
            return  # the source was refused
    plan = decode_plan(plan_text)
    planned = transcode_jobs(step.name, plan, step.spec.group_renditions)
    ctx, ns = step.ctx, step.namespace
    jobs = ctx.view.jobs_of(ns, step.name)
    if step.spec.suspend:
        if phase != "Suspended":
            _set_suspend(step, jobs, True)
            step.changes["phase"] = "Suspended"
            ctx.view.forget(ns, step.name)
            kopf.info(step.body, reason="Suspended", message="no new Jobs; running ones suspended")
        return
    if phase == "Suspended":
        _set_suspend(step, jobs, False)
        step.changes["phase"] = "Transcoding" if jobs else "Queued"
        kopf.info(step.body, reason="Resumed", message="Jobs resumed")
        return

    missing = [group for name, group in planned.items() if name not in jobs]
    if missing:
        allowed = _admit_and_create(step, missing)
        if allowed and step.spec.storage_ipfs and job_name(step.name, "ingest") not in jobs:
            create_job(
                ctx, ns,
                build_ingest_job(
                    resource=step.name, namespace=ns, video_id=step.video_id,
                    source_key=step.spec.source.key, size=step.spec.source.size,
                    settings=ctx.settings, owner=step.owner(),
                ),
            )  # fmt: skip
            step.changes["ingest"] = {"phase": "Running"}
        if allowed == len(missing):
            step.condition("JobsCreated", "True", "JobsCreated", f"{len(planned)} transcode Jobs")
            kopf.info(step.body, reason="JobsCreated", message=f"{len(planned)} transcode Jobs")
        if not allowed and len(missing) == len(planned):
            step.changes["phase"] = "Queued"
            return
        step.changes["phase"] = "Transcoding"
        if allowed:
            return
    follow_ingest(step)
    _follow_transcodes(step, plan, planned, ctx.view.jobs_of(ns, step.name))


def probe_and_plan(step: Step) -> None:
    ctx = step.ctx
    url = ctx.store.presign_get(step.spec.source.key, expires_s=600, public=False)
    try:
        facts = probe_source(url, ctx.settings)
        plan = plan_ladder(facts, max_fps=ctx.settings.max_output_fps)
    except InvalidSource as exc:
        message = str(exc)
        step.changes.update(phase="Failed", observedGeneration=step.generation)
        step.condition("Probed", "False", "InvalidSource", message)
        step.condition("Ready", "False", "InvalidSource", message)
        step.note = f"InvalidSource: {message}"
        rows.mark_failed(ctx.db, step.video_id, f"InvalidSource: {message}")
        kopf.warn(step.body, reason="InvalidSource", message=message)
        return
    except ProbeUnavailable as exc:
        raise kopf.TemporaryError(f"probing the source: {exc}", delay=10) from exc
    if step.spec.renditions:
        wanted = {r.name for r in step.spec.renditions}
        plan = [r for r in plan if r.name in wanted] or plan
    step.annotations[PLAN_ANNOTATION] = encode_plan(plan)
    step.changes.update(
        phase="Queued",
        progress=0,
        renditionsReady=f"0/{len(plan)}",
        source={
            "duration": facts.duration,
            "width": facts.width or 0,
            "height": facts.height or 0,
            "fps": facts.fps or 0,
            "rotation": facts.rotation,
            "videoCodec": facts.video_codec or "",
            "audioCodec": facts.audio_codec or "",
            "hasAudio": facts.has_audio,
        },
        renditions={r.name: {"phase": "Pending", "progress": 0} for r in plan},
    )
    step.condition("Probed", "True", "Probed", f"{len(plan)} renditions planned")
    kopf.info(step.body, reason="Probed", message=", ".join(r.name for r in plan))


def _set_suspend(step: Step, jobs: dict[str, dict[str, Any]], suspend: bool) -> None:
    ctx = step.ctx
    for name in jobs:
        job = ctx.batch.patch_namespaced_job(name, step.namespace, {"spec": {"suspend": suspend}})
        ctx.view.put_job(ctx.plain(job))


def _admit_and_create(step: Step, missing: list[list[Rendition]]) -> int:
    """Create as many of the missing Jobs as the cap lets this resource have now."""
    ctx = step.ctx
    source = step.changes.get("source") or step.status.get("source") or {}
    duration = float(source.get("duration") or 0)
    me = Waiting(str(step.meta["creationTimestamp"]), step.namespace, step.name, len(missing))
    with ctx.admission:  # decide and create under one lock: no two take the last slot
        allowed = ctx.view.admit(me, ctx.settings.max_running_jobs)
        for group in missing[:allowed]:
            create_job(
                ctx, step.namespace,
                build_transcode_job(
                    resource=step.name, namespace=step.namespace, video_id=step.video_id,
                    source_key=step.spec.source.key, renditions=group, duration_s=duration,
                    settings=ctx.settings, owner=step.owner(),
                ),
            )  # fmt: skip
        ctx.view.set_waiting(dataclasses.replace(me, missing=len(missing) - allowed))
    return allowed


def _follow_transcodes(
    step: Step, plan: list[Rendition], planned: dict[str, list[Rendition]], jobs: dict[str, Any]
) -> None:
    """A Job that ended for good decides its renditions' fate. Only the fields the operator
    owns are written: the jobrunners write phase and progress of running renditions."""
    entries = {k: dict(v) for k, v in (step.status.get("renditions") or {}).items()}
    for jname, group in planned.items():
        if jname not in jobs:
            continue
        state = job_state(jobs[jname])
        if state.state == "active":
            _watch_for_stall(step, jname, [entries.get(r.name, {}) for r in group])
        for r in group:
            entry = entries.setdefault(r.name, {})
            change: dict[str, Any] = {"job": jname, "attempts": state.attempts}
            if state.state == "failed" and entry.get("phase") != "Succeeded":
                change["phase"] = "Failed"
                change["message"] = (entry.get("message") or f"{state.reason}: {state.message}")[
                    : vt.MESSAGE_LIMIT
                ]
            entry.update(change)
            step.rendition(r.name, **change)
    summary = summarize(plan, entries)
    step.changes.update(progress=summary.progress, renditionsReady=summary.ready)
    if summary.phase == "Transcoding":
        return
    step.changes["observedGeneration"] = step.generation
    ctx = step.ctx
    if summary.phase == "Failed":
        message = "every rendition failed: " + ", ".join(summary.failed)
        step.changes["phase"] = "Failed"
        step.note = message
        step.condition("Ready", "False", "RenditionsFailed", message)
        rows.mark_failed(ctx.db, step.video_id, message)
        kopf.warn(step.body, reason="Failed", message=message)
        return
    finished = [
        FinishedRendition(r, (entries[r.name].get("outputs") or {}).get("cids") or {})
        for r in plan
        if entries[r.name].get("phase") == "Succeeded"
    ]
    outputs = publish_video(step.video_id, finished, ctx.store, ctx.ipfs, ctx.db)
    step.changes.update(outputs=outputs, phase="Ready", progress=100)
    created = datetime.fromisoformat(str(step.meta["creationTimestamp"]).replace("Z", "+00:00"))
    TIME_TO_READY.observe((datetime.now(UTC) - created).total_seconds())
    _degraded(step, summary.failed)
    step.condition("Ready", "True", "Published", f"root CID {outputs['cid']}")
    kopf.info(
        step.body, reason="Ready", message=f"master {outputs['master']}, CID {outputs['cid']}"
    )


def _degraded(step: Step, failed: tuple[str, ...] | list[str]) -> None:
    """Degraded names what is missing: renditions that failed for good, an original that could
    not be pinned. Neither stops the video from being Ready."""
    ingest = step.changes.get("ingest") or step.status.get("ingest") or {}
    parts = []
    if failed:
        parts.append("renditions failed: " + ", ".join(failed))
    if ingest.get("phase") == "Failed":
        parts.append("the original is not pinned to IPFS: " + str(ingest.get("message") or ""))
    if not parts:
        step.condition("Degraded", "False", "AllRenditions", "every rendition is ready")
        return
    reason = "RenditionsFailed" if failed else "IngestFailed"
    step.condition("Degraded", "True", reason, "; ".join(parts))


def follow_ingest(step: Step) -> None:
    """The ingest Job's end, in status.ingest (and Degraded when it failed after Ready)."""
    ingest = step.status.get("ingest") or {}
    if ingest.get("phase") != "Running":
        return
    ctx = step.ctx
    name = job_name(step.name, "ingest")
    job = ctx.view.jobs_of(step.namespace, step.name).get(name)
    if job is None:
        outcome = {"phase": "Failed", "message": "the ingest Job is gone before it ended"}
    else:
        state = job_state(job)
        if state.state == "active":
            return
        if state.state == "succeeded":
            outcome = {"phase": "Succeeded", "message": "the original is pinned to IPFS"}
        else:
            why = _pod_failure(ctx, step.namespace, name) or f"{state.reason}: {state.message}"
            outcome = {"phase": "Failed", "message": why[: vt.MESSAGE_LIMIT]}
    step.changes["ingest"] = outcome
    if outcome["phase"] == "Failed":
        kopf.warn(step.body, reason="IngestFailed", message=outcome["message"])
        if step.status.get("phase") == "Ready":
            failed = [
                n
                for n, e in (step.status.get("renditions") or {}).items()
                if e.get("phase") == "Failed"
            ]
            _degraded(step, failed)


def _pod_failure(ctx: Context, namespace: str, job: str) -> str | None:
    """The last lines a failed pod of ``job`` wrote (its termination message), if any."""
    pods = ctx.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}")
    for pod in sorted(pods.items, key=lambda p: p.metadata.creation_timestamp, reverse=True):
        for cs in pod.status.container_statuses or []:
            term = cs.state.terminated if cs.state else None
            if term is not None and term.exit_code and term.message:
                lines = [ln for ln in term.message.strip().splitlines() if ln.strip()]
                return lines[-1] if lines else None
    return None


def _watch_for_stall(step: Step, job: str, entries: list[dict[str, Any]]) -> None:
    """A Job whose renditions made no progress for the stall time gets its pod deleted (the
    Job makes another) and a Warning event."""
    ctx = step.ctx
    progress = sum(int(e.get("progress") or 0) for e in entries)
    now = time.monotonic()
    key = (step.namespace, job)
    # Any change counts, a drop too: a new attempt starts again from zero.
    last, since = ctx.progress_seen.get(key, (-1, now))
    if progress != last:
        ctx.progress_seen[key] = (progress, now)
        return
    if now - since < ctx.settings.stall_seconds:
        return
    # Only a pod that has run for the whole stall time is stuck; a replacement still starting
    # (its predecessor may take a while to stop) is not.
    deleted = delete_stuck_pods(ctx, step.namespace, job)
    ctx.progress_seen[key] = (progress, now)
    if deleted:
        STALLS.inc()
        kopf.warn(
            step.body,
            reason="Stalled",
            message=f"Job {job} made no progress for {ctx.settings.stall_seconds}s; pod deleted",
        )
