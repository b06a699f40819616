"""The video record: every SQL statement on ``videos``, ``transcodes`` and
``transcode_segments``, for the API, the operator, the jobrunner and the ingest alike.

Functions take a cursor, so that callers compose them into one transaction
(:meth:`vtx.core.db.Database.transaction`). A video's ``upload_status`` moves only along the
transitions below; a statement that would break one changes nothing and says so (returns False).

    awaiting_upload → uploaded → completed | failed;  failed → completed (a resource made anew)
    any → deleted (and nothing leaves deleted)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vtx.core.db import Cursor

AWAITING_UPLOAD = "awaiting_upload"
UPLOADED = "uploaded"
COMPLETED = "completed"
FAILED = "failed"
DELETED = "deleted"
STATUSES = (AWAITING_UPLOAD, UPLOADED, COMPLETED, FAILED, DELETED)
# upload_status → the statuses it may move to.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    AWAITING_UPLOAD: frozenset({UPLOADED, DELETED}),
    UPLOADED: frozenset({COMPLETED, FAILED, DELETED}),
    COMPLETED: frozenset({COMPLETED, DELETED}),
    FAILED: frozenset({COMPLETED, FAILED, DELETED}),
    DELETED: frozenset(),
}

# transcodes.format / storage_type values
MP4 = "mp4"
VTT = "vtt"  # a subtitles rendition's whole file, where others have their MP4
HLS = "hls"
S3 = "s3"
IPFS = "ipfs"
MASTER = "master"  # the resolution (and type) of a published video's master playlist rows


def file_format(kind: str) -> str:
    """The format of a rendition's whole file (its MP4, or for subtitles its WebVTT)."""
    return VTT if kind == "subtitles" else MP4


def allowed_from(target: str) -> tuple[str, ...]:
    """The statuses from which a video may move to ``target``."""
    return tuple(s for s in STATUSES if target in TRANSITIONS[s])


# --- videos ---------------------------------------------------------------------------------
_COLUMNS = (
    "id::TEXT, title, description, file_name, file_path, content_type, file_size, upload_status,"
    " failure_reason, upload_id, part_size, phase, progress, renditions, outputs, ipfs_cid,"
    " checksum, created_at, updated_at, source_duration, owner, resource, failure_detail"
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
    source_duration: float | None = None  # seconds, as the probe read the source
    owner: str | None = None  # the API token (by name) that announced it; None: made by hand
    resource: str | None = None  # <namespace>/<name> of the VideoTranscode working on it
    failure_detail: str | None = None  # what the tools said, beside failure_reason's sentence


def _json(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    parsed = json.loads(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else {}


def _row(r: Sequence[Any]) -> VideoRow:
    return VideoRow(
        id=r[0], title=r[1] or "", description=r[2] or "", file_name=r[3] or "", key=r[4] or "",
        content_type=r[5] or "", size=int(r[6] or 0), status=r[7], failure_reason=r[8],
        upload_id=r[9], part_size=None if r[10] is None else int(r[10]), phase=r[11],
        progress=int(r[12] or 0), renditions=_json(r[13]), outputs=_json(r[14]),
        source_cid=r[15], checksum=r[16], created_at=r[17], updated_at=r[18],
        source_duration=None if r[19] is None else float(r[19]), owner=r[20], resource=r[21],
        failure_detail=r[22],
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
    owner: str | None,
) -> VideoRow:
    cur.execute(
        "INSERT INTO videos (id, file_id, title, description, file_name, file_path, content_type,"
        " file_size, upload_status, upload_id, part_size, owner)"
        " VALUES (%s, gen_random_uuid(), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" RETURNING {_COLUMNS}",
        (video_id, title, description, file_name, key, content_type, size, AWAITING_UPLOAD,
         upload_id, part_size, owner),
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
    cur: Cursor,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    owner: str | None = None,
) -> list[VideoRow]:
    """Newest first, not deleted, of ``owner`` when given (else everyone's); ``before`` is the
    (created_at, id) the previous page ended at."""
    where = "upload_status <> %s"
    params: list[Any] = [DELETED]
    if owner is not None:
        where += " AND owner = %s"
        params.append(owner)
    if before is not None:
        where += " AND (created_at, id) < (%s, %s::UUID)"
        params += [before[0], before[1]]
    cur.execute(
        f"SELECT {_COLUMNS} FROM videos WHERE {where} ORDER BY created_at DESC, id DESC LIMIT %s",
        (*params, limit),
    )
    return [_row(r) for r in cur.fetchall()]


def all_video_ids(cur: Cursor) -> list[str]:
    cur.execute("SELECT id::TEXT FROM videos ORDER BY created_at, id")
    return [str(r[0]) for r in cur.fetchall()]


def _move(
    cur: Cursor,
    video_id: str,
    target: str,
    sets: str = "",
    params: tuple[Any, ...] = (),
    *,
    resource: str | None = None,
) -> bool:
    """Move the video to ``target`` if its status allows (and, given ``resource``, only if
    that resource owns it)."""
    owner = "" if resource is None else " AND resource = %s"
    cur.execute(
        f"UPDATE videos SET upload_status = %s{sets}, updated_at = now()"
        f" WHERE id = %s AND upload_status = ANY(%s){owner}",
        (target, *params, video_id, list(allowed_from(target)),
         *(() if resource is None else (resource,))),
    )  # fmt: skip
    return bool(cur.rowcount == 1)


def mark_uploaded(cur: Cursor, video_id: str) -> bool:
    """Awaiting upload → uploaded; False when the row was already past that (a repeat)."""
    return _move(cur, video_id, UPLOADED, ", phase = COALESCE(phase, 'Pending')")


def mark_failed(
    cur: Cursor, video_id: str, reason: str, detail: str | None = None, *,
    resource: str | None = None,
) -> bool:  # fmt: skip
    """Failed for good: ``reason`` is a sentence for people, ``detail`` what the tools said."""
    return _move(
        cur, video_id, FAILED, ", failure_reason = %s, failure_detail = %s", (reason, detail),
        resource=resource,
    )  # fmt: skip


def mark_deleted(cur: Cursor, video_id: str) -> bool:
    return _move(cur, video_id, DELETED)


def write_progress(
    cur: Cursor,
    video_id: str,
    *,
    phase: str | None,
    progress: int,
    renditions: Mapping[str, Any],
    outputs: Mapping[str, Any],
    source_duration: float | None,
    resource: str,
) -> Written | None:
    """The transcode as its resource last saw it (for reads from SQL alone); only the resource
    that owns the video writes it, and a deleted video's row keeps what it had. None when
    nothing was written; else the phase the row had before."""
    cur.execute(
        "WITH before AS (SELECT id, phase FROM videos WHERE id = %s FOR UPDATE)"
        " UPDATE videos v SET phase = %s, progress = %s, renditions = %s::JSONB,"
        " outputs = %s::JSONB, source_duration = COALESCE(%s, v.source_duration),"
        " updated_at = now() FROM before WHERE v.id = before.id AND v.upload_status <> %s"
        " AND v.resource = %s RETURNING before.phase",
        (video_id, phase, progress, json.dumps(renditions, sort_keys=True),
         json.dumps(outputs, sort_keys=True), source_duration, DELETED, resource),
    )  # fmt: skip
    row = cur.fetchone()
    return None if row is None else Written(previous_phase=row[0])


@dataclass(frozen=True)
class Written:
    previous_phase: str | None


@dataclass(frozen=True)
class Claim:
    """The answer to a resource asking to work on a video: None refused, or why not."""

    refused: str | None = None
    created: bool = False  # the resource was made by hand (kubectl): the row is made for it


def claim_video(
    cur: Cursor,
    video_id: str,
    resource: str,
    *,
    source_key: str,
    size: int,
    content_type: str | None,
) -> Claim:
    """Let ``resource`` (``<namespace>/<name>``) work on the video, if it may: the video's
    upload is complete, its source is the one the resource names, and no other live resource
    has claimed it. A resource made with kubectl for a video with no row gets one."""
    cur.execute(
        "SELECT upload_status, file_path, resource FROM videos WHERE id = %s FOR UPDATE",
        (video_id,),
    )
    row = cur.fetchone()
    if row is None:
        cur.execute(
            "INSERT INTO videos (id, file_id, file_name, file_path, content_type, file_size,"
            " upload_status, phase, resource) VALUES (%s, gen_random_uuid(), %s, %s, %s, %s,"
            " %s, 'Pending', %s)",
            (video_id, source_key.rsplit("/", 1)[-1], source_key, content_type or "", size,
             UPLOADED, resource),
        )  # fmt: skip
        return Claim(created=True)
    status, key, owner = row
    if status == DELETED:
        return Claim(f"video {video_id} was deleted")
    if status == AWAITING_UPLOAD:
        return Claim(f"the upload of video {video_id} is not complete")
    if key != source_key:
        return Claim(f"{source_key[:200]} is not the upload of video {video_id}")
    if owner not in (None, resource):
        return Claim(f"video {video_id} belongs to resource {owner}")
    if owner is None:
        cur.execute("UPDATE videos SET resource = %s WHERE id = %s", (resource, video_id))
    return Claim()


def release_video(cur: Cursor, video_id: str, resource: str) -> bool:
    """The resource is going: another may claim the video. False when it was not the owner."""
    cur.execute(
        "UPDATE videos SET resource = NULL WHERE id = %s AND resource = %s", (video_id, resource)
    )
    return bool(cur.rowcount == 1)


def owner_of(cur: Cursor, video_id: str) -> str | None:
    cur.execute("SELECT resource FROM videos WHERE id = %s", (video_id,))
    row = cur.fetchone()
    return None if row is None or row[0] is None else str(row[0])


def record_original(cur: Cursor, video_id: str, cid: str, checksum: str) -> None:
    """The uploaded original as the ingest pinned it."""
    cur.execute(
        "UPDATE videos SET ipfs_cid = %s, checksum = %s, updated_at = now() WHERE id = %s",
        (cid, checksum, video_id),
    )


# --- transcodes and their segments ------------------------------------------------------------
def upsert_transcode(
    cur: Cursor,
    video_id: str,
    *,
    fmt: str,
    rendition: str,
    storage: str,
    width: int | None,
    height: int | None,
    bitrate: int,
) -> str:
    """The id of the row of one output (made once: a retried pod reuses it)."""
    cur.execute(
        "INSERT INTO transcodes (video_id, format, resolution, storage_type, width, height,"
        " bitrate) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (video_id, format, resolution, storage_type)"
        " DO UPDATE SET updated_at = now() RETURNING id::TEXT",
        (video_id, fmt, rendition, storage, width, height, bitrate),
    )
    row = cur.fetchone()
    assert row is not None
    return str(row[0])


def record_segment(
    cur: Cursor,
    transcode_ids: Sequence[tuple[str, str]],
    *,
    sequence: int,
    duration: float,
    size: int,
    key: str,
    cid: str | None,
) -> None:
    """One HLS segment, under each (storage, transcode id) given. The CID of an earlier
    attempt's segment that this one replaces goes to ``replaced_cids`` (in the same statement:
    the CTE reads the row as it was before the upsert)."""
    for storage, transcode_id in transcode_ids:
        cur.execute(
            "WITH before AS (SELECT file_cid FROM transcode_segments"
            "  WHERE transcode_id = %(t)s AND sequence = %(n)s),"
            " saved AS (INSERT INTO transcode_segments (transcode_id, sequence, duration, size,"
            "  file_path, file_cid, storage_type)"
            "  VALUES (%(t)s, %(n)s, %(duration)s, %(size)s, %(key)s, %(cid)s, %(storage)s)"
            "  ON CONFLICT (transcode_id, sequence) DO UPDATE SET duration = excluded.duration,"
            "  size = excluded.size, file_path = excluded.file_path, file_cid = excluded.file_cid)"
            " INSERT INTO replaced_cids (video_id, cid) SELECT t.video_id, before.file_cid"
            " FROM before, transcodes t WHERE t.id = %(t)s AND before.file_cid IS NOT NULL"
            " AND before.file_cid IS DISTINCT FROM %(cid)s ON CONFLICT DO NOTHING",
            {"t": transcode_id, "n": sequence, "duration": duration, "size": size, "key": key,
             "cid": cid, "storage": storage},
        )  # fmt: skip


@dataclass(frozen=True)
class OutputFile:
    """One finished output of a rendition, as its row records it."""

    fmt: str  # mp4 or hls (the playlist)
    storage: str
    key: str
    cid: str | None
    size: int


def record_rendition(
    cur: Cursor,
    transcode_ids: Mapping[tuple[str, str], str],
    files: Sequence[OutputFile],
    *,
    job: str,
    duration: float,
    segment_count: int,
    init_cid: str | None,
    decode_errors: int,
) -> None:
    """A rendition's outputs, all at once: the evidence that its Job finished its work. Extra
    segment rows beyond ``segment_count`` (left by an earlier attempt) are removed."""
    for f in files:
        transcode_id = transcode_ids[(f.fmt, f.storage)]
        new_init = init_cid if f.fmt == HLS else None
        cur.execute(
            "INSERT INTO replaced_cids (video_id, cid) SELECT video_id, old.cid FROM transcodes,"
            " LATERAL (VALUES (file_cid, %s), (init_cid, %s)) AS old (cid, now_cid)"
            " WHERE id = %s AND old.cid IS NOT NULL AND old.cid IS DISTINCT FROM old.now_cid"
            " ON CONFLICT DO NOTHING",
            (f.cid, new_init, transcode_id),
        )
        cur.execute(
            "UPDATE transcodes SET file_path = %s, file_cid = %s, size = %s, duration = %s,"
            " job = %s, segment_count = %s, init_cid = %s, decode_errors = %s,"
            " recorded_at = now(), updated_at = now() WHERE id = %s",
            (f.key, f.cid, f.size, duration, job, segment_count if f.fmt == HLS else None,
             new_init, decode_errors, transcode_id),
        )  # fmt: skip
        if f.fmt == HLS:
            cur.execute(
                "WITH gone AS (DELETE FROM transcode_segments WHERE transcode_id = %s"
                " AND sequence >= %s RETURNING file_cid)"
                " INSERT INTO replaced_cids (video_id, cid) SELECT t.video_id, gone.file_cid"
                " FROM gone, transcodes t WHERE t.id = %s AND gone.file_cid IS NOT NULL"
                " ON CONFLICT DO NOTHING",
                (transcode_id, segment_count, transcode_id),
            )


@dataclass(frozen=True)
class OutputRecord:
    """One ``transcodes`` row with a summary of its segment rows."""

    fmt: str
    storage: str
    key: str | None
    cid: str | None
    size: int | None
    duration: float | None
    job: str | None
    segment_count: int | None
    init_cid: str | None
    decode_errors: int
    width: int | None = None
    height: int | None = None
    segments: int = 0  # segment rows
    first_sequence: int | None = None
    last_sequence: int | None = None
    segment_seconds: float = 0.0
    segments_with_cid: int = 0


@dataclass(frozen=True)
class RenditionRecord:
    name: str
    outputs: Mapping[tuple[str, str], OutputRecord] = field(default_factory=dict)

    def get(self, fmt: str, storage: str) -> OutputRecord | None:
        return self.outputs.get((fmt, storage))


def rendition_records(cur: Cursor, video_id: str) -> dict[str, RenditionRecord]:
    """What the rows say of each rendition of a video (the master's rows are not a rendition)."""
    cur.execute(
        "SELECT t.resolution, t.format, t.storage_type, t.file_path, t.file_cid, t.size,"
        " t.duration::FLOAT8, t.job, t.segment_count, t.init_cid, t.decode_errors, t.width,"
        " t.height, count(s.id), min(s.sequence), max(s.sequence),"
        " COALESCE(sum(s.duration), 0)::FLOAT8, count(s.file_cid)"
        " FROM transcodes t LEFT JOIN transcode_segments s ON s.transcode_id = t.id"
        " WHERE t.video_id = %s AND t.resolution <> %s GROUP BY t.id",
        (video_id, MASTER),
    )
    found: dict[str, dict[tuple[str, str], OutputRecord]] = {}
    for r in cur.fetchall():
        record = OutputRecord(
            fmt=r[1], storage=r[2], key=r[3], cid=r[4], size=r[5], duration=r[6], job=r[7],
            segment_count=r[8], init_cid=r[9], decode_errors=int(r[10] or 0), width=r[11],
            height=r[12], segments=int(r[13]), first_sequence=r[14], last_sequence=r[15],
            segment_seconds=float(r[16]), segments_with_cid=int(r[17]),
        )  # fmt: skip
        found.setdefault(str(r[0]), {})[(record.fmt, record.storage)] = record
    return {name: RenditionRecord(name, outputs) for name, outputs in found.items()}


@dataclass(frozen=True)
class SegmentRow:
    sequence: int
    key: str
    cid: str | None
    size: int
    duration: float


def segment_rows(cur: Cursor, video_id: str, rendition: str, storage: str = S3) -> list[SegmentRow]:
    cur.execute(
        "SELECT s.sequence, s.file_path, s.file_cid, s.size, s.duration::FLOAT8"
        " FROM transcode_segments s JOIN transcodes t ON t.id = s.transcode_id"
        " WHERE t.video_id = %s AND t.resolution = %s AND t.format = %s AND t.storage_type = %s"
        " ORDER BY s.sequence",
        (video_id, rendition, HLS, storage),
    )
    return [SegmentRow(int(r[0]), r[1] or "", r[2], int(r[3] or 0), float(r[4])) for r in cur]


def segments_recorded(cur: Cursor, video_id: str, renditions: Sequence[str]) -> tuple[int, int]:
    """How many HLS segments of ``renditions`` are recorded (in S3), and their bytes: what a
    running jobrunner adds to as it works, whether or not its reports arrive."""
    cur.execute(
        "SELECT count(*), COALESCE(sum(s.size), 0)"
        " FROM transcode_segments s JOIN transcodes t ON t.id = s.transcode_id"
        " WHERE t.video_id = %s AND t.resolution = ANY(%s) AND t.format = %s"
        " AND t.storage_type = %s",
        (video_id, list(renditions), HLS, S3),
    )
    row = cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def complete_video(
    cur: Cursor, video_id: str, master_key: str, root_cid: str | None, *, resource: str
) -> bool:
    """The video is published: completed, with its master playlist's rows. False (and nothing
    written) when the video was deleted meanwhile or ``resource`` does not own it."""
    if not _move(cur, video_id, COMPLETED, resource=resource):
        return False
    storages = [(S3, root_cid)] + ([(IPFS, root_cid)] if root_cid else [])
    for storage, cid in storages:
        cur.execute(
            "INSERT INTO transcodes (video_id, format, resolution, storage_type, type, file_path,"
            " file_cid) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (video_id, format,"
            " resolution, storage_type) DO UPDATE SET file_path = excluded.file_path,"
            " file_cid = excluded.file_cid, updated_at = now()",
            (video_id, HLS, MASTER, storage, MASTER, master_key, cid),
        )
    return True


def master_rows(cur: Cursor, video_id: str) -> dict[str, tuple[str | None, str | None]]:
    """storage → (key, root CID) of the published master playlist."""
    cur.execute(
        "SELECT storage_type, file_path, file_cid FROM transcodes"
        " WHERE video_id = %s AND resolution = %s",
        (video_id, MASTER),
    )
    return {str(r[0]): (r[1], r[2]) for r in cur.fetchall()}


def forget_outputs(cur: Cursor, video_id: str) -> None:
    """The video's outputs were removed: the rows that describe them go, with their segments,
    and the video is marked deleted (as ``DELETE /v1/videos/{id}`` marks it), so that no list
    offers playback of what is gone. The original's CID stays."""
    cur.execute("DELETE FROM transcodes WHERE video_id = %s", (video_id,))
    cur.execute("DELETE FROM replaced_cids WHERE video_id = %s", (video_id,))
    mark_deleted(cur, video_id)


def root_in_use(cur: Cursor, cid: str) -> bool:
    """Whether a video's published master names this IPFS root: byte-identical outputs (the
    same file uploaded twice) give one root CID to both videos."""
    cur.execute(
        "SELECT 1 FROM transcodes WHERE file_cid = %s AND storage_type = %s"
        " AND resolution = %s LIMIT 1",
        (cid, IPFS, MASTER),
    )
    return cur.fetchone() is not None


def _named(cid: str, *, own_rows: bool = True) -> str:
    """SQL: some row names the CID in the expression ``cid``: a video's output, init segment or
    segment (of a video other than ``%(v)s`` unless ``own_rows``), or any video's original."""
    other = "" if own_rows else " AND t.video_id <> %(v)s"
    return (
        f"(EXISTS (SELECT 1 FROM transcodes t WHERE (t.file_cid = {cid} OR t.init_cid = {cid})"
        f"{other}) OR EXISTS (SELECT 1 FROM transcode_segments s JOIN transcodes t"
        f" ON t.id = s.transcode_id WHERE s.file_cid = {cid}{other})"
        f" OR EXISTS (SELECT 1 FROM videos o WHERE o.ipfs_cid = {cid}))"
    )


def pinned_files_of(cur: Cursor, video_id: str) -> set[str]:
    """The CIDs the jobrunner added (and so pinned) for a video's outputs, the master's aside,
    that nothing else names (another video's rows, any original): what a deletion of its
    outputs unpins."""
    cur.execute(
        "WITH mine AS ("
        " SELECT t.file_cid AS cid FROM transcodes t WHERE t.video_id = %(v)s"
        "  AND t.storage_type = %(ipfs)s AND t.resolution <> %(master)s"
        " UNION SELECT t.init_cid FROM transcodes t WHERE t.video_id = %(v)s"
        " UNION SELECT s.file_cid FROM transcode_segments s JOIN transcodes t"
        "  ON t.id = s.transcode_id WHERE t.video_id = %(v)s AND s.storage_type = %(ipfs)s)"
        f" SELECT cid FROM mine WHERE cid IS NOT NULL AND NOT {_named('mine.cid', own_rows=False)}",
        {"v": video_id, "ipfs": IPFS, "master": MASTER},
    )
    return {str(row[0]) for row in cur.fetchall()}


def replaced_unnamed(cur: Cursor, video_id: str) -> set[str]:
    """CIDs of the video's earlier attempts (``replaced_cids``) that no row names now."""
    cur.execute(
        f"SELECT r.cid FROM replaced_cids r WHERE r.video_id = %(v)s AND NOT {_named('r.cid')}",
        {"v": video_id},
    )
    return {str(row[0]) for row in cur.fetchall()}


def forget_replaced(cur: Cursor, video_id: str, cids: Sequence[str]) -> None:
    cur.execute(
        "DELETE FROM replaced_cids WHERE video_id = %s AND cid = ANY(%s)", (video_id, list(cids))
    )
