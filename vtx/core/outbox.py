"""The transactional outbox: events are written in the same transaction as the change they
announce, and a relay publishes them to Pulsar afterwards, so an event survives a broker outage.

Delivery is at least once (the relay may publish an event again if it stops between publishing
and marking it sent); consumers drop repeats by event id.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import pulsar
from prometheus_client import Gauge

from vtx.core import events
from vtx.core.db import Cursor, Database
from vtx.core.settings import Settings

log = logging.getLogger(__name__)

# Every relay (each API replica, the operator) sets them from the same table: read them with max().
PENDING = Gauge("vtx_outbox_pending_events", "Outbox events not yet published to Pulsar")
OLDEST = Gauge(
    "vtx_outbox_oldest_pending_seconds", "Age of the oldest outbox event not yet published"
)
# How often a relay counts the backlog (one indexed query on the unsent rows).
BACKLOG_EVERY_S = 5.0


def write_event(cur: Cursor, topic: str, event: events.Event, key: str | None = None) -> None:
    """Record ``event`` for ``topic`` in the caller's transaction (published after commit)."""
    cur.execute(
        "INSERT INTO outbox (id, topic, key, payload) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        (event.id, topic, key or event.video_id, json.dumps(events.to_payload(event))),
    )


class PublishError(RuntimeError):
    """The broker did not take an event; it stays in the outbox for the next attempt."""


class OutboxRelay:
    """Publishes unsent outbox rows in creation order and marks them sent."""

    def __init__(
        self,
        db: Database,
        client: pulsar.Client,
        settings: Settings,
        *,
        batch: int = 100,
        send_timeout_ms: int = 5000,
    ) -> None:
        self._db = db
        self._client = client
        self._settings = settings
        self._batch = batch
        self._send_timeout_ms = send_timeout_ms
        self._producers: dict[str, Any] = {}

    def _producer(self, topic: str) -> Any:
        if topic not in self._producers:
            self._producers[topic] = self._client.create_producer(
                events.topic_url(
                    self._settings.pulsar_tenant, self._settings.pulsar_namespace, topic
                ),
                send_timeout_millis=self._send_timeout_ms,
                block_if_queue_full=True,
            )
        return self._producers[topic]

    def relay_once(self) -> int:
        """Publish one batch; returns how many events were published. The batch's rows stay
        locked until they are marked sent, so that relays running side by side (API replicas,
        the operator) each send other rows rather than the same ones."""

        def work(cur: Cursor) -> tuple[int, str | None]:
            cur.execute(
                "SELECT id::TEXT, topic, key, payload FROM outbox WHERE sent_at IS NULL"
                " ORDER BY created_at, id LIMIT %s FOR UPDATE SKIP LOCKED",
                (self._batch,),
            )
            sent: list[str] = []
            for event_id, topic, key, payload in cur.fetchall():
                body = payload if isinstance(payload, str) else json.dumps(payload)
                try:
                    self._producer(topic).send(
                        body.encode(), partition_key=key or event_id,
                        properties={"event_id": event_id},
                    )  # fmt: skip
                except Exception as exc:  # noqa: BLE001 - a broker failure leaves the row
                    error = f"{type(exc).__name__}: {exc}"[:500]
                    self._producers.pop(topic, None)
                    cur.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = %s WHERE id = %s",
                        (error, event_id),
                    )
                    self._mark_sent(cur, sent)
                    return len(sent), error
                sent.append(event_id)
            self._mark_sent(cur, sent)
            return len(sent), None

        count, error = self._db.transaction(work, name="outbox relay")
        if error is not None:
            raise PublishError(error)
        return count

    def measure_backlog(self) -> tuple[int, float]:
        """Count the unsent events and the age of the oldest into the gauges."""

        def work(cur: Cursor) -> tuple[int, float]:
            cur.execute(
                "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)"
                " FROM outbox WHERE sent_at IS NULL"
            )
            row = cur.fetchone()
            return (int(row[0]), float(row[1])) if row else (0, 0.0)

        count, age = self._db.transaction(work, name="outbox backlog")
        PENDING.set(count)
        OLDEST.set(age)
        return count, age

    @staticmethod
    def _mark_sent(cur: Cursor, sent: list[str]) -> None:
        if sent:
            cur.execute(
                "UPDATE outbox SET sent_at = now(), attempts = attempts + 1"
                " WHERE id = ANY(%s::UUID[])",
                (sent,),
            )

    def run(
        self, stop: threading.Event, *, idle_s: float = 0.5, max_backoff_s: float = 10.0
    ) -> None:
        """Relay until ``stop`` is set; backs off while the broker or database is unreachable."""
        backoff = idle_s
        measured = 0.0
        while not stop.is_set():
            if time.monotonic() - measured >= BACKLOG_EVERY_S:
                measured = time.monotonic()
                try:
                    self.measure_backlog()
                except Exception:  # the gauges keep their last values
                    log.debug("outbox: counting the backlog failed", exc_info=True)
            try:
                published = self.relay_once()
                backoff = idle_s
                if published:
                    continue
            except PublishError as exc:
                log.warning("outbox: publishing failed, retrying in %.1fs: %s", backoff, exc)
                backoff = min(max_backoff_s, backoff * 2)
            except Exception:
                log.exception("outbox relay failed; retrying in %.1fs", backoff)
                backoff = min(max_backoff_s, backoff * 2)
            stop.wait(backoff)

    def close(self) -> None:
        for producer in self._producers.values():
            try:
                producer.close()
            except Exception:
                log.debug("closing a producer failed", exc_info=True)
        self._producers.clear()
