"""Uploads: announce (presigned PUT, or multipart with presigned parts), resume, complete, and
a streaming upload through the API for clients that cannot use presigned URLs.

Completing creates the video's VideoTranscode and, in one transaction, marks the row uploaded
and writes the ``video-transcode-queue`` event to the outbox. When Kubernetes cannot be reached
the upload still completes: the operator creates the missing resource from the queue event.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from botocore.exceptions import ClientError

from vtx.api.auth import access, caller_of
from vtx.api.errors import ApiError
from vtx.api.keys import SERVICES
from vtx.api.metrics import COMPLETED, UPLOADS
from vtx.api.services import Services
from vtx.api.validation import (
    PartClaim,
    normalise_etag,
    parse_parts,
    parse_upload_request,
    part_count,
    part_range,
    part_size_for,
    safe_file_name,
)
from vtx.api.views import json_response, video_id_param, video_of, video_view
from vtx.core import events, videos, webhook_events
from vtx.core import resource as vt
from vtx.core.db import Cursor
from vtx.core.objects import UploadedPart
from vtx.core.outbox import write_event

log = logging.getLogger(__name__)
STREAM_PART_SIZE = 5 * 1024 * 1024  # S3's smallest part: the memory a streaming upload holds
READ_CHUNK = 256 * 1024


class PartBuffer:
    """One part of a streaming upload in a buffer allocated once, read like a file by the S3
    client (which hashes it, then sends it): no copy of the part is ever made."""

    def __init__(self, capacity: int) -> None:
        self._buffer = bytearray(capacity)
        self._view = memoryview(self._buffer)
        self._length = 0
        self._position = 0

    def __len__(self) -> int:
        return self._length

    @property
    def full(self) -> bool:
        return self._length == len(self._buffer)

    def fill(self, data: memoryview) -> int:
        """Copy in as much of ``data`` as fits; returns how much that was."""
        n = min(len(data), len(self._buffer) - self._length)
        self._view[self._length : self._length + n] = data[:n]
        self._length += n
        return n

    def clear(self) -> None:
        self._length = self._position = 0

    def read(self, n: int = -1) -> bytes:
        end = self._length if n < 0 else min(self._length, self._position + n)
        chunk = bytes(self._view[self._position : end])
        self._position = end
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._length}[whence]
        self._position = max(0, min(self._length, base + offset))
        return self._position

    def tell(self) -> int:
        return self._position


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or None when it has none."""
    if not request.body_exists:
        return None
    if request.content_type not in ("application/json", "application/octet-stream"):
        raise ApiError(
            415, "unsupported_content_type",
            f"send the body as application/json, not {request.content_type}",
        )  # fmt: skip
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}"[:300]) from None


def _expires(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def describe_upload(services: Services, row: videos.VideoRow) -> dict[str, Any] | None:
    """How the client sends the bytes: one presigned PUT, or the parts still missing."""
    if row.status != videos.AWAITING_UPLOAD:
        return None
    store, ttl = services.store, services.settings.upload_url_seconds
    if row.upload_id is None or row.part_size is None:
        return {
            "method": "PUT",
            "url": store.presign_put(
                row.key, content_type=row.content_type, content_length=row.size, expires_s=ttl
            ),
            "headers": {"Content-Type": row.content_type},
            "expires_at": _expires(ttl),
        }
    try:
        uploaded = store.list_parts(row.key, row.upload_id)
    except ClientError as exc:
        if _s3_code(exc) != "NoSuchUpload":
            raise
        raise ApiError(
            409, "upload_gone",
            "the multipart upload no longer exists in storage; announce the upload again",
        ) from None  # fmt: skip
    have = {p.number for p in uploaded}
    count = part_count(row.size, row.part_size)
    return {
        "method": "multipart",
        "upload_id": row.upload_id,
        "part_size": row.part_size,
        "part_count": count,
        "uploaded": [{"number": p.number, "etag": p.etag, "size": p.size} for p in uploaded],
        "parts": [
            {
                "number": n,
                "size": part_range(n, row.size, row.part_size),
                "url": store.presign_part(row.key, row.upload_id, n, expires_s=ttl),
            }
            for n in range(1, count + 1)
            if n not in have
        ],
        "expires_at": _expires(ttl),
    }


def _s3_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@access("write")
async def create_upload(request: web.Request) -> web.Response:
    """POST /v1/videos (and the original POST /upload/video)."""
    services = request.app[SERVICES]
    settings = services.settings
    req = parse_upload_request(await read_json(request), max_bytes=settings.max_upload_bytes)
    video_id = str(uuid.uuid4())
    key = f"videos/{video_id}/source/{safe_file_name(req.file_name)}"
    upload_id = part_size = None
    if req.size > settings.multipart_threshold:
        part_size = part_size_for(req.size, settings.upload_part_size)
        upload_id = await services.run(
            services.store.create_multipart, key, content_type=req.content_type
        )

    def insert(cur: Cursor) -> videos.VideoRow:
        return videos.insert_video(
            cur, video_id=video_id, title=req.title, description=req.description,
            file_name=req.file_name, key=key, content_type=req.content_type, size=req.size,
            upload_id=upload_id, part_size=part_size, owner=caller_of(request).name,
        )  # fmt: skip

    try:
        row = await services.sql(insert, "insert video")
    except Exception:
        if upload_id is not None:
            await services.run(_abort_quietly, services, key, upload_id)
        raise
    upload = await services.run(describe_upload, services, row)
    assert upload is not None
    UPLOADS.labels(kind="multipart" if upload_id else "single").inc()
    body = {
        **video_view(row, services, request),
        # The original answer's fields, for clients written against it.
        "video_id": row.id,
        "presigned_url": upload.get("url"),
        "s3_path": key,
        "upload": upload,
    }
    return json_response(body, status=201, headers={"Location": f"/v1/videos/{row.id}"})


def _abort_quietly(services: Services, key: str, upload_id: str) -> None:
    try:
        services.store.abort_multipart(key, upload_id)
    except Exception:
        log.warning("could not abort multipart upload of %s", key, exc_info=True)


@access("write")
async def upload_state(request: web.Request) -> web.Response:
    """GET /v1/videos/{id}/upload: what has arrived, and fresh URLs for what has not."""
    services = request.app[SERVICES]
    row = await video_of(request, video_id_param(request), reading=False, deleted=True)
    upload = await services.run(describe_upload, services, row)
    return json_response({"id": row.id, "status": row.status, "size": row.size, "upload": upload})


def _check_parts(services: Services, row: videos.VideoRow, claims: list[PartClaim]) -> None:
    """Complete a multipart upload once every part is there with the ETags the client holds."""
    assert row.upload_id is not None
    assert row.part_size is not None
    store = services.store
    try:
        uploaded = store.list_parts(row.key, row.upload_id)
    except ClientError as exc:
        if _s3_code(exc) == "NoSuchUpload":
            return  # completed by an earlier request (or expired): the object decides
        raise
    expected = part_count(row.size, row.part_size)
    have: dict[int, UploadedPart] = {p.number: p for p in uploaded}
    missing = [n for n in range(1, expected + 1) if n not in have]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        raise ApiError(
            409, "upload_incomplete",
            f"{len(missing)} of {expected} parts have not arrived yet (parts {shown})",
        )  # fmt: skip
    beyond = sorted(n for n in have if n > expected)
    if beyond:
        raise ApiError(
            422, "size_mismatch", f"part {beyond[0]} is beyond the {expected} parts announced"
        )
    if not claims:
        raise ApiError(
            400, "missing_field",
            "a multipart upload is completed with its parts: [{number, etag}, …]", field="parts",
        )  # fmt: skip
    if [c.number for c in claims] != list(range(1, expected + 1)):
        raise ApiError(
            400, "invalid_parts", f"parts must list each of the parts 1 to {expected} once",
            field="parts",
        )  # fmt: skip
    for i, claim in enumerate(claims):
        if normalise_etag(have[claim.number].etag) != claim.etag:
            raise ApiError(
                400, "invalid_parts",
                f"the ETag of part {claim.number} does not match the part storage holds",
                field=f"parts[{i}].etag",
            )  # fmt: skip
    total = sum(p.size for p in have.values())
    if total != row.size:
        raise ApiError(
            422, "size_mismatch", f"the parts hold {total} bytes; {row.size} were announced"
        )
    try:
        store.complete_multipart(
            row.key, row.upload_id, [(n, have[n].etag) for n in range(1, expected + 1)]
        )
    except ClientError as exc:
        raise ApiError(
            422, "upload_refused", f"storage refused to assemble the parts: {_s3_code(exc)}"
        ) from None


def _check_object(services: Services, row: videos.VideoRow) -> None:
    info = services.store.head(row.key)
    if info is None:
        raise ApiError(
            409, "upload_incomplete", "the file has not arrived in storage yet; upload it first"
        )
    if info.size != row.size:
        raise ApiError(
            422, "size_mismatch",
            f"storage holds {info.size} bytes; {row.size} were announced. Upload the file again",
        )  # fmt: skip


async def finish_upload(services: Services, row: videos.VideoRow) -> videos.VideoRow:
    """The bytes are there: mark the row and queue the transcode (one transaction), then
    create the resource. The row comes first: the operator lets a resource work only on an
    upload that is complete."""
    bucket = services.store.bucket
    event = events.TranscodeRequested(
        video_id=row.id, bucket=bucket, key=row.key, size=row.size,
        content_type=row.content_type, namespace=services.settings.namespace,
    )  # fmt: skip

    def mark(cur: Cursor) -> videos.VideoRow | None:
        if videos.mark_uploaded(cur, row.id):
            write_event(cur, events.TRANSCODE_QUEUE, event)
            webhook_events.announce(
                cur, row, webhook_events.UPLOAD_COMPLETED, event.id, services.settings
            )
        return videos.get_video(cur, row.id)

    done = await services.sql(mark, "mark uploaded")
    assert done is not None
    spec = vt.VideoTranscodeSpec(
        video_id=row.id,
        source=vt.SourceRef(key=row.key, size=row.size, bucket=bucket,
                            content_type=row.content_type),
    )  # fmt: skip
    try:
        await services.run(services.create_resource, spec)
    except Exception as exc:  # noqa: BLE001 - the queue event makes the operator create it
        log.warning(
            "could not create the VideoTranscode for %s (%s); the operator will create it from"
            " the queue", row.id, str(exc).splitlines()[0][:200] if str(exc) else type(exc),
        )  # fmt: skip
    COMPLETED.inc()
    return done


def _refuse_deleted(row: videos.VideoRow) -> None:
    if row.status == videos.DELETED:
        raise ApiError(409, "deleted", f"video {row.id} was deleted")


@access("write")
async def complete_upload(request: web.Request) -> web.Response:
    """POST /v1/videos/{id}/complete. Completing twice answers the same and does nothing new."""
    services = request.app[SERVICES]
    video_id = video_id_param(request)
    claims = parse_parts(await read_json(request))
    row = await video_of(request, video_id, reading=False, deleted=True)
    _refuse_deleted(row)
    if row.status == videos.AWAITING_UPLOAD:
        if row.upload_id is not None:
            await services.run(_check_parts, services, row, claims)
        await services.run(_check_object, services, row)
        row = await finish_upload(services, row)
    return json_response(video_view(row, services, request), status=202)


@access("write")
async def put_source(request: web.Request) -> web.Response:
    """PUT /v1/videos/{id}/source: the bytes through the API, streamed to S3 part by part."""
    services = request.app[SERVICES]
    store = services.store
    row = await video_of(request, video_id_param(request), reading=False, deleted=True)
    _refuse_deleted(row)
    if row.status != videos.AWAITING_UPLOAD:
        raise ApiError(409, "already_uploaded", f"video {row.id} has its bytes already")
    length = request.content_length
    if length is not None and length > row.size:
        raise ApiError(413, "too_large", f"the body has {length} bytes; {row.size} were announced")
    if length is not None and length < row.size:
        raise ApiError(
            422, "size_mismatch", f"the body has {length} bytes; {row.size} were announced"
        )
    part = PartBuffer(part_size_for(row.size, STREAM_PART_SIZE))
    upload_id = await services.run(store.create_multipart, row.key, content_type=row.content_type)
    try:
        parts: list[tuple[int, str]] = []
        total = 0

        async def send() -> None:
            number = len(parts) + 1
            part.seek(0)
            etag = await services.run(store.upload_part, row.key, upload_id, number, part)
            parts.append((number, etag))
            part.clear()

        async for chunk in request.content.iter_chunked(READ_CHUNK):
            total += len(chunk)
            if total > row.size:
                raise ApiError(
                    413, "too_large",
                    f"the body is larger than the {row.size} bytes announced",
                )  # fmt: skip
            rest = memoryview(chunk)
            while rest:
                rest = rest[part.fill(rest) :]
                if part.full:
                    await send()
        if total < row.size:
            raise ApiError(
                422, "size_mismatch",
                f"the body ended after {total} bytes; {row.size} were announced",
            )  # fmt: skip
        if len(part) or not parts:
            await send()
        await services.run(store.complete_multipart, row.key, upload_id, parts)
    except BaseException:
        await services.run(_abort_quietly, services, row.key, upload_id)
        raise
    UPLOADS.labels(kind="stream").inc()
    row = await finish_upload(services, row)
    return json_response(video_view(row, services, request), status=202)
