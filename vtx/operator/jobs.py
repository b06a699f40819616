"""Job manifests for transcode and ingest work (pure functions: unit-tested without a cluster)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from vtx.core.jobargs import SCRATCH, IngestArgs, TranscodeArgs
from vtx.core.ladder import Rendition
from vtx.core.media import EXIT_INVALID_INPUT
from vtx.core.settings import Settings

LABEL_VIDEO = "vtx.dev/video-id"
LABEL_KIND = "vtx.dev/job-kind"
LABEL_RENDITIONS = "vtx.dev/renditions"
SOURCE_SECONDS = "vtx.dev/source-seconds"  # annotation: the source's duration, for encode speed
NAME_LIMIT = 63  # a Job's name is also its pods' job-name label value


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def job_name(resource: str, kind: str, renditions: Sequence[str] = (), redo: int = 0) -> str:
    """Deterministic, so a restarted operator finds the Job it made instead of making another.

    ``v-<uuid>`` is 38 characters; a short hash of the rendition names tells groups apart, and
    ``-r<n>`` the n-th run made again after its outputs did not check out. A longer resource
    name is cut, keeping a hash of it, so the suffix that tells Jobs apart always stays within
    the 63 characters a label value allows.
    """
    if kind == "ingest":
        suffix = "-ingest"
    else:
        group = renditions[0] if len(renditions) == 1 else f"g{len(renditions)}"
        # A split video's two Jobs (its ranges, and the one that puts them together) are
        # named by their kind.
        tag = kind if kind in ("ranges", "finalize") else group
        suffix = f"-{tag}-{_digest(','.join(renditions))}" + (f"-r{redo}" if redo else "")
    room = NAME_LIMIT - len(suffix)
    head = resource if len(resource) <= room else f"{resource[: room - 7]}-{_digest(resource)}"
    return head + suffix


def job_groups(plan: Sequence[Rendition], grouped: bool) -> list[tuple[Rendition, ...]]:
    """Renditions per Job: all in one (one decode) or one each."""
    return [tuple(plan)] if grouped else [(r,) for r in plan]


def split_jobs(resource: str, plan: Sequence[Rendition]) -> tuple[str, str]:
    """A split video's ranges Job and the Job that puts its ranges together, by name."""
    names = [r.name for r in plan if r.kind == "video"]
    return job_name(resource, "ranges", names), job_name(resource, "finalize", names)


def planned_jobs(
    resource: str,
    plan: Sequence[Rendition],
    grouped: bool,
    redos: Mapping[str, int] | None = None,
    range_bounds: Sequence[int] = (),
) -> dict[str, tuple[Rendition, ...]]:
    """The transcode Jobs a resource's plan makes now: each Job's name and its renditions. A
    rendition made again (``redos``) has a Job of its own; the first Job of its group keeps its
    name and stands for the others.

    A split video (``range_bounds``): each sound and subtitles rendition a Job of its own, then
    the ranges Job and the Job that puts the ranges together, both for the video renditions."""
    redos = redos or {}
    jobs: dict[str, tuple[Rendition, ...]] = {}
    if range_bounds:
        for r in plan:
            if r.kind != "video" or redos.get(r.name):
                jobs[job_name(resource, "transcode", [r.name], redos.get(r.name, 0))] = (r,)
        fresh = tuple(r for r in plan if r.kind == "video" and not redos.get(r.name))
        if fresh:
            for name in split_jobs(resource, plan):
                jobs[name] = fresh
        return jobs
    for group in job_groups(plan, grouped):
        first = tuple(r for r in group if not redos.get(r.name))
        if first:
            jobs[job_name(resource, "transcode", [r.name for r in group])] = first
        for r in group:
            if redos.get(r.name):
                jobs[job_name(resource, "transcode", [r.name], redos[r.name])] = (r,)
    return jobs


def active_deadline_seconds(duration_s: float, settings: Settings, renditions: int = 1) -> int:
    """Time a Job may run: a multiple of the source's duration per rendition, plus start-up."""
    return int(300 + duration_s * settings.job_deadline_factor * max(1, renditions))


def _environment(settings: Settings) -> dict[str, Any]:
    """Settings reach job pods from a ConfigMap, a Secret and single Secret keys, by reference:
    no value, and so no credential, is ever written into a Job."""
    env_from: list[dict[str, Any]] = []
    if settings.job_configmap:
        env_from.append({"configMapRef": {"name": settings.job_configmap}})
    if settings.job_secret:
        env_from.append({"secretRef": {"name": settings.job_secret}})
    env = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for var, secret, key in settings.job_secret_env
    ]
    return {"envFrom": env_from, "env": env}


def _pod_spec(
    settings: Settings, args: list[str], labels: Mapping[str, str], cpu_request: str
) -> dict[str, Any]:
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": settings.job_service_account,
            # Job pods talk to no Kubernetes API: no token to steal.
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationGracePeriodSeconds": 30,
            # A lost node's pods are evicted after this, not the cluster's default 300 s: the
            # Job makes another on a live node (and the operator ends the evicted pod that the
            # lost kubelet cannot end: lost.py).
            "tolerations": [
                {
                    "key": f"node.kubernetes.io/{taint}",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": settings.node_lost_seconds,
                }
                for taint in ("unreachable", "not-ready")
            ],
            # A video's pods spread over the nodes where they can (a preference, not a rule).
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {
                        "matchLabels": {k: labels[k] for k in (LABEL_VIDEO, LABEL_KIND)}
                    },
                }
            ],
            "containers": [
                {
                    "name": "jobrunner",
                    "image": settings.job_image,
                    "imagePullPolicy": settings.job_image_pull_policy,
                    "args": ["jobrunner", *args],
                    **_environment(settings),
                    "resources": {
                        "requests": {
                            "cpu": cpu_request,
                            "memory": settings.job_memory_request,
                        },
                        "limits": {
                            "cpu": settings.job_cpu_limit,
                            "memory": settings.job_memory_limit,
                        },
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
                    # A failed pod's last log lines become its termination message: the
                    # operator quotes them as the reason.
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": settings.job_scratch_limit}}],
        },
    }


def _job(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    pod: dict[str, Any],
    settings: Settings,
    deadline_s: int,
    owner: Mapping[str, Any] | None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": settings.job_backoff_limit,
            "activeDeadlineSeconds": deadline_s,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "podFailurePolicy": {
                "rules": [
                    # Bad input will not get better: fail the Job at once.
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "jobrunner",
                            "operator": "In",
                            "values": [EXIT_INVALID_INPUT],
                        },
                    },
                    # Evictions and preemptions are not the job's fault: do not count them.
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": pod,
        },
    }


def build_transcode_job(
    *,
    resource: str,
    namespace: str,
    video_id: str,
    source_key: str,
    renditions: Sequence[Rendition],
    duration_s: float,
    settings: Settings,
    owner: Mapping[str, Any] | None = None,
    name: str | None = None,
    ipfs: bool = True,
    resume: bool = True,
    range_bounds: Sequence[int] = (),
    parallelism: int = 1,
    finalize: bool = False,
) -> dict[str, Any]:
    """The Job that encodes ``renditions`` (one, or a group sharing one decode); ``name`` is
    the planned one (:func:`planned_jobs`), by default the first run's. Its retried pods
    resume from the segments stored unless ``resume`` is false.

    A split video (vtx.core.ranges) has two: with ``range_bounds``, an Indexed Job of one
    completion per range, ``parallelism`` of them at once, each index retried on its own;
    with ``finalize``, the Job that puts the ranges together."""
    names = [r.name for r in renditions]
    kind = "ranges" if range_bounds else "finalize" if finalize else "transcode"
    name = name or job_name(resource, kind, names)
    labels = {
        "app.kubernetes.io/name": "vtx-jobrunner",
        "app.kubernetes.io/managed-by": "vtx",
        LABEL_VIDEO: video_id,
        LABEL_KIND: kind,
        LABEL_RENDITIONS: "_".join(names)[:63],
    }
    args = TranscodeArgs(
        video_id=video_id, source_key=source_key, renditions=tuple(renditions), job=name,
        scratch=SCRATCH, ipfs=ipfs, resume=resume, range_bounds=tuple(range_bounds),
        finalize=finalize,
    ).argv()  # fmt: skip
    pod = _pod_spec(settings, args, labels, settings.job_cpu_request)
    deadline = active_deadline_seconds(duration_s, settings, len(renditions))
    annotations = {SOURCE_SECONDS: f"{duration_s:.3f}"}
    job = _job(name, namespace, labels, pod, settings, deadline, owner, annotations)
    if range_bounds:
        spec = job["spec"]
        del spec["backoffLimit"]
        spec |= {
            "completionMode": "Indexed",
            "completions": len(range_bounds) - 1,
            "parallelism": max(1, min(parallelism, len(range_bounds) - 1)),
            "backoffLimitPerIndex": settings.job_backoff_limit,
        }
    return job


def build_ingest_job(
    *,
    resource: str,
    namespace: str,
    video_id: str,
    source_key: str,
    size: int,
    settings: Settings,
    owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Job that pins the original to IPFS and records its checksum."""
    labels = {
        "app.kubernetes.io/name": "vtx-jobrunner",
        "app.kubernetes.io/managed-by": "vtx",
        LABEL_VIDEO: video_id,
        LABEL_KIND: "ingest",
    }
    args = IngestArgs(video_id=video_id, source_key=source_key, size=size).argv()
    pod = _pod_spec(settings, args, labels, settings.ingest_cpu_request)
    # Streaming at a (pessimistic) 5 MB/s, plus start-up.
    deadline = int(300 + size / 5_000_000)
    return _job(job_name(resource, "ingest"), namespace, labels, pod, settings, deadline, owner)
