"""Publishing a finished video: the HLS master playlist in S3, one IPFS directory (root CID)
mirroring the S3 layout, and the rows that say the video is complete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vtx.core.db import Cursor, Database
from vtx.core.hls import render_master_playlist, variant_of
from vtx.core.ipfs import IpfsClient
from vtx.core.ladder import Rendition
from vtx.core.objects import ObjectStore


@dataclass(frozen=True)
class FinishedRendition:
    rendition: Rendition
    cids: Mapping[str, str]  # path relative to the rendition folder → CID (playlist, init, mp4)


def segment_cids(db: Database, video_id: str) -> dict[str, str]:
    """``<rendition>/hls/<segment>`` → CID of every published segment of a video."""

    def query(cur: Cursor) -> list[tuple[Any, ...]]:
        cur.execute(
            "SELECT s.file_path, s.file_cid FROM transcode_segments s"
            " JOIN transcodes t ON t.id = s.transcode_id"
            " WHERE t.video_id = %s AND t.format = 'hls' AND t.storage_type = 's3'",
            (video_id,),
        )
        return list(cur.fetchall())

    prefix = f"videos/{video_id}/"
    return {
        str(path).removeprefix(prefix): str(cid)
        for path, cid in db.transaction(query, name="segment cids")
        if path and cid
    }


def publish_video(
    video_id: str,
    renditions: Sequence[FinishedRendition],
    store: ObjectStore,
    ipfs: IpfsClient,
    db: Database,
) -> dict[str, str]:
    """Write the master playlist, build the IPFS directory, mark the video completed.
    Returns the resource's ``status.outputs``. Safe to run again."""
    master = render_master_playlist([variant_of(r.rendition) for r in renditions]).encode()
    master_key = f"videos/{video_id}/master.m3u8"
    store.put_bytes(master_key, master, content_type="application/vnd.apple.mpegurl")
    files = {"master.m3u8": ipfs.add_bytes(master, name="master.m3u8", pin=False)}
    for r in renditions:
        files.update({f"{r.rendition.name}/{rel}": cid for rel, cid in r.cids.items()})
    files.update(segment_cids(db, video_id))
    root = ipfs.directory_from_cids(files)

    def complete(cur: Cursor) -> None:
        cur.execute(
            "UPDATE videos SET upload_status = 'completed', updated_at = now() WHERE id = %s",
            (video_id,),
        )
        cur.execute(
            "INSERT INTO transcodes (video_id, format, resolution, storage_type, type, file_path,"
            " file_cid) VALUES (%s, 'hls', 'master', 's3', 'master', %s, %s), (%s, 'hls',"
            " 'master', 'ipfs', 'master', %s, %s) ON CONFLICT (video_id, format, resolution,"
            " storage_type) DO UPDATE SET file_path = excluded.file_path, file_cid ="
            " excluded.file_cid, updated_at = now()",
            (video_id, master_key, root, video_id, master_key, root),
        )

    db.transaction(complete, name="complete video")
    # Pinned again after the row names it: a deletion of a video with the same outputs, which
    # unpins only a root no row names, cannot take this pin away unseen (see handlers.cleanup).
    ipfs.pin_add(root)
    return {"master": master_key, "cid": root}
