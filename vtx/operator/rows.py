"""The ``videos`` row as the operator keeps it: the transcode's phase, progress, renditions and
outputs, so that the API answers progress and lists from SQL alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vtx.core import events, outbox, videos, webhook_events
from vtx.core import resource as vt
from vtx.core.db import Cursor, Database
from vtx.core.ladder import rendition_to_dict
from vtx.core.settings import Settings


@dataclass(frozen=True)
class RowState:
    phase: str | None
    progress: int
    renditions: Mapping[str, Any]
    outputs: Mapping[str, Any]
    source_duration: float | None


def row_state(status: vt.VideoTranscodeStatus) -> RowState:
    """What the row says of a resource with ``status``."""
    renditions = {}
    for r in status.plan or ():
        entry = status.rendition(r.name)
        renditions[r.name] = {
            **rendition_to_dict(r),
            "phase": entry.phase,
            "progress": entry.progress,
            "message": entry.message or None,
        }
    return RowState(
        phase=status.phase,
        progress=status.progress,
        renditions=renditions,
        outputs=status.outputs.to_dict() if status.outputs else {},
        source_duration=status.source.duration if status.source else None,
    )


def write_row(
    db: Database, video_id: str, row: RowState, resource: str, *, note: str | None = None,
    settings: Settings,
) -> None:  # fmt: skip
    """The row of a video ``resource`` owns (a row it does not own is left as it is). A phase
    the row did not have yet is announced on ``video-status-updates`` through the outbox, in
    the same transaction: the event is sent at least once, even if the operator dies after the
    commit, and a client reading the video on the event reads the new phase. Ready and Failed
    are owed to the owner's webhooks from the same transaction (links as ``settings`` say)."""

    def work(cur: Cursor) -> None:
        written = videos.write_progress(
            cur, video_id, phase=row.phase, progress=row.progress, renditions=row.renditions,
            outputs=row.outputs, source_duration=row.source_duration, resource=resource,
        )  # fmt: skip
        if written is None or row.phase is None or written.previous_phase == row.phase:
            return
        event = events.StatusUpdate(
            video_id=video_id, phase=row.phase, progress=float(row.progress), message=note
        )
        outbox.write_event(cur, events.STATUS_UPDATES, event, key=video_id)
        hook = webhook_events.BY_PHASE.get(row.phase)
        current = videos.get_video(cur, video_id) if hook else None
        if hook and current is not None:
            webhook_events.announce(cur, current, hook, event.id, settings)

    db.transaction(work, name="video progress")
