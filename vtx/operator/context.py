"""The operator's clients and memory, and the cluster calls its steps share."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from vtx.core import resource as vt
from vtx.core.db import Database
from vtx.core.ipfs import IpfsClient
from vtx.core.kube import load_kube_config
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings
from vtx.operator.events import StatusEvents
from vtx.operator.index import ClusterView
from vtx.operator.jobs import transcode_jobs
from vtx.operator.metrics import PhaseBook
from vtx.operator.state import PLAN_ANNOTATION, Waiting, decode_plan

log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    store: ObjectStore
    ipfs: IpfsClient
    db: Database
    batch: Any
    custom: Any
    core: Any
    events: StatusEvents
    # Threads for the blocking part of steps (probes, SQL, S3, Kubernetes calls).
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="vtx-step")
    )
    view: ClusterView = field(default_factory=ClusterView)
    admission: threading.Lock = field(default_factory=threading.Lock)
    phases: PhaseBook = field(default_factory=PhaseBook)
    # (namespace, job) → (progress last seen, when it last changed): the stall watchdog's memory
    progress_seen: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    synced: dict[tuple[str, str], Any] = field(default_factory=dict)  # last row written
    ended_jobs: set[str] = field(default_factory=set)  # uids of Jobs whose end was counted

    def plain(self, obj: Any) -> Any:
        """A client model as the API's JSON (camelCase dicts)."""
        return self.batch.api_client.sanitize_for_serialization(obj)


def connect(cfg: Settings) -> Context:
    load_kube_config()
    return Context(
        settings=cfg,
        store=ObjectStore(cfg),
        ipfs=IpfsClient(cfg.ipfs_api_url, timeout_s=120),
        db=Database(cfg.database_url, max_connections=8, application_name="vtx-operator"),
        batch=client.BatchV1Api(),
        custom=client.CustomObjectsApi(),
        core=client.CoreV1Api(),
        events=StatusEvents(cfg),
    )


def seed(ctx: Context, namespaces: tuple[str, ...]) -> None:
    """Know every Job and waiting resource before the first admission decision, so that
    resources created earlier keep their place in the queue across a restart."""
    selector = "app.kubernetes.io/managed-by=vtx"
    if namespaces:
        jobs = [
            j
            for ns in namespaces
            for j in ctx.plain(ctx.batch.list_namespaced_job(ns, label_selector=selector))["items"]
        ]
        items = [
            i
            for ns in namespaces
            for i in ctx.custom.list_namespaced_custom_object(vt.GROUP, vt.VERSION, ns, vt.PLURAL)[
                "items"
            ]
        ]
    else:
        jobs = ctx.plain(ctx.batch.list_job_for_all_namespaces(label_selector=selector))["items"]
        items = ctx.custom.list_cluster_custom_object(vt.GROUP, vt.VERSION, vt.PLURAL)["items"]
    for job in jobs:
        ctx.view.put_job(job)
    for item in items:
        meta, spec = item["metadata"], item.get("spec") or {}
        plan_text = (meta.get("annotations") or {}).get(PLAN_ANNOTATION)
        phase = (item.get("status") or {}).get("phase")
        if not plan_text or spec.get("suspend") or phase not in ("Queued", "Transcoding"):
            continue
        planned = transcode_jobs(
            meta["name"], decode_plan(plan_text), bool(spec.get("groupRenditions"))
        )
        made = ctx.view.jobs_of(meta["namespace"], meta["name"])
        missing = sum(1 for name in planned if name not in made)
        ctx.view.set_waiting(
            Waiting(meta["creationTimestamp"], meta["namespace"], meta["name"], missing)
        )
    log.info("seeded %d Jobs and %d resources", len(jobs), len(items))


def create_job(ctx: Context, namespace: str, job: dict[str, Any]) -> None:
    """Create a Job (a 409 means a previous run made it) and note it in the view at once."""
    try:
        made = ctx.batch.create_namespaced_job(namespace, job)
    except ApiException as exc:
        if exc.status != 409:
            raise
        made = ctx.batch.read_namespaced_job(job["metadata"]["name"], namespace)
    ctx.view.put_job(ctx.plain(made))


def delete_stuck_pods(ctx: Context, namespace: str, job: str) -> int:
    """Delete the pods of ``job`` that have run for the whole stall time; returns how many."""
    pods = ctx.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}")
    now = datetime.now(UTC)
    stuck = [
        p
        for p in pods.items
        if p.status.phase == "Running"
        and p.metadata.deletion_timestamp is None
        and p.status.start_time is not None
        and (now - p.status.start_time).total_seconds() > ctx.settings.stall_seconds
    ]
    for pod in stuck:
        ctx.core.delete_namespaced_pod(pod.metadata.name, namespace)
    return len(stuck)
