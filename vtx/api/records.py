"""The ``videos`` rows the API reads and writes (SQL only; callers run these in a transaction)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vtx.core.db import Cursor

# upload_status values, in the order a video goes through them.
AWAITING_UPLOAD = "awaiting_upload"
UPLOADED = "uploaded"
COMPLETED = "completed"
FAILED = "failed"
DELETED = "deleted"

_COLUMNS = (
    "id::TEXT, title, description, file_name, file_path, content_type, file_size, upload_status,"
    " failure_reason, upload_id, part_size, phase, progress, renditions, outputs, ipfs_cid,"
    " checksum, created_at, updated_at"
)


@dataclass(frozen=True)
class VideoRow:
    id: str
    title: str
    description: str
    file_name: str
    key: str
    content_type: str
    size: int
    status: str
    failure_reason: str | None
    upload_id: str | None
    part_size: int | None
    phase: str | None
    progress: int
    renditions: dict[str, Any]
    outputs: dict[str, Any]
    source_cid: str | None
    checksum: str | None
    created_at: datetime
    updated_at: datetime


def _json(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    parsed = json.loads(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else {}


def _row(r: tuple[Any, ...]) -> VideoRow:
    return VideoRow(
        id=r[0], title=r[1] or "", description=r[2] or "", file_name=r[3] or "", key=r[4] or "",
        content_type=r[5] or "", size=int(r[6] or 0), status=r[7], failure_reason=r[8],
        upload_id=r[9], part_size=None if r[10] is None else int(r[10]), phase=r[11],
        progress=int(r[12] or 0), renditions=_json(r[13]), outputs=_json(r[14]),
        source_cid=r[15], checksum=r[16], created_at=r[17], updated_at=r[18],
    )  # fmt: skip


def insert_video(
    cur: Cursor,
    *,
    video_id: str,
    title: str,
    description: str,
    file_name: str,
    key: str,
    content_type: str,
    size: int,
    upload_id: str | None,
    part_size: int | None,
) -> VideoRow:
    cur.execute(
        "INSERT INTO videos (id, file_id, title, description, file_name, file_path, content_type,"
        " file_size, upload_status, upload_id, part_size)"
        " VALUES (%s, gen_random_uuid(), %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" RETURNING {_COLUMNS}",
        (video_id, title, description, file_name, key, content_type, size, AWAITING_UPLOAD,
         upload_id, part_size),
    )  # fmt: skip
    row = cur.fetchone()
    assert row is not None
    return _row(row)


def get_video(cur: Cursor, video_id: str) -> VideoRow | None:
    cur.execute(f"SELECT {_COLUMNS} FROM videos WHERE id = %s", (video_id,))
    row = cur.fetchone()
    return None if row is None else _row(row)


def get_videos(cur: Cursor, video_ids: list[str]) -> list[VideoRow]:
    cur.execute(
        f"SELECT {_COLUMNS} FROM videos WHERE id = ANY(%s::UUID[]) ORDER BY created_at DESC, id",
        (video_ids,),
    )
    return [_row(r) for r in cur.fetchall()]


def list_videos(
    cur: Cursor, *, limit: int, before: tuple[datetime, str] | None = None
) -> list[VideoRow]:
    """Newest first, not deleted; ``before`` is the (created_at, id) the previous page ended at."""
    where = "upload_status <> %s"
    params: list[Any] = [DELETED]
    if before is not None:
        where += " AND (created_at, id) < (%s, %s::UUID)"
        params += [before[0], before[1]]
    cur.execute(
        f"SELECT {_COLUMNS} FROM videos WHERE {where} ORDER BY created_at DESC, id DESC LIMIT %s",
        (*params, limit),
    )
    return [_row(r) for r in cur.fetchall()]


def mark_uploaded(cur: Cursor, video_id: str) -> bool:
    """Awaiting upload → uploaded; False when the row was already past that (a repeat)."""
    cur.execute(
        "UPDATE videos SET upload_status = %s, phase = COALESCE(phase, 'Pending'),"
        " updated_at = now() WHERE id = %s AND upload_status = %s",
        (UPLOADED, video_id, AWAITING_UPLOAD),
    )
    return cur.rowcount == 1


def mark_deleted(cur: Cursor, video_id: str) -> None:
    cur.execute(
        "UPDATE videos SET upload_status = %s, updated_at = now() WHERE id = %s",
        (DELETED, video_id),
    )
