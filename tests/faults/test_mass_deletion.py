"""A thousand resources created at once, and deleted at once when a fifth of them are Queued (the
rest being probed or not yet seen), with the operator sent SIGTERM halfway through the deletion:
every finalizer runs and every resource goes, no source is probed twice nor once its resource is
being deleted, and the operator stops within 10 s of SIGTERM. Their Jobs' pods may not start
here (a ResourceQuota of no pods): what is tested is the operator and the control plane, not this
node running a thousand tiny encodes."""

from __future__ import annotations

import collections
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client

from tests.faults.harness import clips, elapsed, record
from tests.services import PROBE_LINE, Process
from tests.stack import apply, wait_until
from vtx.core import media
from vtx.core import resource as vt
from vtx.core.db import Cursor, Database
from vtx.core.kube import load_kube_config
from vtx.core.objects import ObjectStore

pytestmark = pytest.mark.stack
COUNT = 1000
QUEUED = 200
IN_FLIGHT = 8  # steps the operator runs at once: those already probing when the delete came
EXIT_DEADLINE_S = 10


def test_a_thousand_resources_deleted_at_once_all_go(
    ns: str, operator: Process, db: Database, store: ObjectStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    (clip,) = clips(tmp_path_factory.mktemp("clips"), 1, seconds=1, first_tone=1400)
    data, size = clip.read_bytes(), clip.stat().st_size
    ids = [str(uuid.uuid4()) for _ in range(COUNT)]
    keys = {vid: f"{media.video_prefix(vid)}/source/{clip.name}" for vid in ids}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda v: store.put_bytes(keys[v], data, content_type="video/mp4"), ids))

    def rows(cur: Cursor) -> None:
        cur.executemany(
            "INSERT INTO videos (id, file_name, file_path, content_type, file_size,"
            " upload_status) VALUES (%s, %s, %s, 'video/mp4', %s, 'uploaded')",
            [(vid, clip.name, keys[vid], size) for vid in ids],
        )

    db.transaction(rows)
    quota = {"name": "no-pods", "namespace": ns}
    apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": quota,
           "spec": {"hard": {"pods": "0"}}})  # fmt: skip
    load_kube_config()  # the stack's cluster: the session's kubeconfig fixture points there
    custom: Any = client.CustomObjectsApi()
    operator.start()
    began = time.monotonic()
    bodies = [
        vt.build_resource(vt.VideoTranscodeSpec(video_id=v, source=vt.SourceRef(key=keys[v],
                                                                             size=size)), ns)
        for v in ids
    ]  # fmt: skip
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda body: custom.create_namespaced_custom_object(
            vt.GROUP, vt.VERSION, ns, vt.PLURAL, body), bodies))  # fmt: skip
    created_s = elapsed(began)

    def queued(cur: Cursor) -> int:
        cur.execute("SELECT count(*) FROM videos WHERE id = ANY(%s::UUID[]) AND phase IN"
                    " ('Queued', 'Transcoding')", (ids,))  # fmt: skip
        row = cur.fetchone()
        return int(row[0]) if row else 0

    wait_until(f"{QUEUED} resources Queued", lambda: db.transaction(queued) >= QUEUED or None,
               timeout=300, every=1)  # fmt: skip
    deleting = time.monotonic()
    custom.delete_collection_namespaced_custom_object(vt.GROUP, vt.VERSION, ns, vt.PLURAL)
    marked = len(operator.log.read_text(errors="replace"))  # every resource is being deleted

    def left() -> int:
        items = custom.list_namespaced_custom_object(vt.GROUP, vt.VERSION, ns, vt.PLURAL)["items"]
        return len(items)

    wait_until("half of the resources to go", lambda: left() <= COUNT // 2 or None,
               timeout=600, every=1)  # fmt: skip
    proc = operator.proc
    assert proc is not None
    term = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    wait_until(f"the operator to exit after SIGTERM ({left()} resources left)",
               lambda: proc.poll() is not None, timeout=60, every=0.1)  # fmt: skip
    exit_s = time.monotonic() - term
    assert exit_s <= EXIT_DEADLINE_S, f"the operator took {exit_s:.1f}s to stop after SIGTERM"
    operator.start()
    wait_until("every resource to go", lambda: left() == 0 or None, timeout=900, every=2)
    deleted_s = elapsed(deleting)

    log = operator.log.read_text(errors="replace")
    # A source that could not be read is probed again (its next try); one that was read, never.
    probes = collections.Counter(PROBE_LINE.findall(log))
    twice = {probe: n for probe, n in probes.items() if n > 1}
    assert twice == {}, f"sources probed twice for the same try: {twice}"
    assert {vid for vid, _ in probes} <= set(ids)
    retries = sum(1 for _, tries in probes if tries != "1")
    late = len(PROBE_LINE.findall(log[marked:]))
    assert late <= IN_FLIGHT, f"{late} probes started after every resource was being deleted"

    def claimed(cur: Cursor) -> int:
        cur.execute(
            "SELECT count(*) FROM videos WHERE id = ANY(%s::UUID[]) AND resource IS NOT NULL",
            (ids,),
        )
        row = cur.fetchone()
        return int(row[0]) if row else -1

    assert db.transaction(claimed) == 0, "every finalizer released its video"
    record(
        f"{COUNT} resources deleted at once, SIGTERM halfway",
        f"created in {created_s} s; deleted when {QUEUED} Queued; {sum(probes.values())}"
        f" probes ({retries} retries, {late} after the delete); operator stopped"
        f" {exit_s:.1f} s after SIGTERM",
        {"uploads": COUNT, "lost": 0, "duplicated": len(twice)},
        deleted_s,
    )
