"""Bearer tokens on every write, on the WebSocket and (unless reads are open) on reads.

Each handler declares its access with :func:`access`; the middleware enforces it before the
handler runs, so a forgotten check is an open endpoint only where it was declared open.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, TypeVar

from aiohttp import web

from vtx.api.errors import ApiError, Handler
from vtx.api.keys import SERVICES, TOKEN_NAME
from vtx.core.tokens import check_token

Access = Literal["open", "read", "write"]
F = TypeVar("F", bound=Callable[..., object])
WS_PROTOCOL = "vtx.v1"
# Browsers cannot set headers on a WebSocket: the token rides as a subprotocol
# ("bearer.<token>") beside "vtx.v1", which the server picks.
WS_TOKEN_PREFIX = "bearer."  # noqa: S105 - a prefix, not a password
_MESSAGES = {
    "missing": "this endpoint needs an API token: send 'Authorization: Bearer <token>'",
    "unknown": "the API token is not one this server accepts",
    "expired": "the API token has expired",
}


def access(level: Access) -> Callable[[F], F]:
    def mark(handler: F) -> F:
        handler._vtx_access = level  # type: ignore[attr-defined]
        return handler

    return mark


def presented_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        proto = proto.strip()
        if proto.startswith(WS_TOKEN_PREFIX):
            return proto.removeprefix(WS_TOKEN_PREFIX)
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    level: Access = getattr(request.match_info.handler, "_vtx_access", "open")
    services = request.app[SERVICES]
    if level == "open" or (level == "read" and services.settings.api_open_reads):
        return await handler(request)
    verdict = check_token(presented_token(request), services.tokens, datetime.now(UTC))
    if verdict.name is None:
        raise ApiError(
            401, f"token_{verdict.reason}", _MESSAGES[verdict.reason],
            headers={"WWW-Authenticate": 'Bearer realm="vtx"'},
        )  # fmt: skip
    request[TOKEN_NAME] = verdict.name
    return await handler(request)
