"""Job manifests for transcode and ingest work (pure functions: unit-tested without a cluster)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from vtx.core.ladder import Rendition
from vtx.core.settings import Settings
from vtx.jobrunner.ffmpeg import EXIT_INVALID_INPUT
from vtx.operator.state import job_groups

LABEL_VIDEO = "vtx.dev/video-id"
LABEL_KIND = "vtx.dev/job-kind"
LABEL_RENDITIONS = "vtx.dev/renditions"
SOURCE_SECONDS = "vtx.dev/source-seconds"  # annotation: the source's duration, for encode speed
SCRATCH = "/scratch"


def job_name(resource: str, kind: str, renditions: Sequence[str] = ()) -> str:
    """Deterministic, so a restarted operator finds the Job it made instead of making another.

    ``v-<uuid>`` is 38 characters; a short hash of the rendition names keeps the name within
    the 63 characters a Job's pods' labels allow.
    """
    if kind == "ingest":
        return f"{resource}-ingest"
    digest = hashlib.sha256(",".join(renditions).encode()).hexdigest()[:6]
    tag = renditions[0] if len(renditions) == 1 else f"g{len(renditions)}"
    return f"{resource}-{tag}-{digest}"[:63]


def transcode_jobs(
    resource: str, plan: Sequence[Rendition], grouped: bool
) -> dict[str, list[Rendition]]:
    """The transcode Jobs a resource's plan makes: each Job's name and its renditions."""
    return {
        job_name(resource, "transcode", [r.name for r in group]): group
        for group in job_groups(plan, grouped)
    }


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


def _pod_spec(settings: Settings, args: list[str], labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": settings.job_service_account,
            "automountServiceAccountToken": True,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationGracePeriodSeconds": 30,
            "containers": [
                {
                    "name": "jobrunner",
                    "image": settings.job_image,
                    "imagePullPolicy": settings.job_image_pull_policy,
                    "args": ["jobrunner", *args],
                    **_environment(settings),
                    "resources": {
                        "requests": {
                            "cpu": settings.job_cpu_request,
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
) -> dict[str, Any]:
    """The Job that encodes ``renditions`` (one, or a group sharing one decode)."""
    names = [r.name for r in renditions]
    name = job_name(resource, "transcode", names)
    labels = {
        "app.kubernetes.io/name": "vtx-jobrunner",
        "app.kubernetes.io/managed-by": "vtx",
        LABEL_VIDEO: video_id,
        LABEL_KIND: "transcode",
        LABEL_RENDITIONS: "_".join(names)[:63],
    }
    args = ["transcode", "--video-id", video_id, "--source-key", source_key]
    args += ["--resource", resource, "--namespace", namespace, "--scratch", SCRATCH]
    for r in renditions:
        args += ["--rendition", json.dumps(asdict(r), separators=(",", ":"))]
    pod = _pod_spec(settings, args, labels)
    deadline = active_deadline_seconds(duration_s, settings, len(renditions))
    annotations = {SOURCE_SECONDS: f"{duration_s:.3f}"}
    return _job(name, namespace, labels, pod, settings, deadline, owner, annotations)


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
    args = ["ingest", "--video-id", video_id, "--source-key", source_key, "--size", str(size)]
    pod = _pod_spec(settings, args, labels)
    # Streaming at a (pessimistic) 5 MB/s, plus start-up.
    deadline = int(300 + size / 5_000_000)
    return _job(job_name(resource, "ingest"), namespace, labels, pod, settings, deadline, owner)
