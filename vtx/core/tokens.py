"""API tokens: random bearer tokens, kept in configuration only as SHA-256 hashes.

``VTX_API_TOKENS`` lists ``NAME:SHA256HEX`` or ``NAME:SHA256HEX:EXPIRES`` entries separated by
commas (``EXPIRES`` in ISO 8601, e.g. ``2027-01-31`` or ``2027-01-31T12:00:00Z``). A token is
``vtx_`` and 43 URL-safe characters (256 random bits), so a plain SHA-256 is enough to keep it
unguessable at rest; ``vtx token create`` makes one and prints its entry.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

PREFIX = "vtx_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
# What a bearer token may hold (RFC 6750 b64token); anything else is refused before hashing.
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]{1,512}=*$")


@dataclass(frozen=True)
class TokenEntry:
    name: str
    digest: str  # SHA-256 of the token, hex
    expires: datetime | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _expiry(raw: str) -> datetime:
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"token expiry {raw!r} is not an ISO 8601 date or time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_token_list(raw: str) -> tuple[TokenEntry, ...]:
    """Parse ``VTX_API_TOKENS``; ValueError names the bad entry (never a hash)."""
    entries = []
    for i, item in enumerate(x.strip() for x in raw.split(",")):
        if not item:
            continue
        name, _, rest = item.partition(":")
        digest, _, expires = rest.partition(":")
        if not _NAME.match(name):
            raise ValueError(f"entry {i + 1}: the name must be letters, digits, '.', '_', '-'")
        if not _HEX.match(digest):
            raise ValueError(f"entry {i + 1} ({name}): the hash must be 64 lowercase hex digits")
        entries.append(TokenEntry(name, digest, _expiry(expires) if expires else None))
    return tuple(entries)


@dataclass(frozen=True)
class Verdict:
    name: str | None  # the token's name when it is valid
    reason: str  # why not, for the 401 message: "missing", "unknown", "expired"


def check_token(presented: str | None, entries: tuple[TokenEntry, ...], now: datetime) -> Verdict:
    """Whether ``presented`` is one of the configured tokens and not expired."""
    if not presented:
        return Verdict(None, "missing")
    if not _TOKEN.match(presented):
        return Verdict(None, "unknown")
    digest = hash_token(presented)
    match = None
    for entry in entries:
        # Compare every entry (constant time each), so timing says nothing about which matched.
        if hmac.compare_digest(entry.digest, digest):
            match = entry
    if match is None:
        return Verdict(None, "unknown")
    if match.expires is not None and now >= match.expires:
        return Verdict(None, "expired")
    return Verdict(match.name, "")
