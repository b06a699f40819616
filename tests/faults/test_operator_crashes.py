"""The operator dies (SIGKILL, nothing cleaned up) at chosen steps of a resource's life, and at
random during a stream of uploads: the next operator finds its way from what the cluster, the
rows and the stores hold, and every accepted upload ends Ready exactly once and whole."""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.faults.harness import (
    EventLog,
    check_invariants,
    clips,
    elapsed,
    named_cids,
    record,
)
from tests.services import Process
from tests.stack import kubectl, wait_until
from tests.uploads import upload_all, wait_finished
from vtx.core import media as layout
from vtx.core import videos
from vtx.core.db import Database
from vtx.core.failpoints import ENV
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore
from vtx.core.resource import resource_name

pytestmark = pytest.mark.stack


def crash_at(operator: Process, point: str, timeout: float = 180) -> None:
    """Wait for the armed operator to kill itself at ``point``; then start a clean one."""
    proc = operator.proc
    assert proc is not None
    wait_until(f"the operator to die at {point}", lambda: proc.poll() is not None,
               timeout=timeout)  # fmt: skip
    assert proc.returncode == -9, operator.tail()
    assert f"failpoint {point}: kill" in operator.tail(20_000), "it died where it was meant to"
    operator.env.pop(ENV)
    operator.start()


@pytest.mark.parametrize(
    "point",
    [
        "operator.probed",
        "operator.jobs-created",
        "operator.master-written",
        "operator.ready-written",
    ],
)
def test_operator_killed_at_a_step_loses_and_repeats_nothing(
    point: str, ns: str, api: Process, operator: Process, db: Database, store: ObjectStore,
    ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    tone = {"operator.probed": 300, "operator.jobs-created": 330, "operator.master-written": 360,
            "operator.ready-written": 400}  # fmt: skip
    sources = clips(tmp_path_factory.mktemp("clips"), 2, first_tone=tone[point])
    pins_before = ipfs.recursive_pins()
    operator.env[ENV] = f"{point}=kill"
    operator.start()
    began = time.monotonic()
    with EventLog(api) as told:
        ids = upload_all(api, sources)
        crash_at(operator, point)
        wait_finished(api, ids, timeout=300, operator=operator)
        healed = elapsed(began)
        counts = check_invariants(ids, ns=ns, db=db, store=store, ipfs=ipfs,
                                  pins_before=pins_before, events=told)  # fmt: skip
    record("operator SIGKILL", point, counts, healed)


def test_operator_killed_while_deleting_a_video_finishes_the_deletion(
    ns: str, api: Process, operator: Process, db: Database, store: ObjectStore,
    ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    (source,) = clips(tmp_path_factory.mktemp("clips"), 1, first_tone=390)
    pins_before = ipfs.recursive_pins()
    operator.start()
    (vid,) = upload_all(api, [source])
    wait_finished(api, [vid], timeout=300, operator=operator)
    root = db.transaction(lambda cur: videos.master_rows(cur, vid))[videos.IPFS][1]
    assert root, f"{vid} has no IPFS root"
    name = resource_name(vid)
    kubectl("patch", "videotranscode", name, "-n", ns, "--type=merge",
            "-p", '{"spec": {"deletionPolicy": "Delete"}}')  # fmt: skip
    operator.stop()
    operator.env[ENV] = "operator.outputs-removed=kill"
    operator.start()
    began = time.monotonic()
    kubectl("delete", "videotranscode", name, "-n", ns, "--wait=false")
    crash_at(operator, "operator.outputs-removed")

    def gone() -> bool:
        return kubectl("get", "videotranscode", name, "-n", ns, "--ignore-not-found",
                       "-o", "name").strip() == ""  # fmt: skip

    wait_until(f"{name} to be deleted", gone, timeout=120)
    healed = elapsed(began)
    left = [k for k in store.iter_keys(f"{layout.video_prefix(vid)}/") if "/source/" not in k]
    assert left == [], f"outputs left in S3: {left[:5]}"
    assert not ipfs.is_pinned(root), "the root is unpinned"
    left_pinned = ipfs.recursive_pins() - pins_before - named_cids(db)  # the original stays
    assert not left_pinned, f"pins of the deleted outputs: {sorted(left_pinned)[:5]}"
    record("operator SIGKILL", "operator.outputs-removed", {"uploads": 1}, healed)


def test_twenty_random_kills_during_twenty_uploads(
    ns: str, api: Process, operator: Process, db: Database, store: ObjectStore,
    ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    seed = int(os.environ.get("VTX_FAULT_SEED") or time.time())
    rng = random.Random(seed)
    sources = clips(tmp_path_factory.mktemp("clips"), 20, first_tone=500)
    pins_before = ipfs.recursive_pins()
    operator.start()
    kills = 0
    with EventLog(api) as told:
        ids: list[str] = []
        began = time.monotonic()
        for batch in range(0, 20, 4):
            ids += upload_all(api, sources[batch : batch + 4])
            for _ in range(4):
                time.sleep(rng.uniform(0.5, 6))
                operator.kill()
                kills += 1
                operator.start()
        wait_finished(api, ids, timeout=600, operator=operator)
        healed = elapsed(began)
        counts = check_invariants(ids, ns=ns, db=db, store=store, ipfs=ipfs,
                                  pins_before=pins_before, events=told)  # fmt: skip
    assert kills == 20, f"seed {seed}"
    record("operator SIGKILL", f"20 at random (seed {seed})", counts, healed)
