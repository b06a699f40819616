"""Settings: every knob is an environment variable, read and validated once at start-up.

A bad value stops the process with an error that names the variable. Secrets are wrapped in
:class:`Secret`, whose ``repr`` and ``str`` never show the value, so settings can be logged.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from vtx.core.ladder import MAX_AUDIO_TRACKS, MAX_SUBTITLE_TRACKS

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Secret:
    """A secret value that does not print itself."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')" if self.value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.value)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be a {'/'.join(schemes)} URL with a host")
        return raw.rstrip("/")

    return parse


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def _int_from(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return parse


MIB = 1024 * 1024
GIB = 1024 * MIB


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _part_size(raw: str) -> int:
    value = int(raw)
    # S3's own bounds for every part but the last.
    if not 5 * MIB <= value <= 5 * GIB:
        raise ValueError("must be between 5 MiB (5242880) and 5 GiB")
    return value


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for o in origins:
        if o != "*" and not _is_origin(o):
            raise ValueError(f"{o!r} is not an origin (scheme://host[:port]) or *")
    return origins


def _is_origin(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.path


def _secret_refs(raw: str) -> tuple[tuple[str, str, str], ...]:
    """``VAR=secret/key,...``: environment variables of job pods read from Secret keys."""
    refs = []
    for item in (x.strip() for x in raw.split(",")):
        if not item:
            continue
        var, _, ref = item.partition("=")
        secret, _, key = ref.partition("/")
        if not var.isidentifier() or not secret or not key:
            raise ValueError(f"{item!r} is not VAR=secret/key")
        refs.append((var, _name(secret), _name(key)))
    return tuple(refs)


def _token_list(raw: str) -> str:
    """Check the shape of VTX_API_TOKENS (parsed by vtx.api.auth): NAME:SHA256[:EXPIRES],..."""
    from vtx.core.tokens import parse_token_list

    parse_token_list(raw)
    return raw


def _host_port(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port")
    return raw


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw

    return parse


def _name(raw: str) -> str:
    if not raw or not all(c.isalnum() or c in "-_." for c in raw):
        raise ValueError("must be a non-empty name of letters, digits, '-', '_' or '.'")
    return raw


def _names(raw: str) -> tuple[str, ...]:
    """Comma-separated token names."""
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    for n in names:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", n):
            raise ValueError(f"{n!r} is not a token name (letters, digits, '.', '_', '-')")
    return names


def setting(
    env: str,
    parse: Callable[[str], Any],
    default: Any = None,
    *,
    secret: bool = False,
    empty: Any = "",
) -> Any:
    """Declare a field read from the environment variable ``env``; when it is unset and its
    default is ``""``, the field holds ``empty``."""
    return field(
        metadata={"env": env, "parse": parse, "secret": secret, "default": default, "empty": empty}
    )


@dataclass(frozen=True)
class Settings:
    """The whole configuration of vtx; see the README's table of settings."""

    database_url: Secret = setting("VTX_DATABASE_URL", str, secret=True)
    s3_endpoint: str = setting("VTX_S3_ENDPOINT", _url(("http", "https")))
    s3_public_endpoint: str = setting("VTX_S3_PUBLIC_ENDPOINT", _url(("http", "https")), "")
    s3_access_key: str = setting("VTX_S3_ACCESS_KEY", str)
    s3_secret_key: Secret = setting("VTX_S3_SECRET_KEY", str, secret=True)
    s3_bucket: str = setting("VTX_S3_BUCKET", _name, "media-videos")
    s3_region: str = setting("VTX_S3_REGION", _name, "us-east-1")
    s3_addressing_style: str = setting(
        "VTX_S3_ADDRESSING_STYLE", _choice("path", "virtual"), "path"
    )
    pulsar_url: str = setting("VTX_PULSAR_URL", _url(("pulsar", "pulsar+ssl")))
    pulsar_admin_url: str = setting("VTX_PULSAR_ADMIN_URL", _url(("http", "https")), "")
    pulsar_token: Secret = setting("VTX_PULSAR_TOKEN", str, "", secret=True)
    pulsar_tenant: str = setting("VTX_PULSAR_TENANT", _name, "public")
    pulsar_namespace: str = setting("VTX_PULSAR_NAMESPACE", _name, "default")
    ipfs_api_url: str = setting("VTX_IPFS_API_URL", _url(("http", "https")))
    ipfs_gateway_url: str = setting("VTX_IPFS_GATEWAY_URL", _url(("http", "https")), "")
    ipfs_api_token: Secret = setting("VTX_IPFS_API_TOKEN", str, "", secret=True)
    namespace: str = setting("VTX_NAMESPACE", _name, "default")
    request_timeout_s: int = setting("VTX_REQUEST_TIMEOUT_SECONDS", _positive_int, "10")
    max_source_seconds: int = setting("VTX_MAX_SOURCE_SECONDS", _positive_int, "14400")
    max_source_width: int = setting("VTX_MAX_SOURCE_WIDTH", _positive_int, "7680")
    max_source_height: int = setting("VTX_MAX_SOURCE_HEIGHT", _positive_int, "4320")
    max_source_fps: int = setting("VTX_MAX_SOURCE_FPS", _positive_int, "240")
    max_output_fps: int = setting("VTX_MAX_OUTPUT_FPS", _positive_int, "60")
    # A video with several audio tracks gets an audio rendition for each, up to this many.
    max_audio_tracks: int = setting("VTX_MAX_AUDIO_TRACKS", _int_from(1, MAX_AUDIO_TRACKS), "4")
    # Each text subtitle track (SRT, ASS, mov_text, WebVTT) becomes a WebVTT rendition, up to
    # this many (0: none).
    max_subtitle_tracks: int = setting(
        "VTX_MAX_SUBTITLE_TRACKS", _int_from(0, MAX_SUBTITLE_TRACKS), "4"
    )
    upload_retry_seconds: int = setting("VTX_UPLOAD_RETRY_SECONDS", _positive_int, "300")
    status_patch_seconds: int = setting("VTX_STATUS_PATCH_SECONDS", _positive_int, "3")
    max_running_jobs: int = setting("VTX_MAX_RUNNING_JOBS", _positive_int, "4")
    wake_on_job_end: bool = setting("VTX_WAKE_ON_JOB_END", _bool, "true")
    stall_seconds: int = setting("VTX_STALL_SECONDS", _positive_int, "300")
    # A job pod on a node that is unreachable or not Ready this long is evicted (lost.py).
    node_lost_seconds: int = setting("VTX_NODE_LOST_SECONDS", _positive_int, "60")
    redo_limit: int = setting("VTX_REDO_LIMIT", _non_negative_int, "2")
    # A source longer than this (seconds; 0: never) is split into time ranges encoded side by
    # side on the nodes (vtx.core.ranges), up to max_ranges of them, none shorter than
    # min_range_seconds.
    split_seconds: int = setting("VTX_SPLIT_SECONDS", _non_negative_int, "120")
    max_ranges: int = setting("VTX_MAX_RANGES", _positive_int, "16")
    min_range_seconds: int = setting("VTX_MIN_RANGE_SECONDS", _positive_int, "30")
    probe_retry_limit: int = setting("VTX_PROBE_RETRY_LIMIT", _positive_int, "5")
    probe_timeout_s: int = setting("VTX_PROBE_TIMEOUT_SECONDS", _positive_int, "60")
    probe_memory_mb: int = setting("VTX_PROBE_MEMORY_MB", _positive_int, "1024")
    metrics_address: str = setting("VTX_METRICS_ADDRESS", _host_port, "127.0.0.1:9108")
    job_image: str = setting("VTX_JOB_IMAGE", str, "localhost/vtx-job:0.1.0")
    job_image_pull_policy: str = setting(
        "VTX_JOB_IMAGE_PULL_POLICY", _choice("IfNotPresent", "Always", "Never"), "IfNotPresent"
    )
    job_secret: str = setting("VTX_JOB_SECRET", _name, "")
    job_configmap: str = setting("VTX_JOB_CONFIGMAP", _name, "")
    job_secret_env: tuple[tuple[str, str, str], ...] = setting(
        "VTX_JOB_SECRET_ENV", _secret_refs, "", empty=()
    )
    job_service_account: str = setting("VTX_JOB_SERVICE_ACCOUNT", _name, "vtx-jobrunner")
    job_cpu_request: str = setting("VTX_JOB_CPU_REQUEST", str, "500m")
    job_cpu_limit: str = setting("VTX_JOB_CPU_LIMIT", str, "2")
    # An ingest pod streams the original to IPFS (Kubo hashes it): it needs little CPU, and
    # asking for a transcode's share would keep transcode pods from being scheduled.
    ingest_cpu_request: str = setting("VTX_INGEST_CPU_REQUEST", str, "100m")
    job_memory_request: str = setting("VTX_JOB_MEMORY_REQUEST", str, "512Mi")
    job_memory_limit: str = setting("VTX_JOB_MEMORY_LIMIT", str, "2Gi")
    job_scratch_limit: str = setting("VTX_JOB_SCRATCH_LIMIT", str, "4Gi")
    job_backoff_limit: int = setting("VTX_JOB_BACKOFF_LIMIT", _non_negative_int, "3")
    job_ttl_seconds: int = setting("VTX_JOB_TTL_SECONDS", _positive_int, "3600")
    job_deadline_factor: int = setting("VTX_JOB_DEADLINE_FACTOR", _positive_int, "10")
    # The API
    api_address: str = setting("VTX_API_ADDRESS", _host_port, "127.0.0.1:8000")
    api_public_url: str = setting("VTX_API_PUBLIC_URL", _url(("http", "https")), "")
    api_tokens: Secret = setting("VTX_API_TOKENS", _token_list, "", secret=True)
    api_open_reads: bool = setting("VTX_API_OPEN_READS", _bool, "true")
    api_admins: tuple[str, ...] = setting("VTX_API_ADMINS", _names, "", empty=())
    cors_origins: tuple[str, ...] = setting("VTX_CORS_ORIGINS", _origins, "", empty=())
    max_upload_bytes: int = setting("VTX_MAX_UPLOAD_BYTES", _positive_int, str(10 * GIB))
    multipart_threshold: int = setting("VTX_MULTIPART_THRESHOLD", _positive_int, str(64 * MIB))
    upload_part_size: int = setting("VTX_UPLOAD_PART_SIZE", _part_size, str(16 * MIB))
    upload_url_seconds: int = setting("VTX_UPLOAD_URL_SECONDS", _positive_int, "3600")
    playback_url_seconds: int = setting("VTX_PLAYBACK_URL_SECONDS", _positive_int, "21600")
    ws_queue: int = setting("VTX_WS_QUEUE", _positive_int, "256")
    ws_heartbeat_seconds: int = setting("VTX_WS_HEARTBEAT_SECONDS", _positive_int, "15")
    # Webhooks: deliveries are retried from VTX_WEBHOOK_FIRST_RETRY_SECONDS on, doubling to an
    # hour between tries, for a day. URLs resolving to private, loopback or link-local addresses
    # are refused unless VTX_WEBHOOK_ALLOW_PRIVATE (a receiver inside the cluster).
    webhook_allow_private: bool = setting("VTX_WEBHOOK_ALLOW_PRIVATE", _bool, "false")
    webhook_first_retry_s: int = setting("VTX_WEBHOOK_FIRST_RETRY_SECONDS", _positive_int, "5")
    webhook_timeout_s: int = setting("VTX_WEBHOOK_TIMEOUT_SECONDS", _positive_int, "10")
    webhook_max_endpoints: int = setting("VTX_WEBHOOK_MAX_ENDPOINTS", _positive_int, "10")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``env`` (default: the process environment)."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            meta = f.metadata
            raw = source.get(meta["env"])
            if raw is None or raw == "":
                if meta["default"] is None:
                    raise SettingsError(f"{meta['env']} is required but not set")
                raw = meta["default"]
                if raw == "":
                    values[f.name] = Secret("") if meta["secret"] else meta["empty"]
                    continue
            try:
                value = meta["parse"](raw)
            except ValueError as exc:
                shown = "<secret>" if meta["secret"] else repr(raw)
                raise SettingsError(f"{meta['env']}={shown}: {exc}") from None
            values[f.name] = Secret(value) if meta["secret"] else value
        settings = cls(**values)
        if not settings.s3_public_endpoint:
            settings = dataclasses.replace(settings, s3_public_endpoint=settings.s3_endpoint)
        return settings
