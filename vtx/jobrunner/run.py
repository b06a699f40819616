"""One transcode job: probe, encode once per rendition, publish as it goes, report, exit with a
code the operator's podFailurePolicy understands (0 done, 42 invalid input, 75 retry).

A split video (vtx.core.ranges) has two kinds of transcode Job besides: an Indexed Job whose
every completion encodes one range (segments and their rows, no playlist, no MP4), and the Job
that puts the ranges together (playlists, MP4s copied out of the segments with the sound
rendition's sound, the images, and the rows that say each rendition is done)."""

from __future__ import annotations

import functools
import importlib
import itertools
import logging
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from vtx.core import failpoints, ranges
from vtx.core import images as img
from vtx.core.jobargs import TranscodeArgs
from vtx.core.ladder import (
    InvalidSource,
    SourceFacts,
    audio_track,
    display_size,
    subtitle_track,
)
from vtx.core.media import (
    EXIT_INVALID_INPUT,
    EXIT_RETRYABLE,
    HLS_INIT,
    classify_failure,
    count_decode_errors,
    failure_reason,
    mp4_name,
    oversized_frame,
    segment_count,
    segment_start,
)
from vtx.core.media import rendition_prefix as media_prefix
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings
from vtx.core.sources import MEDIA_ENV, ProbeUnavailable, probe_source
from vtx.jobrunner.ffmpeg import (
    ImageOutputs,
    RangeTiles,
    build_encode_command,
    build_images_command,
    build_joined_images_command,
    build_subtitles_command,
    out_time_seconds,
    outputs_for,
    parse_progress,
)
from vtx.jobrunner.report import Reporter
from vtx.jobrunner.resume import (
    Resume,
    ResumeRefused,
    find_range_resume,
    find_resume,
    same_codecs,
    stored_of,
)
from vtx.jobrunner.retry import StorageUnavailable, with_retry

if TYPE_CHECKING:
    from vtx.core.db import Database
    from vtx.core.ipfs import IpfsClient
    from vtx.jobrunner.publish import RenditionPublisher

log = logging.getLogger(__name__)
FFMPEG_NICENESS = 10
ENCODE_SHARE = 95.0  # progress while encoding goes to 95%; uploading the MP4 takes the rest
PUBLISHING = "vtx.jobrunner.publish"
LOOP_SLOW_S = 0.5  # a progress loop turn this slow is logged (reports are due every second)
TILES_TYPE = "video/x-nut"  # a range's storyboard tiles (ffmpeg.RangeTiles)
PUBLISH_POLL_S = 0.2  # how often FFmpeg's playlists are read for new segments (a file read)


class Interrupted(Exception):
    """SIGTERM arrived: the pod is going away."""


class RangesIncomplete(Exception):
    """A split video's ranges are not all stored (or the sound rendition's MP4 is missing):
    there is nothing yet to put together."""


SOUND_RENDITION = "audio-1"  # a split video's MP4s carry the first audio track, as stored here
COMPLETION_INDEX = "JOB_COMPLETION_INDEX"  # set by Kubernetes in an Indexed Job's pods


def _part_of(job: TranscodeArgs) -> tuple[int, int] | None:
    """(range, ranges) of a range pod, for its reports (range_of checks it against the source)."""
    count = len(job.range_bounds) - 1
    index = os.environ.get(COMPLETION_INDEX, "")
    if count < 1 or not index.isdigit() or not int(index) < count:
        return None
    return int(index), count


def range_of(job: TranscodeArgs, facts: SourceFacts) -> ranges.Range:
    """The range of a split video this pod encodes: its completion index's, of bounds that
    fit the source as probed (else InvalidSource: a plan the source does not bear out)."""
    try:
        bounds = ranges.check_bounds(job.range_bounds, facts.duration)
    except ValueError as exc:
        raise InvalidSource(f"the ranges planned do not fit the source: {exc}") from None
    part = _part_of(job)
    if part is None:
        index = os.environ.get(COMPLETION_INDEX, "")[:20]
        raise InvalidSource(f"no range {index!r} among {len(bounds) - 1}")
    return ranges.ranges_of(bounds)[part[0]]


def install_stop_handler() -> threading.Event:
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    return stop


class _Encode:
    """FFmpeg running, with its progress read on a thread."""

    def __init__(self, cmd: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._read_to = 0
        self._log = log_path.open("w")
        # FFmpeg gets no credential of the jobrunner's: whatever a source makes it do, it
        # has nothing to give away.
        # FFmpeg yields to the jobrunner's own threads (progress reports, segment uploads): on a
        # busy node they keep their cadence, and the encode takes what they leave.
        self.proc = subprocess.Popen(
            ["nice", "-n", str(FFMPEG_NICENESS), *cmd], stdout=subprocess.PIPE, stderr=self._log,
            stdin=subprocess.DEVNULL, text=True, env=MEDIA_ENV,
        )  # fmt: skip
        self.encoded_s = 0.0
        self._reader = threading.Thread(target=self._read, name="ffmpeg-progress", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for report in parse_progress(self.proc.stdout):
            seconds = out_time_seconds(report)
            if seconds is not None:
                self.encoded_s = max(self.encoded_s, seconds)

    def new_messages(self) -> str:
        """What FFmpeg has written to its log since the last call."""
        with self.log_path.open("rb") as f:
            f.seek(self._read_to)
            data = f.read()
        self._read_to += len(data)
        return data.decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        self._reader.join(timeout=5)
        self._log.close()


def _ipfs_client(settings: Settings) -> IpfsClient:
    from vtx.core.ipfs import IpfsClient

    return IpfsClient(
        settings.ipfs_api_url,
        token=settings.ipfs_api_token.value,
        timeout_s=max(60, settings.request_timeout_s),
    )


def _range_tiles(
    job: TranscodeArgs, facts: SourceFacts, rng: ranges.Range, scratch: Path
) -> tuple[RangeTiles, str] | None:
    """The storyboard tiles a range makes, and the S3 key they are kept at: when a rendition of
    the range makes the images and the range holds a tile's time."""
    maker = next((r for r in job.renditions if r.images), None)
    if maker is None or not facts.has_video:
        return None
    plan = img.plan_images(*display_size(facts), facts.duration)
    first, count = img.range_tiles(plan, rng.start_s, min(rng.end_s, facts.duration))
    if not count:
        return None
    key = f"{media_prefix(job.video_id, maker.name)}/{ranges.tiles_rel(rng.first)}"
    return RangeTiles(plan, first, count, scratch / "tiles.nut"), key


def _tile_keys(
    video_id: str, maker: str, plan: img.ImagePlan, firsts: list[int], total: int,
    facts: SourceFacts,
) -> list[str]:  # fmt: skip
    """The S3 keys of the tiles of the ranges beginning at ``firsts`` (the ranges that hold a
    tile's time), in order."""
    keys = []
    for first, end in itertools.pairwise([*firsts, total]):
        start_s, end_s = segment_start(first), min(segment_start(end), facts.duration)
        if img.range_tiles(plan, start_s, end_s)[1]:
            keys.append(f"{media_prefix(video_id, maker)}/{ranges.tiles_rel(first)}")
    return keys


def _fetch_tiles(
    store: ObjectStore, keys: list[str], scratch: Path, settings: Settings
) -> list[Path]:
    """Every range's tiles, in order, or none: a range that resumed made none, and the
    pictures then come from a decode of the whole source."""
    paths = []
    for n, key in enumerate(keys):
        data = with_retry(functools.partial(store.get_bytes_if_there, key), f"S3 get {key}",
                          budget_s=settings.upload_retry_seconds)  # fmt: skip
        if data is None:
            log.info("%s is not stored: the pictures come from a decode of the whole source", key)
            return []
        path = scratch / f"tiles_{n:03d}.nut"
        path.write_bytes(data)
        paths.append(path)
    return paths


def _images_for(facts: SourceFacts, scratch: Path) -> ImageOutputs:
    """Where the video's poster, thumbnail and storyboard go, planned for its display size."""
    width, height = display_size(facts)
    images = ImageOutputs(img.plan_images(width, height, facts.duration), scratch / img.FOLDER)
    images.folder.mkdir(parents=True, exist_ok=True)
    return images


def _wait_side_run(
    run: _Encode, what: str, facts: SourceFacts, settings: Settings, stop: threading.Event
) -> None:
    """Until a run beside the encode (subtitles, pictures) ends; raises as _check_exit does."""
    while run.proc.poll() is None:
        if stop.is_set():
            raise Interrupted
        stop.wait(0.2)
    _check_exit(run, what, facts, settings)


def _check_plan(job: TranscodeArgs, facts: SourceFacts) -> None:
    """The tracks the plan wants are in the source as this pod probed it."""
    wanted = max((audio_track(r) + 1 for r in job.renditions if r.audio_bitrate_k), default=0)
    if wanted > len(facts.audio_tracks):
        raise InvalidSource(
            f"the plan wants audio track {wanted}; the source has {len(facts.audio_tracks)}"
        )
    texts = {t.index for t in facts.subtitle_tracks}
    for r in job.renditions:
        if r.kind == "subtitles" and subtitle_track(r) not in texts:
            raise InvalidSource(f"the source has no text subtitle stream for {r.name}")


def _grown(grown: str, settings: Settings) -> InvalidSource:
    """The refusal of a source whose frames grow past the limit mid-stream."""
    return InvalidSource(
        f"the source grows to {grown} frames mid-stream, beyond the limit of "
        f"{settings.max_source_width}x{settings.max_source_height}"
    )


def _check_exit(run: _Encode, what: str, facts: SourceFacts, settings: Settings) -> int:
    """How FFmpeg's run ended: raises InvalidSource or ProbeUnavailable when it failed, returns
    the count of decode errors it logged when it did not."""
    stderr = run.log_path.read_text(errors="replace")
    grown = oversized_frame(stderr, facts.video_codec)
    if grown is not None:
        raise _grown(grown, settings)
    if run.proc.returncode != 0:
        last = failure_reason(stderr)
        if classify_failure(stderr) == "invalid":
            raise InvalidSource(f"FFmpeg could not decode {what}: {last}")
        raise ProbeUnavailable(f"FFmpeg failed on {what} (exit {run.proc.returncode}): {last}")
    decode_errors = count_decode_errors(stderr)
    if decode_errors:
        log.warning("%s decoded with %d errors: %s", what, decode_errors, failure_reason(stderr))
    return decode_errors


def _cpu_seconds() -> tuple[float, float]:
    """CPU time of this process, and of the FFmpeg and ffprobe runs it waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def run_transcode(
    job: TranscodeArgs, scratch: Path, settings: Settings, stop: threading.Event
) -> int:
    """Encode ``job``'s renditions in ``scratch`` (removed at the end, whatever happens)."""
    # What only the publishing needs (the database's and IPFS's clients: about 0.25 s of
    # imports) is imported on a thread while the probe runs, so FFmpeg starts without it.
    threading.Thread(
        target=importlib.import_module, args=(PUBLISHING,), name="imports", daemon=True
    ).start()
    names = [r.name for r in job.renditions]
    reporter = Reporter(settings, job.video_id, names, part=_part_of(job))
    store = ObjectStore(settings)
    ipfs: IpfsClient | None = None
    db: Database | None = None
    encode: _Encode | None = None
    side_runs: list[tuple[_Encode, str]] = []  # beside the encode: (run, what it reads)
    resume: Resume | None = None

    def open_db() -> Database:
        nonlocal db
        if db is None:
            from vtx.core.db import Database

            db = Database(settings.database_url, max_connections=2)
        return db

    def report_all(phase: str, progress: float | None, message: str | None = None) -> None:
        for name in names:
            reporter.update(name, phase, progress, message)

    try:
        report_all("starting", 0.0)
        url = store.presign_get(job.source_key, expires_s=6 * 3600, public=False)
        log.info("probing the source of %s", job.video_id)
        facts = probe_source(url, settings)
        _check_plan(job, facts)
        if job.finalize:
            ipfs = _ipfs_client(settings) if job.ipfs else None
            _finalize(job, facts, url, scratch, settings, stop, store, open_db(), ipfs, reporter)
            failpoints.hit("jobrunner.recorded")
            report_all("done", 100.0, "outputs recorded")
            return 0
        rng = range_of(job, facts) if job.range_bounds else None
        outputs = outputs_for(job.renditions, scratch)
        for out in outputs:
            out.playlist.parent.mkdir(parents=True, exist_ok=True)
        encoded = [o for o in outputs if o.rendition.kind != "subtitles"]
        extracted = [o for o in outputs if o.rendition.kind == "subtitles"]
        images = None
        if rng is None and facts.has_video and any(r.images for r in job.renditions):
            images = _images_for(facts, scratch)
        if encoded and job.resume:

            def find() -> Resume | None:
                if rng is not None:
                    return find_range_resume(store, open_db, job.video_id, job.renditions, rng)
                return find_resume(store, open_db, job.video_id, job.renditions, facts.duration)

            resume = with_retry(find, "reading the segments stored",
                                budget_s=settings.upload_retry_seconds)  # fmt: skip
        if extracted:
            # Subtitles come out of a run of their own, beside the encode: it reads the source
            # once more but decodes only the text.
            side_runs.append((_Encode(
                build_subtitles_command(url, extracted, duration_s=facts.duration),
                scratch / "subtitles.log",
            ), "the subtitles"))  # fmt: skip
        max_pixels = settings.max_source_width * settings.max_source_height
        if resume is not None and images is not None:
            # The pictures come from the whole source; the encode reads only what is left.
            side_runs.append((_Encode(
                build_images_command(url, images, duration_s=facts.duration,
                                     max_pixels=max_pixels, deinterlace=facts.interlaced),
                scratch / "images.log",
            ), "the source's pictures"))  # fmt: skip
        # A range's tiles, unless it resumes (the finalize then decodes the whole source).
        tiles = _range_tiles(job, facts, rng, scratch) if rng and resume is None else None
        if encoded:
            first = resume.first if resume is not None else (rng.first if rng else 0)
            encode = _Encode(
                build_encode_command(
                    url, encoded, has_audio=facts.has_audio, duration_s=facts.duration,
                    max_pixels=max_pixels, deinterlace=facts.interlaced,
                    images=None if resume is not None else images, first_segment=first,
                    sound_lead_s=resume.sound_lead_s if resume is not None else 0.0,
                    end_segment=rng.end if rng is not None else None,
                    tiles=tiles[0] if tiles is not None else None,
                ),
                scratch / "ffmpeg.log",
            )  # fmt: skip
            log.info("encoding %s of %s (%.1fs, %s)", ",".join(names), job.video_id,
                     facts.duration,
                     "deinterlaced" if facts.interlaced else facts.field_order)  # fmt: skip
            if rng is not None:
                log.info("range %d: segments %d to %d (%.1fs to %.1fs)", rng.index, rng.first,
                         rng.end - 1, rng.start_s, min(rng.end_s, facts.duration))  # fmt: skip
            if resume is not None:
                log.info("resuming at segment %d (%.1fs of %.1fs): an earlier attempt stored "
                         "segments 0 to %d", first, resume.start_s, facts.duration,
                         first - 1)  # fmt: skip
        from vtx.jobrunner.publish import RenditionPublisher

        db = open_db()
        if job.ipfs:
            ipfs = _ipfs_client(settings)
        publishers = [
            RenditionPublisher(
                out, job.video_id, store, ipfs, db, job=job.job,
                retry_budget_s=settings.upload_retry_seconds,
                stored=functools.partial(reporter.stored, out.rendition.name),
                images=images if out.rendition.images else None,
                duration_s=facts.duration,
                stored_segments=resume.done.get(out.rendition.name, ()) if resume else (),
                init_rel=ranges.init_rel(rng.first) if rng is not None else HLS_INIT,
                growing_playlist=rng is None,
            )
            for out in outputs
        ]  # fmt: skip
        decode_errors = 0
        if encode is not None:
            start_s = resume.start_s if resume is not None else (rng.start_s if rng else 0.0)
            span = (rng.start_s, min(rng.end_s, facts.duration)) if rng else (0, facts.duration)
            _follow_encode(encode, publishers, facts, settings, stop, report_all, start_s, span)
            decode_errors = _check_exit(encode, "the source", facts, settings)
        if rng is not None:
            if tiles is not None:
                made, key = tiles
                with_retry(functools.partial(store.upload_file, made.path, key,
                                             content_type=TILES_TYPE), f"S3 put {key}",
                           budget_s=settings.upload_retry_seconds)  # fmt: skip
            for p in publishers:
                p.finish_range(rng.end)
            own, ffmpeg = _cpu_seconds()
            log.info("stored range %d of %s; this attempt used %.1fs of CPU, %.1fs of it "
                     "FFmpeg's", rng.index, ",".join(names), own + ffmpeg, ffmpeg)  # fmt: skip
            failpoints.hit("jobrunner.recorded")
            report_all("done", 100.0, f"range {rng.index} stored")
            return 0
        for run, what in side_runs:
            _wait_side_run(run, what, facts, settings, stop)
        report_all("uploading", ENCODE_SHARE)
        log.info("encoded; storing and recording what is left")
        if resume is not None:
            for p in publishers:
                if p.output.rendition.kind != "subtitles":
                    p.assemble_mp4()
        for p in publishers:
            p.finish(decode_errors)
        own, ffmpeg = _cpu_seconds()
        log.info("recorded %s; this attempt used %.1fs of CPU (%s), %.1fs of it FFmpeg's",
                 ",".join(names), own + ffmpeg,
                 f"from segment {resume.first}" if resume else "whole", ffmpeg)  # fmt: skip
        failpoints.hit("jobrunner.recorded")
        for p in publishers:
            reporter.update(p.name, "done", 100.0, "outputs recorded")
        return 0
    except InvalidSource as exc:
        log.error("invalid input: %s", exc)
        report_all("failed", None, f"InvalidSource: {exc}")
        return EXIT_INVALID_INPUT
    except Interrupted:
        log.warning("interrupted: stopping FFmpeg, the Job will retry")
        report_all("interrupted", None, "the pod was stopped; the Job retries")
        return EXIT_RETRYABLE
    except ResumeRefused as exc:
        # The next attempt encodes from the start: without its init segment, a rendition has
        # nothing to resume from.
        log.error("cannot resume: %s; the next attempt starts over", exc)
        try:
            for r in job.renditions:
                store.delete(f"{media_prefix(job.video_id, r.name)}/{HLS_INIT}")
        except Exception as cleanup:  # noqa: BLE001 - the retry resumes and is refused again
            log.error("could not delete the stored init segments: %s", cleanup)
        report_all("retrying", None, f"retrying: {exc}")
        return EXIT_RETRYABLE
    except (StorageUnavailable, ProbeUnavailable, RangesIncomplete) as exc:
        log.error("will retry: %s", exc)
        report_all("retrying", None, f"retrying: {exc}")
        return EXIT_RETRYABLE
    finally:
        for run in [r for r, _ in side_runs] + ([encode] if encode is not None else []):
            run.close()
        reporter.close()
        if ipfs is not None:
            ipfs.close()
        if db is not None:
            db.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _follow_encode(
    encode: _Encode,
    publishers: list[RenditionPublisher],
    facts: SourceFacts,
    settings: Settings,
    stop: threading.Event,
    report_all: Callable[[str, float | None], None],
    start_s: float = 0.0,
    span: tuple[float, float] | None = None,
) -> None:
    """Until FFmpeg exits: publish each segment as it is finished, report the progress (through
    ``span``, from and to in the source: the whole video by default; the encode starts at
    ``start_s``), stop on SIGTERM (Interrupted) or on a frame beyond the limit
    (InvalidSource)."""
    begin, end = span or (0.0, facts.duration)
    failure: list[BaseException] = []
    encoding_done = threading.Event()

    def publish_loop() -> None:
        try:
            while not encoding_done.is_set():
                for p in publishers:
                    p.publish_ready()
                encoding_done.wait(PUBLISH_POLL_S)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failure.append(exc)

    publisher_thread = threading.Thread(target=publish_loop, name="publisher", daemon=True)
    publisher_thread.start()
    try:
        while encode.proc.poll() is None:
            if stop.is_set():
                raise Interrupted
            if failure:
                raise failure[0]
            began = time.monotonic()
            grown = oversized_frame(encode.new_messages(), facts.video_codec)
            if grown is not None:
                raise _grown(grown, settings)
            read = time.monotonic()
            done_s = start_s + encode.encoded_s - begin
            share = min(1.0, max(0.0, done_s / (end - begin))) if end > begin else 0.0
            report_all("encoding", share * ENCODE_SHARE)
            if (took := time.monotonic() - began) > LOOP_SLOW_S:
                log.warning("the progress loop took %.1fs (%.1fs reading FFmpeg's log)",
                            took, read - began)  # fmt: skip
            stop.wait(0.5)
    finally:
        encoding_done.set()
        publisher_thread.join()
    if failure:
        raise failure[0]


def _finalize(
    job: TranscodeArgs,
    facts: SourceFacts,
    url: str,
    scratch: Path,
    settings: Settings,
    stop: threading.Event,
    store: ObjectStore,
    db: Database,
    ipfs: IpfsClient | None,
    reporter: Reporter,
) -> None:
    """A split video's renditions put together from what their ranges stored: every segment
    from 0 to the last, recorded and in S3 at its size (else RangesIncomplete), the ranges'
    init segments describing the same codecs as the first's; then, per rendition, the final
    playlist, the MP4 (copied out of the segments, with the sound of the sound rendition's
    MP4), the images (the storyboard laid out from the tiles the ranges made, the poster from
    a decode of its window; from a decode of the whole source when a range resumed and made
    no tiles), and the rows."""
    from vtx.jobrunner.publish import RenditionPublisher

    outputs = outputs_for(job.renditions, scratch)
    total = segment_count(facts.duration)
    images = None
    side_run: _Encode | None = None
    publishers: list[RenditionPublisher] = []
    later_inits: list[str] = []
    firsts = [0]  # where the ranges begin (segments), from their init segments
    try:
        sound_url = None
        if facts.has_audio and any(r.alt_audio for r in job.renditions):
            sound_key = f"{media_prefix(job.video_id, SOUND_RENDITION)}/{mp4_name('audio')}"
            if with_retry(lambda: store.head(sound_key), f"S3 head {sound_key}",
                          budget_s=settings.upload_retry_seconds) is None:  # fmt: skip
                raise RangesIncomplete(f"the sound rendition's MP4 {sound_key} is not stored yet")
            sound_url = store.presign_get(sound_key, expires_s=6 * 3600, public=False)
        stored = with_retry(
            lambda: stored_of(store, lambda: db, job.video_id, job.renditions),
            "reading the segments stored", budget_s=settings.upload_retry_seconds,
        )  # fmt: skip
        if stored is None:
            raise RangesIncomplete("the first range's init segment is not stored yet")
        for out in outputs:
            out.playlist.parent.mkdir(parents=True, exist_ok=True)
            prefix = media_prefix(job.video_id, out.rendition.name)
            run = stored[out.rendition.name].run[:total]
            if len(run) < total:
                raise RangesIncomplete(
                    f"{out.rendition.name}: {len(run)} of {total} segments stored"
                )
            init = store.get_bytes(f"{prefix}/{HLS_INIT}")
            for key in stored[out.rendition.name].sizes:
                if ranges.is_range_init(key.removeprefix(f"{prefix}/")):
                    if not same_codecs(init, store.get_bytes(key)):
                        raise RangesIncomplete(f"{key} describes other codecs than the first")
                    later_inits.append(key)
                    if out.rendition.images:
                        firsts.append(ranges.init_first(key.removeprefix(f"{prefix}/")))
            if out.rendition.images and facts.has_video:
                images = _images_for(facts, scratch)
                maker = out.rendition.name
            publisher = RenditionPublisher(
                out, job.video_id, store, ipfs, db, job=job.job,
                retry_budget_s=settings.upload_retry_seconds,
                stored=functools.partial(reporter.stored, out.rendition.name),
                images=images if out.rendition.images else None, duration_s=facts.duration,
            )  # fmt: skip
            publisher.adopt(run, init)
            publishers.append(publisher)
        if images is not None:
            max_pixels = settings.max_source_width * settings.max_source_height
            tile_keys = _tile_keys(job.video_id, maker, images.plan, sorted(firsts), total, facts)
            tiles = _fetch_tiles(store, tile_keys, scratch, settings)
            if tiles:
                cmd = build_joined_images_command(
                    url, images, tiles, duration_s=facts.duration, max_pixels=max_pixels,
                    deinterlace=facts.interlaced,
                )  # fmt: skip
            else:
                cmd = build_images_command(
                    url, images, duration_s=facts.duration, max_pixels=max_pixels,
                    deinterlace=facts.interlaced,
                )  # fmt: skip
            later_inits += tile_keys
            side_run = _Encode(cmd, scratch / "images.log")
        for p in publishers:
            reporter.update(p.name, "uploading", ENCODE_SHARE, "putting the ranges together")
            p.assemble_mp4(sound_url)
        if side_run is not None:
            _wait_side_run(side_run, "the source's pictures", facts, settings, stop)
        for p in publishers:
            p.finish()
        for key in later_inits:
            with_retry(functools.partial(store.delete, key), f"S3 delete {key}",
                       budget_s=settings.upload_retry_seconds)  # fmt: skip
        own, ffmpeg = _cpu_seconds()
        log.info("put %d ranges of %s together; this attempt used %.1fs of CPU, %.1fs of it "
                 "FFmpeg's", len(later_inits) // max(1, len(publishers)) + 1,
                 ",".join(p.name for p in publishers), own + ffmpeg, ffmpeg)  # fmt: skip
    finally:
        if side_run is not None:
            side_run.close()
