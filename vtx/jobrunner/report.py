"""Progress reports: a ``video-status-updates`` event per rendition at most every second and at
each phase change. Job pods hold no Kubernetes credentials: the operator reads these events
and shows them in the resource's status.

Reports are for people watching; the operator decides from the Job and the rows. So every
report is bounded in time and may be lost, and never claims a rendition is done (Succeeded and
Failed are the operator's to say)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vtx.core import bus, events
from vtx.core.settings import Settings

log = logging.getLogger(__name__)

LATE_S = 2.0  # a report this late (in the same phase) is logged: something held the job up
SLOW_SEND_S = 0.25  # a send this slow is logged too


@dataclass
class RenditionProgress:
    phase: str = "starting"
    progress: float = 0.0
    message: str | None = None
    stored_bytes: int = 0
    last_event: float = field(default=float("-inf"))


class Reporter:
    """Reports the progress of the renditions one job makes, and the bytes of their outputs
    stored so far. Thread-safe. Never raises: reporting must not fail an encode."""

    def __init__(
        self,
        settings: Settings,
        video_id: str,
        renditions: list[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        part: tuple[int, int] | None = None,
    ) -> None:
        """``part``: (range, ranges) of a split video's range (its reports say which)."""
        self._video_id = video_id
        self._part = part
        self._clock = clock
        self._state = {name: RenditionProgress() for name in renditions}
        self._lock = threading.Lock()
        self._producer: Any = None
        self._client: Any = None
        self.events_sent = 0
        self.events_lost = 0  # sends the broker never confirmed
        try:
            self._client = bus.pulsar_client(settings)
            self._producer = self._client.create_producer(
                bus.topic(settings, events.STATUS_UPDATES),
                send_timeout_millis=5000,
                block_if_queue_full=False,
                batching_enabled=False,
            )
        except Exception as exc:  # noqa: BLE001 - status events are best effort
            log.warning("status events disabled: cannot reach Pulsar: %s", exc)

    def update(
        self, name: str, phase: str, progress: float | None = None, message: str | None = None
    ) -> None:
        """Record progress; publishes when a second has passed or the phase changed."""
        with self._lock:
            state = self._state[name]
            changed = phase != state.phase
            if progress is not None:
                # Progress never goes backwards within an attempt.
                state.progress = max(state.progress, min(100.0, progress))
            state.phase = phase
            state.message = message
            self._publish(name, state, force=changed)

    def stored(self, name: str, count: int) -> None:
        """``count`` more bytes of ``name``'s outputs are stored (or on their way); publishes
        when a second has passed, so that an upload shows it is alive."""
        with self._lock:
            state = self._state[name]
            state.stored_bytes += count
            self._publish(name, state, force=False)

    def _publish(self, name: str, state: RenditionProgress, *, force: bool) -> None:
        now = self._clock()
        if force or now - state.last_event >= 1.0:
            if not force and now - state.last_event > LATE_S:
                log.warning("status of %s: %.1fs since its last report", name,
                            now - state.last_event)  # fmt: skip
            self._send_event(name, state)
            state.last_event = now
            sent_in = self._clock() - now
            if sent_in > SLOW_SEND_S:
                log.warning("status of %s: handing the report to Pulsar took %.1fs", name, sent_in)

    def _send_event(self, name: str, state: RenditionProgress) -> None:
        if self._producer is None:
            return
        event = events.StatusUpdate(
            video_id=self._video_id,
            rendition=name,
            phase=state.phase,
            progress=round(state.progress, 1),
            message=state.message,
            stored_bytes=state.stored_bytes,
            part=self._part[0] if self._part else None,
            parts=self._part[1] if self._part else None,
        )
        try:
            self._producer.send_async(
                events.encode(event), self._confirmed, partition_key=self._video_id
            )
            self.events_sent += 1
        except Exception as exc:  # noqa: BLE001
            self.events_lost += 1
            log.warning("status event not sent: %s", exc)

    def _confirmed(self, result: Any, _message_id: Any) -> None:
        import pulsar

        if result != pulsar.Result.Ok:
            self.events_lost += 1

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.flush()
                self._producer.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("closing the status producer: %s", exc)
        if self._client is not None:
            self._client.close()
        if self.events_lost:
            log.warning("%d of %d status events were not sent", self.events_lost,
                        self.events_sent)  # fmt: skip
