"""What the operator concludes from what it observes (pure functions, unit-tested)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vtx.core.ladder import Rendition

PLAN_ANNOTATION = "vtx.dev/plan"


def encode_plan(plan: Sequence[Rendition]) -> str:
    return json.dumps([asdict(r) for r in plan], separators=(",", ":"))


def decode_plan(text: str) -> list[Rendition]:
    return [Rendition(**r) for r in json.loads(text)]


def job_groups(plan: Sequence[Rendition], grouped: bool) -> list[list[Rendition]]:
    """Renditions per Job: all in one (one decode) or one each."""
    return [list(plan)] if grouped else [[r] for r in plan]


@dataclass(frozen=True)
class JobState:
    state: str  # "active", "succeeded" or "failed"
    attempts: int
    reason: str = ""
    message: str = ""


def job_state(job: Mapping[str, Any]) -> JobState:
    status = job.get("status") or {}
    attempts = int(status.get("failed") or 0) + int(status.get("succeeded") or 0)
    attempts += int(status.get("active") or 0)
    for c in status.get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            return JobState("succeeded", attempts)
        if c.get("type") == "Failed":
            return JobState("failed", attempts, c.get("reason", ""), c.get("message", ""))
    return JobState("active", attempts)


@dataclass(frozen=True)
class Overall:
    phase: str
    progress: int
    ready: str
    failed: tuple[str, ...]


def summarize(plan: Sequence[Rendition], renditions: Mapping[str, Mapping[str, Any]]) -> Overall:
    """The resource's phase and progress from its renditions' entries."""
    phases = {r.name: (renditions.get(r.name) or {}).get("phase", "Pending") for r in plan}
    progress = [int((renditions.get(r.name) or {}).get("progress") or 0) for r in plan]
    done = [n for n, p in phases.items() if p == "Succeeded"]
    failed = tuple(n for n, p in phases.items() if p == "Failed")
    ready = f"{len(done)}/{len(plan)}"
    mean = round(sum(progress) / len(progress)) if progress else 0
    if len(done) + len(failed) < len(plan):
        return Overall("Transcoding", min(mean, 99), ready, failed)
    if not done:
        return Overall("Failed", mean, ready, failed)
    return Overall("Publishing", 99, ready, failed)


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


def is_running(job: Mapping[str, Any]) -> bool:
    """A transcode Job holds a slot of the cap until it ends or is suspended."""
    spec = job.get("spec") or {}
    if spec.get("suspend"):
        return False
    return job_state(job).state == "active"


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


def prune_unchanged(patch: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a merge patch that would change ``current``: an empty result means no write."""
    out: dict[str, Any] = {}
    for key, value in patch.items():
        now = current.get(key)
        if isinstance(value, Mapping) and isinstance(now, Mapping):
            inner = prune_unchanged(value, now)
            if inner:
                out[key] = inner
        elif value is None:
            if key in current:
                out[key] = None
        elif value != now:
            out[key] = value
    return out
