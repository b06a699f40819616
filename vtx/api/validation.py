"""Checks of what clients send (pure functions): upload requests, file names, media types.

Every refusal is an :class:`ApiError` naming the field, so a client can show it next to the
input it concerns. File names are hostile: the object key is built from a sanitised copy, and
names that can only be an attack (paths, control or direction-changing characters) are refused.
"""

from __future__ import annotations

import math
import mimetypes
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vtx.api.errors import ApiError

MAX_NAME_CHARS = 255
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 5000
MAX_PARTS = 10_000  # S3's limit on the parts of one multipart upload
_MEDIA_TYPE = re.compile(r"^(video|audio)/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_ANY_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_EXTENSION = re.compile(r"\.([A-Za-z0-9]{1,10})$")
# What a client announces when it cannot tell: the bytes will.
GENERIC_TYPE = "application/octet-stream"
GENERIC_TYPES = frozenset({GENERIC_TYPE, "binary/octet-stream"})
# The names of the containers the probe reads (vtx.core.media.INPUT_FORMATS), with their types:
# the name, not a client's guess (mimetypes takes .ts for a Qt translation file), says media.
MEDIA_EXTENSIONS = {
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".3gp": "video/3gpp",
    ".3g2": "video/3gpp2", ".mkv": "video/x-matroska", ".webm": "video/webm",
    ".avi": "video/x-msvideo", ".flv": "video/x-flv", ".ts": "video/mp2t", ".m2ts": "video/mp2t",
    ".mts": "video/mp2t", ".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".vob": "video/mpeg",
    ".ogv": "video/ogg", ".wmv": "video/x-ms-wmv", ".asf": "video/x-ms-asf",
    ".m4a": "audio/mp4", ".mka": "audio/x-matroska", ".mp3": "audio/mpeg", ".aac": "audio/aac",
    ".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
    ".opus": "audio/ogg", ".wma": "audio/x-ms-wma",
}  # fmt: skip


@dataclass(frozen=True)
class UploadRequest:
    file_name: str
    size: int
    content_type: str
    title: str
    description: str


def _first(body: Mapping[str, Any], *names: str) -> tuple[str, Any]:
    """The first of ``names`` present in ``body`` (the API's name first, then the old ones)."""
    for name in names:
        if name in body:
            return name, body[name]
    return names[0], None


def _text(value: Any, field: str, limit: int, *, required: bool) -> str:
    if value is None:
        if required:
            raise ApiError(400, "missing_field", f"{field} is required", field=field)
        return ""
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"{field} must be a string", field=field)
    if len(value) > limit:
        raise ApiError(
            400, "invalid_field", f"{field} is longer than {limit} characters", field=field
        )
    if any(unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\t" for c in value):
        raise ApiError(
            400, "invalid_field", f"{field} contains control or invisible characters", field=field
        )
    return value


def check_file_name(value: Any, field: str = "file_name") -> str:
    """The file name as the client gave it, when it is a plain file name."""
    if isinstance(value, str) and len(value) > MAX_NAME_CHARS:
        raise ApiError(
            400, "invalid_field", f"{field} is longer than {MAX_NAME_CHARS} characters", field=field
        )
    name = _text(value, field, MAX_NAME_CHARS, required=True)
    if "\n" in name or "\t" in name:
        raise ApiError(400, "invalid_field", f"{field} contains control characters", field=field)
    if "/" in name or "\\" in name:
        raise ApiError(
            400, "invalid_field", f"{field} must be a file name, not a path", field=field
        )
    if not name.strip(" .") or name.strip() in (".", ".."):
        raise ApiError(400, "invalid_field", f"{field} {name!r} is not a file name", field=field)
    return name


def safe_file_name(name: str) -> str:
    """An object-key segment for ``name``: ASCII letters, digits, '.', '-', '_' only, the
    extension kept (lowercased), never empty, never starting with a dot."""
    folded = unicodedata.normalize("NFKD", name)
    ascii_only = "".join(c for c in folded if not unicodedata.combining(c))
    match = _EXTENSION.search(ascii_only)
    ext = f".{match.group(1).lower()}" if match else ""
    stem = ascii_only[: match.start()] if match else ascii_only
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:100].rstrip("._-")
    return (stem or "source") + ext


def media_type(value: Any, file_name: str) -> str:
    """The upload's media type, recorded and signed into its PUT (the client sends it back).

    The bytes, not the announced type, decide what a file is: the operator's probe reads them
    and fails a file that is no video or audio with the reason. So besides a video or audio
    type, the generic ``application/octet-stream`` (what many clients and ``curl -T`` send) is
    accepted, and so is any type for a file named as a media file (a ``.ts`` that a client took
    for a Qt translation file). No type at all takes the file name's media type, else the
    generic one. Refused: a malformed type, and a specific type that is not video or audio for
    a name that is no media file's (``text/plain`` for ``notes.txt``)."""
    field = "content_type"
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "invalid_field", "content_type must be a string", field=field)
    announced = value or ""
    base = announced.split(";", 1)[0].strip().lower()
    ext_match = _EXTENSION.search(file_name)
    ext = f".{ext_match.group(1).lower()}" if ext_match else ""
    named_type = MEDIA_EXTENSIONS.get(ext)
    if not base:
        guessed = named_type or mimetypes.guess_type(file_name, strict=False)[0]
        if guessed is not None and not _MEDIA_TYPE.match(guessed):
            raise ApiError(
                400, "unsupported_media_type",
                f"{file_name[:100]!r} is named as a {guessed} file, not a video or audio file; "
                "give its content_type if it is one",
                field=field,
            )  # fmt: skip
        return guessed or GENERIC_TYPE
    if len(base) > 127 or not _ANY_TYPE.match(base):
        raise ApiError(
            400, "invalid_field",
            f"content_type {announced[:100]!r} is not a media type (type/subtype)", field=field,
        )  # fmt: skip
    if _MEDIA_TYPE.match(base) or base in GENERIC_TYPES or named_type is not None:
        return base
    raise ApiError(
        400, "unsupported_media_type",
        f"content_type {announced[:100]!r} is not a video or audio type (video/*, audio/*), and "
        f"{file_name[:100]!r} is not named as a video or audio file; send "
        f"{GENERIC_TYPE} if the client cannot tell",
        field=field,
    )  # fmt: skip


def _size(value: Any, max_bytes: int) -> int:
    field = "size"
    if value is None:
        raise ApiError(400, "missing_field", "size is required (bytes)", field=field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "invalid_field", "size must be an integer (bytes)", field=field)
    if value <= 0:
        raise ApiError(400, "invalid_field", "size must be at least 1 byte", field=field)
    if value > max_bytes:
        raise ApiError(
            413, "too_large", f"size {value} is over the limit of {max_bytes} bytes", field=field
        )
    return value


def parse_upload_request(body: Any, *, max_bytes: int) -> UploadRequest:
    """An upload request from its JSON body. Accepts the original body's names too
    (``filename``, ``fileSize``)."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    name_field, raw_name = _first(body, "file_name", "filename", "fileName")
    file_name = check_file_name(raw_name, name_field)
    _size_field, raw_size = _first(body, "size", "fileSize", "file_size")
    size = _size(raw_size, max_bytes)
    _type_field, raw_type = _first(body, "content_type", "contentType")
    content_type = media_type(raw_type, file_name)
    title = _text(body.get("title"), "title", MAX_TITLE_CHARS, required=False) or file_name
    description = _text(
        body.get("description"), "description", MAX_DESCRIPTION_CHARS, required=False
    )
    return UploadRequest(file_name, size, content_type, title.strip() or file_name, description)


def part_size_for(size: int, preferred: int) -> int:
    """The part size of a multipart upload: ``preferred``, or larger when ``size`` would need
    more than S3's 10,000 parts (rounded up to a whole MiB)."""
    needed = math.ceil(size / MAX_PARTS)
    if needed <= preferred:
        return preferred
    mib = 1024 * 1024
    return math.ceil(needed / mib) * mib


def part_count(size: int, part_size: int) -> int:
    return max(1, math.ceil(size / part_size))


def part_range(number: int, size: int, part_size: int) -> int:
    """The byte count of part ``number`` (1-based) of an upload of ``size`` bytes."""
    return min(part_size, size - (number - 1) * part_size)


@dataclass(frozen=True)
class PartClaim:
    number: int
    etag: str


def normalise_etag(etag: str) -> str:
    return etag.strip().strip('"').lower()


def parse_parts(body: Any) -> list[PartClaim]:
    """The ``parts`` of a completion request: [{number, etag}], numbers unique, from 1."""
    if body is None:
        return []
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    parts = body.get("parts")
    if parts is None:
        return []
    if not isinstance(parts, list) or len(parts) > MAX_PARTS:
        raise ApiError(
            400, "invalid_field", f"parts must be a list of at most {MAX_PARTS}", field="parts"
        )
    claims: dict[int, PartClaim] = {}
    for i, part in enumerate(parts):
        where = f"parts[{i}]"
        if not isinstance(part, dict):
            raise ApiError(400, "invalid_field", f"{where} must be an object", field=where)
        number, etag = (
            part.get("number", part.get("PartNumber")),
            part.get("etag", part.get("ETag")),
        )
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_PARTS:
            raise ApiError(
                400, "invalid_field", f"{where}.number must be an integer from 1 to {MAX_PARTS}",
                field=f"{where}.number",
            )  # fmt: skip
        if not isinstance(etag, str) or not 0 < len(etag) <= 200:
            raise ApiError(
                400, "invalid_field", f"{where}.etag must be the ETag S3 returned for the part",
                field=f"{where}.etag",
            )  # fmt: skip
        if number in claims:
            raise ApiError(
                400, "invalid_field", f"part {number} is listed twice", field=f"{where}.number"
            )
        claims[number] = PartClaim(number, normalise_etag(etag))
    return [claims[n] for n in sorted(claims)]
