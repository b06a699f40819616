"""The operator's clients and memory, and the cluster calls its steps share."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict
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
from vtx.operator import lost
from vtx.operator.decide import Snapshot, missing_jobs
from vtx.operator.grouping import Nodes, node_ready, schedulable_nodes
from vtx.operator.index import ClusterView
from vtx.operator.metrics import PhaseBook
from vtx.operator.reports import ReportBook
from vtx.operator.state import Waiting, job_observations

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
    # Threads for the blocking part of steps (probes, SQL, S3, Kubernetes calls).
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="vtx-step")
    )
    view: ClusterView = field(default_factory=ClusterView)
    admission: threading.Lock = field(default_factory=threading.Lock)
    phases: PhaseBook = field(default_factory=PhaseBook)
    stalls: StallWatch = field(default_factory=lambda: StallWatch())
    synced: dict[tuple[str, str], Any] = field(default_factory=dict)  # last row written
    claimed: set[str] = field(default_factory=set)  # resources known to own their video
    reports: ReportBook = field(default_factory=ReportBook)  # the jobrunners' progress
    probed: ProbeMemo = field(default_factory=lambda: ProbeMemo())
    nodes: NodeBook = field(default_factory=lambda: NodeBook(None))
    # One step at a time per resource (the timer's, or one a Job's end woke); and what a woken
    # step wrote, until the resource's watch brings it to the timer (handlers.py).
    step_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    woken: dict[tuple[str, str], tuple[float, dict[str, Any]]] = field(default_factory=dict)
    wakes: set[asyncio.Task[None]] = field(default_factory=set)
    # Job pods being deleted, by uid: each is looked at again once overdue (lost.py).
    lost_watch: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def plain(self, obj: Any) -> Any:
        """A client model as the API's JSON (camelCase dicts)."""
        return self.batch.api_client.sanitize_for_serialization(obj)


class NodeBook:
    """The schedulable nodes, listed at most every ``ttl`` seconds (read when a video is
    planned). None when they cannot be read: no client, or no RBAC to list nodes (the chart's
    ``operator.readNodes: false``); said once in the log."""

    def __init__(self, core: Any, ttl: float = 15.0) -> None:
        self._core = core
        self._ttl = ttl
        self._lock = threading.Lock()
        self._at = -ttl
        self._nodes: Nodes | None = None
        self._warned = False

    def schedulable(self) -> Nodes | None:
        with self._lock:
            now = time.monotonic()
            if self._core is None or now - self._at < self._ttl:
                return self._nodes
            self._at = now
            try:
                listed = self._core.list_node(_preload_content=False, _request_timeout=10)
                items = json.loads(listed.data)["items"]
            except (ApiException, OSError, ValueError, KeyError) as exc:
                if not self._warned:
                    log.warning("the nodes could not be read (renditions are grouped): %s", exc)
                    self._warned = True
                self._nodes = None
                return None
            self._nodes = schedulable_nodes(items)
            self._warned = False
            return self._nodes


class ProbeMemo:
    """What the probe of each resource's source (key, size) said, until a status read back
    shows the plan made from it: a step that starts from a status older than the one written
    after the probe (under load the watch lags seconds behind the writes, and a resource being
    deleted is still seen as it was) uses it instead of probing again. Kept through the
    deletion, for the same reason; bounded, the oldest going first."""

    def __init__(self, capacity: int = 20_000) -> None:
        self._lock = threading.Lock()
        self._known: OrderedDict[tuple[str, str], tuple[tuple[str, int], Any]] = OrderedDict()
        self._capacity = capacity

    def get(self, key: tuple[str, str]) -> tuple[tuple[str, int], Any] | None:
        with self._lock:
            return self._known.get(key)

    def remember(self, key: tuple[str, str], value: tuple[tuple[str, int], Any]) -> None:
        with self._lock:
            self._known[key] = value
            self._known.move_to_end(key)
            while len(self._known) > self._capacity:
                self._known.popitem(last=False)

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._known.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._known)


class StallWatch:
    """When each running Job's signs of life (its progress and the bytes it has stored) last
    changed: the stall watchdog's memory. Entries go when their Job ends or goes
    (:meth:`forget`), so the memory holds running Jobs only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[tuple[int, ...] | None, float]] = {}

    def stalled(
        self, key: tuple[str, str], signs: tuple[int, ...], now: float, stall_s: float
    ) -> bool:
        """Whether ``signs`` (progress and bytes stored as reported, segments and their bytes as
        recorded) have not changed for ``stall_s`` (any change counts, a drop too: a new attempt
        starts again from zero)."""
        with self._lock:
            last, since = self._seen.get(key, (None, now))
            if signs != last:
                self._seen[key] = (signs, now)
                return False
            return now - since >= stall_s

    def restart(self, key: tuple[str, str], now: float) -> None:
        with self._lock:
            if key in self._seen:
                self._seen[key] = (self._seen[key][0], now)

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._seen.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)


def connect(cfg: Settings) -> Context:
    load_kube_config()
    core = client.CoreV1Api()
    return Context(
        settings=cfg,
        store=ObjectStore(cfg),
        ipfs=IpfsClient(cfg.ipfs_api_url, token=cfg.ipfs_api_token.value, timeout_s=120),
        db=Database(cfg.database_url, max_connections=8, application_name="vtx-operator"),
        batch=client.BatchV1Api(),
        custom=client.CustomObjectsApi(),
        core=core,
        nodes=NodeBook(core),
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
        meta = item["metadata"]
        snapshot = _seed_snapshot(ctx, item)
        missing = 0 if snapshot is None else missing_jobs(snapshot)
        if missing:
            ctx.view.set_waiting(
                Waiting(meta["creationTimestamp"], meta["namespace"], meta["name"], missing)
            )
    log.info("seeded %d Jobs and %d resources", len(jobs), len(items))


def _seed_snapshot(ctx: Context, item: dict[str, Any]) -> Snapshot | None:
    """Enough of a snapshot to count the Jobs a resource still waits for; None for a resource
    that cannot be read (its step will say why)."""
    meta = item["metadata"]
    try:
        spec = vt.VideoTranscodeSpec.from_dict(item.get("spec") or {})
        status = vt.VideoTranscodeStatus.from_dict(item.get("status") or {})
    except ValueError:
        return None
    jobs, _ingest = job_observations(ctx.view.jobs_of(meta["namespace"], meta["name"]))
    return Snapshot(
        name=meta["name"], generation=int(meta.get("generation") or 1), spec=spec, status=status,
        now=datetime.now(UTC), jobs=jobs,
    )  # fmt: skip


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


def end_lost_pod(ctx: Context, namespace: str, name: str, uid: str) -> tuple[lost.Outcome, str]:
    """End a job pod its lost node cannot end (lost.py): ``Failed``, then deleted at once.
    Returns what came of it and the pod's node: ``ended`` by the operator; ``gone`` (it ended
    by itself, or is no more); ``waiting`` (not overdue yet, or its node is Ready: a live
    kubelet is the one to end it)."""
    try:
        pod = ctx.plain(ctx.core.read_namespaced_pod(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return "gone", ""
        raise
    now = datetime.now(UTC)
    node_name = str((pod.get("spec") or {}).get("nodeName") or "")
    wait = lost.seconds_until_overdue(pod, now)
    if pod["metadata"].get("uid") != uid or wait is None:
        return "gone", node_name
    if wait > 0:
        return "waiting", node_name
    node: dict[str, Any] | None = None
    if node_name:
        try:
            node = ctx.plain(ctx.core.read_node(node_name))
        except ApiException as exc:
            if exc.status not in (403, 404):
                raise
            # Gone (404), or not ours to read (403): the overdue pod is the evidence.
    if node_ready(node):
        return "waiting", node_name
    ctx.core.patch_namespaced_pod_status(name, namespace, lost.failed_patch(node_name, now))
    ctx.core.delete_namespaced_pod(name, namespace, body=client.V1DeleteOptions(
        grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
    ))  # fmt: skip
    return "ended", node_name
