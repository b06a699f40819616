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
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

from vtx.api.caller import ANONYMOUS, Caller
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
    caller: Caller = ANONYMOUS
    everything: bool = False  # every video the caller may see
    videos: set[str] = field(default_factory=set)  # videos it asked for (checked when asked)
    dropped: bool = False
    sending: bool = False  # the pump is inside a send

    def follows(self, video_id: str, owner: str | None) -> bool:
        if video_id in self.videos:
            return True
        return self.everything and (self.caller.admin or owner == self.caller.name)


class StatusHub:
    """Clients and their subscriptions, on the event loop's thread only."""

    def __init__(self, queue_size: int) -> None:
        self._queue_size = queue_size
        self.clients: set[Client] = set()
        self.delivered = 0
        self.dropped = 0

    def add(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None = None,
        caller: Caller = ANONYMOUS,
    ) -> Client:
        client = Client(ws, asyncio.Queue(self._queue_size), transport, caller)
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

    def publish(self, video_id: str, owner: str | None, payload: dict[str, Any]) -> int:
        """Send one event to every client following ``video_id`` (``owner``'s); returns how
        many.

        The event is serialised and framed once. A client that is keeping up (nothing queued,
        little unsent in its socket) gets the frame written to its connection at once; the
        others get it through their queue, in order.
        """
        text = json.dumps(payload, separators=(",", ":"))
        frame = text_frame(text.encode())
        sent = 0
        for client in list(self.clients):
            if not client.follows(video_id, owner):
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


class OwnerBook:
    """Whose each video is, for the hub to tell which clients may see its events: read from
    SQL once per video, kept for the last ``capacity`` videos. Events of a video whose owner
    is being read wait for it, in order."""

    def __init__(
        self, lookup: Callable[[str], Awaitable[str | None]], capacity: int = 100_000
    ) -> None:
        self._lookup = lookup
        self._capacity = capacity
        self._owners: OrderedDict[str, str | None] = OrderedDict()
        self._waiting: dict[str, list[Callable[[str | None], None]]] = {}

    def then(self, video_id: str, act: Callable[[str | None], None]) -> None:
        """Call ``act(owner)``: now when the owner is known, else once it has been read."""
        if video_id in self._owners:
            self._owners.move_to_end(video_id)
            act(self._owners[video_id])
            return
        waiting = self._waiting.get(video_id)
        if waiting is not None:
            waiting.append(act)
            return
        self._waiting[video_id] = [act]
        asyncio.get_running_loop().create_task(self._read(video_id))

    async def _read(self, video_id: str) -> None:
        try:
            owner = await self._lookup(video_id)
        except Exception:  # noqa: BLE001 - unknown: an admin's client still gets the events
            log.warning("owner of %s unknown; its events reach admins only", video_id)
            owner = None
        else:
            self._owners[video_id] = owner
            if len(self._owners) > self._capacity:
                self._owners.popitem(last=False)
        for act in self._waiting.pop(video_id, []):
            act(owner)


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
        # A split video's range: the rendition's progress is its ranges' together.
        **({"part": event.part, "parts": event.parts} if event.parts else {}),
    }


def heartbeat_message() -> dict[str, Any]:
    return {"type": "heartbeat", "time": time.time()}
