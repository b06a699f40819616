"""Progress reports: a status event at most every second and at each phase change, and a
rate-limited merge patch of the rendition's own entry in the VideoTranscode status.

Reports are for people watching; the operator decides from the Job and the rows. So every
report is bounded in time and may be lost, and the jobrunner never claims a rendition is done
(Succeeded and Failed are the operator's to say): it reports Running, then Uploading."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vtx.core import bus, events
from vtx.core import resource as vt
from vtx.core.settings import Settings

log = logging.getLogger(__name__)

# Event phases and the rendition phase the resource shows for each.
RESOURCE_PHASE = {
    "starting": "Running",
    "encoding": "Running",
    "uploading": "Uploading",
    "done": "Uploading",  # recorded: the operator checks the outputs and says Succeeded
    "failed": "Running",  # invalid input: the Job fails at once and the operator says Failed
    "retrying": "Running",  # this attempt failed; the Job makes another
    "interrupted": "Running",
}


@dataclass
class RenditionProgress:
    phase: str = "starting"
    progress: float = 0.0
    message: str | None = None
    last_event: float = field(default=float("-inf"))
    last_patch: float = field(default=float("-inf"))
    patched_phase: str | None = None


class Reporter:
    """Reports the progress of the renditions one job makes. Never raises: reporting must not
    fail an encode (the resource status is rewritten on the next report)."""

    def __init__(
        self,
        settings: Settings,
        video_id: str,
        renditions: list[str],
        *,
        resource: str | None,
        namespace: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._video_id = video_id
        self._resource = resource
        self._namespace = namespace
        self._clock = clock
        self._state = {name: RenditionProgress() for name in renditions}
        self._producer: Any = None
        self._client: Any = None
        self._custom: Any = None
        self.events_sent = 0
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
        if resource:
            try:
                from kubernetes import client

                from vtx.core.kube import load_kube_config

                load_kube_config()
                self._custom = client.CustomObjectsApi()
            except Exception as exc:  # noqa: BLE001 - the resource status is best effort too
                log.warning("resource status disabled: %s", exc)

    def update(
        self, name: str, phase: str, progress: float | None = None, message: str | None = None
    ) -> None:
        """Record progress; publishes when a second has passed or the phase changed."""
        state = self._state[name]
        now = self._clock()
        changed = phase != state.phase
        if progress is not None:
            # Progress never goes backwards within an attempt.
            state.progress = max(state.progress, min(100.0, progress))
        state.phase = phase
        state.message = message
        if changed or now - state.last_event >= 1.0:
            self._send_event(name, state)
            state.last_event = now
        if changed or now - state.last_patch >= self._settings.status_patch_seconds:
            self._patch(name, state)
            state.last_patch = now

    def _send_event(self, name: str, state: RenditionProgress) -> None:
        if self._producer is None:
            return
        event = events.StatusUpdate(
            video_id=self._video_id,
            rendition=name,
            phase=state.phase,
            progress=round(state.progress, 1),
            message=state.message,
        )
        try:
            self._producer.send_async(events.encode(event), None, partition_key=self._video_id)
            self.events_sent += 1
        except Exception as exc:  # noqa: BLE001
            log.warning("status event not sent: %s", exc)

    def _patch(self, name: str, state: RenditionProgress) -> None:
        if self._custom is None or self._resource is None:
            return
        entry: dict[str, Any] = {
            "phase": RESOURCE_PHASE.get(state.phase, "Running"),
            "progress": int(state.progress),
            "message": (state.message or "")[: vt.MESSAGE_LIMIT],
        }
        try:
            self._custom.patch_namespaced_custom_object_status(
                vt.GROUP, vt.VERSION, self._namespace, vt.PLURAL, self._resource,
                {"status": {"renditions": {name: entry}}},
                _request_timeout=self._settings.request_timeout_s,
            )  # fmt: skip
            state.patched_phase = state.phase
        except Exception as exc:  # noqa: BLE001
            log.warning("resource status not patched: %s", str(exc).splitlines()[0][:200])

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.flush()
                self._producer.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("closing the status producer: %s", exc)
        if self._client is not None:
            self._client.close()
