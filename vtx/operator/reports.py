"""What the jobrunners say of their renditions, as read from ``video-status-updates``: the
latest phase, progress and message of each rendition of the videos this operator is working on.
Shown in the resource's status and used to see a stall; never evidence of anything done."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from vtx.core import events

# A jobrunner's phases and the rendition phase the status shows for each.
SHOWN_PHASE = {
    "starting": "Running",
    "encoding": "Running",
    "retrying": "Running",  # this attempt failed; the Job makes another
    "interrupted": "Running",
    "failed": "Running",  # invalid input: its Job fails at once, and the operator says Failed
    "uploading": "Uploading",
    "done": "Uploading",  # recorded: Succeeded once the outputs check out
}


@dataclass(frozen=True)
class Report:
    phase: str  # as the jobrunner said it (starting, encoding, uploading, done, ...)
    progress: int
    message: str | None = None
    stored_bytes: int = 0  # of its outputs, stored so far in this attempt

    @property
    def shown_phase(self) -> str:
        return SHOWN_PHASE.get(self.phase, "Running")


MAX_STORED_BYTES = 1 << 50  # bounds a figure a pod sends; far above any rendition


class ReportBook:
    """Thread-safe; it keeps reports only of the videos it was told to watch, and forgets a
    video's when told, so it holds no more than the videos in progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watching: set[str] = set()
        self._reports: dict[str, dict[str, Report]] = {}
        # A split video's ranges report apart: (rendition, range) → report, and the count.
        self._parts: dict[str, dict[tuple[str, int], Report]] = {}
        # Renditions a whole-rendition pod (the finalize, or a single Job making it again) has
        # reported on: a range's report that arrives later is stale and is dropped.
        self._whole: dict[str, set[str]] = {}

    def watch(self, video_id: str) -> None:
        with self._lock:
            self._watching.add(video_id)

    def forget(self, video_id: str) -> None:
        with self._lock:
            self._watching.discard(video_id)
            self._reports.pop(video_id, None)
            self._parts.pop(video_id, None)
            self._whole.pop(video_id, None)

    def record(self, event: events.StatusUpdate) -> None:
        if event.rendition is None:
            return  # the operator's own phase events
        with self._lock:
            if event.video_id not in self._watching:
                return
            report = Report(
                event.phase, int(max(0.0, min(100.0, event.progress))), event.message,
                max(0, min(MAX_STORED_BYTES, event.stored_bytes or 0)),
            )  # fmt: skip
            whole = self._whole.setdefault(event.video_id, set())
            if event.part is None:
                whole.add(event.rendition)
            elif event.rendition in whole:
                return
            elif event.parts:
                parts = self._parts.setdefault(event.video_id, {})
                parts[(event.rendition, event.part)] = report
                report = _together(
                    [r for (name, _), r in parts.items() if name == event.rendition], event.parts
                )
            self._reports.setdefault(event.video_id, {})[event.rendition] = report

    def of(self, video_id: str) -> dict[str, Report]:
        with self._lock:
            return dict(self._reports.get(video_id) or {})

    def __len__(self) -> int:
        with self._lock:
            return sum(len(r) for r in self._reports.values())


def _together(reports: list[Report], parts: int) -> Report:
    """A split video's rendition as its ranges' reports say: the progress their mean over every
    range (one not heard from is at 0), done when every range is, the bytes summed."""
    progress = sum(r.progress for r in reports) // parts
    done = len(reports) == parts and all(r.phase == "done" for r in reports)
    phase = "done" if done else "encoding" if progress < 100 else "uploading"
    message = f"{sum(r.phase == 'done' for r in reports)} of {parts} ranges stored"
    return Report(phase, progress, message, sum(r.stored_bytes for r in reports))
