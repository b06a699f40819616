"""The API application: the factory, its routes, middlewares, health and metrics, and the
life cycle of its clients and background threads."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vtx.api import uploads, views, webhooks, ws
from vtx.api.auth import access, auth_middleware, caller_of
from vtx.api.errors import Handler, error_middleware
from vtx.api.hub import OwnerBook, StatusHub, status_message
from vtx.api.keys import HUB, READER, READY, REQUEST_ID, SERVICES, SETTINGS
from vtx.api.metrics import LATENCY, REQUESTS, STATUS_EVENTS, WS_DROPPED
from vtx.api.openapi import openapi_document
from vtx.api.services import Services
from vtx.core import bus, events, videos
from vtx.core import resource as vt
from vtx.core.outbox import OutboxRelay
from vtx.core.settings import Settings
from vtx.core.webhook_delivery import Deliverer

log = logging.getLogger("vtx.api")
access_log = logging.getLogger("vtx.api.access")
STATIC = Path(__file__).parent / "static"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
READY_CACHE_S = 2.0


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request id (the client's when sane), an access log line and metrics per request."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = request_id
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        REQUESTS.labels(route=name, method=request.method, status=str(status)).inc()
        LATENCY.labels(route=name).observe(elapsed)
        access_log.info(
            "%s %s %d", request.method, request.path, status,
            extra={"request_id": request_id, "method": request.method, "path": request.path,
                   "route": name, "status": status, "duration_ms": round(elapsed * 1000, 1),
                   "remote": request.remote, "token": caller_of(request).name},
        )  # fmt: skip


def cors_middleware_for(origins: tuple[str, ...]) -> Any:
    allow_all = "*" in origins

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = origin is not None and (allow_all or origin in origins)
        if not allowed:
            return await handler(request)
        assert origin is not None
        headers = {"Access-Control-Allow-Origin": "*" if allow_all else origin, "Vary": "Origin"}
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            headers.update(
                {
                    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-Id",
                    "Access-Control-Max-Age": "600",
                }
            )
            return web.Response(status=204, headers=headers)
        response = await handler(request)
        if not response.prepared:
            response.headers.update(headers)
            response.headers["Access-Control-Expose-Headers"] = "X-Request-Id, Location"
        return response

    return cors


@access("open")
async def healthz(_: web.Request) -> web.Response:
    return views.json_response({"status": "ok"})


def _checks(services: Services, reader: bus.StatusReader) -> dict[str, str]:
    """Each server the API needs: "ok" or why not."""
    settings = services.settings
    results: dict[str, str] = {}

    def probe(name: str, check: Any) -> None:
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            results[name] = (str(exc).splitlines() or [type(exc).__name__])[0][:200]

    probe("database", lambda: services.db.transaction(lambda cur: cur.execute("SELECT 1")))
    probe("storage", lambda: services.store.client.head_bucket(Bucket=services.store.bucket))
    probe(
        "kubernetes",
        lambda: services.custom.list_namespaced_custom_object(
            vt.GROUP, vt.VERSION, settings.namespace, vt.PLURAL, limit=1,
            _request_timeout=settings.request_timeout_s,
        ),
    )  # fmt: skip
    results["pulsar"] = "ok" if reader.connected.is_set() else "the status reader is not connected"
    return results


@access("open")
async def readyz(request: web.Request) -> web.Response:
    """200 when the database, storage, Kubernetes and Pulsar answer; 503 naming what does not."""
    cache: dict[str, Any] = request.app[READY]
    now = time.monotonic()
    if now - cache.get("at", -1e9) > READY_CACHE_S:
        services = request.app[SERVICES]
        cache["checks"] = await services.run(_checks, services, request.app[READER])
        cache["at"] = now
    checks: dict[str, str] = cache["checks"]
    ready = all(v == "ok" for v in checks.values())
    return views.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


@access("open")
async def metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@access("open")
async def openapi(request: web.Request) -> web.Response:
    return views.json_response(
        openapi_document(views.base_url(request.app[SERVICES].settings, request))
    )


@access("open")
async def dashboard(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    r.add_get("/openapi.json", openapi)
    r.add_post("/upload/video", uploads.create_upload)
    r.add_post("/v1/videos", uploads.create_upload)
    r.add_get("/v1/videos", views.list_videos)
    r.add_get("/v1/videos/{video_id}", views.get_video)
    r.add_delete("/v1/videos/{video_id}", views.delete_video)
    r.add_get("/v1/videos/{video_id}/upload", uploads.upload_state)
    r.add_post("/v1/videos/{video_id}/complete", uploads.complete_upload)
    r.add_put("/v1/videos/{video_id}/source", uploads.put_source)
    r.add_get("/v1/videos/{video_id}/play/master.m3u8", views.play_master)
    r.add_get("/v1/videos/{video_id}/play/{rendition}/hls/index.m3u8", views.play_media)
    r.add_get(
        "/v1/videos/{video_id}/play/{rendition}/{file:(?:video\\.mp4|audio\\.mp4|subtitles\\.vtt)}",
        views.play_mp4,
    )
    r.add_get("/v1/videos/{video_id}/play/images/storyboard.vtt", views.play_storyboard)
    r.add_get("/v1/videos/{video_id}/play/images/{file}", views.play_image)
    r.add_get("/video/{video_id}/progress", views.get_progress)
    r.add_post("/v1/webhooks", webhooks.register_webhook)
    r.add_get("/v1/webhooks", webhooks.list_webhooks)
    r.add_delete("/v1/webhooks/{endpoint_id}", webhooks.delete_webhook)
    r.add_get("/v1/webhooks/{endpoint_id}/deliveries", webhooks.webhook_deliveries)
    r.add_get("/ws", ws.websocket)
    if (STATIC / "index.html").exists():
        r.add_get("/", dashboard)
        r.add_static("/static/", STATIC, append_version=False)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings: Settings = app[SETTINGS]
    loop = asyncio.get_running_loop()
    services = await loop.run_in_executor(None, Services.connect, settings)
    app[SERVICES] = services
    hub = StatusHub(settings.ws_queue)
    app[HUB] = hub

    async def owner_of(video_id: str) -> str | None:
        row = await services.sql(lambda cur: videos.get_video(cur, video_id), "owner")
        return None if row is None else row.owner

    owners = OwnerBook(owner_of)

    def deliver(event: events.StatusUpdate) -> None:
        STATUS_EVENTS.inc()
        message = status_message(event)

        def publish(owner: str | None) -> None:
            before = hub.dropped
            hub.publish(event.video_id, owner, message)
            WS_DROPPED.inc(hub.dropped - before)

        owners.then(event.video_id, publish)

    def on_reader_thread(event: events.StatusUpdate) -> None:
        loop.call_soon_threadsafe(deliver, event)

    reader = bus.StatusReader(
        services.pulsar, bus.topic(settings, events.STATUS_UPDATES), on_reader_thread
    )
    app[READER] = reader
    reader.start()
    relay = OutboxRelay(services.db, services.pulsar, settings)
    stop = threading.Event()
    relay_thread = threading.Thread(target=relay.run, args=(stop,), name="outbox", daemon=True)
    relay_thread.start()
    # Webhook deliveries: every API replica delivers; a delivery is claimed by one at a time.
    deliverer = Deliverer(
        services.db, allow_private=settings.webhook_allow_private,
        first_retry_s=settings.webhook_first_retry_s, timeout_s=settings.webhook_timeout_s,
    )  # fmt: skip
    deliver_thread = threading.Thread(
        target=deliverer.run, args=(stop,), name="webhooks", daemon=True
    )
    deliver_thread.start()
    if not services.tokens:
        log.warning("VTX_API_TOKENS is empty: every write and the WebSocket will be refused")
    log.info("API ready", extra={"address": settings.api_address})
    try:
        yield
    finally:
        await hub.close_all()
        stop.set()
        await loop.run_in_executor(None, relay_thread.join, 10)
        await loop.run_in_executor(None, deliver_thread.join, 15)
        relay.close()
        await loop.run_in_executor(None, reader.stop)
        await loop.run_in_executor(None, services.close)


def create_app(settings: Settings) -> web.Application:
    """The API as an aiohttp application; its clients connect when it starts."""
    app = web.Application(
        middlewares=[
            request_middleware,
            cors_middleware_for(settings.cors_origins),
            error_middleware,
            auth_middleware,
        ],
        client_max_size=1024 * 1024,
    )
    app[SETTINGS] = settings
    app[READY] = {}
    setup_routes(app)
    app.cleanup_ctx.append(_lifecycle)
    return app


def run(settings: Settings, address: str | None = None) -> None:
    host, _, port = (address or settings.api_address).rpartition(":")
    web.run_app(
        create_app(settings),
        host=host.strip("[]"),
        port=int(port),
        access_log=None,
        print=None,
        shutdown_timeout=10,
    )
