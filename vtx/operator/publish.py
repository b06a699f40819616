"""Publishing a finished video: the HLS master playlist in S3, one IPFS directory (root CID)
mirroring the S3 layout, and the rows that say the video is complete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vtx.core.db import Cursor, Database
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore
from vtx.jobrunner.hls import Variant, render_master_playlist

AAC_LC = "mp4a.40.2"


def h264_codec(height: int, short_side: int | None = None) -> str:
    """The RFC 6381 codec string of the High-profile H.264 the jobrunner writes, by level."""
    side = short_side or height
    level = 0x1E if side <= 480 else 0x1F if side <= 720 else 0x28 if side <= 1080 else 0x33
    return f"avc1.6400{level:02x}"


@dataclass(frozen=True)
class FinishedRendition:
    name: str
    kind: str
    width: int
    height: int
    fps: float | None
    video_bitrate_k: int
    maxrate_k: int
    audio_bitrate_k: int
    cids: Mapping[str, str]  # path relative to the rendition folder → CID (playlist, init, mp4)


def variants(renditions: Sequence[FinishedRendition]) -> list[Variant]:
    out = []
    for r in renditions:
        codecs = AAC_LC if r.kind == "audio" else h264_codec(r.height, min(r.width, r.height))
        if r.kind == "video" and r.audio_bitrate_k:
            codecs += f",{AAC_LC}"
        peak = (r.maxrate_k + r.audio_bitrate_k) * 1000
        average = (r.video_bitrate_k + r.audio_bitrate_k) * 1000
        out.append(
            Variant(
                uri=f"{r.name}/hls/index.m3u8",
                bandwidth=peak,
                average_bandwidth=average,
                codecs=codecs,
                width=r.width,
                height=r.height,
                frame_rate=r.fps,
            )
        )
    return out


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
    master = render_master_playlist(variants(renditions)).encode()
    master_key = f"videos/{video_id}/master.m3u8"
    store.put_bytes(master_key, master, content_type="application/vnd.apple.mpegurl")
    files = {"master.m3u8": ipfs.add_bytes(master, name="master.m3u8", pin=False)}
    for r in renditions:
        files.update({f"{r.name}/{rel}": cid for rel, cid in r.cids.items()})
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
    return {"master": master_key, "cid": root}
