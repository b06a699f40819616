"""`make down`, `make up`, a second `make up`, and `make up` after a crash left kernel state."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.stack import REPO, STATE, kubectl, stack_env

pytestmark = [pytest.mark.stack, pytest.mark.restarts_stack]


def run(*cmd: str, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(cmd), cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def kernel_state() -> dict[str, bool]:
    mounts = Path("/proc/self/mounts").read_text()
    chains = subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout
    return {
        "bridge": subprocess.run(["ip", "link", "show", "vtx0"], capture_output=True).returncode
        == 0,
        "kube_chains": "-N KUBE-" in chains,
        "mounts": f" {STATE}/" in mounts or " /run/vtx/" in mounts,
    }


def assert_stack_works() -> None:
    run("make", "-s", "status", timeout=60)  # exits non-zero when any part is not running
    node = kubectl(
        "get", "node", "-o", "jsonpath={.items[0].status.conditions[?(@.type=='Ready')].status}"
    )
    assert node == "True"
    doctor = subprocess.run(
        ["vtx", "doctor"],
        env={**os.environ, **stack_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


def test_down_then_up_then_up_again() -> None:
    run("make", "-s", "down", timeout=180)
    assert kernel_state() == {"bridge": False, "kube_chains": False, "mounts": False}
    run("make", "-s", "up", timeout=900)
    again = run("make", "-s", "up", timeout=120)
    assert "already up" in again.stderr
    assert_stack_works()


def test_up_after_a_crash_that_left_kernel_state() -> None:
    # A crash: every process killed at once, nothing cleaned up.
    pids = [int(f.read_text()) for f in (STATE / "pids").glob("*.pid")]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "killed stack processes still exist after 30s"
        time.sleep(0.1)
    assert kernel_state()["bridge"], "the crash should leave the bridge behind"
    run("make", "-s", "up", timeout=900)
    assert_stack_works()
