"""S3-compatible object storage (boto3): presigned uploads, multipart with resume, reads and
deletes. Components reach storage at the internal endpoint; URLs handed to browsers and other
clients are signed for the public endpoint, since the two may be different addresses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from vtx.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024


def s3_client(settings: Settings, *, public: bool = False) -> S3Client:
    """A client for the internal endpoint, or the public one (for URLs handed to others)."""
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=settings.s3_public_endpoint if public else settings.s3_endpoint,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key.value,
        region_name=settings.s3_region,
        config=Config(
            signature_version="s3v4",
            s3={
                "addressing_style": "virtual"
                if settings.s3_addressing_style == "virtual"
                else "path"
            },
            connect_timeout=settings.request_timeout_s,
            read_timeout=settings.request_timeout_s * 3,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )
    return client


def _is_missing(exc: ClientError) -> bool:
    """Whether S3 answered that the object is not there."""
    return str(exc.response.get("Error", {}).get("Code")) in {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str | None
    etag: str


@dataclass(frozen=True)
class UploadedPart:
    number: int
    etag: str
    size: int


class ObjectStore:
    """One bucket of S3-compatible storage."""

    def __init__(self, settings: Settings, bucket: str | None = None) -> None:
        self.bucket = bucket or settings.s3_bucket
        self.client = s3_client(settings)
        self._public = s3_client(settings, public=True)

    def _signer(self, public: bool) -> S3Client:
        return self._public if public else self.client

    def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        content_length: int,
        expires_s: int,
        public: bool = True,
    ) -> str:
        """A URL for one PUT of exactly ``content_length`` bytes of ``content_type`` to ``key``.

        Both headers are signed: the server refuses a PUT with another length or type.
        """
        return self._signer(public).generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ContentType": content_type,
                "ContentLength": content_length,
            },
            ExpiresIn=expires_s,
        )

    def presign_get(self, key: str, *, expires_s: int, public: bool = True) -> str:
        return self._signer(public).generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )

    def create_multipart(self, key: str, *, content_type: str) -> str:
        """Start a multipart upload; returns its upload id."""
        resp = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )
        return resp["UploadId"]

    def presign_part(
        self, key: str, upload_id: str, part_number: int, *, expires_s: int, public: bool = True
    ) -> str:
        return self._signer(public).generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "UploadId": upload_id,
                "PartNumber": part_number,
            },
            ExpiresIn=expires_s,
        )

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes | IO[bytes]) -> str:
        """Upload one part of a multipart upload; returns its ETag."""
        resp = self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return resp["ETag"]

    def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        """The parts uploaded so far, to resume an interrupted upload."""
        parts: list[UploadedPart] = []
        marker = 0
        while True:
            resp = self.client.list_parts(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
            )
            parts.extend(
                UploadedPart(p["PartNumber"], p["ETag"], p["Size"]) for p in resp.get("Parts", [])
            )
            if not resp.get("IsTruncated"):
                return parts
            marker = resp["NextPartNumberMarker"]

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """Finish the upload from (part number, ETag) pairs."""
        completed: list[CompletedPartTypeDef] = [
            {"PartNumber": number, "ETag": etag} for number, etag in sorted(parts)
        ]
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": completed},
        )

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, type and ETag, or None when it does not exist."""
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return ObjectInfo(key, resp["ContentLength"], resp.get("ContentType"), resp["ETag"])

    def upload_file(
        self, path: Path, key: str, *, content_type: str, sent: Callable[[int], None] | None = None
    ) -> None:
        """Upload a file (multipart when large); ``sent`` is told of each chunk's bytes as
        they go (from the transfer's threads)."""
        self.client.upload_file(
            str(path), self.bucket, key, ExtraArgs={"ContentType": content_type}, Callback=sent
        )

    def upload_stream(
        self, stream: IO[bytes], key: str, *, content_type: str, part_size: int = 8 * MIB
    ) -> None:
        """Upload from a stream with memory bounded by a few parts (multipart when large)."""
        self.client.upload_fileobj(
            stream,
            self.bucket,
            key,
            ExtraArgs={"ContentType": content_type},
            Config=TransferConfig(
                multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=2
            ),
        )

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def get_head(self, key: str, size: int) -> bytes:
        """The first ``size`` bytes of the object (all of it when it is smaller)."""
        resp = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{size - 1}")
        body: bytes = resp["Body"].read()
        return body[:size]

    def get_bytes_if_there(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        try:
            return self.get_bytes(key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise

    def iter_keys(self, prefix: str) -> Iterator[str]:
        for key, _size in self.iter_sizes(prefix):
            yield key

    def iter_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under ``prefix``, a thousand per request."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], int(obj["Size"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str, *, keep: str | None = None) -> int:
        """Delete every object under ``prefix`` (which must be non-empty) but those under
        ``keep``; returns the count."""
        if not prefix.strip("/"):
            raise ValueError("refusing to delete a whole bucket: the prefix is empty")
        deleted = 0
        batch: list[Any] = []
        for key in self.iter_keys(prefix):
            if keep is not None and key.startswith(keep):
                continue
            batch.append({"Key": key})
            if len(batch) == 1000:
                deleted += self._delete(batch)
                batch = []
        if batch:
            deleted += self._delete(batch)
        return deleted

    def _delete(self, batch: list[Any]) -> int:
        resp = self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
        )
        errors = resp.get("Errors", [])
        if errors:
            first = errors[0]
            raise RuntimeError(
                f"deleting {len(errors)} objects failed, first {first.get('Key')}: "
                f"{first.get('Code')} {first.get('Message')}"
            )
        return len(batch)
