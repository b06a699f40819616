"""Round trips through every server the stack runs, from wherever this script runs.

Run on the host and inside a pod (by tests/integration/test_stack.py); prints one JSON object
with what each server gave back, for the test to compare.
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import psycopg2
import pulsar
from psycopg2 import sql

from vtx.core.objects import s3_client
from vtx.core.settings import Settings


def http(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> bytes:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
        body: bytes = resp.read()
        return body


def s3_roundtrip(settings: Settings, payload: bytes) -> dict[str, Any]:
    s3 = s3_client(settings)
    key = f"roundtrip/{uuid.uuid4()}"
    put_url = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": settings.s3_bucket, "Key": key, "ContentLength": len(payload)},
        ExpiresIn=300,
    )
    http("PUT", put_url, payload)
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": settings.s3_bucket, "Key": key}, ExpiresIn=300
    )
    got = http("GET", get_url)
    s3.delete_object(Bucket=settings.s3_bucket, Key=key)
    return {"same_bytes": got == payload, "size": len(got)}


def pulsar_roundtrip(settings: Settings, payload: bytes) -> dict[str, Any]:
    client = pulsar.Client(
        settings.pulsar_url,
        operation_timeout_seconds=30,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
    )
    topic = f"persistent://{settings.pulsar_tenant}/{settings.pulsar_namespace}/roundtrip-{uuid.uuid4().hex}"
    try:
        consumer = client.subscribe(
            topic, "roundtrip", initial_position=pulsar.InitialPosition.Earliest
        )
        producer = client.create_producer(topic)
        producer.send(payload)
        msg = consumer.receive(timeout_millis=30_000)
        consumer.acknowledge(msg)
        return {"same_bytes": msg.data() == payload, "topic": topic}
    finally:
        client.close()


def ipfs_roundtrip(settings: Settings, payload: bytes) -> dict[str, Any]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="blob"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    auth = {"Authorization": f"Bearer {settings.ipfs_api_token.value}"}
    added = json.loads(
        http(
            "POST",
            f"{settings.ipfs_api_url}/api/v0/add?cid-version=1&pin=true",
            body,
            {"Content-Type": f"multipart/form-data; boundary={boundary}", **auth},
        )
    )
    cid = added["Hash"]
    got = http("POST", f"{settings.ipfs_api_url}/api/v0/cat?arg={cid}", None, auth)
    return {"cid": cid, "same_bytes": got == payload}


def postgres_conflict(settings: Settings) -> dict[str, Any]:
    """Two serializable transactions that each read what the other writes: one must fail."""
    table = sql.Identifier(f"roundtrip_{uuid.uuid4().hex[:8]}")
    setup = psycopg2.connect(settings.database_url.value)
    setup.autocommit = True
    with setup.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TABLE {} (id BIGINT PRIMARY KEY, oncall BOOLEAN NOT NULL)").format(
                table
            )
        )
        cur.execute(sql.SQL("INSERT INTO {} VALUES (1, true), (2, true)").format(table))
    a, b = (
        psycopg2.connect(settings.database_url.value),
        psycopg2.connect(settings.database_url.value),
    )
    outcome: dict[str, Any] = {}
    try:
        with a.cursor() as ca, b.cursor() as cb:
            ca.execute("SHOW transaction_isolation")
            row = ca.fetchone()
            outcome["isolation"] = row[0] if row else None
            ca.execute(sql.SQL("SELECT count(*) FROM {} WHERE oncall").format(table))
            cb.execute(sql.SQL("SELECT count(*) FROM {} WHERE oncall").format(table))
            ca.execute(sql.SQL("UPDATE {} SET oncall = false WHERE id = 1").format(table))
            cb.execute(sql.SQL("UPDATE {} SET oncall = false WHERE id = 2").format(table))
            a.commit()
            try:
                b.commit()
                outcome["second_commit"] = "committed"
            except psycopg2.Error as exc:
                outcome["second_commit"] = exc.pgcode
    finally:
        a.close()
        b.close()
        with setup.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE {}").format(table))
        setup.close()
    return outcome


def main() -> None:
    settings = Settings.from_env()
    payload = os.urandom(256 * 1024)
    results: dict[str, Any] = {}
    checks: dict[str, Callable[[], dict[str, Any]]] = {
        "s3": lambda: s3_roundtrip(settings, payload),
        "pulsar": lambda: pulsar_roundtrip(settings, payload[:4096]),
        "ipfs": lambda: ipfs_roundtrip(settings, payload),
        "postgres": lambda: postgres_conflict(settings),
    }
    for name, fn in checks.items():
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print("ROUNDTRIP " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
