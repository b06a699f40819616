"""A server of the stack goes away while uploads go through: PostgreSQL for 30 s (the API
answers 503 with a JSON error and is not ready; nothing it accepted is lost) and Pulsar while
a hundred uploads are completed (the outbox delivers every queue event when it is back)."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from tests.faults.harness import (
    EventLog,
    check_invariants,
    clips,
    elapsed,
    record,
)
from tests.services import Process
from tests.stack import restart_missing_parts, stop_part, wait_until
from tests.uploads import bearer, token, upload_all, wait_finished
from vtx.core import bus, events
from vtx.core.db import Cursor, Database
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings

pytestmark = pytest.mark.stack
OUTAGE_S = 30


def test_postgres_down_for_30s_during_uploads(
    ns: str, api: Process, operator: Process, db: Database, store: ObjectStore,
    ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    sources = clips(tmp_path_factory.mktemp("clips"), 6, first_tone=700)
    pins_before = ipfs.recursive_pins()
    operator.start()
    headers = bearer(token())
    with EventLog(api) as told:
        ids = upload_all(api, sources[:3])  # in flight when the database goes
        began = time.monotonic()
        stop_part("postgres")
        try:
            refused = requests.post(
                f"{api.url}/v1/videos", headers=headers, timeout=30,
                json={"file_name": "late.mp4", "size": 1000, "content_type": "video/mp4"},
            )  # fmt: skip
            ready = requests.get(f"{api.url}/readyz", timeout=30)
            listed = requests.get(f"{api.url}/v1/videos", headers=headers, timeout=30)
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))
        finally:
            restart_missing_parts()
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "database_unavailable", refused.text
        assert ready.status_code == 503, ready.text
        assert "database" in ready.text
        assert listed.status_code == 503, listed.text
        assert listed.json()["error"]["code"] == "database_unavailable", listed.text
        wait_until("the API ready again", lambda: requests.get(
            f"{api.url}/readyz", timeout=10).status_code == 200, timeout=60)  # fmt: skip
        ids += upload_all(api, sources[3:])
        wait_finished(api, ids, timeout=400, operator=operator)
        healed = elapsed(began)
        counts = check_invariants(ids, ns=ns, db=db, store=store, ipfs=ipfs,
                                  pins_before=pins_before, events=told)  # fmt: skip
    record("PostgreSQL stopped 30 s", "3 uploads transcoding, 3 after", counts, healed)


def test_pulsar_down_while_videos_transcode(
    ns: str, api: Process, operator: Process, db: Database, store: ObjectStore,
    ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """Pulsar goes away just after two uploads are accepted, for 20 s: the transcodes go on,
    the dashboard's WebSocket stays open, and it is told Ready for both (phase events wait in
    the outbox; the API's reader of the status topic reconnects)."""
    sources = clips(tmp_path_factory.mktemp("clips"), 2, first_tone=960)
    pins_before = ipfs.recursive_pins()
    operator.start()
    with EventLog(api) as told:
        ids = upload_all(api, sources)
        began = time.monotonic()
        stop_part("pulsar")
        try:
            time.sleep(max(0.0, 20 - (time.monotonic() - began)))
        finally:
            restart_missing_parts()
        wait_finished(api, ids, timeout=400, operator=operator)
        healed = elapsed(began)
        counts = check_invariants(ids, ns=ns, db=db, store=store, ipfs=ipfs, events=told,
                                  pins_before=pins_before, ready_timeout=120)  # fmt: skip
        assert told.reconnects == 0, "the dashboard's WebSocket was dropped"
    record("Pulsar stopped 20 s", "2 uploads transcoding (WebSocket kept open)", counts, healed)


def test_pulsar_down_while_a_hundred_uploads_complete(
    ns: str, api: Process, db: Database, settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """No operator runs here: what is checked is the queue, not the transcodes (a hundred
    of those would take this machine minutes; the other fault tests transcode)."""
    (source,) = clips(tmp_path_factory.mktemp("clips"), 1, seconds=1, first_tone=900)
    client = bus.pulsar_client(settings)
    queue = bus.topic(settings, events.TRANSCODE_QUEUE)
    consumer = bus.EventConsumer(client, queue, f"fault-{uuid.uuid4().hex[:8]}",
                                 from_earliest=False)  # fmt: skip
    try:
        stop_part("pulsar")
        began = time.monotonic()
        try:
            ids = upload_all(api, [source] * 100, workers=8)
            accepted_s = elapsed(began)
        finally:
            restart_missing_parts()
        wanted, got = set(ids), set[str]()
        deadline = time.monotonic() + 180
        while wanted - got and time.monotonic() < deadline:
            received = consumer.receive(timeout_ms=5000)
            if received is None:
                continue
            event, msg = received
            consumer.ack(msg)
            if isinstance(event, events.TranscodeRequested) and event.video_id in wanted:
                got.add(event.video_id)
        healed = elapsed(began)
        assert wanted - got == set(), f"{len(wanted - got)} queue events never arrived"

        # The relay marks a batch sent once the broker has taken all of it.
        def all_sent() -> bool:
            return db.transaction(lambda cur: _unsent(cur, ids)) == 0

        wait_until("the outbox rows of these uploads marked sent", all_sent, timeout=60)
    finally:
        consumer.close()
        client.close()
    assert len(ids) == 100
    record("Pulsar stopped", f"100 completes (accepted in {accepted_s} s)",
           {"uploads": len(ids), "lost": len(wanted - got), "duplicated": 0}, healed)  # fmt: skip


def _unsent(cur: Cursor, ids: list[str]) -> int:
    cur.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND key = ANY(%s)", (ids,))
    row = cur.fetchone()
    assert row is not None
    return int(row[0])
