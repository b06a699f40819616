"""Errors as the API answers them: ``{"error": {"code", "message", "field"?}, "request_id"}``
with the right status, for refusals and failures alike (no HTML error page, ever)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from vtx.api.keys import REQUEST_ID

log = logging.getLogger("vtx.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A refusal the client can act on; ``field`` names the input it concerns."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_body(code: str, message: str, request_id: str, field: str | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return json.dumps({"error": error, "request_id": request_id}).encode()


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(code, message, request_id, field),
        content_type="application/json",
        headers=headers,
    )


# aiohttp's own refusals (no route, wrong method, body too large), in the API's words.
_HTTP_CODES = {
    404: ("not_found", "no such endpoint"),
    405: ("method_not_allowed", "this endpoint does not take that method"),
    413: ("too_large", "the request body is too large"),
}


def _unavailable(exc: Exception) -> str | None:
    """Which server an exception says is unreachable, if that is what it says."""
    import psycopg2
    import psycopg2.pool
    from botocore.exceptions import BotoCoreError, ClientError
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, psycopg2.OperationalError | psycopg2.pool.PoolError):
        return "database"
    if isinstance(exc, BotoCoreError):
        return "storage"
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return "storage" if status >= 500 else None
    if isinstance(exc, ApiException):
        return "kubernetes" if not exc.status or exc.status >= 500 else None
    if isinstance(exc, HTTPError):
        return "kubernetes"
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.get(REQUEST_ID, "")
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, request_id, exc.field, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(exc.status, code, message, request_id, headers=headers)
    except Exception as exc:
        unavailable = _unavailable(exc)
        if unavailable is not None:
            log.warning(
                "%s: %s", unavailable, str(exc).splitlines()[0][:300] if str(exc) else repr(exc),
                extra={"request_id": request_id},
            )  # fmt: skip
            return error_response(
                503, f"{unavailable}_unavailable",
                f"the {unavailable} cannot be reached right now; try again shortly", request_id,
                headers={"Retry-After": "5"},
            )  # fmt: skip
        log.exception("unhandled error", extra={"request_id": request_id})
        return error_response(
            500, "internal", "the server failed; the request id identifies it in the logs",
            request_id,
        )  # fmt: skip
