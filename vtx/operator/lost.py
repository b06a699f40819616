"""Job pods left on a lost node (pure functions, unit-tested; the handler in handlers.py acts).

When a node stops answering, the node controller taints it ``unreachable`` and, once a job
pod's toleration runs out (``VTX_NODE_LOST_SECONDS``), evicts the pod: it gets a deletion
deadline and a ``DisruptionTarget`` condition. Only the pod's kubelet can end it, and that
kubelet is gone, so the pod stays ``Running`` and terminating for ever, and its Job, whose
``podFailurePolicy`` waits for a terminal pod, never makes another. The operator ends such a pod
as the pod garbage collector ends one whose node was deleted: ``Failed`` with a
``DisruptionTarget`` condition (which the Job's policy does not count against its retries), then
deleted at once. It does so only for a pod still running ``LOST_SLACK_S`` after its deletion
deadline on a node that is not ``Ready`` (or cannot be read)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from vtx.core import resource as vt

# What a live kubelet needs beyond the deletion deadline to report the pod's end.
LOST_SLACK_S = 15.0
# A pod still being deleted on a node that is Ready (or that could not be looked at) is looked
# at again this often, for as long as WATCH_LIMIT_S after its deadline.
RECHECK_S = 15.0
WATCH_LIMIT_S = 3600.0
Outcome = Literal["ended", "gone", "waiting"]
TERMINAL_PHASES = ("Succeeded", "Failed")


def deletion_deadline(pod: Mapping[str, Any]) -> datetime | None:
    """When a pod being deleted should be gone (its ``deletionTimestamp``: the deletion's time
    plus the grace period); None when it is not being deleted or has already ended."""
    deletion = (pod.get("metadata") or {}).get("deletionTimestamp")
    phase = (pod.get("status") or {}).get("phase")
    if not deletion or phase in TERMINAL_PHASES:
        return None
    return vt.parse_timestamp(str(deletion))


def seconds_until_overdue(pod: Mapping[str, Any], now: datetime) -> float | None:
    """How long until the pod is overdue (0 when it is); None when it is not being deleted."""
    deadline = deletion_deadline(pod)
    if deadline is None:
        return None
    return max(0.0, (deadline + timedelta(seconds=LOST_SLACK_S) - now).total_seconds())


def failed_patch(node: str, now: datetime) -> dict[str, Any]:
    """The status patch that ends a pod its lost node cannot end."""
    return {
        "status": {
            "phase": "Failed",
            "conditions": [
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "NodeLost",
                    "message": f"node {node} is not Ready and its kubelet did not end the pod "
                    "by its deletion deadline: ended by the vtx operator",
                    "lastTransitionTime": vt.timestamp(now),
                }
            ],
        }
    }
