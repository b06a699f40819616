"""What a webhook says of a video, and when it is queued: in the transaction that makes the
change it announces (an upload completed, a video Ready, Failed or deleted), so that a change
committed is a delivery owed, even if the process dies right after."""

from __future__ import annotations

from typing import Any

from vtx.core import images, webhooks
from vtx.core.db import Cursor
from vtx.core.settings import Settings
from vtx.core.videos import VideoRow

UPLOAD_COMPLETED = "upload.completed"
VIDEO_READY = "video.ready"
VIDEO_FAILED = "video.failed"
VIDEO_DELETED = "video.deleted"
BY_PHASE = {"Ready": VIDEO_READY, "Failed": VIDEO_FAILED}


def video_data(row: VideoRow, event_type: str, settings: Settings) -> dict[str, Any]:
    """The ``data`` of an event about ``row``: playback links and the root CID once Ready, the
    reason (a sentence) once Failed. Links are absolute where the API's public URL and the IPFS
    gateway are set, paths otherwise."""
    data: dict[str, Any] = {
        "video_id": row.id,
        "file_name": row.file_name,
        "size": row.size,
        "content_type": row.content_type,
    }
    if event_type == VIDEO_READY:
        cid = row.outputs.get("cid")
        api, gateway = settings.api_public_url.rstrip("/"), settings.ipfs_gateway_url.rstrip("/")
        data["playback"] = {
            "hls": f"{api}/v1/videos/{row.id}/play/master.m3u8",
            "ipfs": f"{gateway}/ipfs/{cid}/master.m3u8" if cid else None,
        }
        data["root_cid"] = cid
        # Through the API (redirects to signed URLs): links in a stored event do not expire.
        data["images"] = (
            {fmt: f"{api}/v1/videos/{row.id}/play/images/{images.FILES[fmt]}"
             for fmt in (*images.JPEGS, images.STORYBOARD_VTT)}
            if images.made(row.renditions)
            else None
        )  # fmt: skip
        data["renditions"] = sorted(row.renditions)
        data["duration_s"] = row.source_duration
    elif event_type == VIDEO_FAILED:
        data["reason"] = row.failure_reason or "the video could not be transcoded"
    return data


def announce(cur: Cursor, row: VideoRow, event_type: str, event_id: str, settings: Settings) -> int:
    """Queue ``event_type`` for the webhooks of the video's owner; how many were queued. A video
    made without a token (no owner) has no webhooks."""
    if row.owner is None:
        return 0
    return webhooks.enqueue(
        cur, row.owner, event_type, event_id, row.id, video_data(row, event_type, settings)
    )
