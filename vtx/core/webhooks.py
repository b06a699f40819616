"""Signed webhooks (Standard Webhooks, https://www.standardwebhooks.com): the checks on what a
token registers, the signature and envelope of what is sent, the retry schedule, and every SQL
statement on ``webhook_endpoints`` and ``webhook_deliveries``.

An endpoint is an http(s) URL, the event types it wants and a ``whsec_`` secret shown once, when
it is registered. Each event makes one delivery per subscribed endpoint (enqueued in the caller's
transaction, at most once per event id); :mod:`vtx.core.webhook_delivery` sends it, signed, until
the endpoint answers 2xx or a day has passed. The delivery's id is its ``webhook-id`` header, the
same on every attempt, so receivers drop repeats by it (delivery is at least once).

URLs may not point at private, loopback, link-local or other non-global addresses (unless the
deployment allows it): :func:`check_url` resolves the host and judges every address it gets.

SQL functions take a cursor, so that callers compose them into one transaction
(:meth:`vtx.core.db.Database.transaction`).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import re
import secrets
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from vtx.core.db import Cursor

EVENT_TYPES: tuple[str, ...] = ("upload.completed", "video.ready", "video.failed", "video.deleted")

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MSG_PREFIX = "msg_"
MAX_URL_LENGTH = 2048
MAX_ERROR_LENGTH = 500  # last_error is cut to this many characters
RETRY_CAP_S = 3600.0  # no wait between two attempts is longer than an hour
RETRY_WINDOW_S = 86400.0  # a delivery is retried for a day after it was enqueued

PRIVATE_ADDRESS = "webhook URLs may not point at private or loopback addresses"

# A host name as DNS writes it (international names in their xn-- form); IP literals aside.
_HOST_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$")
# NAT64 prefixes: the IPv4 address in the last 32 bits is what a NAT64 gateway would reach.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class WebhookError(ValueError):
    """What a caller asked for is not a valid webhook; the message is a sentence for them."""


# --- pure functions -------------------------------------------------------------------------
def new_secret() -> str:
    """A signing secret: ``whsec_`` and the base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def new_message_id() -> str:
    """A delivery's id (its ``webhook-id`` header): ``msg_`` and a random UUID in hex."""
    return MSG_PREFIX + uuid.uuid4().hex


def check_event_types(raw: object) -> tuple[str, ...]:
    """The event types of a request: a non-empty list of known types, each once; sorted."""
    if not isinstance(raw, list | tuple) or not raw:
        raise WebhookError(
            "event_types must be a non-empty list of event types (" + ", ".join(EVENT_TYPES) + ")"
        )
    if len(raw) > len(EVENT_TYPES):
        raise WebhookError(f"event_types may list at most {len(EVENT_TYPES)} event types")
    seen: set[str] = set()
    for item in raw:
        if not isinstance(item, str):
            raise WebhookError("every event type must be a string")
        if item not in EVENT_TYPES:
            raise WebhookError(
                f"unknown event type {item[:64]!r} (known: " + ", ".join(EVENT_TYPES) + ")"
            )
        if item in seen:
            raise WebhookError(f"event type {item!r} is listed more than once")
        seen.add(item)
    return tuple(sorted(seen))


@dataclass(frozen=True)
class CheckedUrl:
    """A webhook URL that passed :func:`check_url`, and what its host resolved to then."""

    url: str
    host: str  # lowercase, without brackets around an IPv6 literal
    port: int  # explicit or the scheme's default
    addresses: tuple[str, ...]  # every address the host resolved to, in the resolver's order


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public(address: Address) -> bool:
    """Whether ``address`` is a global unicast address, judging the IPv4 address inside an
    IPv4-mapped, 6to4 or NAT64 IPv6 address too (a mapped address is judged as its IPv4)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _LOCAL_NAT64:
            return False
        inner = address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None and not is_public(inner):
            return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def check_url(raw: object, *, allow_private: bool, resolve: Resolver = resolve_host) -> CheckedUrl:
    """A webhook URL, checked: http(s), a host, no user:password@, no fragment, a valid port,
    and a host that resolves, to global addresses only unless ``allow_private``.

    Every address the host resolves to is judged (an attacker's DNS may answer several), IP
    literals included. The check holds when it is made: a sender must check again before each
    attempt, and connect to an address it judged (:func:`vtx.core.webhook_delivery.post`).
    """
    if not isinstance(raw, str) or not raw:
        raise WebhookError("url must be a non-empty string")
    if len(raw) > MAX_URL_LENGTH:
        raise WebhookError(f"webhook URLs may be at most {MAX_URL_LENGTH} characters long")
    if not raw.isascii() or any(c <= " " or c == "\x7f" for c in raw):
        raise WebhookError(
            "webhook URLs may hold printable ASCII characters only (percent-encode the rest, and"
            " write an international host name in its xn-- form)"
        )
    try:
        parts = urlsplit(raw)
        explicit_port = parts.port
    except ValueError:
        raise WebhookError("the webhook URL is not a valid URL (is its port a number?)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise WebhookError("webhook URLs must start with http:// or https://")
    if "@" in parts.netloc:
        raise WebhookError("webhook URLs may not hold a user name or password (user:pass@)")
    if "#" in raw:
        raise WebhookError("webhook URLs may not have a fragment (#...)")
    host = parts.hostname or ""
    if not host:
        raise WebhookError("the webhook URL has no host")
    written = host.partition("%")[0] if "[" in parts.netloc else host  # no IPv6 zone id
    literal = _address(written)
    if "[" in parts.netloc and not isinstance(literal, ipaddress.IPv6Address):
        raise WebhookError("only an IPv6 address may stand in brackets in a webhook URL")
    if literal is None and not _HOST_NAME.match(host):
        raise WebhookError(f"the webhook URL's host {host[:255]!r} is not a valid host name")
    port = explicit_port if explicit_port is not None else (443 if scheme == "https" else 80)
    if not 1 <= port <= 65535:
        raise WebhookError("the webhook URL's port must be between 1 and 65535")
    try:
        found = resolve(host, port)
    except (OSError, UnicodeError):
        found = []
    addresses = tuple(dict.fromkeys(found))
    if not addresses:
        raise WebhookError(f"the webhook URL's host {host} does not resolve")
    if not allow_private:
        judged = ([written] if literal is not None else []) + list(addresses)
        for text in judged:
            address = _address(text)
            if address is None or not is_public(address):
                raise WebhookError(f"{PRIVATE_ADDRESS} ({text})")
    return CheckedUrl(url=raw, host=host, port=port, addresses=addresses)


def retry_delay(attempts: int, first_s: float, cap_s: float = RETRY_CAP_S) -> float:
    """Seconds to wait after ``attempts`` failed attempts: ``first_s``, doubling each time,
    capped at ``cap_s``."""
    exponent = min(max(attempts, 1) - 1, 62)
    return float(min(cap_s, first_s * 2.0**exponent))


def gives_up(created_at: datetime, now: datetime, window_s: float = RETRY_WINDOW_S) -> bool:
    """Whether a delivery enqueued at ``created_at`` is past its retry window at ``now``."""
    return (_utc(now) - _utc(created_at)).total_seconds() >= window_s


def _utc(when: datetime) -> datetime:
    """``when`` in UTC; a naive datetime is taken to be UTC already."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def iso(when: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z: ``2026-01-31T12:00:00.000Z``."""
    return _utc(when).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signed_headers(secret: str, msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The headers of one attempt: ``webhook-id``, ``webhook-timestamp`` (whole seconds),
    ``webhook-signature`` (``v1,<base64 HMAC-SHA256>``) and the content type.

    ``body`` must be sent exactly as signed. A naive ``timestamp`` is taken to be UTC.
    """
    when = _utc(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(math.floor(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body),
        "content-type": "application/json",
    }


def payload(event_type: str, data: Mapping[str, Any], timestamp: datetime) -> dict[str, Any]:
    """The Standard Webhooks envelope: ``{"type", "timestamp" (ISO 8601, UTC), "data"}``."""
    return {"type": event_type, "timestamp": iso(timestamp), "data": dict(data)}


def _uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except (ValueError, TypeError, AttributeError):
        return None


# --- endpoints ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """A registered endpoint. ``secret`` is read by :func:`register` only (it is shown once):
    :func:`endpoints_of` leaves it empty."""

    id: str
    owner: str
    url: str
    event_types: tuple[str, ...]
    created_at: datetime
    secret: str = field(default="", repr=False)


def register(cur: Cursor, owner: str, checked: CheckedUrl, event_types: Sequence[str]) -> Endpoint:
    """Record a new endpoint of ``owner`` with a new id and secret (returned with it)."""
    types = check_event_types(list(event_types))
    endpoint_id = str(uuid.uuid4())
    secret = new_secret()
    cur.execute(
        "INSERT INTO webhook_endpoints (id, owner, url, secret, event_types)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING created_at",
        (endpoint_id, owner, checked.url, secret, list(types)),
    )
    row = cur.fetchone()
    assert row is not None
    return Endpoint(endpoint_id, owner, checked.url, types, row[0], secret)


def endpoints_of(cur: Cursor, owner: str) -> list[Endpoint]:
    """``owner``'s endpoints, oldest first, without their secrets."""
    cur.execute(
        "SELECT id::TEXT, owner, url, event_types, created_at FROM webhook_endpoints"
        " WHERE owner = %s ORDER BY created_at, id",
        (owner,),
    )
    return [Endpoint(r[0], r[1], r[2], tuple(r[3]), r[4]) for r in cur.fetchall()]


def delete_endpoint(cur: Cursor, owner: str, endpoint_id: str) -> bool:
    """Delete ``owner``'s endpoint and its deliveries; False when ``owner`` has no such one."""
    valid = _uuid(endpoint_id)
    if valid is None:
        return False
    cur.execute("DELETE FROM webhook_endpoints WHERE id = %s AND owner = %s", (valid, owner))
    return cur.rowcount > 0


# --- deliveries -----------------------------------------------------------------------------
def enqueue(
    cur: Cursor,
    owner: str,
    event_type: str,
    event_id: str,
    video_id: str | None,
    data: Mapping[str, Any],
) -> int:
    """One pending delivery of ``event_type`` to each endpoint of ``owner`` subscribed to it;
    returns how many were made (an event id already enqueued for an endpoint makes none)."""
    if event_type not in EVENT_TYPES:
        raise WebhookError(f"unknown event type {event_type!r}")
    body = json.dumps(payload(event_type, data, datetime.now(UTC)))
    cur.execute(
        "SELECT id::TEXT FROM webhook_endpoints WHERE owner = %s AND %s = ANY(event_types)"
        " ORDER BY created_at, id",
        (owner, event_type),
    )
    made = 0
    for (endpoint_id,) in cur.fetchall():
        cur.execute(
            "INSERT INTO webhook_deliveries"
            " (id, endpoint_id, event_id, event_type, video_id, payload)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            (new_message_id(), endpoint_id, event_id, event_type, video_id, body),
        )
        made += cur.rowcount
    return made


@dataclass(frozen=True)
class Due:
    """A pending delivery whose time has come, with what sending it needs."""

    id: str  # the webhook-id header
    endpoint_id: str
    url: str
    secret: str = field(repr=False)
    event_type: str
    payload: dict[str, Any]  # the envelope, sent as JSON
    attempts: int  # failed attempts so far
    created_at: datetime


def _due(r: Sequence[Any]) -> Due:
    return Due(
        id=r[0], endpoint_id=r[1], url=r[2], secret=r[3], event_type=r[4],
        payload=r[5] if isinstance(r[5], dict) else json.loads(r[5]),
        attempts=int(r[6]), created_at=r[7],
    )  # fmt: skip


def claim_due(cur: Cursor, now: datetime, limit: int) -> list[Due]:
    """Lock up to ``limit`` pending deliveries due at ``now``, longest due first, skipping rows
    another transaction holds: they stay locked until the caller's transaction ends."""
    cur.execute(
        "SELECT d.id, d.endpoint_id::TEXT, e.url, e.secret, d.event_type, d.payload, d.attempts,"
        " d.created_at FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
        " WHERE d.state = 'pending' AND d.next_attempt_at <= %s"
        " ORDER BY d.next_attempt_at, d.created_at, d.id LIMIT %s FOR UPDATE OF d SKIP LOCKED",
        (now, limit),
    )
    return [_due(r) for r in cur.fetchall()]


def record_attempt(
    cur: Cursor,
    delivery_id: str,
    *,
    ok: bool,
    status: int | None,
    error: str | None,
    next_at: datetime | None,
) -> None:
    """Record one attempt: delivered when ``ok``; else pending until ``next_at``, or failed for
    good when there is no ``next_at``."""
    error = None if error is None else error[:MAX_ERROR_LENGTH]
    if ok:
        cur.execute(
            "UPDATE webhook_deliveries SET state = %s, attempts = attempts + 1, last_status = %s,"
            " last_error = NULL, delivered_at = now() WHERE id = %s",
            (DELIVERED, status, delivery_id),
        )
    elif next_at is None:
        cur.execute(
            "UPDATE webhook_deliveries SET state = %s, attempts = attempts + 1, last_status = %s,"
            " last_error = %s WHERE id = %s",
            (FAILED, status, error, delivery_id),
        )
    else:
        cur.execute(
            "UPDATE webhook_deliveries SET state = %s, attempts = attempts + 1, last_status = %s,"
            " last_error = %s, next_attempt_at = %s WHERE id = %s",
            (PENDING, status, error, next_at, delivery_id),
        )


def _delivery(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0], "event_type": r[1], "video_id": r[2], "state": r[3], "attempts": r[4],
        "last_status": r[5], "last_error": r[6], "created_at": iso(r[7]),
        "delivered_at": None if r[8] is None else iso(r[8]), "next_attempt_at": iso(r[9]),
    }  # fmt: skip


def deliveries_of(cur: Cursor, owner: str, endpoint_id: str, limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` deliveries to ``owner``'s endpoint, newest first, ready for JSON;
    empty when the endpoint is not ``owner``'s (or has none)."""
    valid = _uuid(endpoint_id)
    if valid is None:
        return []
    cur.execute(
        "SELECT d.id, d.event_type, d.video_id::TEXT, d.state, d.attempts, d.last_status,"
        " d.last_error, d.created_at, d.delivered_at, d.next_attempt_at"
        " FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
        " WHERE d.endpoint_id = %s AND e.owner = %s"
        " ORDER BY d.created_at DESC, d.id DESC LIMIT %s",
        (valid, owner, limit),
    )
    return [_delivery(r) for r in cur.fetchall()]
