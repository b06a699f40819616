"""Sends the pending webhook deliveries: signed POSTs, retried with growing delays for a day.

Each delivery is claimed, sent and recorded in one transaction of its own: its row stays locked
(``FOR UPDATE SKIP LOCKED``) for that one POST, so Deliverers running side by side (API replicas)
never send the same delivery at once, and a Deliverer that stops mid-POST leaves the row pending
for the next one (at least once). A batch is many such transactions, not one, so that no row
waits behind other endpoints' POSTs and a slow endpoint holds one lock at a time; the price is a
transaction per delivery. A transaction the database re-runs (a serialization conflict) records
the outcome of the POST already made instead of sending again.

Before each attempt the URL is checked again (DNS may have changed since it was registered) and
the POST goes to an address that check judged, with the host name kept for ``Host``, SNI and the
certificate, so that DNS answering differently between check and connection (rebinding) cannot
send it elsewhere. No proxy from the environment is used, redirects are not followed, and the
response body is not read. Neither the secret nor the signature is ever logged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import requests.adapters
from urllib3.exceptions import NewConnectionError

from vtx.core import webhooks
from vtx.core.db import Cursor, Database

log = logging.getLogger(__name__)

USER_AGENT = "vtx-webhooks/1"
# How many of a host's addresses one attempt tries when it cannot connect to the first.
MAX_ADDRESSES = 3


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """Connects to the address in the request's URL, but speaks TLS to ``host`` (SNI and the
    name the certificate must hold), as if the URL had named it."""

    def __init__(self, host: str) -> None:
        self._host = host  # before HTTPAdapter.__init__, which makes the pool manager
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        # urllib3 uses these for https only (it drops TLS settings from http pools).
        pool_kwargs.update(server_hostname=self._host, assert_hostname=self._host)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def _netloc(address: str, port: int) -> str:
    if ":" in address:  # IPv6, with any zone id percent-encoded
        return f"[{quote(address, safe=':')}]:{port}"
    return f"{address}:{port}"


def _could_not_connect(exc: requests.ConnectionError) -> bool:
    """Whether ``exc`` happened before anything was sent (so another address may be tried)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def post(
    checked: webhooks.CheckedUrl, body: str, headers: Mapping[str, str], *, timeout_s: float
) -> int:
    """POST ``body`` to ``checked.url`` at one of the addresses its check judged (the next when
    one refuses the connection); returns the HTTP status. Raises requests' exceptions."""
    parts = urlsplit(checked.url)
    sent = {**headers, "Host": parts.netloc, "User-Agent": USER_AGENT}
    last: requests.ConnectionError | None = None
    for address in checked.addresses[:MAX_ADDRESSES]:
        target = urlunsplit(
            (parts.scheme, _netloc(address, checked.port), parts.path or "/", parts.query, "")
        )
        with requests.Session() as session:
            session.trust_env = False  # no proxy, .netrc or CA bundle from the environment
            adapter = _PinnedAdapter(checked.host)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            try:
                response = session.post(
                    target, data=body.encode(), headers=sent, timeout=timeout_s,
                    allow_redirects=False, stream=True,
                )  # fmt: skip
            except requests.ConnectionError as exc:
                if not _could_not_connect(exc):
                    raise
                last = exc
                continue
            with response:
                return response.status_code
    assert last is not None
    raise last


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    ok: bool
    status: int | None  # the HTTP status, when the endpoint answered
    error: str | None  # why it failed, for the endpoint's owner


class Deliverer:
    """Sends due webhook deliveries and records each attempt."""

    def __init__(
        self,
        db: Database,
        *,
        allow_private: bool,
        first_retry_s: float,
        timeout_s: float = 10.0,
        batch: int = 20,
        resolve: webhooks.Resolver = webhooks.resolve_host,
    ) -> None:
        self._db = db
        self._allow_private = allow_private
        self._first_retry_s = first_retry_s
        self._timeout_s = timeout_s
        self._batch = batch
        self._resolve = resolve

    def attempt(self, due: webhooks.Due) -> Outcome:
        """Check the URL again, sign and POST once. Never raises for the endpoint's faults."""
        try:
            checked = webhooks.check_url(
                due.url, allow_private=self._allow_private, resolve=self._resolve
            )
        except webhooks.WebhookError as exc:
            return Outcome(False, None, str(exc))
        try:
            body = json.dumps(due.payload, separators=(",", ":"))
            headers = webhooks.signed_headers(due.secret, due.id, datetime.now(UTC), body)
            status = post(checked, body, headers, timeout_s=self._timeout_s)
        except requests.ConnectTimeout:
            return Outcome(False, None, f"could not connect within {self._timeout_s:g}s")
        except requests.Timeout:
            return Outcome(False, None, f"no answer within {self._timeout_s:g}s")
        except requests.RequestException as exc:
            return Outcome(False, None, f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            # Recorded as a failed attempt like any other, so that one delivery that cannot be
            # sent does not stay the longest due, claimed first every time, forever.
            log.warning("webhook %s: attempt failed unexpectedly", due.id, exc_info=True)
            return Outcome(False, None, f"vtx could not send it ({type(exc).__name__})")
        if 200 <= status < 300:
            return Outcome(True, status, None)
        return Outcome(False, status, f"the endpoint answered HTTP {status}")

    def _record(self, cur: Cursor, due: webhooks.Due, outcome: Outcome) -> None:
        next_at: datetime | None = None
        if not outcome.ok:
            now = datetime.now(UTC)
            wait = webhooks.retry_delay(due.attempts + 1, self._first_retry_s)
            next_at = now + timedelta(seconds=wait)
            if webhooks.gives_up(due.created_at, next_at):
                next_at = None
        webhooks.record_attempt(
            cur, due.id, ok=outcome.ok, status=outcome.status, error=outcome.error,
            next_at=next_at,
        )  # fmt: skip
        if outcome.ok:
            log.debug("webhook %s (%s) delivered", due.id, due.event_type)
        else:
            log.info(
                "webhook %s (%s) to endpoint %s failed (attempt %d, %s): %s",
                due.id, due.event_type, due.endpoint_id, due.attempts + 1,
                "gave up" if next_at is None else f"retry at {webhooks.iso(next_at)}",
                outcome.error,
            )  # fmt: skip

    def deliver_next(self) -> bool:
        """Claim, attempt and record one due delivery in one transaction; False: none is due."""
        made: dict[str, Outcome] = {}  # outcomes of POSTs made, if the transaction re-runs

        def work(cur: Cursor) -> bool:
            claimed = webhooks.claim_due(cur, datetime.now(UTC), 1)
            if not claimed:
                return False
            due = claimed[0]
            outcome = made.get(due.id)
            if outcome is None:
                outcome = made[due.id] = self.attempt(due)
            self._record(cur, due, outcome)
            return True

        return self._db.transaction(work, name="webhook delivery")

    def deliver_once(self) -> int:
        """Attempt up to ``batch`` due deliveries; returns how many were attempted."""
        attempted = 0
        while attempted < self._batch and self.deliver_next():
            attempted += 1
        return attempted

    def run(self, stop: threading.Event, idle_s: float = 1.0) -> None:
        """Deliver until ``stop`` is set; waits ``idle_s`` when nothing is due or on errors."""
        while not stop.is_set():
            try:
                if self.deliver_once() >= self._batch:
                    continue  # more may be due
            except Exception as exc:  # noqa: BLE001 - the database may be back next time
                log.warning("webhooks: delivering failed, retrying in %.1fs: %s", idle_s, exc)
            stop.wait(idle_s)
