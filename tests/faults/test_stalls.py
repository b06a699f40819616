"""The stall watchdog tells a dead pod from a slow one. A pod whose network to S3 is throttled
spends many stall times uploading its segments and its MP4 while its progress stands at the
uploading mark: the bytes it reports storing keep it alive, and it is not replaced. (A pod
whose FFmpeg is frozen with SIGSTOP is replaced: tests/integration/test_operator.py.)"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.faults.harness import EventLog, check_invariants, clips, elapsed, record
from tests.services import Process
from tests.stack import kubectl, wait_until
from tests.uploads import upload_all, wait_finished
from vtx.core.db import Database
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore
from vtx.core.resource import resource_name

pytestmark = pytest.mark.stack
STALL_S = 8  # the operator's stall time here: more than a pod takes to start and probe
S3_RATE = "512kbit"  # what the pod may send to S3 (port 7070): an MP4 of 2 MB takes 32 s
S3_PORT = 7070


def jobrunner_pid(vid: str) -> int | None:
    """The host PID of the transcode jobrunner of ``vid`` (pods' processes are this host's)."""
    found = subprocess.run(["pgrep", "-f", f"jobrunner transcode --video-id {vid}"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    pids = found.stdout.split()
    return int(pids[0]) if pids else None


def throttle_s3(pid: int) -> None:
    """Limit what the pod of ``pid`` sends to S3 (an HTB class on its eth0 for the S3 port);
    everything else it sends goes unshaped. The class's queue and the pod's TCP send buffers
    are kept small (10 packets, 64 KiB), so that bytes handed to a socket are bytes on their
    way: with the defaults (a 1,000-packet queue, send buffers up to 4 MiB) the kernel takes a
    2 MB file at once and drains it for half a minute, which a large file on a slow link does
    not (its bytes go at the link's pace). Run in the pod's network namespace by PID: no named
    namespace is made on the host (an ``ip netns add`` remounts /run/netns over the CNI
    plugin's namespaces, and the kubelet can then no longer remove them)."""
    for cmd in (
        "tc qdisc add dev eth0 root handle 1: htb default 10",
        f"tc class add dev eth0 parent 1: classid 1:30 htb rate {S3_RATE} ceil {S3_RATE}",
        "tc qdisc add dev eth0 parent 1:30 handle 30: pfifo limit 10",
        f"tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dport {S3_PORT}"
        " 0xffff flowid 1:30",
    ):
        pod_net(pid, cmd.split())
    pod_net(pid, ["sysctl", "-qw", "net.ipv4.tcp_wmem=4096 16384 65536"])


def pod_net(pid: int, argv: list[str]) -> None:
    """Run ``argv`` in the network namespace of the process ``pid``."""
    subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], check=True,
                       capture_output=True, timeout=10)  # fmt: skip


def test_a_slow_upload_is_not_taken_for_a_stall(
    ns: str, api: Process, operator: Process, db: Database, store: ObjectStore,
    ipfs: IpfsClient, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    (source,) = clips(tmp_path_factory.mktemp("clips"), 1, seconds=12, first_tone=1300)
    pins_before = ipfs.recursive_pins()
    operator.env["VTX_STALL_SECONDS"] = str(STALL_S)
    operator.start()
    with EventLog(api) as told:
        (vid,) = upload_all(api, [source])
        began = time.monotonic()
        pid = wait_until("the transcode pod's jobrunner", lambda: jobrunner_pid(vid), timeout=180)
        throttle_s3(pid)
        name = resource_name(vid)

        def rendition_phase() -> str:
            return kubectl("get", "videotranscode", name, "-n", ns, "-o",
                           "jsonpath={.status.renditions.480p.phase}")  # fmt: skip

        wait_until("the rendition to be Uploading", lambda: rendition_phase() == "Uploading",
                   timeout=180, every=0.2)  # fmt: skip
        uploading_from = time.monotonic()
        (view,) = wait_finished(api, [vid], timeout=400, operator=operator, every=0.5).values()
        uploading_s = time.monotonic() - uploading_from
        assert view["phase"] == "Ready", view
        assert uploading_s >= 2 * STALL_S, (
            f"the upload took {uploading_s:.0f}s: not long enough to tell a stall "
            f"({STALL_S}s) from a slow upload"
        )
        reasons = kubectl("get", "events", "-n", ns, f"--field-selector=involvedObject.name={name}",
                          "-o", "jsonpath={.items[*].reason}")  # fmt: skip
        assert "Stalled" not in reasons.split(), "the uploading pod was taken for stalled"
        attempts = kubectl("get", "videotranscode", name, "-n", ns, "-o",
                           "jsonpath={.status.renditions.480p.attempts}")  # fmt: skip
        assert attempts == "1", f"the rendition took {attempts} attempts"
        healed = elapsed(began)
        counts = check_invariants([vid], ns=ns, db=db, store=store, ipfs=ipfs,
                                  pins_before=pins_before, events=told)  # fmt: skip
    record(f"S3 throttled to {S3_RATE} (stall time {STALL_S} s)",
           f"uploading for {uploading_s:.0f} s", counts, healed)  # fmt: skip
