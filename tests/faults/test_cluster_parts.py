"""A part of the cluster goes away: the API server crashes while uploads are completed (each
upload is accepted, and the operator's queue intake creates its resource once the API server is
back), and the node's containerd is restarted while Jobs run."""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.harness import EventLog, check_invariants, clips, elapsed, record
from tests.services import Process
from tests.stack import kubectl, restart_missing_parts, stop_part, wait_until
from tests.uploads import upload_all, views, wait_finished
from vtx.core.db import Database
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore

pytestmark = pytest.mark.stack
OUTAGE_S = 20


def test_kube_apiserver_down_when_uploads_are_completed(
    ns: str, api: Process, operator: Process, db: Database, store: ObjectStore,
    ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    sources = clips(tmp_path_factory.mktemp("clips"), 2, first_tone=1200)
    pins_before = ipfs.recursive_pins()
    operator.start()
    with EventLog(api) as told:
        began = time.monotonic()
        stop_part("kube-apiserver", sig=signal.SIGKILL)  # a crash
        try:
            ids = upload_all(api, sources)  # each answered 202
            accepted = views(api, ids)
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))
        finally:
            restart_missing_parts()
        assert {v["status"] for v in accepted.values()} == {"uploaded"}, accepted
        wait_finished(api, ids, timeout=300, operator=operator)
        healed = elapsed(began)
        created = operator.tail(200_000).count("intake: created")
        assert created == len(ids), f"the intake created {created} of {len(ids)} resources"
        counts = check_invariants(ids, ns=ns, db=db, store=store, ipfs=ipfs,
                                  pins_before=pins_before, events=told)  # fmt: skip
    record(f"kube-apiserver stopped {OUTAGE_S} s", "2 uploads' `complete`", counts, healed)


def test_containerd_restarted_while_jobs_run(
    ns: str, api: Process, operator: Process, db: Database, store: ObjectStore,
    ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    sources = clips(tmp_path_factory.mktemp("clips"), 2, seconds=20, first_tone=1230)
    pins_before = ipfs.recursive_pins()
    operator.start()
    with EventLog(api) as told:
        ids = upload_all(api, sources)
        wait_until("transcode pods running", lambda: running_pods(ns) or None, timeout=180)
        began = time.monotonic()
        stop_part("containerd", group=False)
        restart_missing_parts()
        wait_finished(api, ids, timeout=400, operator=operator)
        healed = elapsed(began)
        counts = check_invariants(ids, ns=ns, db=db, store=store, ipfs=ipfs,
                                  pins_before=pins_before, events=told)  # fmt: skip
    pods = kubectl("get", "pods", "-n", ns, "-l", "vtx.dev/job-kind=transcode", "-o", "name")
    record("containerd restarted", f"2 uploads transcoding ({len(pods.split())} pods ran)",
           counts, healed)  # fmt: skip


def running_pods(ns: str) -> list[str]:
    """The transcode pods of ``ns`` whose container is running."""
    out = kubectl(
        "get", "pods", "-n", ns, "-l", "vtx.dev/job-kind=transcode", "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].state}{'\\n'}"
        "{end}",
    )  # fmt: skip
    return [line.split()[0] for line in out.splitlines() if '"running"' in line]
