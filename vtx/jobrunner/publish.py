"""Publishing one rendition as FFmpeg produces it: each finished HLS segment goes to S3 (and
IPFS), gets its rows and is removed from local disk; the S3 playlist grows with it (EVENT) and
ends with ENDLIST; the MP4 follows when the encode is done. Last of all, one transaction
records every output and the Job that made them: the operator's evidence that it is done."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from vtx.core import failpoints, media, videos
from vtx.core import images as img
from vtx.core.db import Cursor, Database
from vtx.core.hls import Segment, parse_media_playlist, render_media_playlist
from vtx.core.ipfs import IpfsClient
from vtx.core.ladder import InvalidSource
from vtx.core.objects import ObjectStore
from vtx.core.sources import MEDIA_ENV
from vtx.core.tracks import webvtt_problems
from vtx.jobrunner import resume
from vtx.jobrunner.ffmpeg import ImageOutputs, Output, build_remux_command
from vtx.jobrunner.retry import with_retry

T = TypeVar("T")
log = logging.getLogger(__name__)
REMUX_TIMEOUT_S = 600

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt",
}


class RenditionPublisher:
    def __init__(
        self,
        output: Output,
        video_id: str,
        store: ObjectStore,
        ipfs: IpfsClient | None,
        db: Database,
        *,
        job: str,
        retry_budget_s: float,
        stored: Callable[[int], None] = lambda _n: None,
        images: ImageOutputs | None = None,
        duration_s: float = 0.0,
        stored_segments: Sequence[Segment] = (),
        init_rel: str = media.HLS_INIT,
        growing_playlist: bool = True,
    ) -> None:
        """``stored`` is told of the bytes sent to S3 and IPFS as they go (from any thread):
        the progress of a pod that is uploading. With ``images``, this rendition also stores
        and records the video's poster, thumbnail and storyboard. ``duration_s`` (the
        probed source's) is a subtitles rendition's one segment's length.

        ``stored_segments`` are the segments 0, 1, … an earlier attempt stored (see
        vtx.jobrunner.resume): this encode's numbering starts after them, the stored init
        segment stays (the new one must describe the same codecs), and the MP4 is put together
        from all the segments (assemble_mp4).

        One range of a split video (vtx.core.ranges) stores its init segment at ``init_rel``
        and its segments, with their rows, and no playlist (``growing_playlist`` false): the
        Job that puts the ranges together writes it (adopt, assemble_mp4, finish)."""
        self.output = output
        self.name = output.rendition.name
        self.video_id = video_id
        self.job = job
        self.prefix = media.rendition_prefix(video_id, self.name)
        self._store = store
        self._ipfs = ipfs
        self._db = db
        self._budget = retry_budget_s
        self._stored = stored
        self._images = images
        self._duration_s = duration_s
        self.init_rel = init_rel
        self._growing_playlist = growing_playlist
        self.published: list[Segment] = list(stored_segments)
        self.resumed = bool(self.published)  # keeps the stored init segment
        self._stored_init: bytes | None = None
        self.init_uri: str | None = None
        self.init_cid: str | None = None
        self._transcode_ids: dict[tuple[str, str], str] = {}
        self.storages = (videos.S3, videos.IPFS) if ipfs is not None else (videos.S3,)

    @property
    def hls_dir(self) -> Path:
        return self.output.playlist.parent

    def _retry(self, call: Callable[[], T], what: str) -> T:
        return with_retry(call, what, budget_s=self._budget)

    def _store_file(self, path: Path, rel: str, *, key: str | None = None) -> str | None:
        """Upload one file to S3 (and IPFS) at ``key`` (by default ``rel`` in the rendition's
        folder); returns its CID (None without IPFS)."""
        key = key or f"{self.prefix}/{rel}"
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        self._retry(
            lambda: self._store.upload_file(
                path, key, content_type=content_type, sent=self._stored
            ),
            f"S3 put {key}",
        )
        ipfs = self._ipfs
        if ipfs is None:
            return None
        return self._retry(lambda: ipfs.add_file(path, sent=self._stored), f"IPFS add {key}")

    def _store_bytes(
        self, data: bytes, rel: str, *, to_ipfs: bool, key: str | None = None
    ) -> str | None:
        key = key or f"{self.prefix}/{rel}"
        content_type = CONTENT_TYPES.get(Path(rel).suffix, "application/octet-stream")
        self._retry(
            lambda: self._store.put_bytes(key, data, content_type=content_type), f"S3 put {key}"
        )
        ipfs = self._ipfs
        if not to_ipfs or ipfs is None:
            return None
        return self._retry(lambda: ipfs.add_bytes(data, name=Path(rel).name), f"IPFS add {key}")

    def _transcode_id(self, fmt: str, storage: str, size: tuple[int, int] | None = None) -> str:
        """The row of one output; ``size`` is an image's (a rendition's file: the plan's)."""
        if (fmt, storage) not in self._transcode_ids:
            r = self.output.rendition
            width, height = size or (r.width, r.height)
            bitrate = 0 if size else (r.video_bitrate_k + r.audio_bitrate_k) * 1000
            self._transcode_ids[(fmt, storage)] = self._retry(
                lambda: self._db.transaction(
                    lambda cur: videos.upsert_transcode(
                        cur, self.video_id, fmt=fmt, rendition=self.name, storage=storage,
                        width=width or None, height=height or None, bitrate=bitrate,
                    ),
                    name="upsert transcode",
                ),
                "record transcode",
            )  # fmt: skip
        return self._transcode_ids[(fmt, storage)]

    def publish_ready(self) -> int:
        """Publish the segments FFmpeg has finished since the last call; returns how many."""
        try:
            text = self.output.playlist.read_text()
        except FileNotFoundError:
            return 0
        playlist = parse_media_playlist(text)
        after = self.published[-1].sequence if self.published else -1
        new = [s for s in playlist.segments if s.sequence > after]
        if not new:
            return 0
        if playlist.init_uri and self.init_uri is None:
            made = self.hls_dir / playlist.init_uri
            if self.resumed:
                self._keep_stored_init(made)
            elif self.init_rel == media.HLS_INIT:
                self.init_cid = self._store_file(made, media.HLS_INIT)
            else:
                self._store_bytes(made.read_bytes(), self.init_rel, to_ipfs=False)
            self.init_uri = playlist.init_uri
        ids = [(storage, self._transcode_id(videos.HLS, storage)) for storage in self.storages]
        for segment in new:
            path = self.hls_dir / segment.uri
            rel = f"hls/{segment.uri}"
            size = path.stat().st_size
            cid = self._store_file(path, rel)
            self._record_segment(ids, segment, size, cid)
            path.unlink()
            self.published.append(segment)
            if len(self.published) == 1:
                log.info("first segment of %s stored", self.name)
        if self._growing_playlist:
            self._store_bytes(
                render_media_playlist(self.published, init_uri=self.init_uri, ended=False).encode(),
                media.HLS_PLAYLIST,
                to_ipfs=False,
            )
        return len(new)

    def _stored_bytes(self, key: str) -> bytes:
        return self._retry(lambda: self._store.get_bytes(key), f"S3 get {key}")

    def _keep_stored_init(self, made: Path) -> None:
        """The earlier attempt's init segment stays the rendition's: its timing (edit list) is
        the whole video's. The one this encode made must describe the same codecs."""
        key = f"{self.prefix}/{self.init_rel}"
        stored = self._stored_bytes(key)
        if not resume.same_codecs(stored, made.read_bytes()):
            raise resume.ResumeRefused(
                f"{self.name}: the encode's init segment describes other codecs than the stored one"
            )
        self._stored_init = stored
        if self.init_rel == media.HLS_INIT:
            self._add_init_to_ipfs(stored)

    def _add_init_to_ipfs(self, init: bytes) -> None:
        """The rendition's init segment, stored in S3 already, added to IPFS (again: the same
        CID) for its row."""
        ipfs = self._ipfs
        if ipfs is not None:
            self.init_cid = self._retry(
                lambda: ipfs.add_bytes(init, name=media.INIT_NAME),
                f"IPFS add {self.prefix}/{media.HLS_INIT}",
            )

    def finish_range(self, end: int) -> None:
        """After FFmpeg encoded a range ending before segment ``end``: its last segments."""
        self.publish_ready()
        if not self.published or self.published[-1].sequence != end - 1:
            last = self.published[-1].sequence if self.published else None
            raise RuntimeError(f"{self.name}: the range ends at segment {last}, not {end - 1}")

    def adopt(self, segments: Sequence[Segment], init: bytes) -> None:
        """A split video's rendition, put together: the segments its ranges stored, 0 to the
        last, and the first range's init segment (added to IPFS again: the same CID)."""
        self.published = list(segments)
        self.resumed = True
        self._stored_init = init
        self.init_uri = media.INIT_NAME
        self._add_init_to_ipfs(init)

    def assemble_mp4(self, sound_url: str | None = None) -> None:
        """A resumed (or split) rendition's MP4: its init segment and every segment, read back
        from S3 and piped into FFmpeg, remuxed into a fast-start MP4 without encoding anything
        again (the scratch space holds the MP4 alone). ``sound_url``: a split video's sound,
        copied in from its own rendition's MP4."""
        self.publish_ready()  # the last segments FFmpeg wrote as it ended
        if self._stored_init is None:
            raise RuntimeError(f"{self.name}: the resumed encode wrote no init segment")
        log_path = self.hls_dir / "remux.log"
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(
                build_remux_command(self.output.mp4, sound_url), stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=log_file, env=MEDIA_ENV,
            )  # fmt: skip
            try:
                assert proc.stdin is not None
                try:
                    proc.stdin.write(self._stored_init)
                    for segment in self.published:
                        proc.stdin.write(self._stored_bytes(f"{self.prefix}/hls/{segment.uri}"))
                    proc.stdin.close()
                except BrokenPipeError:
                    pass  # FFmpeg stopped reading: its exit status and log say why
                proc.wait(timeout=REMUX_TIMEOUT_S)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if proc.returncode != 0:
            why = log_path.read_text(errors="replace")[-500:]
            raise RuntimeError(f"{self.name}: remuxing the segments failed: {why}")

    def _record_segment(
        self, ids: list[tuple[str, str]], segment: Segment, size: int, cid: str | None
    ) -> None:
        def record(cur: Cursor) -> None:
            videos.record_segment(
                cur, ids, sequence=segment.sequence, duration=segment.duration, size=size,
                key=f"{self.prefix}/hls/{segment.uri}", cid=cid,
            )  # fmt: skip

        self._retry(lambda: self._db.transaction(record, name="record segment"), "record segment")

    def _publish_subtitles(self) -> None:
        """A subtitles rendition's HLS: its whole WebVTT file as the one segment."""
        path = self.output.mp4
        data = path.read_bytes()
        problems = webvtt_problems(data, self._duration_s)
        if problems:
            raise InvalidSource(f"the WebVTT made of {self.name} {problems[0]}")
        segment = Segment(0, media.segment_name(0, "subtitles"), self._duration_s)
        ids = [(storage, self._transcode_id(videos.HLS, storage)) for storage in self.storages]
        cid = self._store_file(path, f"hls/{segment.uri}")
        self._record_segment(ids, segment, len(data), cid)
        self.published.append(segment)

    def finish(self, decode_errors: int = 0) -> None:
        """After FFmpeg succeeded: the last segments, the final playlist, the MP4 (or a
        subtitles rendition's WebVTT file), and then the rows of every output in one
        transaction."""
        failpoints.hit("jobrunner.last-segment")
        if self.output.rendition.kind == "subtitles":
            self._publish_subtitles()
        else:
            self.publish_ready()
        if not self.published:
            raise RuntimeError(f"{self.name}: FFmpeg finished without writing a segment")
        final = render_media_playlist(self.published, init_uri=self.init_uri, ended=True).encode()
        playlist_cid = self._store_bytes(final, media.HLS_PLAYLIST, to_ipfs=True)
        mp4_rel = self.output.mp4.name
        mp4_size = self.output.mp4.stat().st_size
        mp4_cid = self._store_file(self.output.mp4, mp4_rel)
        whole = videos.file_format(self.output.rendition.kind)
        files = [
            videos.OutputFile(fmt, storage, key, cid, size)
            for fmt, key, cid, size in (
                (whole, f"{self.prefix}/{mp4_rel}", mp4_cid, mp4_size),
                (videos.HLS, f"{self.prefix}/{media.HLS_PLAYLIST}", playlist_cid, len(final)),
            )
            for storage in self.storages
        ]
        ids = {(f.fmt, f.storage): self._transcode_id(f.fmt, f.storage) for f in files}
        if self._images is not None:
            for fmt, size, file in self._store_images(self._images):
                files.append(file)
                ids[(fmt, file.storage)] = self._transcode_id(fmt, file.storage, size)
        self._retry(
            lambda: self._db.transaction(
                lambda cur: videos.record_rendition(
                    cur, ids, files, job=self.job,
                    duration=sum(s.duration for s in self.published),
                    segment_count=len(self.published), init_cid=self.init_cid,
                    decode_errors=decode_errors,
                ),
                name="record outputs",
            ),
            "record outputs",
        )  # fmt: skip
        self.output.mp4.unlink()

    def _store_images(
        self, images: ImageOutputs
    ) -> list[tuple[str, tuple[int, int], videos.OutputFile]]:
        """The poster, thumbnail and storyboard FFmpeg wrote, and the storyboard's cues: each
        stored, with its size in pixels and its row-to-be in every storage."""
        plan = images.plan
        sizes = {img.POSTER: plan.poster, img.THUMBNAIL: plan.thumbnail,
                 img.STORYBOARD: plan.sheet, img.STORYBOARD_VTT: plan.sheet}  # fmt: skip
        stored: list[tuple[str, tuple[int, int], videos.OutputFile]] = []
        for fmt in img.FILES:
            key = img.key(self.video_id, fmt)
            if fmt == img.STORYBOARD_VTT:
                data = img.storyboard_vtt(plan).encode()
                cid = self._store_bytes(data, img.FILES[fmt], to_ipfs=True, key=key)
                size = len(data)
            else:
                path = images.path(fmt)
                if not path.is_file() or not path.stat().st_size:
                    raise RuntimeError(f"FFmpeg finished without writing the {fmt} image")
                size = path.stat().st_size
                cid = self._store_file(path, img.FILES[fmt], key=key)
            for storage in self.storages:
                stored.append((fmt, sizes[fmt], videos.OutputFile(fmt, storage, key, cid, size)))
        return stored
