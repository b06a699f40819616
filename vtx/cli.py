"""The `vtx` command: one entry point for every component."""

from __future__ import annotations

import argparse
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
