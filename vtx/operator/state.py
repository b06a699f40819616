"""What the operator reads from what it observes: Jobs' states, the order of the queue, and
the difference between two statuses (pure functions, unit-tested)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vtx.core.resource import STATUS_KEYS
from vtx.operator.jobs import LABEL_KIND


@dataclass(frozen=True)
class JobObs:
    """One of a resource's Jobs as the watch shows it."""

    name: str
    state: Literal["active", "succeeded", "failed"]
    attempts: int = 0  # pods started
    suspended: bool = False
    reason: str = ""
    message: str = ""


# Set by the cluster view on a Job whose pod the kubelet reports exited 0 (see pod_exited_ok).
POD_EXITED_OK = "vtx.dev/pod-exited-ok"


def pod_exited_ok(pod: Mapping[str, Any]) -> str | None:
    """When the kubelet says the pod's jobrunner container ended with exit code 0 (its
    ``finishedAt``, "" if it gives none); None while it runs or when it ended otherwise.

    The Job's ``Complete`` follows 1.5-2.5 s later (the pod's terminal phase, then the Job
    controller's batching); with ``restartPolicy: Never`` nothing else can come of it, so the
    operator takes this as the Job's success, and checks the rows and objects as it would."""
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (c.get("state") or {}).get("terminated")
        if c.get("name") == "jobrunner" and terminated and terminated.get("exitCode") == 0:
            return str(terminated.get("finishedAt") or "")
    return None


def job_obs(job: Mapping[str, Any]) -> JobObs:
    """A Job's state from its own conditions (``Complete`` or ``Failed``), or succeeded when one
    of its pods exited 0 (:func:`pod_exited_ok`) before the Job says so."""
    status = job.get("status") or {}
    name = str(job["metadata"]["name"])
    attempts = sum(int(status.get(k) or 0) for k in ("failed", "succeeded", "active"))
    suspended = bool((job.get("spec") or {}).get("suspend"))
    for c in status.get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            return JobObs(name, "succeeded", attempts, suspended)
        if c.get("type") == "Failed":
            return JobObs(
                name, "failed", attempts, suspended, c.get("reason", ""), c.get("message", "")
            )
    if job.get(POD_EXITED_OK):
        return JobObs(name, "succeeded", attempts, suspended)
    return JobObs(name, "active", attempts, suspended)


def job_observations(
    jobs: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, JobObs], JobObs | None]:
    """A resource's transcode Jobs by name, and its ingest Job."""
    transcodes: dict[str, JobObs] = {}
    ingest = None
    for name, job in jobs.items():
        kind = (job["metadata"].get("labels") or {}).get(LABEL_KIND)
        if kind == "ingest":
            ingest = job_obs(job)
        elif kind in SLOT_KINDS:
            transcodes[name] = job_obs(job)
    return transcodes, ingest


# The Jobs that hold slots of the cap on running Jobs: a transcode Job one, a split video's
# ranges Job one per range it runs at once (its parallelism), the Job that puts them together one.
SLOT_KINDS = ("transcode", "ranges", "finalize")


def kind_of(job: Mapping[str, Any]) -> str:
    return str((job["metadata"].get("labels") or {}).get(LABEL_KIND) or "")


def is_indexed(job: Mapping[str, Any]) -> bool:
    """An Indexed Job (a split video's ranges): one pod's exit does not end it."""
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def slots_held(job: Mapping[str, Any]) -> int:
    """The slots of the cap a running Job holds (0 once it ended or while suspended)."""
    if kind_of(job) not in SLOT_KINDS or not is_running(job):
        return 0
    if is_indexed(job):
        return max(1, int((job.get("spec") or {}).get("parallelism") or 1))
    return 1


def is_running(job: Mapping[str, Any]) -> bool:
    """A transcode Job holds a slot of the cap until it ends or is suspended."""
    obs = job_obs(job)
    return obs.state == "active" and not obs.suspended


@dataclass(frozen=True, order=True)
class Waiting:
    """A resource with Jobs still to create, in the order resources were created."""

    created: str  # creationTimestamp (RFC 3339 sorts as text)
    namespace: str
    name: str
    missing: int  # Jobs it still needs


def slots_for(me: Waiting, waiting: Sequence[Waiting], free: int) -> int:
    """How many of its Jobs ``me`` may create now: resources created earlier go first."""
    ahead = sum(
        w.missing for w in waiting if w < me and (w.namespace, w.name) != (me.namespace, me.name)
    )
    return max(0, min(me.missing, free - ahead))


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` with a JSON merge patch (RFC 7386) applied: objects merge, None removes."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = value
    return out


def diff_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns ``before`` into ``after`` (empty: nothing to write)."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        now = before.get(key)
        if isinstance(value, Mapping) and isinstance(now, Mapping):
            inner = diff_patch(now, value)
            if inner:
                out[key] = inner
        elif value != now:
            out[key] = value
    for key in before:
        if key not in after:
            out[key] = None
    return out


def status_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch of status from ``before`` to ``after``, over the keys the operator owns
    (kopf's own bookkeeping stays as it is)."""
    return diff_patch(
        {k: v for k, v in before.items() if k in STATUS_KEYS},
        {k: v for k, v in after.items() if k in STATUS_KEYS},
    )
