"""A jobrunner pod dies (SIGKILL) at chosen points of its work: after the encode, before its
last segments are uploaded; and after everything is uploaded and recorded, before its last
report. The Job's retry does the work again; the video ends Ready once, whole, with nothing
left over. (A pod deleted mid-encode: tests/integration/test_operator.py.)"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import (
    EventLog,
    check_invariants,
    clips,
    elapsed,
    record,
)
from tests.services import Process
from tests.stack import kubectl, wait_until
from tests.uploads import upload_all, wait_finished
from vtx.core.db import Database
from vtx.core.failpoints import ENV
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore
from vtx.core.resource import resource_name
from vtx.operator.jobs import job_name

pytestmark = pytest.mark.stack


def arm_jobs(ns: str, value: str) -> None:
    """Pods created from now on get ``VTX_FAILPOINTS=value`` (through the jobrunner's Secret)."""
    patch = '{"stringData": {"%s": "%s"}}' % (ENV, value)  # noqa: UP031 - JSON braces
    kubectl("patch", "secret", "vtx-jobrunner", "-n", ns, "--type=merge", "-p", patch)


def paused_pod(ns: str, job: str, point: str) -> str | None:
    """The pod of ``job`` that has stopped at ``point``, if one has."""
    for pod in kubectl("get", "pods", "-n", ns, "-l", f"job-name={job}", "-o", "name").split():
        logs = kubectl("logs", "-n", ns, pod, check=False)
        if f"failpoint {point}: pause" in logs:
            return pod
    return None


@pytest.mark.parametrize("point", ["jobrunner.last-segment", "jobrunner.recorded"])
def test_a_jobrunner_killed_at_a_point_is_redone_once(
    point: str, ns: str, api: Process, operator: Process, db: Database, store: ObjectStore,
    ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    tone = {"jobrunner.last-segment": 600, "jobrunner.recorded": 630}[point]
    (source,) = clips(tmp_path_factory.mktemp("clips"), 1, seconds=6, first_tone=tone)
    pins_before = ipfs.recursive_pins()
    arm_jobs(ns, f"{point}=pause")
    operator.start()
    try:
        with EventLog(api) as told:
            (vid,) = upload_all(api, [source])
            began = time.monotonic()
            job = job_name(resource_name(vid), "transcode", ["480p"])
            pod = wait_until(f"a pod of {job} stopped at {point}",
                             lambda: paused_pod(ns, job, point), timeout=240)  # fmt: skip
            arm_jobs(ns, "")  # the retry runs clean
            kubectl("delete", "-n", ns, pod, "--grace-period=0", "--force")
            wait_finished(api, [vid], timeout=300, operator=operator)
            healed = elapsed(began)
            counts = check_invariants([vid], ns=ns, db=db, store=store, ipfs=ipfs,
                                      pins_before=pins_before, events=told)  # fmt: skip
    finally:
        arm_jobs(ns, "")
    record("jobrunner pod SIGKILL", point, counts, healed)
