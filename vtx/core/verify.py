"""Whether a video is whole: its rows, its objects in S3, its IPFS directory and its status
agree, and its files play for as long as the source lasts.

The operator runs the rendition checks before it calls a rendition done and again before it
publishes; ``vtx verify`` runs all of them on every video that says it is done. Each check
returns the discrepancies it found, in words; none found means whole.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vtx.core import images as img
from vtx.core import media, videos
from vtx.core.db import Cursor, Database
from vtx.core.hls import master_of, parse_media_playlist
from vtx.core.ipfs import IpfsClient, IpfsError
from vtx.core.ladder import InvalidPlan, Rendition, rendition_from_dict
from vtx.core.objects import ObjectStore
from vtx.core.probe import ffprobe_args
from vtx.core.sources import run_probe
from vtx.core.tracks import webvtt_problems
from vtx.core.videos import RenditionRecord, SegmentRow

MP4_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"
TOLERANCE_S = float(media.SEGMENT_SECONDS)  # how far an output's length may be from the source's

# --- rows (pure) --------------------------------------------------------------------------------


def record_problems(
    record: RenditionRecord | None, *, job: str | None, rendition: Rendition, ipfs: bool
) -> list[str]:
    """What is missing from a rendition's rows. ``job`` is the Job that must have recorded
    them (None: any one Job, the same for every row)."""
    if record is None:
        return ["no rows record its outputs"]
    problems: list[str] = []
    storages = [videos.S3, videos.IPFS] if ipfs else [videos.S3]
    jobs = set()
    # (format, its name in words, whether its row must give a size in pixels): the rendition's
    # files, and the video's images when this rendition makes them.
    whole = videos.file_format(rendition.kind)
    outputs = [(whole, "MP4" if whole == videos.MP4 else "WebVTT file", False),
               (videos.HLS, "HLS", False)]  # fmt: skip
    if rendition.images:
        outputs += [(fmt, fmt.replace("_", " "), True) for fmt in img.FILES]
    for fmt, name, sized in outputs:
        for storage in storages:
            row = record.get(fmt, storage)
            what = f"its {name} ({storage})"
            if (
                row is None
                or not row.key
                or not row.size
                or (sized and not (row.width and row.height))
            ):
                problems.append(f"{what} is not recorded")
                continue
            jobs.add(row.job)
            if job is not None and row.job != job:
                problems.append(f"{what} was recorded by {row.job or 'no Job'}, not by {job}")
            if ipfs and not row.cid:
                problems.append(f"{what} has no CID")
            if fmt == videos.HLS:
                problems += segment_problems(
                    row, what, ipfs=ipfs, init=media.init_name(rendition.kind) is not None
                )
    if job is None and len(jobs) > 1:
        problems.append(
            f"its rows were recorded by different Jobs: {', '.join(sorted(map(str, jobs)))}"
        )
    return problems


def segment_problems(
    row: videos.OutputRecord, what: str, *, ipfs: bool, init: bool = True
) -> list[str]:
    count = row.segment_count or 0
    if count < 1:
        return [f"{what} lists no segment"]
    problems = []
    if (row.segments, row.first_sequence, row.last_sequence) != (count, 0, count - 1):
        problems.append(
            f"{what} has {row.segments} segment rows numbered {row.first_sequence} to "
            f"{row.last_sequence}, not 0 to {count - 1}"
        )
    if ipfs and row.segments_with_cid != row.segments:
        problems.append(f"{what} has {row.segments - row.segments_with_cid} segments without CID")
    if ipfs and init and not row.init_cid:
        problems.append(f"{what} has no CID for its init segment")
    return problems


# --- objects (pure parts) -------------------------------------------------------------------------


def playlist_problems(
    text: str, segments: Sequence[SegmentRow], source_duration: float | None,
    kind: str = "video",
) -> list[str]:  # fmt: skip
    """A rendition's media playlist against its segment rows and the source's length (WebVTT
    segments for subtitles, with no init segment)."""
    playlist = parse_media_playlist(text)
    problems = []
    if not playlist.ended:
        problems.append("its playlist does not end (no ENDLIST)")
    if playlist.init_uri != media.init_name(kind):
        problems.append(f"its playlist names init segment {playlist.init_uri!r}")
    listed = [(s.sequence, s.uri) for s in playlist.segments]
    recorded = [(s.sequence, s.key.rsplit("/", 1)[-1]) for s in segments]
    if listed != recorded:
        problems.append(
            f"its playlist lists {len(listed)} segments, its rows {len(recorded)}"
            if len(listed) != len(recorded)
            else "its playlist and its rows name different segments"
        )
    expected = [(n, media.segment_name(n, kind)) for n in range(len(listed))]
    if listed != expected:
        problems.append("its playlist's segments are not numbered 0, 1, 2, …")
    total = sum(s.duration for s in playlist.segments)
    if source_duration and abs(total - source_duration) > TOLERANCE_S:
        problems.append(f"its segments last {total:.1f}s; the source lasts {source_duration:.1f}s")
    return problems


def mp4_problems(
    report: Mapping[str, Any], rendition: Rendition, source_duration: float | None
) -> list[str]:
    """ffprobe's report of a rendition's MP4 against its plan and the source's length."""
    streams = [s for s in report.get("streams") or [] if isinstance(s, Mapping)]
    videos_ = [s for s in streams if s.get("codec_type") == "video"]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    problems = []
    if rendition.kind == "video":
        sizes = [(s.get("width"), s.get("height")) for s in videos_]
        if sizes != [(rendition.width, rendition.height)]:
            problems.append(
                f"its MP4 holds video {sizes}, not one {rendition.width}x{rendition.height} stream"
            )
    elif videos_:
        problems.append("its MP4 holds video, but it is sound only")
    if bool(audios) != bool(rendition.audio_bitrate_k):
        problems.append(
            "its MP4 " + ("lacks the sound" if rendition.audio_bitrate_k else "has sound")
        )
    try:
        duration = float(str((report.get("format") or {}).get("duration")))
    except ValueError:
        duration = math.nan
    if not math.isfinite(duration):
        problems.append("its MP4 has no duration")
    elif source_duration and abs(duration - source_duration) > TOLERANCE_S:
        problems.append(f"its MP4 lasts {duration:.1f}s; the source lasts {source_duration:.1f}s")
    return problems


def probe_mp4(url: str, timeout_s: int = 60) -> Mapping[str, Any]:
    """ffprobe's JSON report of an MP4 vtx wrote, read through a signed URL."""
    from vtx.core.media import allowed_protocols

    args = ffprobe_args(
        url, allowed_protocols=allowed_protocols(url), allowed_formats=MP4_DEMUXER,
        timeout_s=timeout_s,
    )  # fmt: skip
    try:
        proc = run_probe(args, timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"ffprobe did not finish within {timeout_s}s"}
    if proc.returncode != 0:
        return {"error": media.failure_reason(proc.stderr)}
    report: Mapping[str, Any] = json.loads(proc.stdout)
    return report


# --- one rendition in S3 --------------------------------------------------------------------------


def check_rendition(
    store: ObjectStore,
    video_id: str,
    rendition: Rendition,
    record: RenditionRecord,
    segments: Sequence[SegmentRow],
    source_duration: float | None,
    *,
    probe: Callable[[str], Mapping[str, Any]] = probe_mp4,
) -> list[str]:
    """A rendition's objects in S3 against its rows: the MP4 (whole, the planned size and
    length), the playlist (ended, its segments all there with the recorded sizes, the source's
    length) and the init segment. One listing of its folder, one GET, one ffprobe."""
    prefix = media.rendition_prefix(video_id, rendition.name)
    objects = dict(store.iter_sizes(prefix + "/"))
    problems = []
    subtitles = rendition.kind == "subtitles"
    file = "WebVTT file" if subtitles else "MP4"
    mp4 = record.get(videos.file_format(rendition.kind), videos.S3)
    mp4_key = f"{prefix}/{media.mp4_name(rendition.kind)}"
    if mp4 is None or mp4.key != mp4_key:
        problems.append(f"its {file} row names {mp4.key if mp4 else None}, not {mp4_key}")
    if mp4_key not in objects:
        problems.append(f"its {file} is missing from S3")
    elif mp4 is not None and objects[mp4_key] != mp4.size:
        problems.append(f"its {file} in S3 has {objects[mp4_key]} bytes; its row says {mp4.size}")
    elif subtitles:
        data = store.get_bytes_if_there(mp4_key) or b""
        problems += [f"its WebVTT file {p}" for p in webvtt_problems(data, source_duration)]
    else:
        report = probe(store.presign_get(mp4_key, expires_s=600, public=False))
        if "error" in report:
            problems.append(f"its MP4 does not read: {report['error']}")
        else:
            problems += mp4_problems(report, rendition, source_duration)
    init_key = f"{prefix}/{media.HLS_INIT}"
    if media.init_name(rendition.kind) and not objects.get(init_key):
        problems.append("its init segment is missing from S3")
    text = store.get_bytes_if_there(f"{prefix}/{media.HLS_PLAYLIST}")
    if text is None:
        problems.append("its playlist is missing from S3")
    else:
        problems += playlist_problems(
            text.decode(errors="replace"), segments, source_duration, rendition.kind
        )
    if rendition.images:
        problems += image_problems(store, video_id, record, source_duration)
    missing = [s.sequence for s in segments if s.key not in objects]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" …" if len(missing) > 5 else "")
        problems.append(f"{len(missing)} of its segments are missing from S3 (numbers {shown})")
    wrong = [s.sequence for s in segments if s.key in objects and objects[s.key] != s.size]
    if wrong:
        problems.append(f"{len(wrong)} of its segments in S3 differ in size from their rows")
    return problems


def image_problems(
    store: ObjectStore,
    video_id: str,
    record: RenditionRecord,
    source_duration: float | None,
) -> list[str]:
    """The video's images in S3 against their rows: there, with the recorded sizes; each JPEG
    reads as one picture of the recorded width and height; the storyboard's cues cover the
    source from start to end, each on a tile of its sheet."""
    objects = dict(store.iter_sizes(f"{media.video_prefix(video_id)}/{img.FOLDER}/"))
    problems = []
    for fmt in img.FILES:
        row = record.get(fmt, videos.S3)
        if row is None:
            continue  # record_problems says so
        what = f"its {fmt.replace('_', ' ')}"
        want = img.key(video_id, fmt)
        if row.key != want:
            problems.append(f"{what}'s row names {row.key}, not {want}")
        elif want not in objects:
            problems.append(f"{what} is missing from S3")
        elif objects[want] != row.size:
            problems.append(f"{what} in S3 has {objects[want]} bytes; its row says {row.size}")
        elif fmt in img.JPEGS:
            try:
                size = img.jpeg_size(store.get_bytes(want))
            except img.InvalidJpeg as exc:
                problems.append(f"{what} does not read: {exc}")
                continue
            if size != (row.width, row.height):
                problems.append(f"{what} is {size[0]}x{size[1]}, not {row.width}x{row.height}")
        else:
            data = store.get_bytes_if_there(want) or b""
            try:
                cues = img.parse_storyboard_vtt(data.decode(errors="replace"))
            except img.InvalidStoryboard as exc:
                problems.append(f"{what} does not read: {exc}")
                continue
            problems += img.storyboard_problems(
                cues, source_duration or (cues[-1].end if cues else 0.0),
                (row.width or 0, row.height or 0), tolerance_s=TOLERANCE_S,
            )  # fmt: skip
    return problems


# --- the IPFS directory ---------------------------------------------------------------------


def directory_files(
    renditions: Sequence[Rendition],
    records: Mapping[str, RenditionRecord],
    segments: Mapping[str, Sequence[SegmentRow]],
) -> dict[str, tuple[str, int]]:
    """What a video's IPFS directory holds, from its rows: relative path → (CID, size). The
    master playlist is not among them (it is made when publishing)."""
    files: dict[str, tuple[str, int]] = {}
    for r in renditions:
        record = records[r.name]
        mp4 = record.get(videos.file_format(r.kind), videos.IPFS)
        hls = record.get(videos.HLS, videos.IPFS)
        init = media.init_name(r.kind)
        if mp4 is None or hls is None or not mp4.cid or not hls.cid or (init and not hls.init_cid):
            raise ValueError(f"{r.name} has no CIDs recorded")
        files[f"{r.name}/{media.mp4_name(r.kind)}"] = (mp4.cid, int(mp4.size or 0))
        files[f"{r.name}/{media.HLS_PLAYLIST}"] = (hls.cid, int(hls.size or 0))
        if init and hls.init_cid:
            files[f"{r.name}/hls/{init}"] = (hls.init_cid, -1)  # its size is S3's to say
        for s in segments[r.name]:
            if not s.cid:
                raise ValueError(f"{r.name} segment {s.sequence} has no CID recorded")
            files[f"{r.name}/hls/{s.key.rsplit('/', 1)[-1]}"] = (s.cid, s.size)
        if r.images:
            for fmt, name in img.FILES.items():
                row = record.get(fmt, videos.IPFS)
                if row is None or not row.cid:
                    raise ValueError(f"{r.name}'s {fmt} has no CID recorded")
                files[f"{img.FOLDER}/{name}"] = (row.cid, int(row.size or 0))
    return files


def segments_of(
    db: Database, video_id: str, renditions: Sequence[Rendition]
) -> dict[str, list[SegmentRow]]:
    """Each rendition's segment rows, in order."""

    def read(cur: Cursor) -> dict[str, list[SegmentRow]]:
        return {r.name: videos.segment_rows(cur, video_id, r.name) for r in renditions}

    return db.transaction(read, name="segment rows")


def walk(ipfs: IpfsClient, root: str) -> dict[str, tuple[str, int]]:
    """Every file under an IPFS directory: relative path → (CID, size)."""
    found: dict[str, tuple[str, int]] = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        for entry in ipfs.ls(f"{root}/{rel}" if rel else root):
            path = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir:
                pending.append(path)
            else:
                found[path] = (entry.cid, entry.size)
    return found


def directory_problems(
    listed: Mapping[str, tuple[str, int]], expected: Mapping[str, tuple[str, int]]
) -> list[str]:
    """An IPFS directory's files against the files it should hold (a size of -1: any)."""
    problems = []
    missing = sorted(set(expected) - set(listed))
    if missing:
        problems.append(f"the IPFS directory lacks {len(missing)} files: {', '.join(missing[:5])}")
    extra = sorted(set(listed) - set(expected))
    if extra:
        problems.append(f"the IPFS directory holds unexpected files: {', '.join(extra[:5])}")
    for path in sorted(set(listed) & set(expected)):
        (cid, size), (want_cid, want_size) = listed[path], expected[path]
        if cid != want_cid:
            problems.append(f"IPFS {path} is {cid}; its row says {want_cid}")
        elif want_size >= 0 and size != want_size:
            problems.append(f"IPFS {path} has {size} bytes; its row says {want_size}")
    return problems


# --- a whole video ----------------------------------------------------------------------------


@dataclass
class Report:
    video_id: str
    status: str
    problems: list[str] = field(default_factory=list)
    note: str = ""  # why a video was not checked (still in progress, deleted)

    @property
    def ok(self) -> bool:
        return not self.problems


def planned_renditions(row: videos.VideoRow) -> tuple[list[Rendition], list[str]]:
    """The renditions the row says were made (Succeeded), and any it cannot read."""
    made, unreadable = [], []
    for name, entry in sorted(row.renditions.items()):
        if entry.get("phase") != "Succeeded":
            continue
        try:
            fields = {k: entry[k] for k in Rendition.__dataclass_fields__ if k in entry}
            made.append(rendition_from_dict(fields))
        except InvalidPlan as exc:
            unreadable.append(f"rendition {name} in the row does not read: {exc}")
    return made, unreadable


def verify_video(
    video_id: str,
    db: Database,
    store: ObjectStore,
    ipfs: IpfsClient,
    *,
    status_of: Callable[[str, str | None], Mapping[str, Any] | None] | None = None,
    probe: Callable[[str], Mapping[str, Any]] = probe_mp4,
) -> Report:
    """Every check of one video. ``status_of(video_id, owner)`` reads the status of the
    VideoTranscode that owns it (None when there is none) if the cluster can be asked."""
    row = db.transaction(lambda cur: videos.get_video(cur, video_id), name="verify: video")
    if row is None:
        return Report(video_id, "missing", ["no videos row"])
    report = Report(video_id, row.status)
    masters = db.transaction(lambda cur: videos.master_rows(cur, video_id), name="verify: master")
    if row.status == videos.DELETED:
        report.note = "deleted"
        return report
    if row.status == videos.FAILED:
        if masters:
            report.problems.append("it failed but has a published master playlist")
        if row.phase not in (None, "Failed"):
            report.problems.append(f"it failed but its phase is {row.phase}")
        return report
    if row.status != videos.COMPLETED:  # on its way (awaiting upload, uploaded, a row made
        report.note = "not finished yet"  # by other means with the table's default)
        if row.phase == "Ready" or masters:
            report.problems.append(f"it is {row.status} but has a published master playlist")
        return report
    _verify_completed(row, masters, report, db, store, ipfs, probe)
    if status_of is not None:
        status = status_of(video_id, row.resource)
        if status is not None:
            _compare_status(row, status, report)
    return report


def _verify_completed(
    row: videos.VideoRow,
    masters: Mapping[str, tuple[str | None, str | None]],
    report: Report,
    db: Database,
    store: ObjectStore,
    ipfs: IpfsClient,
    probe: Callable[[str], Mapping[str, Any]],
) -> None:
    problems = report.problems
    video_id = row.id
    if row.phase != "Ready":
        problems.append(f"it is completed but its phase is {row.phase}")
    made, unreadable = planned_renditions(row)
    problems += unreadable
    if not made:
        problems.append("it is completed but no rendition is")
        return
    master_key = media.master_key(video_id)
    if row.outputs.get("master") != master_key:
        problems.append(f"its row names master {row.outputs.get('master')}, not {master_key}")
    s3_master = masters.get(videos.S3)
    if s3_master is None or s3_master[0] != master_key:
        problems.append("its master playlist has no row")
    cid = row.outputs.get("cid")
    ipfs_master = masters.get(videos.IPFS)
    if cid and (ipfs_master is None or ipfs_master[1] != cid):
        problems.append(f"its root CID {cid} has no matching master row")
    if not cid and ipfs_master is not None:
        problems.append("a master row names an IPFS root its row does not")
    records = db.transaction(lambda cur: videos.rendition_records(cur, video_id), name="verify")
    segments = segments_of(db, video_id, made)
    for r in made:
        where = f"{r.name}: "
        problems += [where + p for p in record_problems(
            records.get(r.name), job=None, rendition=r, ipfs=bool(cid)
        )]  # fmt: skip
        if r.name in records:
            problems += [where + p for p in check_rendition(
                store, video_id, r, records[r.name], segments[r.name], row.source_duration,
                probe=probe,
            )]  # fmt: skip
    master = store.get_bytes_if_there(master_key)
    expected_master = (master_of(made) or "").encode()
    if master is None:
        problems.append("its master playlist is missing from S3")
    elif master != expected_master:
        problems.append("its master playlist in S3 does not list exactly its finished renditions")
    if not cid:
        return
    try:
        if not ipfs.is_pinned(str(cid)):
            problems.append(f"its root CID {cid} is not pinned")
        listed = walk(ipfs, str(cid))
    except IpfsError as exc:
        problems.append(f"its IPFS directory does not read: {exc}")
        return
    try:
        expected = directory_files(made, records, segments)
    except (KeyError, ValueError) as exc:
        problems.append(f"its rows do not name every file of its IPFS directory: {exc}")
        return
    for r in made:  # the init segment's size is S3's
        init = store.head(f"{media.rendition_prefix(video_id, r.name)}/{media.HLS_INIT}")
        if init is not None:
            expected[f"{r.name}/{media.HLS_INIT}"] = (
                expected[f"{r.name}/{media.HLS_INIT}"][0],
                init.size,
            )
    master_entry = listed.get(media.MASTER_PLAYLIST)
    expected[media.MASTER_PLAYLIST] = (
        master_entry[0] if master_entry else "",
        len(expected_master),
    )
    problems += directory_problems(listed, expected)
    if master_entry is not None and ipfs.cat(master_entry[0]) != expected_master:
        problems.append("its master playlist in IPFS differs from the one it should have")


def _compare_status(row: videos.VideoRow, status: Mapping[str, Any], report: Report) -> None:
    phase = status.get("phase")
    if phase != row.phase:
        report.problems.append(f"its resource's phase is {phase}, its row's {row.phase}")
    outputs = status.get("outputs") or {}
    if (outputs.get("master"), outputs.get("cid")) != (
        row.outputs.get("master"), row.outputs.get("cid"),
    ):  # fmt: skip
        report.problems.append("its resource and its row name different outputs")
