"""Prometheus metrics of the operator."""

from __future__ import annotations

import threading
from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from vtx.core.resource import Phase

RESOURCES = Gauge("vtx_resources", "VideoTranscode resources seen, by phase", ["phase"])
JOBS_RUNNING = Gauge("vtx_transcode_jobs_running", "Transcode Jobs holding a slot of the cap")
JOBS_QUEUED = Gauge(
    "vtx_transcode_jobs_queued",
    "Transcode Jobs waiting for a slot (a video not yet probed counts one)",
)
RECONCILE_ERRORS = Counter("vtx_reconcile_errors_total", "Reconciliations that raised")
JOBS_FAILED = Counter("vtx_transcode_jobs_failed_total", "Transcode Jobs that failed for good")
ENCODE_SPEED = Histogram(
    "vtx_encode_speed",
    "Source seconds encoded per second of a finished transcode Job (above 1: faster than real"
    " time)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
PROBES = Counter("vtx_probes_total", "Sources probed (ffprobe started) by this operator")
STALLS = Counter("vtx_stalled_pods_total", "Job pods deleted by the stall watchdog")
LOST_PODS = Counter("vtx_lost_pods_total", "Job pods on a lost node ended by the operator")
TIME_TO_READY = Histogram(
    "vtx_time_to_ready_seconds",
    "From a resource's creation to Ready",
    buckets=(10, 30, 60, 120, 300, 600, 1200, 3600, 7200, 14400),
)


class PhaseBook:
    """The last phase of every resource, so the gauge counts each once."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        _show({})  # every phase at 0 from the start, so the series exist before any resource

    def set(self, key: tuple[str, str], phase: str | None) -> None:
        with self._lock:
            old = self._phases.pop(key, None) if phase is None else self._phases.get(key)
            if old == phase:
                return
            if old is not None:
                self._counts[old] -= 1
            if phase is not None:
                self._phases[key] = phase
                self._counts[phase] = self._counts.get(phase, 0) + 1
            counts = dict(self._counts)
        _show(counts)


def _show(counts: dict[str, int]) -> None:
    for phase in get_args(Phase):
        RESOURCES.labels(phase=phase).set(counts.get(phase, 0))
