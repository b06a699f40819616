"""Webhook endpoints a token's owner registers, and what was delivered to them.

``POST /v1/webhooks`` registers a URL for some event types and answers the signing secret, once;
``GET /v1/webhooks`` lists the owner's endpoints (without secrets); ``DELETE /v1/webhooks/{id}``
removes one; ``GET /v1/webhooks/{id}/deliveries`` reads its delivery log. An endpoint receives
the events of its owner's videos only. URLs are checked against private and loopback addresses
here and again at every delivery (a name may resolve elsewhere later)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from vtx.api.auth import access, caller_of
from vtx.api.errors import ApiError
from vtx.api.keys import SERVICES
from vtx.api.uploads import read_json
from vtx.api.views import json_response
from vtx.core import webhooks
from vtx.core.db import Cursor

MAX_BODY = 16 * 1024


def _owner(request: web.Request) -> str:
    name = caller_of(request).name
    if name is None:
        raise ApiError(401, "unauthorized", "webhooks belong to a token's owner: send a token")
    return name


def _endpoint_id(request: web.Request) -> str:
    raw = request.match_info["endpoint_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(404, "not_found", f"no webhook {raw[:64]!r}: ids are UUIDs") from None


def _endpoint_view(endpoint: webhooks.Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "created_at": endpoint.created_at.isoformat(timespec="seconds"),
    }


@access("write")
async def register_webhook(request: web.Request) -> web.Response:
    """POST /v1/webhooks {"url", "event_types"}: 201 with the secret, shown this once."""
    services = request.app[SERVICES]
    owner = _owner(request)
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "too_large", f"a webhook registration is at most {MAX_BODY} bytes")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    try:
        types = webhooks.check_event_types(body.get("event_types"))
    except webhooks.WebhookError as exc:
        raise ApiError(400, "invalid_field", str(exc), field="event_types") from None
    settings = services.settings
    try:
        checked = await services.run(
            webhooks.check_url, body.get("url"), allow_private=settings.webhook_allow_private
        )
    except webhooks.WebhookError as exc:
        raise ApiError(400, "invalid_field", str(exc), field="url") from None
    limit = settings.webhook_max_endpoints

    def register(cur: Cursor) -> webhooks.Endpoint | None:
        if len(webhooks.endpoints_of(cur, owner)) >= limit:
            return None
        return webhooks.register(cur, owner, checked, types)

    endpoint = await services.sql(register, "register webhook")
    if endpoint is None:
        raise ApiError(
            409, "too_many_webhooks", f"an owner has at most {limit} webhooks: delete one first"
        )
    return json_response({**_endpoint_view(endpoint), "secret": endpoint.secret}, status=201)


@access("write")
async def list_webhooks(request: web.Request) -> web.Response:
    """GET /v1/webhooks: the caller's endpoints, without their secrets."""
    services = request.app[SERVICES]
    owner = _owner(request)
    endpoints = await services.sql(lambda cur: webhooks.endpoints_of(cur, owner), "webhooks")
    return json_response({"webhooks": [_endpoint_view(e) for e in endpoints]})


@access("write")
async def delete_webhook(request: web.Request) -> web.Response:
    """DELETE /v1/webhooks/{id}: the endpoint and its delivery log go."""
    services = request.app[SERVICES]
    owner = _owner(request)
    endpoint_id = _endpoint_id(request)
    gone = await services.sql(
        lambda cur: webhooks.delete_endpoint(cur, owner, endpoint_id), "delete webhook"
    )
    if not gone:
        raise ApiError(404, "not_found", f"no webhook {endpoint_id}")
    return web.Response(status=204)


@access("write")
async def webhook_deliveries(request: web.Request) -> web.Response:
    """GET /v1/webhooks/{id}/deliveries?limit=: newest first."""
    services = request.app[SERVICES]
    owner = _owner(request)
    endpoint_id = _endpoint_id(request)
    raw_limit = request.query.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
        raise ApiError(400, "invalid_field", "limit must be from 1 to 200", field="limit")
    limit = int(raw_limit)

    def read(cur: Cursor) -> list[dict[str, Any]] | None:
        if not any(e.id == endpoint_id for e in webhooks.endpoints_of(cur, owner)):
            return None
        return webhooks.deliveries_of(cur, owner, endpoint_id, limit)

    deliveries = await services.sql(read, "webhook deliveries")
    if deliveries is None:
        raise ApiError(404, "not_found", f"no webhook {endpoint_id}")
    return json_response({"deliveries": deliveries})
