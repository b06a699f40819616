"""The `vtx` command: one entry point for every component."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from vtx import package_version
from vtx.core import failpoints
from vtx.core.jobargs import add_ingest_arguments, add_transcode_arguments
from vtx.core.settings import Settings, SettingsError
from vtx.smoke import add_arguments as add_smoke_arguments


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
    import uuid
    from pathlib import Path

    from vtx.core.jobargs import TranscodeArgs
    from vtx.jobrunner.run import install_stop_handler, run_transcode

    stop = install_stop_handler()
    try:
        job = TranscodeArgs.from_namespace(args)
    except ValueError as exc:
        print(f"vtx jobrunner: {exc}", file=sys.stderr)
        return 2
    scratch = Path(job.scratch) / f"{job.video_id}-{uuid.uuid4().hex[:8]}"
    return run_transcode(job, scratch, Settings.from_env(), stop)


def _jobrunner_ingest(args: argparse.Namespace) -> int:
    from vtx.core.jobargs import IngestArgs
    from vtx.jobrunner.ingest import run_ingest

    try:
        job = IngestArgs.from_namespace(args)
    except ValueError as exc:
        print(f"vtx jobrunner: {exc}", file=sys.stderr)
        return 2
    return run_ingest(job.video_id, job.source_key, Settings.from_env(), size=job.size)


def _verify(args: argparse.Namespace) -> int:
    from vtx.verify_cli import run_verify

    if bool(args.all) == bool(args.video_id):
        print("vtx verify: give one VIDEO_ID or --all", file=sys.stderr)
        return 2
    return run_verify(Settings.from_env(), args.video_id, as_json=args.json)


def _operator(args: argparse.Namespace) -> int:
    import kopf

    import vtx.operator.handlers  # noqa: F401 - registers the handlers
    from vtx.operator.health import HealthServer

    Settings.from_env()  # fail fast, naming the variable, before kopf starts
    # kopf logs every handler run at INFO ("Timer 'reconcile' succeeded"): thousands a minute
    # with many resources. Its warnings and errors still show.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    namespaces = tuple(args.namespace or ())
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        memo=kopf.Memo(
            namespaces=namespaces,
            peering=None if args.standalone else args.peering,
            health=HealthServer(args.health_address),
        ),
    )
    # kopf has stopped and cleaned up. Threads still inside a step (an S3 or IPFS call) are
    # not waited for: the next operator takes the step up from the status.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)


def _api(args: argparse.Namespace) -> int:
    from vtx.api.app import run
    from vtx.core.logs import configure_json_logs

    settings = Settings.from_env()
    configure_json_logs()
    run(settings, args.address)
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from vtx.core.tokens import hash_token, new_token, parse_token_list

    token = new_token()
    entry = f"{args.name}:{hash_token(token)}"
    if args.days:
        until = datetime.now(UTC) + timedelta(days=args.days)
        entry += f":{until.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    parse_token_list(entry)  # the name is checked here
    print(f"token (give it to the client; it is not stored anywhere): {token}")
    print(f"entry for VTX_API_TOKENS (comma-separated with the others): {entry}")
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from vtx.smoke import main as smoke_main

    return smoke_main(args)


class _Version(argparse.Action):
    """``--version``: the version is read when asked for, not at every start (see
    :func:`vtx.package_version`)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"vtx {package_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtx", description=__doc__)
    parser.add_argument("--version", action=_Version, help="show the version and exit")
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
        "--health-address", default="127.0.0.1:8090", help="host:port of /healthz and /readyz"
    )
    operator.add_argument(
        "--peering",
        default="vtx",
        help="name of the KopfPeering (namespaced) or ClusterKopfPeering (cluster-wide) object "
        "through which replicas keep one of them active (default: vtx)",
    )
    operator.add_argument(
        "--standalone", action="store_true", help="run without peering (a single replica)"
    )
    operator.set_defaults(run=_operator)
    api = sub.add_parser("api", help="run the API (uploads, progress, WebSocket, dashboard)")
    api.add_argument("--address", help="host:port to listen on (default VTX_API_ADDRESS)")
    api.set_defaults(run=_api)
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command")
    create = token.add_parser("create", help="make a new API token and print its config entry")
    create.add_argument("--name", required=True, help="who or what the token is for")
    create.add_argument("--days", type=int, default=0, help="expire after this many days")
    create.set_defaults(run=_token_create)
    jobrunner = sub.add_parser("jobrunner", help="run one transcode or ingest job (in a Job pod)")
    jr = jobrunner.add_subparsers(dest="jobrunner_command")
    transcode = jr.add_parser("transcode", help="encode renditions to MP4 and HLS and publish them")
    add_transcode_arguments(transcode)
    transcode.set_defaults(run=_jobrunner_transcode)
    ingest = jr.add_parser("ingest", help="pin the original to IPFS and record its checksum")
    add_ingest_arguments(ingest)
    ingest.set_defaults(run=_jobrunner_ingest)
    verify = sub.add_parser(
        "verify",
        help="check videos across SQL, S3, IPFS and their resources; exit 1 on any discrepancy",
    )
    verify.add_argument("video_id", nargs="?", help="the video to check")
    verify.add_argument("--all", action="store_true", help="check every video")
    verify.add_argument("--json", action="store_true", help="one JSON report per line")
    verify.set_defaults(run=_verify)
    smoke = sub.add_parser(
        "smoke",
        help="upload a tiny clip through the API and wait for Ready (token in VTX_SMOKE_TOKEN)",
    )
    add_smoke_arguments(smoke)
    smoke.set_defaults(run=_smoke)
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
        failpoints.arm()
        code: int = args.run(args)
    except (SettingsError, failpoints.FailpointError) as exc:
        print(f"vtx: configuration error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
