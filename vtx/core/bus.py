"""Pulsar clients for vtx events: a client with bounded timeouts, direct publishing (for
high-rate status events that need no transaction) and a consumer with explicit acknowledgement."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import pulsar

from vtx.core import events
from vtx.core.settings import Settings

log = logging.getLogger(__name__)


def pulsar_client(settings: Settings) -> pulsar.Client:
    """A client that gives up on a call after the request timeout rather than 30 s, and
    authenticates with ``VTX_PULSAR_TOKEN`` when the broker asks for tokens."""
    token = settings.pulsar_token.value
    return pulsar.Client(
        settings.pulsar_url,
        authentication=pulsar.AuthenticationToken(token) if token else None,
        operation_timeout_seconds=settings.request_timeout_s,
        connection_timeout_ms=settings.request_timeout_s * 1000,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
    )


def topic(settings: Settings, name: str) -> str:
    return events.topic_url(settings.pulsar_tenant, settings.pulsar_namespace, name)


class EventConsumer:
    """Receives vtx events from one topic; the caller acknowledges each after handling it.

    Malformed messages are logged and acknowledged (they would never parse on redelivery);
    events already handled (same event id, acknowledged before) are acknowledged and skipped.
    An event counts as handled only when the caller acknowledges it: one it gave back
    (:meth:`nack`) comes again and is handed out again.
    """

    def __init__(
        self,
        client: pulsar.Client,
        topic_url: str,
        subscription: str,
        *,
        shared: bool = True,
        from_earliest: bool = True,
        seen: events.SeenEvents | None = None,
    ) -> None:
        self._consumer = client.subscribe(
            topic_url,
            subscription,
            consumer_type=pulsar.ConsumerType.Shared if shared else pulsar.ConsumerType.Exclusive,
            initial_position=(
                pulsar.InitialPosition.Earliest if from_earliest else pulsar.InitialPosition.Latest
            ),
            negative_ack_redelivery_delay_ms=5000,
        )
        self._seen = seen if seen is not None else events.SeenEvents()
        self._pending: dict[str, str] = {}  # message id → event id, until acked or nacked

    def receive(self, timeout_ms: int) -> tuple[events.Event, Any] | None:
        """The next new event and its message, or None when none came within ``timeout_ms``."""
        while True:
            try:
                msg = self._consumer.receive(timeout_millis=timeout_ms)
            except pulsar.Timeout:
                return None
            try:
                event = events.decode(msg.data())
            except events.MalformedEvent as exc:
                log.error("dropping malformed message %s: %s", msg.message_id(), exc)
                self._consumer.acknowledge(msg)
                continue
            if self._seen.seen(event.id):
                self._consumer.acknowledge(msg)
                continue
            self._pending[str(msg.message_id())] = event.id
            return event, msg

    def ack(self, msg: Any) -> None:
        event_id = self._pending.pop(str(msg.message_id()), None)
        if event_id is not None:
            self._seen.add(event_id)
        self._consumer.acknowledge(msg)

    def nack(self, msg: Any) -> None:
        """Handling failed: Pulsar redelivers the message later, and it is handled then."""
        self._pending.pop(str(msg.message_id()), None)
        self._consumer.negative_acknowledge(msg)

    def close(self) -> None:
        self._consumer.close()


class StatusReader:
    """Reads video-status-updates from the newest message on, on a thread of its own, and
    hands each new event (de-duplicated by id) to ``deliver`` on that thread. Reconnects with
    backoff while the broker is away."""

    def __init__(
        self,
        client: pulsar.Client,
        topic_url: str,
        deliver: Callable[[events.StatusUpdate], None],
    ) -> None:
        self._client = client
        self._topic = topic_url
        self._deliver = deliver
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-reader", daemon=True)
        self.connected = threading.Event()
        self.received = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        backoff = 0.5
        seen = events.SeenEvents()
        while not self._stop.is_set():
            try:
                reader = self._client.create_reader(self._topic, pulsar.MessageId.latest)
            except Exception as exc:  # noqa: BLE001 - the broker may be away: try again
                log.warning("status reader cannot connect yet (%s); retrying", exc)
                self._stop.wait(backoff)
                backoff = min(10.0, backoff * 2)
                continue
            self.connected.set()
            backoff = 0.5
            try:
                self._read(reader, seen)
            except Exception:
                log.exception("status reader failed; reconnecting")
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    reader.close()

    def _read(self, reader: Any, seen: events.SeenEvents) -> None:
        while not self._stop.is_set():
            try:
                msg = reader.read_next(timeout_millis=500)
            except pulsar.Timeout:
                continue
            try:
                event = events.decode(msg.data())
            except events.MalformedEvent as exc:
                log.error("ignoring a malformed status message: %s", exc)
                continue
            if not isinstance(event, events.StatusUpdate) or not seen.first_time(event.id):
                continue
            self.received += 1
            self._deliver(event)
