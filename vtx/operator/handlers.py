"""kopf handlers: each VideoTranscode is probed, planned, turned into Jobs, watched, published.

Reconciliation is level-based: a timer looks at the resource and its Jobs and moves it one step;
every step is idempotent (Jobs have deterministic names; creating one that exists is a no-op).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import start_http_server

from vtx.core import resource as vt
from vtx.core.db import Cursor, Database
from vtx.core.ipfs import IpfsClient
from vtx.core.kube import load_kube_config
from vtx.core.ladder import InvalidSource, plan_ladder
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings
from vtx.core.sources import ProbeUnavailable, probe_source
from vtx.operator.intake import Intake
from vtx.operator.jobs import (
    LABEL_KIND,
    LABEL_VIDEO,
    build_ingest_job,
    build_transcode_job,
    job_name,
)
from vtx.operator.metrics import (
    JOBS_QUEUED,
    JOBS_RUNNING,
    RECONCILE_ERRORS,
    STALLS,
    TIME_TO_READY,
    PhaseBook,
)
from vtx.operator.publish import FinishedRendition, publish_video
from vtx.operator.state import (
    PLAN_ANNOTATION,
    Waiting,
    decode_plan,
    encode_plan,
    is_running,
    job_groups,
    job_state,
    slots_for,
    summarize,
)

log = logging.getLogger(__name__)
TERMINAL = {"Ready", "Failed"}


@dataclass
class Context:
    settings: Settings
    store: ObjectStore
    ipfs: IpfsClient
    db: Database
    batch: Any
    custom: Any
    core: Any
    admission: threading.Lock = field(default_factory=threading.Lock)
    phases: PhaseBook = field(default_factory=PhaseBook)
    # (namespace, job) → (progress last seen, when it last changed): the stall watchdog's memory
    progress_seen: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)

    def plain(self, obj: Any) -> Any:
        """A client model as the API's JSON (camelCase dicts)."""
        return self.batch.api_client.sanitize_for_serialization(obj)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = "vtx.dev/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="vtx.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="vtx.dev")
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.peering.standalone = True
    load_kube_config()
    cfg = Settings.from_env()
    host, _sep, port = cfg.metrics_address.rpartition(":")
    start_http_server(int(port), addr=host)
    custom = client.CustomObjectsApi()
    memo.intake = Intake(cfg, custom, cfg.namespace)
    memo.intake.start()
    memo.ctx = Context(
        settings=cfg,
        store=ObjectStore(cfg),
        ipfs=IpfsClient(cfg.ipfs_api_url, timeout_s=120),
        db=Database(cfg.database_url, max_connections=4),
        batch=client.BatchV1Api(),
        custom=custom,
        core=client.CoreV1Api(),
    )


@kopf.on.cleanup()
def stop_intake(memo: kopf.Memo, **_: Any) -> None:
    memo.intake.stop()


def _now() -> datetime:
    return datetime.now(UTC)


def _condition(
    status: Any, patch: kopf.Patch, type: str, value: str, reason: str, message: str, gen: int
) -> None:
    conditions = list(patch.status.get("conditions") or status.get("conditions") or [])
    patch.status["conditions"] = vt.set_condition(
        conditions,
        type,
        value,  # type: ignore[arg-type]
        reason,
        message,
        gen,
        _now(),
    )


def _mark_video(ctx: Context, video_id: str, status: str, reason: str | None = None) -> None:
    def work(cur: Cursor) -> None:
        cur.execute(
            "UPDATE videos SET upload_status = %s, failure_reason = %s, updated_at = now()"
            " WHERE id = %s",
            (status, reason, video_id),
        )

    ctx.db.transaction(work, name="mark video")


def _owner(body: kopf.Body) -> dict[str, Any]:
    return {
        "apiVersion": vt.API_VERSION,
        "kind": vt.KIND,
        "name": body.metadata.name,
        "uid": body.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _create(ctx: Context, namespace: str, job: dict[str, Any]) -> None:
    try:
        ctx.batch.create_namespaced_job(namespace, job)
    except ApiException as exc:
        if exc.status != 409:  # it exists: a restarted operator made it before
            raise


@kopf.on.create(vt.GROUP, vt.VERSION, vt.PLURAL)
@kopf.on.resume(vt.GROUP, vt.VERSION, vt.PLURAL)
@kopf.timer(vt.GROUP, vt.VERSION, vt.PLURAL, interval=2.0, initial_delay=0.5)
def reconcile(
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
    try:
        _reconcile(ctx, body, spec, status, meta, patch, namespace)
    except (kopf.TemporaryError, kopf.PermanentError):
        raise
    except Exception:
        RECONCILE_ERRORS.inc()
        raise
    finally:
        ctx.phases.set((namespace, meta["name"]), patch.status.get("phase") or status.get("phase"))


def _reconcile(
    ctx: Context,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    namespace: str,
) -> None:
    phase = status.get("phase")
    if phase in TERMINAL:
        return
    name = meta["name"]
    gen = int(meta.get("generation") or 1)
    parsed = vt.VideoTranscodeSpec.from_dict(spec)
    video_id = parsed.video_id
    plan_text = (meta.get("annotations") or {}).get(PLAN_ANNOTATION)

    if plan_text is None:
        patch.status["phase"] = "Probing"
        url = ctx.store.presign_get(parsed.source.key, expires_s=600, public=False)
        try:
            facts = probe_source(url, ctx.settings)
            plan = plan_ladder(facts, max_fps=ctx.settings.max_output_fps)
        except InvalidSource as exc:
            patch.status["phase"] = "Failed"
            patch.status["observedGeneration"] = gen
            _condition(status, patch, "Probed", "False", "InvalidSource", str(exc), gen)
            _condition(status, patch, "Ready", "False", "InvalidSource", str(exc), gen)
            _mark_video(ctx, video_id, "failed", f"InvalidSource: {exc}")
            kopf.warn(body, reason="InvalidSource", message=str(exc))
            return
        except ProbeUnavailable as exc:
            raise kopf.TemporaryError(f"probing the source: {exc}", delay=10) from exc
        if parsed.renditions:
            wanted = {r.name for r in parsed.renditions}
            plan = [r for r in plan if r.name in wanted] or plan
        patch.metadata.setdefault("annotations", {})[PLAN_ANNOTATION] = encode_plan(plan)
        patch.status["source"] = {
            "duration": facts.duration,
            "width": facts.width or 0,
            "height": facts.height or 0,
            "fps": facts.fps or 0,
            "rotation": facts.rotation,
            "videoCodec": facts.video_codec or "",
            "audioCodec": facts.audio_codec or "",
            "hasAudio": facts.has_audio,
        }
        patch.status["renditions"] = {r.name: {"phase": "Pending", "progress": 0} for r in plan}
        patch.status["renditionsReady"] = f"0/{len(plan)}"
        patch.status["phase"] = "Queued"
        patch.status["progress"] = 0
        _condition(
            status, patch, "Probed", "True", "Probed", f"{len(plan)} renditions planned", gen
        )
        kopf.info(body, reason="Probed", message=", ".join(r.name for r in plan))
        return

    plan = decode_plan(plan_text)
    duration = float((status.get("source") or {}).get("duration") or 0)
    groups = job_groups(plan, parsed.group_renditions)
    jobs = {
        j["metadata"]["name"]: j
        for j in ctx.plain(
            ctx.batch.list_namespaced_job(namespace, label_selector=f"{LABEL_VIDEO}={video_id}")
        )["items"]
    }
    transcode_names = [job_name(name, "transcode", [r.name for r in g]) for g in groups]

    if parsed.suspend:
        if phase != "Suspended":
            for jname in [*transcode_names, job_name(name, "ingest")]:
                if jname in jobs:
                    ctx.batch.patch_namespaced_job(jname, namespace, {"spec": {"suspend": True}})
            patch.status["phase"] = "Suspended"
            kopf.info(body, reason="Suspended", message="no new Jobs; running ones suspended")
        return
    if phase == "Suspended":
        for jname in [*transcode_names, job_name(name, "ingest")]:
            if jname in jobs:
                ctx.batch.patch_namespaced_job(jname, namespace, {"spec": {"suspend": False}})
        patch.status["phase"] = "Transcoding" if jobs else "Queued"
        kopf.info(body, reason="Resumed", message="Jobs resumed")
        return

    missing = [g for g, jname in zip(groups, transcode_names, strict=True) if jname not in jobs]
    if missing:
        owner = _owner(body)
        with ctx.admission:  # count and create under one lock: no two take the last slot
            allowed = _admit(ctx, body, namespace, len(missing))
            for group in missing[:allowed]:
                _create(
                    ctx,
                    namespace,
                    build_transcode_job(
                        resource=name, namespace=namespace, video_id=video_id,
                        source_key=parsed.source.key, renditions=group, duration_s=duration,
                        settings=ctx.settings, owner=owner,
                    ),
                )  # fmt: skip
        if allowed and parsed.storage_ipfs and job_name(name, "ingest") not in jobs:
            _create(
                ctx,
                namespace,
                build_ingest_job(
                    resource=name, namespace=namespace, video_id=video_id,
                    source_key=parsed.source.key, size=parsed.source.size,
                    settings=ctx.settings, owner=owner,
                ),
            )  # fmt: skip
        if allowed == len(missing):
            _condition(
                status, patch, "JobsCreated", "True", "JobsCreated", f"{len(groups)} Jobs", gen
            )
            kopf.info(body, reason="JobsCreated", message=f"{len(groups)} transcode Jobs")
        if not jobs and not allowed:
            patch.status["phase"] = "Queued"
            return
        patch.status["phase"] = "Transcoding"
        if allowed:
            return

    # Transcoding: a Job that ended for good decides its renditions' fate. Only the fields the
    # operator owns are patched: the jobrunners write phase and progress of running renditions.
    entries = {k: dict(v) for k, v in (status.get("renditions") or {}).items()}
    changes: dict[str, dict[str, Any]] = {}
    for group in groups:
        jname = job_name(name, "transcode", [r.name for r in group])
        if jname not in jobs:
            continue
        state = job_state(jobs[jname])
        if state.state == "active":
            _watch_for_stall(ctx, body, namespace, jname, [entries.get(r.name, {}) for r in group])
        for r in group:
            entry = entries.setdefault(r.name, {})
            change = {"job": jname, "attempts": state.attempts}
            if state.state == "failed" and entry.get("phase") != "Succeeded":
                change["phase"] = "Failed"
                change["message"] = (entry.get("message") or f"{state.reason}: {state.message}")[
                    :1024
                ]
            entry.update(change)
            changes[r.name] = change
    summary = summarize(plan, entries)
    patch.status["renditions"] = changes
    patch.status["progress"] = summary.progress
    patch.status["renditionsReady"] = summary.ready
    if summary.phase == "Transcoding":
        return
    patch.status["observedGeneration"] = gen
    if summary.phase == "Failed":
        patch.status["phase"] = "Failed"
        message = "every rendition failed: " + ", ".join(summary.failed)
        _condition(status, patch, "Ready", "False", "RenditionsFailed", message, gen)
        _mark_video(ctx, video_id, "failed", message)
        kopf.warn(body, reason="Failed", message=message)
        return
    finished = [
        FinishedRendition(
            r.name, r.kind, r.width, r.height, r.fps, r.video_bitrate_k, r.maxrate_k,
            r.audio_bitrate_k, (entries[r.name].get("outputs") or {}).get("cids") or {},
        )
        for r in plan
        if entries[r.name].get("phase") == "Succeeded"
    ]  # fmt: skip
    outputs = publish_video(video_id, finished, ctx.store, ctx.ipfs, ctx.db)
    patch.status["outputs"] = outputs
    patch.status["phase"] = "Ready"
    created = datetime.fromisoformat(str(meta["creationTimestamp"]).replace("Z", "+00:00"))
    TIME_TO_READY.observe((_now() - created).total_seconds())
    patch.status["progress"] = 100
    degraded = bool(summary.failed)
    _condition(
        status, patch, "Degraded", "True" if degraded else "False",
        "RenditionsFailed" if degraded else "AllRenditions",
        ("failed: " + ", ".join(summary.failed)) if degraded else "every rendition is ready", gen,
    )  # fmt: skip
    _condition(status, patch, "Ready", "True", "Published", f"root CID {outputs['cid']}", gen)
    kopf.info(body, reason="Ready", message=f"master {outputs['master']}, CID {outputs['cid']}")


def _watch_for_stall(
    ctx: Context, body: kopf.Body, namespace: str, job: str, entries: list[dict[str, Any]]
) -> None:
    """A Job whose renditions made no progress for the stall time gets its pod deleted (the
    Job makes another) and a Warning event."""
    progress = sum(int(e.get("progress") or 0) for e in entries)
    now = time.monotonic()
    key = (namespace, job)
    # Any change counts, a drop too: a new attempt starts again from zero.
    last, since = ctx.progress_seen.get(key, (-1, now))
    if progress != last:
        ctx.progress_seen[key] = (progress, now)
        return
    if now - since < ctx.settings.stall_seconds:
        return
    # Only a pod that has run for the whole stall time is stuck; a replacement still starting
    # (its predecessor may take a while to stop) is not.
    pods = ctx.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}")
    stuck = [
        p
        for p in pods.items
        if p.status.phase == "Running"
        and p.metadata.deletion_timestamp is None
        and p.status.start_time is not None
        and (_now() - p.status.start_time).total_seconds() > ctx.settings.stall_seconds
    ]
    if not stuck:
        ctx.progress_seen[key] = (progress, now)
        return
    for pod in stuck:
        ctx.core.delete_namespaced_pod(pod.metadata.name, namespace)
    STALLS.inc()
    ctx.progress_seen[key] = (progress, now)
    kopf.warn(
        body,
        reason="Stalled",
        message=f"Job {job} made no progress for {ctx.settings.stall_seconds}s; pod deleted",
    )


def _admit(ctx: Context, body: kopf.Body, namespace: str, missing: int) -> int:
    """How many of its missing Jobs this resource may create now, under the cluster-wide cap on
    running transcode Jobs; resources created earlier go first. Call with the admission lock.
    """
    all_jobs = ctx.plain(
        ctx.batch.list_job_for_all_namespaces(label_selector=f"{LABEL_KIND}=transcode")
    )["items"]
    running = sum(1 for j in all_jobs if is_running(j))
    JOBS_RUNNING.set(running)
    free = ctx.settings.max_running_jobs - running
    made: dict[tuple[str, str], int] = {}
    for j in all_jobs:
        owner: dict[str, Any] = next(iter(j["metadata"].get("ownerReferences") or []), {})
        key = (j["metadata"]["namespace"], owner.get("name", ""))
        made[key] = made.get(key, 0) + 1
    waiting = []
    for item in ctx.custom.list_cluster_custom_object(vt.GROUP, vt.VERSION, vt.PLURAL)["items"]:
        meta, spec = item["metadata"], item.get("spec") or {}
        plan_text = (meta.get("annotations") or {}).get(PLAN_ANNOTATION)
        phase = (item.get("status") or {}).get("phase")
        if not plan_text or spec.get("suspend") or phase not in ("Queued", "Transcoding"):
            continue
        groups = len(job_groups(decode_plan(plan_text), bool(spec.get("groupRenditions"))))
        need = groups - made.get((meta["namespace"], meta["name"]), 0)
        if need > 0:
            waiting.append(
                Waiting(meta["creationTimestamp"], meta["namespace"], meta["name"], need)
            )
    JOBS_QUEUED.set(sum(w.missing for w in waiting))
    if free <= 0:
        return 0
    me = Waiting(body.metadata["creationTimestamp"], namespace, body.metadata.name, missing)
    return slots_for(me, waiting, free)


@kopf.on.delete(vt.GROUP, vt.VERSION, vt.PLURAL)
def cleanup(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo,
    **_: Any,
) -> None:  # fmt: skip
    """With deletionPolicy Delete: remove the renditions and the master playlist from S3 and
    unpin the video's IPFS directory. The uploaded original stays. Jobs go with the resource
    (they are owned by it)."""
    ctx: Context = memo.ctx
    ctx.phases.set((str(meta.get("namespace")), str(meta.get("name"))), None)
    if spec.get("deletionPolicy") != "Delete":
        return
    video_id = str(spec["videoId"])
    plan_text = (meta.get("annotations") or {}).get(PLAN_ANNOTATION)
    names = {r.name for r in decode_plan(plan_text)} if plan_text else set()
    names |= set((status.get("renditions") or {}).keys())
    removed = sum(ctx.store.delete_prefix(f"videos/{video_id}/{n}/") for n in sorted(names))
    removed += ctx.store.delete_prefix(f"videos/{video_id}/master.m3u8")
    cid = (status.get("outputs") or {}).get("cid")
    if cid:
        ctx.ipfs.pin_rm(cid)
    kopf.info(body, reason="OutputsDeleted", message=f"{removed} objects removed, {cid} unpinned")


__all__ = ["cleanup", "configure", "reconcile", "stop_intake"]
