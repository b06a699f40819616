"""The jobrunner's command line, defined once: the operator builds a Job's arguments with
:meth:`TranscodeArgs.argv` and the ``vtx jobrunner`` command reads them back with
:func:`add_transcode_arguments` and :meth:`TranscodeArgs.from_namespace`, checking every value
(a Job spec is something a user with the right to edit Jobs could change)."""

from __future__ import annotations

import argparse
import json
import uuid
from dataclasses import dataclass

from vtx.core.ladder import InvalidPlan, Rendition, rendition_from_dict, rendition_to_dict
from vtx.core.ranges import MAX_RANGES

SCRATCH = "/scratch"


def _video_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a video id: {value[:60]!r}") from None


def _rendition(value: str) -> Rendition:
    try:
        return rendition_from_dict(json.loads(value))
    except (ValueError, InvalidPlan) as exc:
        raise argparse.ArgumentTypeError(f"not a rendition: {exc}") from None


def _bounds(value: str) -> tuple[int, ...]:
    """``0,30,61``: the segment numbers where a split video's ranges begin, then its segment
    count (vtx.core.ranges); checked against the source's length once it is probed."""
    parts = value.split(",")
    if not 2 <= len(parts) <= MAX_RANGES + 1 or not all(p.isdigit() and len(p) < 7 for p in parts):
        raise argparse.ArgumentTypeError(f"not range bounds: {value[:80]!r}")
    return tuple(int(p) for p in parts)


def source_key_of(video_id: str, key: str) -> str:
    """``key`` when it is an upload of this video (``videos/<id>/source/<file>``)."""
    prefix = f"videos/{video_id}/source/"
    rest = key.removeprefix(prefix)
    if not key.startswith(prefix) or not rest or "/" in rest or rest in (".", ".."):
        raise ValueError(f"the source key must be under {prefix}, not {key[:200]!r}")
    return key


@dataclass(frozen=True)
class TranscodeArgs:
    video_id: str
    source_key: str
    renditions: tuple[Rendition, ...]
    job: str  # the Job's name: the rows it records say which Job made them
    scratch: str = SCRATCH
    ipfs: bool = True  # add the outputs to IPFS (spec.storage.ipfs)
    resume: bool = True  # go on from the segments an earlier attempt stored
    # A split video (vtx.core.ranges): each completion of the Job encodes one range of these
    # bounds (``range_bounds``), or the Job puts the ranges' segments together (``finalize``).
    range_bounds: tuple[int, ...] = ()
    finalize: bool = False

    def __post_init__(self) -> None:
        source_key_of(self.video_id, self.source_key)
        if not self.renditions:
            raise ValueError("a transcode job makes at least one rendition")
        split = bool(self.range_bounds) or self.finalize
        if split and any(r.kind != "video" for r in self.renditions):
            raise ValueError("a split video's range Jobs make video renditions alone")
        if self.range_bounds and self.finalize:
            raise ValueError("a Job encodes ranges or puts them together, not both")

    def argv(self) -> list[str]:
        args = ["transcode", "--video-id", self.video_id, "--source-key", self.source_key]
        args += ["--job", self.job, "--scratch", self.scratch]
        if not self.ipfs:
            args += ["--no-ipfs"]
        if not self.resume:
            args += ["--start-over"]
        if self.range_bounds:
            args += ["--range-bounds", ",".join(str(b) for b in self.range_bounds)]
        if self.finalize:
            args += ["--finalize"]
        for r in self.renditions:
            args += ["--rendition", json.dumps(rendition_to_dict(r), separators=(",", ":"))]
        return args

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> TranscodeArgs:
        return cls(
            video_id=ns.video_id,
            source_key=ns.source_key,
            renditions=tuple(ns.rendition),
            job=ns.job,
            scratch=ns.scratch,
            ipfs=not ns.no_ipfs,
            resume=not ns.start_over,
            range_bounds=ns.range_bounds or (),
            finalize=ns.finalize,
        )


def add_transcode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video-id", required=True, type=_video_id)
    parser.add_argument("--source-key", required=True, help="S3 key of the uploaded source")
    parser.add_argument(
        "--rendition", action="append", required=True, type=_rendition,
        help="one planned rendition as JSON; repeat for a grouped job",
    )  # fmt: skip
    parser.add_argument("--job", required=True, help="name of the Job this pod belongs to")
    parser.add_argument("--scratch", default=SCRATCH, help="local working folder")
    parser.add_argument("--no-ipfs", action="store_true", help="store the outputs in S3 only")
    parser.add_argument(
        "--start-over", action="store_true",
        help="encode from the start, whatever an earlier attempt stored",
    )  # fmt: skip
    parser.add_argument(
        "--range-bounds", type=_bounds,
        help="encode one range of a split video (the pod's completion index picks which)",
    )  # fmt: skip
    parser.add_argument(
        "--finalize", action="store_true",
        help="put a split video's ranges together: playlists, MP4s, images and rows",
    )  # fmt: skip


@dataclass(frozen=True)
class IngestArgs:
    video_id: str
    source_key: str
    size: int | None = None

    def __post_init__(self) -> None:
        source_key_of(self.video_id, self.source_key)

    def argv(self) -> list[str]:
        args = ["ingest", "--video-id", self.video_id, "--source-key", self.source_key]
        return args if self.size is None else [*args, "--size", str(self.size)]

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> IngestArgs:
        return cls(video_id=ns.video_id, source_key=ns.source_key, size=ns.size)


def add_ingest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video-id", required=True, type=_video_id)
    parser.add_argument("--source-key", required=True)
    parser.add_argument(
        "--size", type=int, help="the size announced at upload: another size fails the ingest"
    )
