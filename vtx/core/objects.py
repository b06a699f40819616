"""S3-compatible object storage (boto3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from vtx.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def s3_client(settings: Settings, *, public: bool = False) -> S3Client:
    """A client for the internal endpoint, or the public one (for URLs handed to browsers)."""
    endpoint = settings.s3_public_endpoint if public else settings.s3_endpoint
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=endpoint,
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
