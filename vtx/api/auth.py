"""Bearer tokens on every write, on the WebSocket and (unless reads are open) on reads, and
whose videos a token may see.

Each handler declares its access with :func:`access`; the middleware enforces it before the
handler runs. A handler that declares nothing is closed (an admin token only), so a forgotten
declaration never opens an endpoint.

A token's name is its owner: the videos it announces are its own, and it sees, plays, deletes
and follows only those (404 for the others: whether another's video exists is not said). A
token named in ``VTX_API_ADMINS`` sees every video. With open reads, reads need no token and
are not scoped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, TypeVar

from aiohttp import web

from vtx.api.caller import ANONYMOUS, Caller
from vtx.api.errors import ApiError, Handler
from vtx.api.keys import CALLER, SERVICES
from vtx.core.tokens import check_token

Access = Literal["open", "read", "write", "admin"]
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


def declared_access(handler: object) -> Access:
    """What a handler declared; closed (admin) when it declared nothing."""
    level: Access = getattr(handler, "_vtx_access", "admin")
    return level


def route_access(route: web.AbstractRoute) -> Access:
    """The dashboard's static files are public; every other route says what it needs."""
    if isinstance(route.resource, web.StaticResource):
        return "open"
    return declared_access(route.handler)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        return await handler(request)  # no route: the 404 or 405 says so, to anyone
    level = route_access(request.match_info.route)
    services = request.app[SERVICES]
    settings = services.settings
    presented = presented_token(request)
    if level == "open" or (level == "read" and settings.api_open_reads and presented is None):
        request[CALLER] = ANONYMOUS
        return await handler(request)
    verdict = check_token(presented, services.tokens, datetime.now(UTC))
    if verdict.name is None:
        raise ApiError(
            401, f"token_{verdict.reason}", _MESSAGES[verdict.reason],
            headers={"WWW-Authenticate": 'Bearer realm="vtx"'},
        )  # fmt: skip
    caller = Caller(verdict.name, verdict.name in settings.api_admins)
    if level == "admin" and not caller.admin:
        raise ApiError(403, "forbidden", "this endpoint needs an admin's API token")
    request[CALLER] = caller
    return await handler(request)


def caller_of(request: web.Request) -> Caller:
    caller = request.get(CALLER)
    return caller if isinstance(caller, Caller) else ANONYMOUS
