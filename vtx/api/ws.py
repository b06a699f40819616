"""GET /ws: live status. A client subscribes to every video or to given ids, gets a snapshot of
them at once, then every ``video-status-updates`` event for them and a heartbeat now and then.

Client messages (JSON text frames)::

    {"type": "subscribe", "all": true}             {"type": "subscribe", "videos": [id, ...]}
    {"type": "unsubscribe", "all": true}           {"type": "unsubscribe", "videos": [id, ...]}
    {"type": "ping"}

Server messages: ``snapshot`` (``videos``: the same objects as GET /v1/videos/{id}), ``status``
(one event), ``heartbeat``, ``pong`` and ``error`` (``error``: code and message). Binary frames
close the socket (1003); a client that keeps sending garbage is closed (1008).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from vtx.api.auth import WS_PROTOCOL, access, caller_of
from vtx.api.errors import ApiError
from vtx.api.hub import Client, heartbeat_message
from vtx.api.keys import HUB, SERVICES
from vtx.api.metrics import WS_CLIENTS
from vtx.api.views import video_view
from vtx.core import videos

MAX_IDS = 1000
SNAPSHOT_ALL = 50  # newest videos in the snapshot of an "all" subscription
MAX_BAD_FRAMES = 10
MAX_FRAME = 64 * 1024


class BadMessage(ValueError):
    pass


def parse_message(text: str) -> dict[str, Any]:
    """A client message, checked; BadMessage says what is wrong with it."""
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise BadMessage("not JSON") from None
    if not isinstance(msg, dict):
        raise BadMessage("a message is a JSON object")
    kind = msg.get("type")
    if kind == "ping":
        return {"type": "ping"}
    if kind not in ("subscribe", "unsubscribe"):
        raise BadMessage("type must be subscribe, unsubscribe or ping")
    if msg.get("all") is True:
        return {"type": kind, "all": True, "videos": []}
    ids = msg.get("videos")
    if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS:
        raise BadMessage(f"give all: true or videos: a list of 1 to {MAX_IDS} ids")
    try:
        videos = [str(uuid.UUID(v)) for v in ids if isinstance(v, str)]
    except ValueError:
        raise BadMessage("videos must be video ids (UUIDs)") from None
    if len(videos) != len(ids):
        raise BadMessage("videos must be video ids (UUIDs)")
    return {"type": kind, "all": False, "videos": videos}


@access("write")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    services, hub = request.app[SERVICES], request.app[HUB]
    ws = web.WebSocketResponse(
        protocols=(WS_PROTOCOL,),
        heartbeat=services.settings.ws_heartbeat_seconds,
        max_msg_size=MAX_FRAME,
    )
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "not_websocket", "GET /ws upgrades to a WebSocket")
    await ws.prepare(request)
    client = hub.add(ws, request.transport, caller_of(request))
    WS_CLIENTS.inc()
    pump = asyncio.create_task(hub.pump(client))
    beat = asyncio.create_task(_heartbeats(hub, client, services.settings.ws_heartbeat_seconds))
    bad = 0
    try:
        async for frame in ws:
            if frame.type == WSMsgType.BINARY:
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"JSON text frames only")
                break
            if frame.type != WSMsgType.TEXT:
                continue
            try:
                msg = parse_message(frame.data)
            except BadMessage as exc:
                bad += 1
                hub.send(client, _error("bad_message", str(exc)))
                if bad >= MAX_BAD_FRAMES:
                    await ws.close(
                        code=WSCloseCode.POLICY_VIOLATION, message=b"too many bad messages"
                    )
                    break
                continue
            await _handle(request, client, msg)
    finally:
        hub.remove(client)
        WS_CLIENTS.dec()
        beat.cancel()
        with contextlib.suppress(asyncio.QueueFull):
            client.queue.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(pump, 5)
        pump.cancel()
    return ws


def _error(code: str, message: str) -> str:
    return json.dumps({"type": "error", "error": {"code": code, "message": message}})


async def _handle(request: web.Request, client: Client, msg: dict[str, Any]) -> None:
    services, hub = request.app[SERVICES], request.app[HUB]
    if msg["type"] == "ping":
        hub.send(client, json.dumps({"type": "pong"}))
        return
    if msg["type"] == "unsubscribe":
        if msg["all"]:
            client.everything = False
            client.videos.clear()
        else:
            client.videos.difference_update(msg["videos"])
        return
    caller = client.caller
    if msg["all"]:
        client.everything = True
        owner = caller.owner_filter
        rows = await services.sql(
            lambda cur: videos.list_videos(cur, limit=SNAPSHOT_ALL, owner=owner), "snapshot"
        )
    else:
        ids: list[str] = msg["videos"]
        found = await services.sql(lambda cur: videos.get_videos(cur, ids), "snapshot")
        # Another's video is as unknown as a video that is not there.
        rows = [
            r for r in found
            if r.status != videos.DELETED
            and caller.may_see(r.owner, reading=True,
                               open_reads=services.settings.api_open_reads)
        ]  # fmt: skip
        client.videos.update(r.id for r in rows)
        unknown = sorted(set(ids) - {r.id for r in rows})
        if unknown:
            hub.send(client, _error("not_found", f"no videos {', '.join(unknown[:10])}"))
    views = [video_view(r, services, request) for r in rows]
    hub.send(client, json.dumps({"type": "snapshot", "videos": views}, default=str))


async def _heartbeats(hub: Any, client: Client, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        hub.send(client, json.dumps(heartbeat_message()))
