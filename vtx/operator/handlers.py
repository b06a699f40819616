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
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import kopf
from prometheus_client import start_http_server

from vtx.core import bus, events, failpoints, media, videos
from vtx.core import resource as vt
from vtx.core.db import Cursor
from vtx.core.outbox import OutboxRelay
from vtx.core.settings import Settings
from vtx.core.sources import stop_probes
from vtx.operator import lost, rows
from vtx.operator.context import Context, connect, end_lost_pod, seed
from vtx.operator.decide import TERMINAL
from vtx.operator.intake import Intake
from vtx.operator.jobs import SOURCE_SECONDS
from vtx.operator.metrics import (
    ENCODE_SPEED,
    JOBS_FAILED,
    JOBS_QUEUED,
    JOBS_RUNNING,
    LOST_PODS,
    RECONCILE_ERRORS,
    TIME_TO_READY,
)
from vtx.operator.publish import unpin_replaced
from vtx.operator.reconcile import (
    Step,
    being_deleted,
    named_after,
    read_resource,
    reconcile_step,
)
from vtx.operator.state import SLOT_KINDS, job_obs, kind_of, pod_exited_ok

T = TypeVar("T")
log = logging.getLogger(__name__)
INTERVAL_S = 2.0
# A woken step's status is awaited on the resource's watch for at most this long: until then a
# timer tick whose body is older does nothing (it would decide again from a status overwritten).
WOKEN_STALE_S = 10.0
RETRY_S = 10.0  # a step that raised (a server away, say) runs again after this
PEERING_LIFETIME_S = 30
EXIT_DEADLINE_S = 8.0


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
    # The last resort after SIGTERM: whatever hangs, the process is gone within this.
    settings.process.ultimate_exiting_timeout = EXIT_DEADLINE_S
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
    memo.intake = Intake(cfg, ctx.custom, ctx.db, cfg.namespace)
    memo.intake.start()
    # What the jobrunners say of their renditions (they hold no Kubernetes credentials).
    memo.pulsar = bus.pulsar_client(cfg)
    memo.reader = bus.StatusReader(
        memo.pulsar, bus.topic(cfg, events.STATUS_UPDATES), ctx.reports.record
    )
    memo.reader.start()
    # Phase events are written to the outbox with the row (rows.write_row); this relays them,
    # so that they flow where no API runs too. Several relays may send one event twice: readers
    # drop repeats by event id.
    memo.relay = OutboxRelay(ctx.db, memo.pulsar, cfg)
    memo.relay_stop = threading.Event()
    memo.relay_thread = threading.Thread(
        target=memo.relay.run, args=(memo.relay_stop,), name="outbox", daemon=True
    )
    memo.relay_thread.start()
    # Ready once the queue subscription exists: an upload completed from then on is not missed.
    if not await loop.run_in_executor(None, memo.intake.subscribed.wait, 30):
        log.warning("the queue intake has not subscribed yet (is Pulsar up?); it keeps trying")
    memo.health.ready = True


def _exit_now() -> None:
    # Straight to the file descriptor: a logging lock held by a stuck thread must not hold this.
    os.write(2, f"vtx operator: still stopping {EXIT_DEADLINE_S:.0f}s on: exiting now\n".encode())
    os._exit(0)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop at once: steps not begun are dropped, running probes killed; a step cut short is
    one the next operator finds its way from (the status is written before what follows it)."""
    ctx: Context = memo.ctx
    # kopf's own deadline (ultimate_exiting_timeout) is a timer of the event loop; after the
    # loop, asyncio still joins the threads of its default executor. This one needs no loop.
    deadline = threading.Timer(EXIT_DEADLINE_S, _exit_now)
    deadline.daemon = True
    deadline.start()
    ctx.executor.shutdown(wait=False, cancel_futures=True)
    for task in [*ctx.wakes, *ctx.lost_watch.values()]:  # kopf would wait 5 s for them
        task.cancel()
    killed = stop_probes()
    if killed:
        log.info("stopping: %d probes cut short", killed)
    await asyncio.get_running_loop().run_in_executor(None, memo.intake.stop)
    await asyncio.get_running_loop().run_in_executor(None, memo.reader.stop)
    memo.relay_stop.set()
    await asyncio.get_running_loop().run_in_executor(None, memo.relay_thread.join, 2)
    memo.relay.close()
    memo.pulsar.close()
    await memo.health.stop()


def _active(status: Mapping[str, Any], **_: Any) -> bool:
    """The timer runs until the resource has finished and its ingest has ended."""
    ingest = (status.get("ingest") or {}).get("phase")
    return status.get("phase") not in TERMINAL or ingest == "Running"


def _finished(status: kopf.Status, **_: Any) -> bool:
    return not _active(status)


async def _in_thread(ctx: Context, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in the operator's threads, in a copy of this context (kopf's event posting
    reads context variables). Cancelled before it starts, it never runs: at SIGTERM the calls
    still queued are dropped, not waited for (kopf waits for the threads of sync handlers)."""
    run = functools.partial(contextvars.copy_context().run, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(ctx.executor, run)


@kopf.on.resume(vt.GROUP, vt.VERSION, vt.PLURAL, when=_finished)
async def sync_finished(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo,
    namespace: str | None, **_: Any,
) -> None:  # fmt: skip
    """A finished resource as this operator first sees it (at its start, or when it takes over
    from another replica): its row made to agree with its status. The operator that wrote the
    status may have died before it wrote the row (and the row's phase event); the timer, which
    does that for resources in progress, no longer runs for a finished one."""
    ctx: Context = memo.ctx
    assert namespace is not None, "VideoTranscode is a namespaced resource"
    step = Step(ctx, body, meta, namespace, dict(status))
    step.initial = dict(status)
    await _in_thread(ctx, _after_step, ctx, step, dict(spec))


@kopf.timer(vt.GROUP, vt.VERSION, vt.PLURAL, interval=INTERVAL_S, initial_delay=0.2,
            backoff=RETRY_S, when=_active)  # fmt: skip
async def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    memo: kopf.Memo,
    namespace: str | None,
    **_: Any,
) -> None:
    ctx: Context = memo.ctx
    assert namespace is not None, "VideoTranscode is a namespaced resource"
    if being_deleted(body):
        return  # the deletion handler has it
    if _still_waiting(ctx, status, spec, namespace, str(meta["name"])):
        return  # the common case with many queued: decided here, no thread, no API call
    key = (namespace, str(meta["name"]))
    lock = ctx.step_locks.setdefault(key, asyncio.Lock())
    if lock.locked() or _behind(ctx, key, status):
        return  # a woken step runs, or the watch has not brought what it wrote: next tick
    async with lock:
        written = await _step(ctx, body, dict(spec), dict(status), meta, namespace)
    _forget_finished(ctx, key, written)


async def _step(
    ctx: Context, body: kopf.Body, spec: dict[str, Any], status: dict[str, Any],
    meta: kopf.Meta, namespace: str,
) -> dict[str, Any]:  # fmt: skip
    return await _in_thread(ctx, _reconcile, ctx, body, spec, status, meta, namespace)


def _ours(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k in vt.STATUS_KEYS}


def _behind(ctx: Context, key: tuple[str, str], status: kopf.Status) -> bool:
    """Whether the timer's body is older than what a woken step wrote (for a little while)."""
    woken = ctx.woken.get(key)
    if woken is None:
        return False
    at, written = woken
    if _ours(status) == written or time.monotonic() - at > WOKEN_STALE_S:
        del ctx.woken[key]
        return False
    return True


def _forget_finished(ctx: Context, key: tuple[str, str], status: Mapping[str, Any]) -> None:
    """A finished resource is stepped no more: its lock and last write go."""
    if not _active(status):
        ctx.step_locks.pop(key, None)
        ctx.woken.pop(key, None)


def wake(ctx: Context, namespace: str, name: str) -> None:
    """Step the resource now, not at its next tick: one of its Jobs has just ended."""
    task = asyncio.create_task(_woken_step(ctx, namespace, name), name=f"wake {name}")
    ctx.wakes.add(task)
    task.add_done_callback(ctx.wakes.discard)


async def _woken_step(ctx: Context, namespace: str, name: str) -> None:
    key = (namespace, name)
    lock = ctx.step_locks.setdefault(key, asyncio.Lock())
    loop = asyncio.get_running_loop()
    try:
        async with lock:
            # Read afresh: the resource's own watch may not have brought the last step's status.
            obj = await loop.run_in_executor(ctx.executor, read_resource, ctx, namespace, name)
            if obj is None:
                return
            body = kopf.Body(cast(kopf.RawBody, obj))
            if being_deleted(body) or not _active(body.status):
                return
            written = await _step(ctx, body, dict(body.spec), dict(body.status), body.meta,
                                  namespace)  # fmt: skip
            ctx.woken[key] = (time.monotonic(), _ours(written))
        _forget_finished(ctx, key, written)
    except Exception:  # any failure: the timer steps it again; this was only to be early
        log.warning("%s/%s: the step a Job's end woke failed", namespace, name, exc_info=True)


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
    spec: dict[str, Any],
    status: dict[str, Any],
    meta: kopf.Meta,
    namespace: str,
) -> dict[str, Any]:
    """One step of the resource; the status it leaves."""
    step = Step(ctx, body, meta, namespace, status)
    try:
        reconcile_step(step, spec)
    except kopf.TemporaryError:
        raise
    except Exception:
        RECONCILE_ERRORS.inc()
        raise
    finally:
        if step.status.get("phase") == "Ready" != step.initial.get("phase"):
            failpoints.hit("operator.ready-written")
        _after_step(ctx, step, spec)
    return step.status


def _after_step(ctx: Context, step: Step, spec: dict[str, Any]) -> None:
    """What follows a step: metrics, the SQL row, then the status event of a phase change (so
    that a client reading the video on that event reads the new phase)."""
    key = (step.namespace, step.name)
    before, after = step.initial, step.status
    phase = after.get("phase")
    ctx.phases.set(key, phase)
    JOBS_RUNNING.set(ctx.view.running_transcodes())
    JOBS_QUEUED.set(ctx.view.queued())
    if phase in TERMINAL or phase == "Suspended":
        ctx.view.forget(*key)
    if phase in TERMINAL or before.get("plan"):  # the status read shows what the probe said
        ctx.probed.forget(key)
    video_id = str(spec.get("videoId") or "")
    if phase in TERMINAL:
        ctx.reports.forget(video_id)
    elif named_after(step.name, video_id):
        ctx.reports.watch(video_id)
    if not named_after(step.name, video_id):
        return
    try:
        typed = vt.VideoTranscodeStatus.from_dict(after)
    except vt.InvalidStatus:
        return
    if after != before or key not in ctx.synced:
        row = rows.row_state(typed)
        if ctx.synced.get(key) != row:
            rows.write_row(
                ctx.db, video_id, row, f"{step.namespace}/{step.name}", note=step.note,
                settings=ctx.settings,
            )  # fmt: skip
            ctx.synced[key] = row
    if phase == "Ready" and before.get("phase") != "Ready":
        created = vt.parse_timestamp(str(step.meta["creationTimestamp"]))
        TIME_TO_READY.observe((datetime.now(UTC) - created).total_seconds())


@kopf.on.event("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": "vtx"})
async def job_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Keep the view of Jobs current; count each Job's end once."""
    ctx: Context | None = getattr(memo, "ctx", None)
    if ctx is None:
        return
    job: dict[str, Any] = dict(event["object"])
    meta = job["metadata"]
    key = (meta["namespace"], meta["name"])
    if event["type"] == "DELETED":
        ctx.view.drop_job(*key)
        ctx.stalls.forget(key)
        return
    previous = ctx.view.put_job(job)
    state = job_obs(job)
    if state.state == "active":
        return
    ctx.stalls.forget(key)
    # Counted once: when the view knew the Job running (a Job seen ended from the start, as
    # after a restart, was counted by the operator that saw it end).
    if previous is None or job_obs(previous).state != "active":
        return
    # Stepped again though its pod's exit stepped it: the slot is free only now, and its owner
    # may have Jobs of its own waiting for one.
    _job_ended(ctx, job)
    if kind_of(job) not in SLOT_KINDS:
        return
    if state.state == "failed":
        JOBS_FAILED.inc()
        return
    if not ctx.view.ended_by_pod(*key):  # else counted when its pod exited
        _count_speed(job, (job.get("status") or {}).get("completionTime"))


def _count_speed(job: Mapping[str, Any], ended: str | None) -> None:
    """A transcode Job's seconds of source per second of wall time, from its start to ``ended``
    (the kubelet's or the Job controller's time, to the second)."""
    meta = job["metadata"]
    seconds = float((meta.get("annotations") or {}).get(SOURCE_SECONDS) or 0)
    started = (job.get("status") or {}).get("startTime")
    if seconds > 0 and started and ended:
        wall = (vt.parse_timestamp(ended) - vt.parse_timestamp(started)).total_seconds()
        if wall > 0:
            ENCODE_SPEED.observe(seconds / wall)


def _job_ended(ctx: Context, job: Mapping[str, Any], *, slot: bool = True) -> None:
    """Step the Job's resource now; when a transcode Job's slot is free (``slot``), step the
    resources first in the queue for it too (not at their ticks)."""
    if not ctx.settings.wake_on_job_end:
        return
    meta = job["metadata"]
    namespace = str(meta["namespace"])
    owner_name = next(
        (o.get("name") for o in meta.get("ownerReferences") or [] if o.get("kind") == vt.KIND),
        None,
    )
    if owner_name:
        wake(ctx, namespace, str(owner_name))
    if not slot or kind_of(job) not in SLOT_KINDS:
        return
    for waiting_ns, name in ctx.view.first_waiting(ctx.settings.max_running_jobs):
        if (waiting_ns, name) != (namespace, owner_name):
            wake(ctx, waiting_ns, name)


@kopf.on.event("", "v1", "pods", labels={"app.kubernetes.io/managed-by": "vtx"})
async def pod_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A Job's pod the kubelet reports exited 0 ends the Job for the operator, 1.5-2.5 s before
    the Job's own ``Complete``: its resource is stepped now. Its slot of the cap is given when
    the Job says so (the pod is on the node until then)."""
    ctx: Context | None = getattr(memo, "ctx", None)
    if ctx is None or event["type"] == "DELETED":
        return
    pod: Mapping[str, Any] = event["object"]
    meta = pod["metadata"]
    _watch_if_deleted(ctx, pod)
    job = (meta.get("labels") or {}).get("batch.kubernetes.io/job-name")
    finished = pod_exited_ok(pod) if job else None
    if finished is None:
        return
    ended = ctx.view.mark_pod_exited_ok(str(meta["namespace"]), str(job))
    if ended is not None:
        ctx.stalls.forget((str(meta["namespace"]), str(job)))
        _job_ended(ctx, ended, slot=False)
        # Counted here: the Job may never say Complete (its resource deleted once Ready).
        if kind_of(ended) in SLOT_KINDS:
            _count_speed(ended, finished)


def _watch_if_deleted(ctx: Context, pod: Mapping[str, Any]) -> None:
    """A job pod being deleted is looked at again once overdue: if its node is lost, the
    operator ends it so that its Job makes another (lost.py)."""
    meta = pod["metadata"]
    uid = str(meta.get("uid") or "")
    wait = lost.seconds_until_overdue(pod, datetime.now(UTC))
    if wait is None or not uid or uid in ctx.lost_watch:
        return
    task = asyncio.get_running_loop().create_task(
        _end_if_lost(ctx, str(meta["namespace"]), str(meta["name"]), uid, wait)
    )
    ctx.lost_watch[uid] = task
    task.add_done_callback(lambda _: ctx.lost_watch.pop(uid, None))


async def _end_if_lost(ctx: Context, namespace: str, name: str, uid: str, wait: float) -> None:
    """Look at a pod being deleted once it is overdue, and again while its node is Ready (its
    kubelet may still end it, or the node be lost later) or the look failed, for at most
    ``lost.WATCH_LIMIT_S``."""
    await asyncio.sleep(wait)
    give_up = time.monotonic() + lost.WATCH_LIMIT_S
    while True:
        try:
            outcome, node = await _in_thread(ctx, end_lost_pod, ctx, namespace, name, uid)
        except Exception:
            log.exception("pod %s/%s overdue for deletion could not be looked at", namespace, name)
            outcome, node = "waiting", ""
        if outcome == "ended":
            LOST_PODS.inc()
            log.warning(
                "pod %s/%s was still running on node %s, which is not Ready, past its deletion "
                "deadline: ended (Failed, DisruptionTarget) so that its Job makes another",
                namespace, name, node,
            )  # fmt: skip
        if outcome != "waiting":
            return
        if time.monotonic() > give_up:
            log.warning(
                "pod %s/%s on node %s is still being deleted %.0fs after its deadline; "
                "no longer watched", namespace, name, node, lost.WATCH_LIMIT_S,
            )  # fmt: skip
            return
        await asyncio.sleep(lost.RECHECK_S)


@kopf.on.delete(vt.GROUP, vt.VERSION, vt.PLURAL)
async def cleanup(
    body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    """With deletionPolicy Delete: remove the renditions and the master playlist from S3 and
    unpin the video's IPFS directory. The uploaded original stays. Jobs go with the resource
    (they are owned by it). A cleanup cut short (SIGTERM) keeps the finalizer: the next
    operator runs it again, and every part of it may run twice."""
    ctx: Context = memo.ctx
    await _in_thread(ctx, _cleanup, ctx, body, dict(spec), meta)


def _cleanup(ctx: Context, body: kopf.Body, spec: dict[str, Any], meta: kopf.Meta) -> None:
    key = (str(meta.get("namespace")), str(meta.get("name")))
    ctx.phases.set(key, None)
    ctx.view.forget(*key)
    ctx.synced.pop(key, None)
    ctx.step_locks.pop(key, None)
    ctx.woken.pop(key, None)
    video_id = str(spec.get("videoId") or "")
    ref = f"{key[0]}/{key[1]}"
    ctx.claimed.discard(ref)
    ctx.reports.forget(video_id)
    if not named_after(key[1], video_id):
        return  # it never worked on a video
    owner = ctx.db.transaction(lambda cur: videos.owner_of(cur, video_id), name="owner")
    if owner != ref:
        if spec.get("deletionPolicy") == "Delete":
            why = f"video {video_id} is not this resource's (its owner: {owner})"
            kopf.warn(body, reason="OutputsKept", message=why)
        return
    if spec.get("deletionPolicy") != "Delete":
        ctx.db.transaction(lambda cur: videos.release_video(cur, video_id, ref), name="release")
        return
    # The root CID as the rows name it (read before they go), not as a status says.
    masters = ctx.db.transaction(lambda cur: videos.master_rows(cur, video_id), name="master")
    cid = masters.get(videos.IPFS, (None, None))[1]
    # Everything under the video's folder but the uploaded original.
    folder = f"{media.video_prefix(video_id)}/"
    removed = ctx.store.delete_prefix(folder, keep=f"{folder}source/")
    failpoints.hit("operator.outputs-removed")
    # The files' own pins (the jobrunner pins what it adds) go before the rows that name them:
    # cut short here, the next attempt reads them again.
    files = ctx.db.transaction(lambda cur: videos.pinned_files_of(cur, video_id), name="cids")
    for file_cid in sorted(files):
        ctx.ipfs.pin_rm(file_cid)
    unpin_replaced(ctx.db, ctx.ipfs, video_id)

    def forget(cur: Cursor) -> None:
        videos.forget_outputs(cur, video_id)
        videos.release_video(cur, video_id, ref)

    ctx.db.transaction(forget, name="forget outputs")
    if not cid:
        kopf.info(body, reason="OutputsDeleted", message=f"{removed} objects removed")
        return
    if ctx.db.transaction(lambda cur: videos.root_in_use(cur, cid), name="root in use"):
        kopf.info(
            body, reason="OutputsDeleted",
            message=f"{removed} objects removed; {cid} stays pinned: another video has the same"
            " outputs",
        )  # fmt: skip
        return
    ctx.ipfs.pin_rm(cid)
    # A video publishing the same root meanwhile writes its row before its last pin: seen here
    # after the unpin, it gets its pin back.
    if ctx.db.transaction(lambda cur: videos.root_in_use(cur, cid), name="root in use"):
        ctx.ipfs.pin_add(cid)
    kopf.info(body, reason="OutputsDeleted", message=f"{removed} objects removed, {cid} unpinned")


__all__ = [
    "cleanup",
    "configure",
    "job_changed",
    "reconcile",
    "stop",
    "sync_finished",
]
