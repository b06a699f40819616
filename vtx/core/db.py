"""SQL access: a connection pool, one retrying transaction helper, and versioned migrations.

Every transaction goes through :meth:`Database.transaction`, which re-runs the whole unit of work
when the database reports a serialization failure (SQLSTATE 40001) or a deadlock (40P01), as
CockroachDB requires of every client and PostgreSQL's serializable isolation does too.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import TypeVar

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from vtx.core.settings import Secret

T = TypeVar("T")
Cursor = psycopg2.extensions.cursor
log = logging.getLogger(__name__)

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


class TransactionRetryError(RuntimeError):
    """A transaction kept conflicting with others until its attempts ran out."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    base_delay_s: float = 0.02
    max_delay_s: float = 1.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: a random wait up to an exponentially growing, capped bound."""
        bound: float = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        return rng.uniform(0, bound)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, psycopg2.Error) and exc.pgcode in RETRYABLE_SQLSTATES


class PoolTimeout(RuntimeError):
    """Every pooled connection stayed in use for the whole checkout timeout."""


class Database:
    """A pool of connections to PostgreSQL or CockroachDB."""

    def __init__(
        self,
        dsn: Secret,
        *,
        min_connections: int | None = None,
        max_connections: int = 10,
        retry: RetryPolicy | None = None,
        connect_timeout_s: int = 10,
        checkout_timeout_s: float = 60,
        application_name: str = "vtx",
    ) -> None:
        # psycopg2's pool closes a returned connection whenever it already holds ``minconn``
        # idle ones: with the default of one, busy code opened a connection per transaction.
        # Keeping up to ``max_connections`` open is what a pool is for.
        self._pool = psycopg2.pool.ThreadedConnectionPool(
            max_connections if min_connections is None else min_connections,
            max_connections,
            dsn.value,
            connect_timeout=connect_timeout_s,
            application_name=application_name,
        )
        self._max_connections = max_connections
        # psycopg2's pool raises when every connection is out; callers wait for one instead.
        self._free = threading.BoundedSemaphore(max_connections)
        self._checkout_timeout_s = checkout_timeout_s
        self._retry = retry or RetryPolicy()
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._lock = threading.Lock()
        self.retries = 0  # conflicts retried since start, for metrics and tests

    def close(self) -> None:
        self._pool.closeall()

    @contextmanager
    def _connection(self) -> Iterator[psycopg2.extensions.connection]:
        if not self._free.acquire(timeout=self._checkout_timeout_s):
            raise PoolTimeout(
                f"no database connection came free within {self._checkout_timeout_s:.0f}s "
                f"(all {self._max_connections} in use)"
            )
        try:
            conn = self._pool.getconn()
            broken = False
            try:
                yield conn
            except psycopg2.OperationalError:
                broken = True
                raise
            finally:
                self._pool.putconn(conn, close=broken or bool(conn.closed))
        finally:
            self._free.release()

    def transaction(self, work: Callable[[Cursor], T], *, name: str = "transaction") -> T:
        """Run ``work`` in one transaction, re-running it on serialization conflicts.

        ``work`` must be safe to run again: it sees a fresh transaction each attempt.
        """
        last: psycopg2.Error | None = None
        # Every pooled connection may have gone stale at once (the server restarted): those
        # are replaced without using up the attempts that conflicts get.
        stale_left = self._max_connections
        attempt = 0
        while attempt < self._retry.attempts:
            with self._connection() as conn:
                committing = False
                try:
                    with conn.cursor() as cur:
                        result = work(cur)
                    committing = True
                    conn.commit()
                    return result
                except psycopg2.Error as exc:
                    if not conn.closed:
                        conn.rollback()
                    # A pooled connection the server dropped (it restarted) fails at its first
                    # statement: nothing was written, so the work runs again on a fresh one. A
                    # connection lost during the commit leaves the outcome unknown: raised.
                    stale = bool(conn.closed) and not committing
                    if stale and stale_left > 0:
                        stale_left -= 1
                        last = exc
                        continue
                    if not is_retryable(exc):
                        raise
                    last = exc
            with self._lock:
                self.retries += 1
            wait = self._retry.delay(attempt, self._rng)
            log.debug("%s conflicted (SQLSTATE %s), retry in %.3fs", name, last.pgcode, wait)
            time.sleep(wait)
            attempt += 1
        assert last is not None
        if last.pgcode is None:
            raise last  # connections kept breaking: the database is going away
        raise TransactionRetryError(
            f"{name} still conflicted after {self._retry.attempts} attempts "
            f"(SQLSTATE {last.pgcode}): {str(last).strip()}"
        ) from last


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with vtx, in order."""
    found = []
    for entry in resources.files("vtx.core.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(db: Database) -> list[str]:
    """Apply the migrations not yet applied; returns the names applied now. Idempotent."""
    db.transaction(
        lambda cur: cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version BIGINT PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ),
        name="create schema_migrations",
    )
    applied = []
    for version, name, sql in migration_files():

        def apply(cur: Cursor, version: int = version, name: str = name, sql: str = sql) -> bool:
            if _has_version(cur, version):
                return False
            cur.execute(sql)
            cur.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
            return True

        try:
            if db.transaction(apply, name=f"migration {name}"):
                applied.append(name)
        except psycopg2.IntegrityError:
            # Another migrator applied it at the same moment; that is success if the row is there.
            if not db.transaction(partial(_has_version, version=version), name="check"):
                raise
    return applied


def _has_version(cur: Cursor, version: int) -> bool:
    cur.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,))
    return cur.fetchone() is not None
