"""The `vtx` command: one entry point for every component."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from vtx import __version__
from vtx.core.settings import Settings, SettingsError


def _doctor(_: argparse.Namespace) -> int:
    from vtx.doctor import run_checks

    checks = run_checks(Settings.from_env())
    for c in checks:
        mark = "ok  " if c.ok else "FAIL"
        print(f"{mark} {c.name:<11} {c.seconds * 1000:7.0f} ms  {c.detail}")
    return 0 if all(c.ok for c in checks) else 1


def _db_migrate(_: argparse.Namespace) -> int:
    from vtx.core.db import Database, migrate

    settings = Settings.from_env()
    db = Database(settings.database_url, max_connections=2)
    try:
        applied = migrate(db)
    finally:
        db.close()
    print(f"applied {', '.join(applied)}" if applied else "database schema is up to date")
    return 0


def _jobrunner_transcode(args: argparse.Namespace) -> int:
    import json
    import uuid
    from pathlib import Path

    from vtx.core.ladder import Rendition
    from vtx.jobrunner.run import TranscodeJob, install_stop_handler, run_transcode

    stop = install_stop_handler()
    renditions = tuple(Rendition(**json.loads(r)) for r in args.rendition)
    job = TranscodeJob(
        video_id=args.video_id,
        source_key=args.source_key,
        renditions=renditions,
        scratch=Path(args.scratch) / f"{args.video_id}-{uuid.uuid4().hex[:8]}",
        resource=args.resource,
        namespace=args.namespace,
    )
    return run_transcode(job, Settings.from_env(), stop)


def _jobrunner_ingest(args: argparse.Namespace) -> int:
    from vtx.jobrunner.ingest import run_ingest

    return run_ingest(args.video_id, args.source_key, Settings.from_env())


def _operator(args: argparse.Namespace) -> int:
    import kopf

    import vtx.operator.handlers  # noqa: F401 - registers the handlers

    Settings.from_env()  # fail fast, naming the variable, before kopf starts
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=f"http://{args.health_address}/healthz",
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtx", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vtx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    doctor = sub.add_parser("doctor", help="check that every configured server answers")
    doctor.set_defaults(run=_doctor)
    db = sub.add_parser("db", help="database commands").add_subparsers(dest="db_command")
    db.add_parser("migrate", help="apply the schema migrations not yet applied").set_defaults(
        run=_db_migrate
    )
    operator = sub.add_parser("operator", help="run the operator (VideoTranscode → Jobs)")
    operator.add_argument(
        "--namespace", action="append", help="watch only this namespace (repeatable)"
    )
    operator.add_argument(
        "--health-address", default="127.0.0.1:8090", help="host:port of /healthz"
    )
    operator.set_defaults(run=_operator)
    jobrunner = sub.add_parser("jobrunner", help="run one transcode or ingest job (in a Job pod)")
    jr = jobrunner.add_subparsers(dest="jobrunner_command")
    transcode = jr.add_parser("transcode", help="encode renditions to MP4 and HLS and publish them")
    transcode.add_argument("--video-id", required=True)
    transcode.add_argument("--source-key", required=True, help="S3 key of the uploaded source")
    transcode.add_argument(
        "--rendition",
        action="append",
        required=True,
        help="one rendition as JSON (the planner's fields); repeat for a grouped job",
    )
    transcode.add_argument("--resource", help="VideoTranscode whose status to patch")
    transcode.add_argument("--namespace", default="default")
    transcode.add_argument("--scratch", default="/scratch", help="local working folder")
    transcode.set_defaults(run=_jobrunner_transcode)
    ingest = jr.add_parser("ingest", help="pin the original to IPFS and record its checksum")
    ingest.add_argument("--video-id", required=True)
    ingest.add_argument("--source-key", required=True)
    ingest.set_defaults(run=_jobrunner_ingest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        code: int = args.run(args)
    except SettingsError as exc:
        print(f"vtx: configuration error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
