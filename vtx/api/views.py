"""Reading videos: the list, one video, its progress, its deletion, and playback through signed
playlists. Answers come from SQL (the operator keeps each row's phase and progress current), so
reads do not depend on the Kubernetes API."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import fields
from datetime import datetime
from typing import Any

from aiohttp import web

from vtx.api.auth import access, caller_of
from vtx.api.errors import ApiError
from vtx.api.keys import SERVICES
from vtx.api.playback import (
    UnexpectedPlaylist,
    has_segments,
    sign_media_playlist,
    sign_storyboard,
)
from vtx.api.services import Services
from vtx.core import images as img
from vtx.core import videos, webhook_events
from vtx.core.db import Cursor
from vtx.core.hls import master_of
from vtx.core.ladder import (
    OPTIONAL_FIELDS,
    RENDITION_NAME,
    InvalidPlan,
    Rendition,
    is_track,
    rendition_from_dict,
)
from vtx.core.media import HLS_PLAYLIST, mp4_name, rendition_prefix
from vtx.core.settings import Settings

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_RENDITION_FIELDS = {f.name for f in fields(Rendition)}
_REQUIRED_FIELDS = _RENDITION_FIELDS - OPTIONAL_FIELDS  # what a row written before them lacks
STARTED = {"Running", "Uploading", "Succeeded"}


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(body, default=str).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def video_id_param(request: web.Request) -> str:
    raw = request.match_info["video_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(404, "not_found", f"no video {raw[:64]!r}: ids are UUIDs") from None


def base_url(settings: Settings, request: web.Request) -> str:
    return settings.api_public_url or f"{request.scheme}://{request.host}"


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _rendition_order(item: tuple[str, dict[str, Any]]) -> tuple[int, str]:
    return int(item[1].get("height") or 0), item[0]


def video_view(row: videos.VideoRow, services: Services, request: web.Request) -> dict[str, Any]:
    """One video as clients see it. A finished rendition's ``mp4`` is a signed URL of the file
    (valid VTX_PLAYBACK_URL_SECONDS): a link a browser follows without a token."""
    settings = services.settings
    play = f"{base_url(settings, request)}/v1/videos/{row.id}/play"
    renditions = {}
    for name, r in sorted(row.renditions.items(), key=_rendition_order):
        phase = r.get("phase") or "Pending"
        mp4 = None
        if phase == "Succeeded" and RENDITION_NAME.fullmatch(name):
            key = f"{rendition_prefix(row.id, name)}/{mp4_name(str(r.get('kind')))}"
            mp4 = services.store.presign_get(key, expires_s=settings.playback_url_seconds)
        renditions[name] = {
            "phase": phase,
            "progress": int(r.get("progress") or 0),
            "message": r.get("message") or None,
            "kind": r.get("kind"),
            "width": r.get("width"),
            "height": r.get("height"),
            "mp4": mp4,
            "language": r.get("language") if is_track(name) else None,
            "title": r.get("title") if is_track(name) else None,
        }
    cid = row.outputs.get("cid")
    started = any(r["phase"] in STARTED for r in renditions.values())
    images = None
    if has_images(row):
        ttl = settings.playback_url_seconds
        images = {
            fmt: services.store.presign_get(img.key(row.id, fmt), expires_s=ttl)
            for fmt in img.JPEGS
        }
        images[img.STORYBOARD_VTT] = f"{play}/{img.FOLDER}/{img.FILES[img.STORYBOARD_VTT]}"
    gateway = settings.ipfs_gateway_url
    return {
        "id": row.id,
        "title": row.title,
        "description": row.description,
        "file_name": row.file_name,
        "size": row.size,
        "content_type": row.content_type,
        "status": row.status,
        "phase": row.phase,
        "progress": row.progress,
        "renditions": renditions,
        "failure_reason": row.failure_reason,
        "failure_detail": row.failure_detail,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "source": {"key": row.key, "cid": row.source_cid, "checksum": row.checksum},
        "cid": cid,
        "images": images,
        "playback": {
            "hls": f"{play}/master.m3u8" if started or cid else None,
            "ipfs": f"{gateway}/ipfs/{cid}/master.m3u8" if cid and gateway else None,
        },
    }


def has_images(row: videos.VideoRow) -> bool:
    """Whether the video's images are made: the rendition that makes them succeeded."""
    return row.status != videos.DELETED and img.made(row.renditions)


def progress_view(row: videos.VideoRow) -> dict[str, Any]:
    """The original progress answer: the video's phase and percent, and each rendition's."""
    return {
        "video_id": row.id,
        "status": row.status,
        "phase": row.phase,
        "progress": row.progress,
        "renditions": {
            name: {"phase": r.get("phase") or "Pending", "progress": int(r.get("progress") or 0)}
            for name, r in sorted(row.renditions.items(), key=_rendition_order)
        },
        "failure_reason": row.failure_reason,
        "failure_detail": row.failure_detail,
    }


async def video_of(
    request: web.Request, video_id: str, *, reading: bool, deleted: bool = False
) -> videos.VideoRow:
    """The video, if the caller may see it: 404 alike for a video that is not there and for
    one that is someone else's (whether it exists is not said)."""
    services = request.app[SERVICES]
    row = await services.sql(lambda cur: videos.get_video(cur, video_id), "get video")
    caller = caller_of(request)
    if (
        row is None
        or (row.status == videos.DELETED and not deleted)
        or not caller.may_see(
            row.owner, reading=reading, open_reads=services.settings.api_open_reads
        )
    ):
        raise ApiError(404, "not_found", f"no video {video_id}")
    return row


async def _visible(request: web.Request) -> videos.VideoRow:
    return await video_of(request, video_id_param(request), reading=True)


def _cursor(raw: str) -> tuple[datetime, str]:
    try:
        created, video_id = json.loads(base64.urlsafe_b64decode(raw.encode() + b"=="))
        return datetime.fromisoformat(created), str(uuid.UUID(video_id))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            400, "invalid_field", "cursor is not one this API returned", field="cursor"
        ) from None


def _make_cursor(row: videos.VideoRow) -> str:
    raw = json.dumps([row.created_at.isoformat(), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@access("read")
async def list_videos(request: web.Request) -> web.Response:
    """GET /v1/videos?limit=&cursor=: newest first."""
    services = request.app[SERVICES]
    raw_limit = request.query.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        raise ApiError(400, "invalid_field", "limit must be from 1 to 100", field="limit")
    limit = int(raw_limit)
    before = _cursor(request.query["cursor"]) if request.query.get("cursor") else None
    owner = caller_of(request).owner_filter
    rows = await services.sql(
        lambda cur: videos.list_videos(cur, limit=limit + 1, before=before, owner=owner),
        "list videos",
    )
    page = rows[:limit]
    return json_response(
        {
            "videos": [video_view(r, services, request) for r in page],
            "next_cursor": _make_cursor(page[-1]) if len(rows) > limit else None,
        }
    )


@access("read")
async def get_video(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    row = await _visible(request)
    return json_response(video_view(row, services, request))


@access("read")
async def get_progress(request: web.Request) -> web.Response:
    """GET /video/{id}/progress, the original polling endpoint."""
    row = await _visible(request)
    return json_response(progress_view(row))


@access("write")
async def delete_video(request: web.Request) -> web.Response:
    """DELETE /v1/videos/{id}: deletes the resource; its deletionPolicy decides the outputs."""
    services = request.app[SERVICES]
    video_id = video_id_param(request)
    await video_of(request, video_id, reading=False, deleted=True)
    existed = await services.run(services.delete_resource, video_id)

    def mark(cur: Cursor) -> None:
        row = videos.get_video(cur, video_id)
        if videos.mark_deleted(cur, video_id) and row is not None:
            # One event per video however often it is deleted: its id says which video.
            event_id = f"deleted-{video_id}"
            webhook_events.announce(
                cur, row, webhook_events.VIDEO_DELETED, event_id, services.settings
            )

    await services.sql(mark, "mark deleted")
    return json_response(
        {"id": video_id, "status": videos.DELETED, "resource_deleted": existed}, status=202
    )


def _get_text(services: Services, key: str) -> str | None:
    data = services.store.get_bytes_if_there(key)
    return None if data is None else data.decode()


def _playlist(text: str, *, final: bool) -> web.Response:
    return web.Response(
        text=text,
        content_type=PLAYLIST_TYPE,
        headers={"Cache-Control": "max-age=60" if final else "no-cache"},
    )


def _master_text(services: Services, row: videos.VideoRow) -> str | None:
    master_key = row.outputs.get("master")
    if master_key:
        return _get_text(services, str(master_key))
    # Still transcoding: a master of the renditions that have segments already.
    started = []
    for name, entry in row.renditions.items():
        if entry.get("phase") not in STARTED or not set(entry) >= _REQUIRED_FIELDS:
            continue
        try:
            rendition = rendition_from_dict({k: entry[k] for k in _RENDITION_FIELDS & set(entry)})
        except InvalidPlan:
            continue
        text = _get_text(services, f"{rendition_prefix(row.id, name)}/{HLS_PLAYLIST}")
        if text is not None and has_segments(text):
            started.append(rendition)
    return master_of(started)


@access("read")
async def play_master(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    row = await _visible(request)
    text = await services.run(_master_text, services, row)
    if text is None:
        raise ApiError(404, "not_ready", "no rendition has playable segments yet")
    return _playlist(text, final=bool(row.outputs.get("master")))


def _rendition_param(request: web.Request) -> str:
    name = request.match_info["rendition"]
    if not RENDITION_NAME.fullmatch(name):
        raise ApiError(404, "not_found", "no such rendition")
    return name


@access("read")
async def play_media(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    row = await _visible(request)
    folder = f"videos/{row.id}/{_rendition_param(request)}/hls/"
    text = await services.run(_get_text, services, folder + "index.m3u8")
    if text is None:
        raise ApiError(404, "not_found", "this rendition has no playlist yet")
    ttl = services.settings.playback_url_seconds

    def sign(name: str) -> str:
        return services.store.presign_get(folder + name, expires_s=ttl)

    try:
        signed = await services.run(sign_media_playlist, text, sign)
    except UnexpectedPlaylist as exc:
        raise ApiError(502, "bad_playlist", str(exc)) from None
    return _playlist(signed, final="#EXT-X-ENDLIST" in text)


@access("read")
async def play_mp4(request: web.Request) -> web.Response:
    """…/play/<rendition>/video.mp4, or audio.mp4 for sound only (as the video lists it)."""
    services = request.app[SERVICES]
    row = await _visible(request)
    name = _rendition_param(request)
    kind = str((row.renditions.get(name) or {}).get("kind") or "video")
    if request.match_info["file"] != mp4_name(kind):
        raise ApiError(404, "not_found", f"this rendition's MP4 is {mp4_name(kind)}")
    key = f"{rendition_prefix(row.id, name)}/{mp4_name(kind)}"
    if await services.run(services.store.head, key) is None:
        raise ApiError(404, "not_found", "this rendition has no MP4 yet")
    url = services.store.presign_get(key, expires_s=services.settings.playback_url_seconds)
    raise web.HTTPFound(url)


@access("read")
async def play_image(request: web.Request) -> web.Response:
    """…/play/images/poster.jpg, thumbnail.jpg or storyboard.jpg: a redirect to the file."""
    services = request.app[SERVICES]
    row = await _visible(request)
    fmt = next((f for f in img.JPEGS if img.FILES[f] == request.match_info["file"]), None)
    if fmt is None or not has_images(row):
        raise ApiError(404, "not_found", "this video has no such image (yet)")
    url = services.store.presign_get(
        img.key(row.id, fmt), expires_s=services.settings.playback_url_seconds
    )
    raise web.HTTPFound(url)


@access("read")
async def play_storyboard(request: web.Request) -> web.Response:
    """…/play/images/storyboard.vtt: the storyboard's cues, each pointing at a signed URL of
    the sprite sheet (the file in storage points at it by its relative name)."""
    services = request.app[SERVICES]
    row = await _visible(request)
    if not has_images(row):
        raise ApiError(404, "not_found", "this video has no storyboard (yet)")
    text = await services.run(_get_text, services, img.key(row.id, img.STORYBOARD_VTT))
    if text is None:
        raise ApiError(404, "not_found", "this video has no storyboard")
    sheet = services.store.presign_get(
        img.key(row.id, img.STORYBOARD), expires_s=services.settings.playback_url_seconds
    )
    try:
        signed = sign_storyboard(text, sheet)
    except img.InvalidStoryboard as exc:
        raise ApiError(502, "bad_storyboard", str(exc)) from None
    return web.Response(text=signed, content_type="text/vtt", headers={"Cache-Control": "no-cache"})
