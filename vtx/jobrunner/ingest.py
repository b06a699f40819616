"""Ingest mode: stream the original from S3 into IPFS (CIDv1, pinned) while hashing it, and
record ``videos.ipfs_cid`` and ``videos.checksum``. Nothing is written to local disk."""

from __future__ import annotations

import hashlib
import logging
from typing import IO, Any

from vtx.core import videos
from vtx.core.db import Database
from vtx.core.ipfs import IpfsClient
from vtx.core.media import EXIT_INVALID_INPUT, EXIT_RETRYABLE
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings
from vtx.jobrunner.retry import StorageUnavailable, with_retry

log = logging.getLogger(__name__)


class HashingReader:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._inner.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data


def ingest_once(store: ObjectStore, ipfs: IpfsClient, key: str) -> tuple[str, str, int]:
    """(CID, SHA-256 hex, size) of the object at ``key``, streamed once."""
    body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"]
    reader = HashingReader(body)
    try:
        stream: IO[bytes] = reader  # type: ignore[assignment]
        cid = ipfs.add_stream(stream, name=key.rsplit("/", 1)[-1])
    finally:
        body.close()
    return cid, reader.sha256.hexdigest(), reader.size


def run_ingest(video_id: str, source_key: str, settings: Settings, size: int | None = None) -> int:
    """Pin the original and record its checksum; exit codes as the transcode's. When ``size``
    (the size announced at upload) is given, an original of another size is not recorded: it
    is not the file that was uploaded."""
    store = ObjectStore(settings)
    ipfs = IpfsClient(
        settings.ipfs_api_url,
        token=settings.ipfs_api_token.value,
        timeout_s=max(120, settings.request_timeout_s),
    )
    db = Database(settings.database_url, max_connections=1)
    try:
        cid, checksum, got = with_retry(
            lambda: ingest_once(store, ipfs, source_key),
            f"ingest {source_key}",
            budget_s=settings.upload_retry_seconds,
        )
        if size is not None and got != size:
            log.error("the original holds %d bytes but %d were announced: not recorded", got, size)
            return EXIT_INVALID_INPUT

        with_retry(
            lambda: db.transaction(
                lambda cur: videos.record_original(cur, video_id, cid, f"sha256:{checksum}"),
                name="record ingest",
            ),
            "record ingest",
            budget_s=settings.upload_retry_seconds,
        )
        log.info("ingested %s: %d bytes, cid %s, sha256 %s", source_key, got, cid, checksum)
        print(f"cid={cid} sha256={checksum} size={got}", flush=True)
        return 0
    except StorageUnavailable as exc:
        log.error("will retry: %s", exc)
        return EXIT_RETRYABLE
    finally:
        ipfs.close()
        db.close()
