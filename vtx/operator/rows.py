"""The ``videos`` row as the operator keeps it: the transcode's phase, progress, renditions and
outputs, so that the API answers progress and lists from SQL alone."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vtx.core.db import Cursor, Database
from vtx.core.ladder import Rendition


@dataclass(frozen=True)
class RowState:
    phase: str | None
    progress: int
    renditions: str  # JSON
    outputs: str  # JSON


def row_state(status: Mapping[str, Any], plan: Sequence[Rendition]) -> RowState:
    """What the row says of a resource with ``status`` and ``plan``."""
    entries: Mapping[str, Any] = status.get("renditions") or {}
    renditions = {}
    for r in plan:
        entry = entries.get(r.name) or {}
        renditions[r.name] = {
            **asdict(r),
            "phase": entry.get("phase", "Pending"),
            "progress": int(entry.get("progress") or 0),
            "message": entry.get("message") or None,
        }
    return RowState(
        phase=status.get("phase"),
        progress=int(status.get("progress") or 0),
        renditions=json.dumps(renditions, sort_keys=True),
        outputs=json.dumps(status.get("outputs") or {}, sort_keys=True),
    )


def write_row(db: Database, video_id: str, row: RowState) -> None:
    def work(cur: Cursor) -> None:
        cur.execute(
            "UPDATE videos SET phase = %s, progress = %s, renditions = %s::JSONB,"
            " outputs = %s::JSONB, updated_at = now() WHERE id = %s",
            (row.phase, row.progress, row.renditions, row.outputs, video_id),
        )

    db.transaction(work, name="video progress")


def mark_failed(db: Database, video_id: str, reason: str) -> None:
    def work(cur: Cursor) -> None:
        cur.execute(
            "UPDATE videos SET upload_status = 'failed', failure_reason = %s, updated_at = now()"
            " WHERE id = %s",
            (reason, video_id),
        )

    db.transaction(work, name="mark video failed")


def forget_outputs(db: Database, video_id: str) -> None:
    """The video's outputs were removed: the ``transcodes`` rows that describe them go, with
    their segments, and the ``videos`` row is marked deleted (as ``DELETE /v1/videos/{id}``
    marks it), so that no list offers playback of what is gone. The original's CID stays."""

    def work(cur: Cursor) -> None:
        cur.execute("DELETE FROM transcodes WHERE video_id = %s", (video_id,))
        cur.execute(
            "UPDATE videos SET upload_status = 'deleted', updated_at = now() WHERE id = %s",
            (video_id,),
        )

    db.transaction(work, name="forget outputs")


def root_in_use(db: Database, cid: str) -> bool:
    """Whether a video's published master names this IPFS root: byte-identical outputs (the
    same file uploaded twice) give one root CID to both videos."""

    def work(cur: Cursor) -> bool:
        cur.execute(
            "SELECT 1 FROM transcodes WHERE file_cid = %s AND storage_type = 'ipfs'"
            " AND resolution = 'master' LIMIT 1",
            (cid,),
        )
        return cur.fetchone() is not None

    return db.transaction(work, name="root in use")
