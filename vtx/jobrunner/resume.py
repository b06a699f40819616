"""Resuming a retried transcode: the segments an earlier attempt stored (an object in S3 of the
size its row records) are done work, and the encode starts at the first segment some rendition
lacks. The encode then writes HLS only (media.segment_start's schedule, numbering and timeline
carry on), and each MP4 is put together from the init segment and every segment, copied, not
encoded again.

Only a Job whose encoded renditions are all video with their sound muxed in resumes: the MP4
of a video whose sound is renditions of its own (``alt_audio``) holds a track its HLS lacks,
and a sound-only rendition is cut by time, not on the keyframe schedule."""

from __future__ import annotations

import logging
import math
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vtx.core import media, ranges, videos
from vtx.core.hls import Segment
from vtx.core.ladder import Rendition
from vtx.core.sources import MEDIA_ENV
from vtx.jobrunner.ffmpeg import AAC_FRAME, MAX_SOUND_LEAD_S

if TYPE_CHECKING:
    from vtx.core.db import Database
    from vtx.core.objects import ObjectStore

log = logging.getLogger(__name__)


class ResumeRefused(Exception):
    """The resumed encode's init segment does not match the stored one (another FFmpeg or
    encoder setting): its segments cannot follow the stored ones."""


@dataclass(frozen=True)
class Resume:
    first: int  # the first segment this attempt encodes
    done: Mapping[str, tuple[Segment, ...]]  # per rendition, segments 0 .. first - 1, stored
    sound_lead_s: float = 0.0  # the sound is read from this much before segment ``first``

    @property
    def start_s(self) -> float:
        return media.segment_start(self.first)


def resumable(renditions: Iterable[Rendition]) -> bool:
    """Whether the encode of ``renditions`` can resume (subtitles are extracted apart)."""
    encoded = [r for r in renditions if r.kind != "subtitles"]
    return bool(encoded) and all(r.kind == "video" and not r.alt_audio for r in encoded)


def stored_run(
    rows: Sequence[videos.SegmentRow], sizes: Mapping[str, int], prefix: str, start: int = 0
) -> list[Segment]:
    """The segments ``start``, ``start`` + 1, … of the rendition at ``prefix`` that are
    recorded under their own key and are in S3 at their recorded size, up to the first that
    is not."""
    run: list[Segment] = []
    for n, row in enumerate((r for r in rows if r.sequence >= start), start=start):
        name = media.segment_name(n)
        if (row.sequence != n or row.key != f"{prefix}/hls/{name}"
                or sizes.get(row.key) != row.size or row.size <= 0
                or not 0 < row.duration <= 2 * media.SEGMENT_SECONDS):  # fmt: skip
            break
        run.append(Segment(n, name, row.duration))
    return run


def first_to_encode(done: Iterable[int], duration_s: float) -> int:
    """The segment to resume at, given how many each rendition has stored: the first that one
    lacks, or the last one when all have every segment (its encode ends the run and proves the
    source still reads to its end)."""
    return max(0, min(min(done, default=0), media.segment_count(duration_s) - 1))


def stsd_boxes(init: bytes) -> list[bytes]:
    """Each track's sample description (the codec and its parameters) in an MP4 init segment."""
    found: list[bytes] = []

    def walk(start: int, end: int) -> None:
        at = start
        while at + 8 <= end:
            size, kind = struct.unpack(">I4s", init[at : at + 8])
            header = 8
            if size == 1 and at + 16 <= end:
                size, header = struct.unpack(">Q", init[at + 8 : at + 16])[0], 16
            if size < header or at + size > end:
                return
            if kind == b"stsd":
                found.append(init[at : at + size])
            elif kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
                walk(at + header, at + size)
            at += size

    walk(0, len(init))
    return found


def same_codecs(stored: bytes, made: bytes) -> bool:
    stored_boxes = stsd_boxes(stored)
    return bool(stored_boxes) and stored_boxes == stsd_boxes(made)


@dataclass(frozen=True)
class Stored:
    """What an earlier attempt left of one rendition."""

    run: list[Segment]  # its segments from the first asked for, stored whole (stored_run)
    sizes: Mapping[str, int]  # its HLS objects in S3, by key


def stored_of(
    store: ObjectStore,
    database: Callable[[], Database],
    video_id: str,
    renditions: Sequence[Rendition],
    *,
    init_rel: str = media.HLS_INIT,
    start: int = 0,
) -> dict[str, Stored] | None:
    """Per rendition, its segments stored from ``start`` on; None when one of them has no init
    segment at ``init_rel`` in S3. One S3 listing per rendition; the rows are read
    (``database``) only when every rendition has its init segment."""
    sizes: dict[str, dict[str, int]] = {}
    for r in renditions:
        prefix = media.rendition_prefix(video_id, r.name)
        sizes[r.name] = dict(store.iter_sizes(f"{prefix}/hls/"))
        if f"{prefix}/{init_rel}" not in sizes[r.name]:
            return None
    rows = database().transaction(
        lambda cur: {r.name: videos.segment_rows(cur, video_id, r.name) for r in renditions},
        name="stored segments",
    )
    return {
        name: Stored(
            stored_run(rows[name], sizes[name], media.rendition_prefix(video_id, name), start),
            sizes[name],
        )
        for name in rows
    }


def find_resume(
    store: ObjectStore,
    database: Callable[[], Database],
    video_id: str,
    renditions: Sequence[Rendition],
    duration_s: float,
) -> Resume | None:
    """What an earlier attempt left for ``renditions``, or None when there is nothing to resume
    from (stored_of)."""
    if not resumable(renditions):
        return None
    encoded = [r for r in renditions if r.kind != "subtitles"]
    stored = stored_of(store, database, video_id, encoded)
    if stored is None:
        return None
    runs = {name: s.run for name, s in stored.items()}
    first = first_to_encode((len(run) for run in runs.values()), duration_s)
    if first < 1:
        return None
    done = {name: tuple(run[:first]) for name, run in runs.items()}
    lead = 0.0
    with_sound = [r for r in encoded if r.audio_bitrate_k]
    if with_sound:
        name = with_sound[0].name
        lead = sound_lead(store, media.rendition_prefix(video_id, name), done[name])
    return Resume(first, done, lead)


def find_range_resume(
    store: ObjectStore,
    database: Callable[[], Database],
    video_id: str,
    renditions: Sequence[Rendition],
    rng: ranges.Range,
) -> Resume | None:
    """What an earlier attempt at range ``rng`` of a split video left for ``renditions`` (its
    init segment and its segments from ``rng.first`` on), or None when there is nothing to
    resume from. A range is picture alone: there is no sound to carry on."""
    init = ranges.init_rel(rng.first)
    stored = stored_of(store, database, video_id, renditions, init_rel=init, start=rng.first)
    if stored is None:
        return None
    runs = {name: s.run[: rng.end - rng.first] for name, s in stored.items()}
    # Every segment of the range stored (the attempt died while finishing): the last one is
    # encoded again.
    first = rng.first + min(min(len(run) for run in runs.values()), rng.end - rng.first - 1)
    if first == rng.first:
        return None
    return Resume(first, {name: tuple(run[: first - rng.first]) for name, run in runs.items()})


def sound_lead(store: ObjectStore, prefix: str, done: Sequence[Segment]) -> float:
    """sound_lead_of the stored init segment and first and last stored segments."""
    with tempfile.TemporaryDirectory(prefix="vtx-resume-") as folder:
        init = store.get_bytes(f"{prefix}/{media.HLS_INIT}")
        paths = []
        for segment in (done[0], done[-1]):
            path = Path(folder) / f"{segment.uri}.mp4"
            path.write_bytes(init + store.get_bytes(f"{prefix}/hls/{segment.uri}"))
            paths.append(path)
        return sound_lead_of(paths[0], paths[1], done[-1].sequence + 1)


def sound_lead_of(first: Path, last: Path, resume_at: int) -> float:
    """How much earlier than segment ``resume_at``'s start the resumed sound must start to carry
    on where the stored segments' sound ends, from the first and last stored segments (each
    with the init segment before it). The stored timeline puts source instant s at s + p0
    (p0: the time of the first packet, the encoder's priming) and the stored sound ends at E
    (the last segment's last packet and its length): the source is read again from E - p0.
    0 when the segments cannot be read that way (the sound then starts with the picture, with
    a gap of under two AAC frames before it)."""
    first_times, _ = sound_packet_times(first)
    last_times, frame_s = sound_packet_times(last)
    if not first_times or not last_times or not frame_s > 0:
        return 0.0
    lead = media.segment_start(resume_at) - (last_times[-1] + frame_s - first_times[0])
    if not (math.isfinite(lead) and 0 <= lead < MAX_SOUND_LEAD_S):
        log.warning("the stored sound ends %.3fs before segment %d: not carried on", lead,
                    resume_at)  # fmt: skip
        return 0.0
    return lead


def sound_packet_times(path: Path) -> tuple[list[float], float]:
    """The times of the sound packets of a fragmented MP4 vtx wrote, and the length of one."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-protocol_whitelist", "file", "-f", "mov",
         "-select_streams", "a:0", "-show_entries", "packet=pts_time:stream=sample_rate",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=60, env=MEDIA_ENV,
    )  # fmt: skip
    if out.returncode != 0:
        return [], 0.0
    lines = [line.strip(",") for line in out.stdout.split()]
    try:
        *packets, rate = lines
        return [float(t) for t in packets], AAC_FRAME / int(rate)
    except ValueError:
        return [], 0.0
