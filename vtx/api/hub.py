"""The WebSocket hub: every ``video-status-updates`` event, pushed to the clients that follow its
video. Each API replica reads the whole topic with a reader of its own (no shared subscription),
so a client on any replica sees every event, whichever replica or job produced it.

A client has a bounded queue; one that falls behind is dropped, never allowed to hold the others
up. Serialising an event happens once, whatever the number of clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulsar
from aiohttp import WSCloseCode, web

from vtx.core import events

log = logging.getLogger(__name__)
SLOW_CLIENT = 4008  # application close code: the client did not keep up
# A client with more than this unsent in its socket gets messages through its queue instead.
DIRECT_WRITE_LIMIT = 256 * 1024


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (RFC 6455, section 5.2), as a server sends it.
    Uncompressed: valid whether or not permessage-deflate was agreed (RSV1 stays clear)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


@dataclass(eq=False)
class Client:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str | None]
    transport: asyncio.Transport | None = None
    everything: bool = False
    videos: set[str] = field(default_factory=set)
    dropped: bool = False
    sending: bool = False  # the pump is inside a send

    def follows(self, video_id: str) -> bool:
        return self.everything or video_id in self.videos


class StatusHub:
    """Clients and their subscriptions, on the event loop's thread only."""

    def __init__(self, queue_size: int) -> None:
        self._queue_size = queue_size
        self.clients: set[Client] = set()
        self.delivered = 0
        self.dropped = 0

    def add(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None = None) -> Client:
        client = Client(ws, asyncio.Queue(self._queue_size), transport)
        self.clients.add(client)
        return client

    def remove(self, client: Client) -> None:
        self.clients.discard(client)

    def send(self, client: Client, text: str) -> None:
        """Queue one message for one client; drop the client when its queue is full."""
        if client.dropped:
            return
        try:
            client.queue.put_nowait(text)
        except asyncio.QueueFull:
            client.dropped = True
            self.dropped += 1
            log.warning(
                "dropping a WebSocket client that fell %d messages behind", self._queue_size
            )
            self.clients.discard(client)
            asyncio.get_running_loop().create_task(self._close_slow(client))

    async def _close_slow(self, client: Client) -> None:
        try:
            await asyncio.wait_for(
                client.ws.close(code=SLOW_CLIENT, message=b"too slow: messages were dropped"), 5
            )
        except Exception:  # noqa: BLE001 - its buffers are full: cut the connection instead
            if client.transport is not None:
                client.transport.abort()

    def publish(self, video_id: str, payload: dict[str, Any]) -> int:
        """Send one event to every client following ``video_id``; returns how many.

        The event is serialised and framed once. A client that is keeping up (nothing queued,
        little unsent in its socket) gets the frame written to its connection at once; the
        others get it through their queue, in order.
        """
        text = json.dumps(payload, separators=(",", ":"))
        frame = text_frame(text.encode())
        sent = 0
        for client in list(self.clients):
            if not client.follows(video_id):
                continue
            sent += 1
            t = client.transport
            if (
                t is not None
                and client.queue.empty()
                and not client.sending
                and not client.dropped
                and not client.ws.closed
                and not t.is_closing()
                and t.get_write_buffer_size() < DIRECT_WRITE_LIMIT
            ):
                t.write(frame)
            else:
                self.send(client, text)
        self.delivered += sent
        return sent

    async def pump(self, client: Client) -> None:
        """Write a client's queue to its socket until the queue says stop (None)."""
        while True:
            text = await client.queue.get()
            if text is None or client.dropped or client.ws.closed:
                return
            client.sending = True
            try:
                await client.ws.send_str(text)
            finally:
                client.sending = False

    async def close_all(self) -> None:
        for client in list(self.clients):
            with contextlib.suppress(Exception):
                await client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        self.clients.clear()


def status_message(event: events.StatusUpdate) -> dict[str, Any]:
    """What clients get for one status event."""
    return {
        "type": "status",
        "video_id": event.video_id,
        "rendition": event.rendition,
        "phase": event.phase,
        "progress": event.progress,
        "message": event.message,
        "time": event.time,
        "id": event.id,
    }


class TopicReader:
    """Reads video-status-updates from the newest message on, on a thread, and hands each event
    to ``deliver`` on the event loop. Reconnects with backoff while the broker is away."""

    def __init__(
        self,
        client: pulsar.Client,
        topic_url: str,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[events.StatusUpdate], None],
    ) -> None:
        self._client = client
        self._topic = topic_url
        self._loop = loop
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
            self._loop.call_soon_threadsafe(self._deliver, event)


def heartbeat_message() -> dict[str, Any]:
    return {"type": "heartbeat", "time": time.time()}
