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

    def __post_init__(self) -> None:
        source_key_of(self.video_id, self.source_key)
        if not self.renditions:
            raise ValueError("a transcode job makes at least one rendition")

    def argv(self) -> list[str]:
        args = ["transcode", "--video-id", self.video_id, "--source-key", self.source_key]
        args += ["--job", self.job, "--scratch", self.scratch]
        if not self.ipfs:
            args += ["--no-ipfs"]
        if not self.resume:
            args += ["--start-over"]
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
