"""`vtx operator` and `vtx api` as host processes, started exactly as a user starts them."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.stack import REPO, stack_env, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Process:
    """A vtx command with the stack's settings (plus ``env``), logging to ``log``."""

    def __init__(
        self,
        log: Path,
        args: list[str],
        env: dict[str, str],
        health_url: str,
        url: str = "",
        before: list[str] | None = None,
    ) -> None:
        self.url = url  # where it serves, for the API
        self.log = log
        self.args = args
        self.before = before  # a vtx command run to its end before each start
        self.env = env
        self.health_url = health_url
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        env = {**os.environ, **stack_env(), **self.env}
        with self.log.open("a") as out:
            if self.before:
                subprocess.run(
                    ["vtx", *self.before], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                    check=True, timeout=timeout,
                )  # fmt: skip
            self.proc = subprocess.Popen(
                ["vtx", *self.args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_until(f"{self.health_url} of `vtx {self.args[0]}`", self._healthy, timeout=timeout)

    def _healthy(self) -> bool:
        assert self.proc is not None
        code = self.proc.poll()
        assert code is None, f"`vtx {self.args[0]}` exited ({code}):\n{self.tail()}"
        try:
            with urllib.request.urlopen(self.health_url, timeout=2):  # noqa: S310 - http only
                return True
        except OSError:
            return False

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """As a crash would: no chance to clean up."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def peak_rss_bytes(self) -> int:
        """The process's peak resident memory so far (VmHWM)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc/<pid>/status")


@contextmanager
def started(process: Process) -> Iterator[Process]:
    """The process running for the block, stopped after it whatever happens."""
    process.start()
    try:
        yield process
    finally:
        process.stop()


# The operator's log line for each probe (vtx/operator/reconcile.py): (video id, try).
PROBE_LINE = re.compile(r"probing the source of video ([0-9a-f-]{36}) \(try (\d+)\)")


def operator_process(
    log: Path,
    namespace: str,
    *,
    health_port: int = 18090,
    metrics_port: int = 19108,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> Process:
    settings = {
        "VTX_MAX_RUNNING_JOBS": "2",  # small enough to see the cap hold
        "VTX_NAMESPACE": namespace,
        "VTX_STALL_SECONDS": "15",  # short, so that a stall is seen within a test
        "VTX_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        **(env or {}),
    }
    args = ["operator", "--namespace", namespace, "--health-address", f"127.0.0.1:{health_port}"]
    return Process(log, [*args, *extra_args], settings, f"http://127.0.0.1:{health_port}/readyz")


def api_process(
    log: Path, namespace: str, *, port: int | None = None, env: dict[str, str] | None = None
) -> Process:
    port = port or free_port()
    settings = {"VTX_NAMESPACE": namespace, "VTX_API_ADDRESS": f"127.0.0.1:{port}", **(env or {})}
    url = f"http://127.0.0.1:{port}"
    # As the chart's init container does: the schema is there before the API serves.
    return Process(log, ["api"], settings, f"{url}/readyz", url, before=["db", "migrate"])
