"""kopf handlers: each VideoTranscode is probed, planned, turned into Jobs, watched, published.

Reconciliation is level-based: a timer looks at the resource and its Jobs (as the Job watch
keeps them in :class:`~vtx.operator.index.ClusterView`) and moves it one step; every step is
idempotent (Jobs have deterministic names; creating one that exists is a no-op). The timer stops
once a resource is Ready or Failed and its ingest has ended, so finished resources cost nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import random
from datetime import UTC, datetime
from typing import Any

import kopf
from prometheus_client import start_http_server

from vtx.core import resource as vt
from vtx.core.settings import Settings
from vtx.operator import rows
from vtx.operator.context import Context, connect, seed
from vtx.operator.intake import Intake
from vtx.operator.jobs import LABEL_KIND, SOURCE_SECONDS
from vtx.operator.metrics import (
    ENCODE_SPEED,
    JOBS_FAILED,
    JOBS_QUEUED,
    JOBS_RUNNING,
    RECONCILE_ERRORS,
)
from vtx.operator.reconcile import TERMINAL, Step, reconcile_step
from vtx.operator.state import PLAN_ANNOTATION, decode_plan, job_state, merge_patch, prune_unchanged

log = logging.getLogger(__name__)
INTERVAL_S = 2.0
PEERING_LIFETIME_S = 30


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = "vtx.dev/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="vtx.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="vtx.dev")
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 8
    # A timer caught mid-step when its resource is deleted is checked again soon, not after
    # kopf's default minute: deleting many resources at once must not take hours.
    settings.background.instant_exit_timeout = 0.1
    settings.background.cancellation_polling = 2
    namespaces: tuple[str, ...] = memo.namespaces
    if memo.peering:
        # Replicas agree through the peering object; the one of highest priority acts, the
        # others pause. A random priority per process keeps them apart (equal ones all pause).
        settings.peering.name = memo.peering
        settings.peering.mandatory = True
        settings.peering.clusterwide = not namespaces
        settings.peering.priority = random.randint(1, 2**31)  # noqa: S311 - not a secret
        settings.peering.lifetime = PEERING_LIFETIME_S
        log.info(
            "peering through %s: this replica's priority is %d",
            memo.peering, settings.peering.priority,
        )  # fmt: skip
    else:
        settings.peering.standalone = True
    await memo.health.start()
    cfg = Settings.from_env()
    loop = asyncio.get_running_loop()
    ctx = await loop.run_in_executor(None, connect, cfg)
    await loop.run_in_executor(None, seed, ctx, namespaces)
    memo.ctx = ctx
    host, _sep, port = cfg.metrics_address.rpartition(":")
    start_http_server(int(port), addr=host)
    memo.intake = Intake(cfg, ctx.custom, cfg.namespace)
    memo.intake.start()
    # Ready once the queue subscription exists: an upload completed from then on is not missed.
    if not await loop.run_in_executor(None, memo.intake.subscribed.wait, 30):
        log.warning("the queue intake has not subscribed yet (is Pulsar up?); it keeps trying")
    memo.health.ready = True


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.intake.stop()
    memo.ctx.events.close()
    await memo.health.stop()


def _active(status: kopf.Status, **_: Any) -> bool:
    """The timer runs until the resource has finished and its ingest has ended."""
    ingest = (status.get("ingest") or {}).get("phase")
    return status.get("phase") not in TERMINAL or ingest == "Running"


@kopf.timer(vt.GROUP, vt.VERSION, vt.PLURAL, interval=INTERVAL_S, initial_delay=0.2, when=_active)
async def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    namespace: str | None,
    **_: Any,
) -> None:
    ctx: Context = memo.ctx
    assert namespace is not None, "VideoTranscode is a namespaced resource"
    if _still_waiting(ctx, status, spec, namespace, str(meta["name"])):
        return  # the common case with many queued: decided here, no thread, no API call
    # kopf's event posting reads context variables: the thread runs in a copy of this context.
    run = functools.partial(
        contextvars.copy_context().run, _reconcile, ctx, body, spec, status, meta, patch, namespace
    )
    await asyncio.get_running_loop().run_in_executor(ctx.executor, run)


def _still_waiting(
    ctx: Context, status: kopf.Status, spec: kopf.Spec, namespace: str, name: str
) -> bool:
    """A queued resource, known to the view as waiting, while no slot is free."""
    return (
        status.get("phase") == "Queued"
        and not spec.get("suspend")
        and ctx.view.is_waiting(namespace, name)
        and ctx.view.running_transcodes() >= ctx.settings.max_running_jobs
    )


def _reconcile(
    ctx: Context,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    namespace: str,
) -> None:
    before = dict(status)
    step = Step(ctx, body, vt.VideoTranscodeSpec.from_dict(spec), before, meta, namespace)
    try:
        reconcile_step(step)
    except (kopf.TemporaryError, kopf.PermanentError):
        raise
    except Exception:
        RECONCILE_ERRORS.inc()
        raise
    finally:
        changes = prune_unchanged(step.changes, before)
        if changes:
            patch.status.update(changes)
        if step.annotations:
            patch.metadata.setdefault("annotations", {}).update(step.annotations)
        _after_step(ctx, step, before, merge_patch(before, changes), bool(changes))


def _after_step(
    ctx: Context, step: Step, before: dict[str, Any], after: dict[str, Any], changed: bool
) -> None:
    """What follows a step: metrics, the SQL row, then the status event of a phase change (so
    that a client reading the video on that event reads the new phase)."""
    key = (step.namespace, step.name)
    phase = after.get("phase")
    ctx.phases.set(key, phase)
    JOBS_RUNNING.set(ctx.view.running_transcodes())
    JOBS_QUEUED.set(ctx.view.queued())
    if changed or key not in ctx.synced:
        plan_text = step.annotations.get(PLAN_ANNOTATION) or (
            (step.meta.get("annotations") or {}).get(PLAN_ANNOTATION)
        )
        row = rows.row_state(after, decode_plan(plan_text) if plan_text else [])
        if ctx.synced.get(key) != row:
            rows.write_row(ctx.db, step.video_id, row)
            ctx.synced[key] = row
    if phase != before.get("phase") and phase is not None:
        ctx.events.phase(step.video_id, str(phase), int(after.get("progress") or 0), step.note)


@kopf.on.event("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": "vtx"})
async def job_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Keep the view of Jobs current; count each Job's end once."""
    ctx: Context | None = getattr(memo, "ctx", None)
    if ctx is None:
        return
    job: dict[str, Any] = dict(event["object"])
    meta = job["metadata"]
    if event["type"] == "DELETED":
        ctx.view.drop_job(meta["namespace"], meta["name"])
        return
    ctx.view.put_job(job)
    state = job_state(job)
    uid = meta.get("uid", "")
    if state.state == "active" or uid in ctx.ended_jobs:
        return
    ctx.ended_jobs.add(uid)
    if (meta.get("labels") or {}).get(LABEL_KIND) != "transcode":
        return
    if state.state == "failed":
        JOBS_FAILED.inc()
        return
    seconds = float((meta.get("annotations") or {}).get(SOURCE_SECONDS) or 0)
    started, ended = (
        job.get("status", {}).get("startTime"),
        job.get("status", {}).get("completionTime"),
    )
    if seconds > 0 and started and ended:
        wall = (_time(ended) - _time(started)).total_seconds()
        if wall > 0:
            ENCODE_SPEED.observe(seconds / wall)


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)


@kopf.on.delete(vt.GROUP, vt.VERSION, vt.PLURAL)
def cleanup(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo,
    **_: Any,
) -> None:  # fmt: skip
    """With deletionPolicy Delete: remove the renditions and the master playlist from S3 and
    unpin the video's IPFS directory. The uploaded original stays. Jobs go with the resource
    (they are owned by it)."""
    ctx: Context = memo.ctx
    key = (str(meta.get("namespace")), str(meta.get("name")))
    ctx.phases.set(key, None)
    ctx.view.forget(*key)
    ctx.synced.pop(key, None)
    if spec.get("deletionPolicy") != "Delete":
        return
    video_id = str(spec["videoId"])
    plan_text = (meta.get("annotations") or {}).get(PLAN_ANNOTATION)
    names = {r.name for r in decode_plan(plan_text)} if plan_text else set()
    names |= set((status.get("renditions") or {}).keys())
    removed = sum(ctx.store.delete_prefix(f"videos/{video_id}/{n}/") for n in sorted(names))
    removed += ctx.store.delete_prefix(f"videos/{video_id}/master.m3u8")
    rows.forget_outputs(ctx.db, video_id)
    cid = (status.get("outputs") or {}).get("cid")
    if not cid:
        kopf.info(body, reason="OutputsDeleted", message=f"{removed} objects removed")
        return
    if rows.root_in_use(ctx.db, cid):
        kopf.info(
            body, reason="OutputsDeleted",
            message=f"{removed} objects removed; {cid} stays pinned: another video has the same"
            " outputs",
        )  # fmt: skip
        return
    ctx.ipfs.pin_rm(cid)
    # A video publishing the same root meanwhile writes its row before its last pin: seen here
    # after the unpin, it gets its pin back.
    if rows.root_in_use(ctx.db, cid):
        ctx.ipfs.pin_add(cid)
    kopf.info(body, reason="OutputsDeleted", message=f"{removed} objects removed, {cid} unpinned")


__all__ = [
    "cleanup",
    "configure",
    "job_changed",
    "reconcile",
    "stop",
]
