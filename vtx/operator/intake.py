"""Intake: every upload's ``video-transcode-queue`` event gets its VideoTranscode, even when the
API could not create it (the Kubernetes API was unreachable when the upload completed).
Creating a resource that exists is harmless: its name is derived from the video id.

Several installations may share a Pulsar namespace: each reads the whole topic through a
subscription of its own and acts only on uploads made for its Kubernetes namespace."""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes.client.exceptions import ApiException

from vtx.core import bus, events, videos
from vtx.core import resource as vt
from vtx.core.db import Database
from vtx.core.jobargs import source_key_of
from vtx.core.settings import Settings

log = logging.getLogger(__name__)
SUBSCRIPTION = "vtx-operator-intake"  # + "-<namespace>": each installation reads every event


def resource_for(event: events.TranscodeRequested, namespace: str) -> dict[str, Any]:
    renditions = None
    if event.renditions:
        renditions = [vt.RenditionSpec.from_dict(r) for r in event.renditions]
    spec = vt.VideoTranscodeSpec(
        video_id=event.video_id,
        source=vt.SourceRef(
            key=event.key, size=event.size, bucket=event.bucket, content_type=event.content_type
        ),
        renditions=renditions,
    )
    return vt.build_resource(spec, namespace)


class Intake:
    """Consumes video-transcode-queue on a thread; creates missing resources."""

    def __init__(self, settings: Settings, custom: Any, db: Database, namespace: str) -> None:
        self._settings = settings
        self._custom = custom
        self._db = db
        self.refused = 0
        self._namespace = namespace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intake", daemon=True)
        self.subscribed = threading.Event()  # set once the subscription exists
        self.created = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self, event: events.TranscodeRequested) -> str | None:
        """Why the event is not one vtx sent for a complete upload, or None."""
        try:
            source_key_of(event.video_id, event.key)
        except ValueError as exc:
            return str(exc)
        row = self._db.transaction(lambda cur: videos.get_video(cur, event.video_id), name="row")
        if row is None:
            return "no such video"
        if row.status != videos.UPLOADED:
            return f"the video is {row.status}, not waiting for its transcode"
        if (row.key, row.size) != (event.key, event.size):
            return "the event's source is not the video's upload"
        return None

    def ours(self, event: events.TranscodeRequested) -> bool:
        return event.namespace in (None, self._namespace)

    def handle(self, event: events.TranscodeRequested) -> bool:
        """Create the resource; True when it was missing. An event that does not match an
        upload that is complete (anyone who can reach the broker can send one) is refused."""
        refused = self.check(event)
        if refused is not None:
            log.warning("intake: refused an event for video %s: %s", event.video_id, refused)
            self.refused += 1
            return False
        body = resource_for(event, self._namespace)
        try:
            self._custom.create_namespaced_custom_object(
                vt.GROUP, vt.VERSION, self._namespace, vt.PLURAL, body
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self.created += 1
        log.info("intake: created %s for an upload with no resource", body["metadata"]["name"])
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            client = None
            try:
                client = bus.pulsar_client(self._settings)
                consumer = bus.EventConsumer(
                    client,
                    bus.topic(self._settings, events.TRANSCODE_QUEUE),
                    f"{SUBSCRIPTION}-{self._namespace}",
                    # A new subscription starts at the newest event: an installation's first
                    # start must not replay every upload the topic still holds.
                    from_earliest=False,
                )
            except Exception as exc:  # noqa: BLE001 - the broker may be starting: try again
                log.warning("intake: cannot subscribe yet: %s", exc)
                if client is not None:
                    client.close()
                self._stop.wait(5)
                continue
            self.subscribed.set()
            try:
                while not self._stop.is_set():
                    got = consumer.receive(timeout_ms=1000)
                    if got is None:
                        continue
                    event, msg = got
                    if not isinstance(event, events.TranscodeRequested) or not self.ours(event):
                        consumer.ack(msg)
                        continue
                    try:
                        self.handle(event)
                        consumer.ack(msg)
                    except Exception:
                        log.exception("intake: creating the resource failed; redelivery later")
                        consumer.nack(msg)
            except Exception:
                log.exception("intake: consumer failed; reconnecting")
            finally:
                consumer.close()
                client.close()
