"""Publishing one rendition as FFmpeg produces it: each finished HLS segment goes to S3 and
IPFS, gets its rows and is removed from local disk; the S3 playlist grows with it (EVENT) and
ends with ENDLIST; the MP4 follows when the encode is done."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vtx.core.db import Cursor, Database
from vtx.core.hls import Segment, parse_media_playlist, render_media_playlist
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore
from vtx.jobrunner.ffmpeg import Output
from vtx.jobrunner.retry import with_retry

T = TypeVar("T")
log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
}


def rendition_prefix(video_id: str, name: str) -> str:
    return f"videos/{video_id}/{name}"


class RenditionPublisher:
    def __init__(
        self,
        output: Output,
        video_id: str,
        store: ObjectStore,
        ipfs: IpfsClient,
        db: Database,
        *,
        retry_budget_s: float,
    ) -> None:
        self.output = output
        self.name = output.rendition.name
        self.video_id = video_id
        self.prefix = rendition_prefix(video_id, self.name)
        self._store = store
        self._ipfs = ipfs
        self._db = db
        self._budget = retry_budget_s
        self.published: list[Segment] = []
        self.init_uri: str | None = None
        self.cids: dict[str, str] = {}  # path relative to the rendition folder → CID
        self._transcode_ids: dict[tuple[str, str], str] = {}

    @property
    def hls_dir(self) -> Path:
        return self.output.playlist.parent

    def _retry(self, call: Callable[[], T], what: str) -> T:
        return with_retry(call, what, budget_s=self._budget)

    def _store_file(self, path: Path, rel: str) -> str:
        """Upload one file to S3 and IPFS; returns its CID."""
        key = f"{self.prefix}/{rel}"
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        self._retry(
            lambda: self._store.upload_file(path, key, content_type=content_type), f"S3 put {key}"
        )
        cid = self._retry(lambda: self._ipfs.add_file(path), f"IPFS add {key}")
        self.cids[rel] = cid
        return cid

    def _store_bytes(self, data: bytes, rel: str, *, to_ipfs: bool) -> str | None:
        key = f"{self.prefix}/{rel}"
        content_type = CONTENT_TYPES.get(Path(rel).suffix, "application/octet-stream")
        self._retry(
            lambda: self._store.put_bytes(key, data, content_type=content_type), f"S3 put {key}"
        )
        if not to_ipfs:
            return None
        cid = self._retry(
            lambda: self._ipfs.add_bytes(data, name=Path(rel).name), f"IPFS add {key}"
        )
        self.cids[rel] = cid
        return cid

    def _transcode_id(self, fmt: str, storage: str) -> str:
        if (fmt, storage) not in self._transcode_ids:
            bitrate_k = (
                self.output.rendition.video_bitrate_k + self.output.rendition.audio_bitrate_k
            )

            def upsert(cur: Cursor) -> str:
                cur.execute(
                    "INSERT INTO transcodes (video_id, format, resolution, storage_type,"
                    " width, height, bitrate) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (video_id, format, resolution, storage_type)"
                    " DO UPDATE SET updated_at = now() RETURNING id::TEXT",
                    (
                        self.video_id, fmt, self.name, storage,
                        self.output.rendition.width or None, self.output.rendition.height or None,
                        bitrate_k * 1000,
                    ),
                )  # fmt: skip
                row = cur.fetchone()
                assert row is not None
                return str(row[0])

            self._transcode_ids[(fmt, storage)] = self._retry(
                lambda: self._db.transaction(upsert, name="upsert transcode"), "record transcode"
            )
        return self._transcode_ids[(fmt, storage)]

    def _record_segment(self, segment: Segment, key: str, cid: str, size: int) -> None:
        ids = [(storage, self._transcode_id("hls", storage)) for storage in ("s3", "ipfs")]

        def insert(cur: Cursor) -> None:
            for storage, transcode_id in ids:
                cur.execute(
                    "INSERT INTO transcode_segments (transcode_id, sequence, duration, size,"
                    " file_path, file_cid, storage_type) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (transcode_id, sequence) DO UPDATE SET duration ="
                    " excluded.duration, size = excluded.size, file_path = excluded.file_path,"
                    " file_cid = excluded.file_cid",
                    (transcode_id, segment.sequence, segment.duration, size, key, cid, storage),
                )

        self._retry(lambda: self._db.transaction(insert, name="record segment"), "record segment")

    def publish_ready(self) -> int:
        """Publish the segments FFmpeg has finished since the last call; returns how many."""
        try:
            text = self.output.playlist.read_text()
        except FileNotFoundError:
            return 0
        playlist = parse_media_playlist(text)
        new = playlist.segments[len(self.published) :]
        if not new:
            return 0
        if playlist.init_uri and self.init_uri is None:
            self._store_file(self.hls_dir / playlist.init_uri, f"hls/{playlist.init_uri}")
            self.init_uri = playlist.init_uri
        for segment in new:
            path = self.hls_dir / segment.uri
            rel = f"hls/{segment.uri}"
            size = path.stat().st_size
            cid = self._store_file(path, rel)
            self._record_segment(segment, f"{self.prefix}/{rel}", cid, size)
            path.unlink()
            self.published.append(segment)
        self._store_bytes(
            render_media_playlist(self.published, init_uri=self.init_uri, ended=False).encode(),
            "hls/index.m3u8",
            to_ipfs=False,
        )
        return len(new)

    def finish(self) -> dict[str, Any]:
        """After FFmpeg succeeded: the last segments, the final playlist, the MP4 and their rows.
        Returns the outputs entry of the rendition's status."""
        self.publish_ready()
        final = render_media_playlist(self.published, init_uri=self.init_uri, ended=True).encode()
        playlist_cid = self._store_bytes(final, "hls/index.m3u8", to_ipfs=True)
        mp4_rel = self.output.mp4.name
        mp4_size = self.output.mp4.stat().st_size
        mp4_cid = self._store_file(self.output.mp4, mp4_rel)
        duration = sum(s.duration for s in self.published)
        rows = [
            ("mp4", "s3", f"{self.prefix}/{mp4_rel}", mp4_cid, mp4_size),
            ("mp4", "ipfs", f"{self.prefix}/{mp4_rel}", mp4_cid, mp4_size),
            ("hls", "s3", f"{self.prefix}/hls/index.m3u8", playlist_cid, len(final)),
            ("hls", "ipfs", f"{self.prefix}/hls/index.m3u8", playlist_cid, len(final)),
        ]
        ids = {(fmt, storage): self._transcode_id(fmt, storage) for fmt, storage, *_ in rows}

        def record(cur: Cursor) -> None:
            for fmt, storage, key, cid, size in rows:
                cur.execute(
                    "UPDATE transcodes SET file_path = %s, file_cid = %s, size = %s,"
                    " duration = %s, updated_at = now() WHERE id = %s",
                    (key, cid, size, duration, ids[(fmt, storage)]),
                )

        self._retry(lambda: self._db.transaction(record, name="record outputs"), "record outputs")
        self.output.mp4.unlink()
        return {
            "mp4": f"{self.prefix}/{mp4_rel}",
            "hls": f"{self.prefix}/hls/index.m3u8",
            # Segment CIDs live in transcode_segments: a long video has too many for a status.
            "cids": {k: v for k, v in sorted(self.cids.items()) if not k.endswith(".m4s")},
        }
