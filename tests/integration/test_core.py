"""The core library against the real servers: retries, the outbox, S3 and IPFS."""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.stack import restart_missing_parts, stop_part
from vtx.core import bus, events
from vtx.core.db import Cursor, Database
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import MIB, ObjectStore
from vtx.core.outbox import OutboxRelay, PublishError, write_event
from vtx.core.settings import Settings

pytestmark = pytest.mark.stack


def http(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def fetch_one(db: Database, query: str, *args: object) -> tuple[object, ...] | None:
    def work(cur: Cursor) -> tuple[object, ...] | None:
        cur.execute(query, args)
        return cur.fetchone()

    return db.transaction(work)


def test_a_serialization_conflict_is_retried_and_the_row_exists_once(db: Database) -> None:
    video_id = str(uuid.uuid4())
    both_read = threading.Barrier(2, timeout=30)
    attempts: list[str] = []

    def insert_once(who: str) -> None:
        def work(cur: Cursor) -> None:
            attempts.append(who)
            cur.execute("SELECT count(*) FROM videos WHERE id = %s", (video_id,))
            row = cur.fetchone()
            if len(attempts) <= 2:
                # First attempts: both have read "no row" before either writes.
                both_read.wait()
            if row and row[0] == 0:
                cur.execute(
                    "INSERT INTO videos (id, file_path, upload_status) VALUES (%s, %s, 'pending')"
                    " ON CONFLICT (id) DO NOTHING",
                    (video_id, f"videos/{video_id}/source/a.mp4"),
                )

        db.transaction(work, name=f"insert by {who}")

    retries_before = db.retries
    threads = [threading.Thread(target=insert_once, args=(w,)) for w in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(attempts) == 3, f"one of the two must have been retried once: {attempts}"
    assert db.retries == retries_before + 1
    assert fetch_one(db, "SELECT count(*) FROM videos WHERE id = %s", video_id) == (1,)


def test_more_threads_than_connections_wait_for_one(settings: Settings) -> None:
    """Eight threads share two connections: each transaction waits for a free one (psycopg2's
    pool on its own raises "connection pool exhausted" at the third)."""
    small = Database(settings.database_url, max_connections=2)
    done: list[int] = []
    failed: list[BaseException] = []

    def work(i: int) -> None:
        try:
            small.transaction(lambda cur: cur.execute("SELECT pg_sleep(0.2)"))
            done.append(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        small.close()
    assert failed == [], failed
    assert sorted(done) == list(range(8))


def test_an_outbox_event_written_while_pulsar_is_down_is_delivered_once_after(
    db: Database, settings: Settings
) -> None:
    topic = f"outbox-test-{uuid.uuid4().hex[:8]}"
    event = events.StatusUpdate(video_id=str(uuid.uuid4()), phase="Queued")
    client = bus.pulsar_client(settings)
    consumer = bus.EventConsumer(client, bus.topic(settings, topic), "outbox-test")
    client.close()

    stop_part("pulsar")
    try:
        db.transaction(lambda cur: write_event(cur, topic, event), name="write event")
        down_client = bus.pulsar_client(settings)
        relay = OutboxRelay(db, down_client, settings, send_timeout_ms=2000)
        with pytest.raises(PublishError):
            relay.relay_once()
        relay.close()
        down_client.close()
    finally:
        restart_missing_parts()

    client = bus.pulsar_client(settings)
    try:
        # Two relays publish the same event (a relay that died before marking it sent, and its
        # successor): the consumer hands it over once.
        for _ in range(2):
            db.transaction(
                lambda cur: cur.execute(
                    "UPDATE outbox SET sent_at = NULL WHERE id = %s", (event.id,)
                )
            )
            relay = OutboxRelay(db, client, settings)
            assert relay.relay_once() >= 1
            relay.close()
        consumer = bus.EventConsumer(client, bus.topic(settings, topic), "outbox-test")
        got = consumer.receive(timeout_ms=20_000)
        assert got is not None, "the event never arrived after Pulsar came back"
        received, msg = got
        consumer.ack(msg)
        assert received == event
        assert consumer.receive(timeout_ms=3000) is None, "the repeat must be dropped"
        sent = fetch_one(db, "SELECT sent_at IS NOT NULL FROM outbox WHERE id = %s", event.id)
        assert sent == (True,)
        consumer.close()
    finally:
        client.close()


@pytest.mark.parametrize(
    ("length", "content_type"),
    [(1000, "video/mp4"), (1024, "text/html")],
    ids=["another-length", "another-content-type"],
)
def test_a_presigned_put_refuses_another_length_or_type(
    store: ObjectStore, length: int, content_type: str
) -> None:
    key = f"test/presign/{uuid.uuid4()}"
    url = store.presign_put(key, content_type="video/mp4", content_length=1024, expires_s=60)
    status, body, _ = http("PUT", url, os.urandom(length), {"Content-Type": content_type})
    assert status == 403, body
    assert store.head(key) is None
    ok_status, _, _ = http("PUT", url, os.urandom(1024), {"Content-Type": "video/mp4"})
    assert ok_status == 200
    info = store.head(key)
    assert info is not None
    assert (info.size, info.content_type) == (1024, "video/mp4")


def test_a_multipart_upload_resumed_after_listing_parts_completes(store: ObjectStore) -> None:
    key = f"test/multipart/{uuid.uuid4()}"
    part_size = 5 * MIB
    data = os.urandom(3 * part_size + 12345)
    chunks = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    upload_id = store.create_multipart(key, content_type="video/mp4")
    # The first two parts go up, then the client "drops": it only knows the upload id.
    for number in (1, 2):
        url = store.presign_part(key, upload_id, number, expires_s=300)
        status, _, _ = http("PUT", url, chunks[number - 1])
        assert status == 200
    done = {p.number: p for p in store.list_parts(key, upload_id)}
    assert sorted(done) == [1, 2]
    assert all(done[n].size == part_size for n in (1, 2))
    etags = {n: p.etag for n, p in done.items()}
    for number in range(1, len(chunks) + 1):
        if number in done:
            continue
        status, _, headers = http(
            "PUT", store.presign_part(key, upload_id, number, expires_s=300), chunks[number - 1]
        )
        assert status == 200
        etags[number] = headers["ETag"]
    store.complete_multipart(key, upload_id, list(etags.items()))
    got = store.get_bytes(key)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert store.delete_prefix(key) == 1


def test_an_ipfs_directory_keeps_relative_paths_under_one_root_cid(
    ipfs: IpfsClient, tmp_path: Path
) -> None:
    playlist = b"#EXTM3U\n#EXT-X-VERSION:7\n" + uuid.uuid4().hex.encode()
    segment = os.urandom(300_000)
    (tmp_path / "720p" / "hls").mkdir(parents=True)
    (tmp_path / "720p" / "hls" / "index.m3u8").write_bytes(playlist)
    (tmp_path / "720p" / "hls" / "seg_00001.m4s").write_bytes(segment)
    (tmp_path / "master.m3u8").write_bytes(b"#EXTM3U\n")

    root = ipfs.add_directory(tmp_path)
    assert root.startswith("bafy"), "a CIDv1 directory"
    assert ipfs.cat(f"{root}/720p/hls/index.m3u8") == playlist
    assert ipfs.cat(f"{root}/720p/hls/seg_00001.m4s") == segment
    assert ipfs.is_pinned(root)

    # The same tree built from CIDs that are already in the node gives the same root.
    cids = {
        rel: ipfs.add_bytes((tmp_path / rel).read_bytes(), pin=False)
        for rel in ("720p/hls/index.m3u8", "720p/hls/seg_00001.m4s", "master.m3u8")
    }
    assert ipfs.directory_from_cids(cids) == root
    assert ipfs.pin_rm(root) is True
    assert ipfs.is_pinned(root) is False


def test_ipfs_errors_name_the_call(ipfs: IpfsClient) -> None:
    with pytest.raises(Exception, match=r"^ipfs cat: HTTP 500"):
        ipfs.cat("not-a-cid")
    dead = IpfsClient("http://127.0.0.1:9", timeout_s=2)
    with pytest.raises(Exception, match=r"^ipfs version: ConnectionError"):
        dead.version()
