"""`vtx doctor`: does every configured server answer?"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from vtx.core.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float


def _http_json(url: str, timeout: float, method: str = "GET") -> object:
    req = urllib.request.Request(url, method=method)  # noqa: S310 - URLs come from settings
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
        return json.loads(resp.read() or b"null")


def check_kubernetes(settings: Settings) -> str:
    from kubernetes import client

    from vtx.core.kube import load_kube_config

    load_kube_config()
    info = client.VersionApi().get_code(_request_timeout=settings.request_timeout_s)
    return f"API server {info.git_version}"


def check_postgres(settings: Settings) -> str:
    import psycopg2

    conn = psycopg2.connect(settings.database_url.value, connect_timeout=settings.request_timeout_s)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version(), current_setting('default_transaction_isolation')")
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    return f"{str(row[0]).split(' on ')[0]}, isolation {row[1]}"


def check_s3(settings: Settings) -> str:
    from vtx.core.objects import s3_client

    s3_client(settings).head_bucket(Bucket=settings.s3_bucket)
    return f"bucket {settings.s3_bucket} at {settings.s3_endpoint}"


def check_pulsar(settings: Settings) -> str:
    import pulsar

    client = pulsar.Client(
        settings.pulsar_url,
        operation_timeout_seconds=settings.request_timeout_s,
        connection_timeout_ms=settings.request_timeout_s * 1000,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
    )
    try:
        topic = f"persistent://{settings.pulsar_tenant}/{settings.pulsar_namespace}/video-status-updates"
        partitions = client.get_topic_partitions(topic)
    finally:
        client.close()
    return f"broker {settings.pulsar_url}, topic video-status-updates ({len(partitions)} partition)"


def check_ipfs(settings: Settings) -> str:
    from vtx.core.ipfs import IpfsClient

    client = IpfsClient(
        settings.ipfs_api_url, token=settings.ipfs_api_token.value,
        timeout_s=settings.request_timeout_s,
    )  # fmt: skip
    try:
        return f"Kubo {client.version()}"
    finally:
        client.close()


CHECKS: dict[str, Callable[[Settings], str]] = {
    "kubernetes": check_kubernetes,
    "postgres": check_postgres,
    "s3": check_s3,
    "pulsar": check_pulsar,
    "ipfs": check_ipfs,
}


def run_checks(settings: Settings) -> list[Check]:
    results = []
    for name, fn in CHECKS.items():
        start = time.monotonic()
        try:
            results.append(Check(name, True, fn(settings), time.monotonic() - start))
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none is fatal here
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            results.append(Check(name, False, detail, time.monotonic() - start))
    return results
