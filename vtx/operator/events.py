"""Status events the operator publishes on ``video-status-updates``: one per phase change of a
video (rendition null), beside the per-rendition events the jobrunners send."""

from __future__ import annotations

import logging
import threading
from typing import Any

from vtx.core import bus, events
from vtx.core.settings import Settings

log = logging.getLogger(__name__)


class StatusEvents:
    """Best effort: a broker outage must not stop reconciliation; the row and the resource
    carry the same facts."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._client: Any = None
        self._producer: Any = None

    def _ready(self) -> Any:
        if self._producer is None:
            self._client = self._client or bus.pulsar_client(self._settings)
            self._producer = self._client.create_producer(
                bus.topic(self._settings, events.STATUS_UPDATES),
                send_timeout_millis=5000,
                block_if_queue_full=False,
                batching_enabled=False,
            )
        return self._producer

    def phase(self, video_id: str, phase: str, progress: int, message: str | None) -> None:
        event = events.StatusUpdate(
            video_id=video_id, phase=phase, progress=float(progress), message=message
        )
        try:
            with self._lock:
                self._ready().send_async(events.encode(event), None, partition_key=video_id)
        except Exception as exc:  # noqa: BLE001 - best effort, see the class
            log.warning("status event for %s not sent: %s", video_id, exc)
            with self._lock:
                self._producer = None

    def close(self) -> None:
        with self._lock:
            try:
                if self._producer is not None:
                    self._producer.flush()
                    self._producer.close()
                if self._client is not None:
                    self._client.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("closing the status producer: %s", exc)
