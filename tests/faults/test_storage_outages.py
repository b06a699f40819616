"""A store goes away at a chosen step of a video's life: S3 while the source is probed and while
the outputs are published, Kubo while the IPFS root is built, PostgreSQL while the video is
marked complete, and S3 while a client completes its upload. The operator holds at a failpoint
(``delay``) while the test stops the server, so the step after the point meets the outage.
(S3 and Kubo stopped mid-encode, during segment uploads and adds:
tests/integration/test_jobrunner.py.)"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import EventLog, check_invariants, clips, elapsed, record
from tests.services import Process
from tests.stack import kubectl, restart_missing_parts, stop_part, wait_until
from tests.uploads import announce_and_put, complete, token, views, wait_finished
from vtx.core.db import Database
from vtx.core.failpoints import ENV
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore

pytestmark = pytest.mark.stack
OUTAGE_S = 20
HOLD_S = 5  # the failpoint's delay: the server is stopped within it

# (server, the failpoint before the step that meets the outage, what the table calls the window)
WINDOWS = {
    "s3-probe": ("versitygw", "operator.probing", "S3 stopped", "the probe"),
    "s3-publish": ("versitygw", "operator.publishing", "S3 stopped", "the publish (master)"),
    "kubo-root": ("kubo", "operator.master-written", "Kubo stopped", "the IPFS root build"),
    "postgres-publish": (
        "postgres", "operator.master-written", "PostgreSQL stopped", "the publish (rows)"
    ),
}  # fmt: skip


def outage_at_failpoint(operator: Process, point: str, part: str) -> float:
    """Wait until the operator holds at ``point``; stop ``part`` for OUTAGE_S; the start time."""
    held = f"failpoint {point}: delay"
    wait_until(f"the operator to reach {point}", lambda: held in operator.tail(50_000), timeout=240)
    began = time.monotonic()
    stop_part(part)
    try:
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))
    finally:
        restart_missing_parts()
    return began


@pytest.mark.parametrize("window", list(WINDOWS))
def test_a_store_down_at_a_step_delays_but_loses_nothing(
    window: str, ns: str, api: Process, operator: Process, db: Database, store: ObjectStore,
    ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    part, point, fault, moment = WINDOWS[window]
    tone = {"s3-probe": 1000, "s3-publish": 1030, "kubo-root": 1060, "postgres-publish": 1090}
    (source,) = clips(tmp_path_factory.mktemp("clips"), 1, first_tone=tone[window])
    pins_before = ipfs.recursive_pins()
    operator.env[ENV] = f"{point}=delay:{HOLD_S}"
    operator.start()
    with EventLog(api) as told:
        vid = announce_and_put(api, token(), source)
        complete(api, token(), vid, expect=202)
        began = outage_at_failpoint(operator, point, part)
        met = "ProbeRetry" if point == "operator.probing" else "failed with an exception"
        wait_until(f"the operator to meet the outage ({met})",
                   lambda: met in after_hold(operator, point, ns), timeout=60)  # fmt: skip
        (view,) = wait_finished(api, [vid], timeout=300, operator=operator).values()
        healed = elapsed(began)
        assert view["phase"] == "Ready", view
        counts = check_invariants([vid], ns=ns, db=db, store=store, ipfs=ipfs,
                                  pins_before=pins_before, events=told)  # fmt: skip
    record(f"{fault} {OUTAGE_S} s", moment, counts, healed)


def test_s3_down_when_an_upload_is_completed(
    ns: str, api: Process, operator: Process, db: Database, store: ObjectStore,
    ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """`complete` checks the object in S3: with S3 away it answers 503 in JSON and changes
    nothing, and the same call succeeds once S3 is back."""
    (source,) = clips(tmp_path_factory.mktemp("clips"), 1, first_tone=1120)
    pins_before = ipfs.recursive_pins()
    operator.start()
    with EventLog(api) as told:
        vid = announce_and_put(api, token(), source)
        began = time.monotonic()
        stop_part("versitygw")
        try:
            refused = complete(api, token(), vid, expect=503)
        finally:
            restart_missing_parts()
        assert refused["error"]["code"] == "storage_unavailable", refused
        still = views(api, [vid])[vid]
        assert still["status"] == "awaiting_upload", still
        complete(api, token(), vid, expect=202)
        (view,) = wait_finished(api, [vid], timeout=300, operator=operator).values()
        healed = elapsed(began)
        assert view["phase"] == "Ready", view
        counts = check_invariants([vid], ns=ns, db=db, store=store, ipfs=ipfs,
                                  pins_before=pins_before, events=told)  # fmt: skip
    record("S3 stopped", "an upload's `complete` (503, then 202)", counts, healed)


def after_hold(operator: Process, point: str, ns: str) -> str:
    """What the operator logged after it held at ``point``, and the resources' event reasons."""
    log = operator.tail(200_000).split(f"failpoint {point}: delay", 1)[-1]
    reasons = kubectl("get", "events", "-n", ns, "-o", "jsonpath={.items[*].reason}")
    return f"{log}\n{reasons}"
